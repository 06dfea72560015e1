"""tools/break_native.py stays able to break the C code: each mutant's text is in the sources, once.

A change to the C code that moves a mutant's text makes the tool stop at
that mutant ("found 0 times"); this says so at once, in every run, instead
of the next time someone runs the tool.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> ModuleType:
    path = ROOT / "tools" / "break_native.py"
    if not path.exists():
        pytest.skip("tools/ is not beside the tests (installed copy)")
    spec = importlib.util.spec_from_file_location("break_native", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_n1_every_c_mutant_names_text_found_exactly_once_in_the_c_sources(backend: str) -> None:
    if backend != "native":
        pytest.skip("the C sources are checked once, in the native run")
    tool = _tool()
    c_dir = ROOT / "udpio" / "_c"
    sources = [path.read_text(encoding="utf-8") for path in sorted([*c_dir.glob("*.c"), *c_dir.glob("*.h")])]
    if not sources:
        pytest.skip("the C sources are not beside the tests (installed copy)")
    for name, (good, bad) in tool.MUTANTS.items():
        assert sum(text.count(good) for text in sources) == 1, f"mutant {name!r}: its text moved"
        assert good != bad, name
