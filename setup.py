"""Builds udpio's optional C extension (udpio/_c/*.c); metadata is in pyproject.toml.

Where the build fails (no compiler, no headers), the install goes on with
the pure-Python backend and prints one warning line (N2). Setting
UDPIO_NO_EXTENSIONS=1 skips the build altogether.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, PlatformError

_BUILD_ERRORS = (CCompilerError, CompileError, ExecError, PlatformError, OSError)

#: The file a failed build leaves in the package (udpio/_backend.py reads it).
NOT_BUILT = "_speedups_not_built.txt"


class _OptionalBuildExt(build_ext):
    """build_ext that turns a failed compile into the pure-Python install."""

    def finalize_options(self) -> None:
        super().finalize_options()
        # A few small files: always compile them afresh, so that an object
        # built with other CFLAGS (the sanitizer job's) is never linked again.
        self.force = True

    def run(self) -> None:
        try:
            super().run()
        except _BUILD_ERRORS as exc:
            for ext in self.extensions:
                self._failed(ext, exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as exc:
            self._failed(ext, exc)
        else:
            self._record(ext, None)

    def _failed(self, ext: Extension, exc: BaseException) -> None:
        self._drop_stale(ext)
        self._record(ext, exc)
        _warn(exc)

    def _record(self, ext: Extension, exc: Optional[BaseException]) -> None:
        # Why the build failed, beside where the extension would be: the
        # wheel carries it, and `udpio --version` says it, since a plain
        # `pip install .` shows no build output at all. A build that
        # worked removes what an earlier one left.
        reason = os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)), NOT_BUILT)
        if exc is None:
            if os.path.exists(reason):
                os.remove(reason)
            return
        os.makedirs(os.path.dirname(reason), exist_ok=True)
        with open(reason, "w", encoding="utf-8") as out:
            out.write(f"{exc}\n")

    def _drop_stale(self, ext: Extension) -> None:
        # A build that failed must not ship an extension an earlier build
        # left in build/ (a wheel takes whatever build/lib holds): the
        # install is the pure-Python one it says it is.
        path = self.get_ext_fullpath(ext.name)
        if os.path.exists(path):
            os.remove(path)


def _warn(exc: BaseException) -> None:
    sys.stderr.write(
        f"WARNING: udpio: the C extension was not built ({exc}); installing the pure-Python backend\n"
    )


def _extensions() -> list[Extension]:
    if os.environ.get("UDPIO_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    return [
        Extension(
            "udpio._speedups",
            sorted(str(path) for path in Path("udpio/_c").glob("*.c")),
            # Listed so that the sdist carries them and a changed header rebuilds.
            depends=sorted(str(path) for path in Path("udpio/_c").glob("*.h")),
        )
    ]


setup(ext_modules=_extensions(), cmdclass={"build_ext": _OptionalBuildExt})
