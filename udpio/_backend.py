"""Which Socket this process uses: the native one where the extension is built (N2).

``UDPIO_NO_EXTENSIONS=1`` in the environment forces the pure-Python
backend, as it skips the build at install time.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal, Optional

from udpio import _socket

__all__ = ["BACKEND", "WHY_PURE", "Socket", "native_socket", "version_line"]


def _pure_forced() -> bool:
    return os.environ.get("UDPIO_NO_EXTENSIONS", "") not in ("", "0")


def native_socket() -> type[_socket.Socket]:
    """The native Socket class; raises ImportError where the extension is missing."""
    from udpio import _native

    return _native.Socket


def _load() -> tuple[type[_socket.Socket], Literal["native", "python"], str]:
    # The Socket, the backend's name, and why it is the pure one ("" if native).
    if _pure_forced():
        return _socket.Socket, "python", "forced by UDPIO_NO_EXTENSIONS"
    try:
        return native_socket(), "native", ""
    except ImportError as exc:  # not built, or built but not loadable (a missing symbol, another ABI)
        if not _built_here():
            return _socket.Socket, "python", not_built_reason(_package_folder())
        return _socket.Socket, "python", f"the C extension does not load: {exc}"


def _package_folder() -> str:
    return os.path.dirname(os.path.abspath(_socket.__file__))


def _built_here() -> bool:
    return _has_extension(_package_folder())


#: What setup.py leaves in the package when the build failed: the reason.
_NOT_BUILT = "_speedups_not_built.txt"


def not_built_reason(folder: str) -> str:
    """Why the package in ``folder`` has no extension, as ``--version`` says it."""
    try:
        with open(os.path.join(folder, _NOT_BUILT), encoding="utf-8") as recorded:
            reason = recorded.read().strip()
    except OSError:
        return "the C extension is not built here"
    return f"the C extension failed to build at install time: {reason}"


def _has_extension(folder: str) -> bool:
    import glob

    return bool(glob.glob(os.path.join(folder, "_speedups*.so")))


_SOCKET, BACKEND, WHY_PURE = _load()

if TYPE_CHECKING:
    Socket = _socket.Socket
else:
    Socket = _SOCKET


def version_line(version: str) -> str:
    """``--version``'s text: the version, the backend, where udpio was imported from, and why pure.

    A source checkout on ``sys.path`` (``python -m udpio`` in the
    repository root) shadows an installed udpio; where that makes this
    process pure although an installed copy has the extension, it says so.
    """
    here = os.path.dirname(os.path.abspath(_socket.__file__))
    text = f"udpio {version} ({BACKEND} backend) from {here}"
    if BACKEND == "native":
        return text
    text += f"; {WHY_PURE.splitlines()[0] if WHY_PURE else 'pure'}"
    elsewhere = _installed_extension(here)
    if elsewhere is not None and not _pure_forced():
        text += f"; an extension is built in {elsewhere}, which this copy shadows"
    return text


def _installed_extension(here: str) -> Optional[str]:
    # Another udpio on sys.path that has a built extension, if any.
    import sys

    for entry in sys.path:
        folder = os.path.join(os.path.abspath(entry or "."), "udpio")
        if folder != here and _has_extension(folder):
            return folder
    return None
