"""N1: the C twin and the Python twin agree on every name that crosses between them (udpio._seam).

The C code calls Python methods by name and the Python code reads C
attributes by name; nothing but a test catches a rename on one side. These
read the C sources (udpio/_c/) and the loaded extension, and hold both to
the one declaration in udpio/_seam.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import udpio
from udpio import _messages, _reports, _seam, _socket
from udpio._pool import BufferPool

C_SOURCES = Path(__file__).resolve().parents[2] / "udpio" / "_c"
#: Names the C code asks of standard-library objects, not of udpio's.
STDLIB_NAMES = {"fileno", "family", "release"}


def _c(name: str = "*.[ch]") -> str:
    files = sorted(C_SOURCES.glob(name))
    if not files:
        pytest.skip("the C sources are not beside the tests (installed copy)")
    return "\n".join(path.read_text(encoding="utf-8") for path in files)


@pytest.fixture
def native(backend: str) -> type[_socket.Socket]:
    if backend != "native":
        pytest.skip("the seam is the native backend's: checked once, in the native run")
    return udpio.Socket


def test_n1_the_c_code_calls_back_only_the_names_the_seam_declares(native: type[_socket.Socket]) -> None:
    interned = re.findall(r'intern\(&st->str_\w+, "(\w+)"\)', _c("module.c"))
    assert sorted(interned) == sorted(_seam.CALLBACKS), "module.c's name table and _seam.CALLBACKS differ"
    # No method named by a string literal outside that table.
    literal_calls = re.findall(
        r'PyObject_(?:CallMethod\w*|GetAttrString|VectorcallMethod)\([^;]*?"(\w+)"', _c(), re.S
    )
    assert set(literal_calls) <= STDLIB_NAMES, (
        f"names outside the seam's table: {set(literal_calls) - STDLIB_NAMES}"
    )
    imports = {f"{m}.{a}" for m, a in re.findall(r'import_attr\("([\w.]+)", "(\w+)"\)', _c("module.c"))}
    assert imports == _seam.IMPORTS


def test_n1_every_callback_is_there_to_be_called(native: type[_socket.Socket]) -> None:
    for name in _seam.CALLBACKS:
        owner = BufferPool if name in ("get", "put") else native
        assert callable(getattr(owner, name, None)), f"the C code calls {name}, which {owner.__name__} lacks"


def test_n1_core_overrides_exactly_what_the_seam_says(native: type[_socket.Socket]) -> None:
    from udpio import _speedups

    table = _c("core.c").split("static PyMethodDef Core_methods[] = {", 1)[1].split("};", 1)[0]
    in_c = re.findall(r'\{"(\w+)", \(PyCFunction\)', table)
    assert sorted(in_c) == sorted(_seam.OVERRIDES)
    for name, fallback in _seam.OVERRIDES.items():
        assert name in vars(_speedups.Core) and callable(getattr(_socket.Socket, name)), name
        assert getattr(native, name) is getattr(_speedups.Core, name), f"{name}: C's is not the one used"
        if fallback is not None:
            assert getattr(native, fallback) is getattr(_socket.Socket, name), (
                f"{fallback} is not the pure {name}"
            )


def test_n1_core_shares_exactly_the_state_the_seam_names(native: type[_socket.Socket]) -> None:
    from udpio import _speedups

    descriptors = {
        name
        for name, value in vars(_speedups.Core).items()
        if type(value).__name__ in ("member_descriptor", "getset_descriptor") and not name.startswith("__")
    }
    assert descriptors == _seam.SHARED_STATE


def test_n1_the_payload_limits_are_one_value_in_both_languages(native: type[_socket.Socket]) -> None:
    from udpio import _speedups

    assert _speedups.LARGEST_IPV4_PAYLOAD == _messages.LARGEST_IPV4_PAYLOAD == 65507
    assert _speedups.LARGEST_IPV6_PAYLOAD == _messages.LARGEST_IPV6_PAYLOAD == 65527
    assert _speedups.UNREAD_REPORTS == _reports.UNREAD_REPORTS == 16
    assert not re.search(r"\b6550[0-9]\b|\b6552[0-9]\b", _c("*.c")), (
        "a payload limit written as a number in the C code, not as its name"
    )


def test_v4_free_threading_is_not_claimed_and_the_shared_c_state_is_atomic(
    native: type[_socket.Socket],
) -> None:
    # V4: no free-threaded build could run the suite here, so none is
    # claimed (the module keeps the GIL, no classifier says otherwise); what
    # the C code shares between threads is atomic, not guarded by the GIL
    # alone; and the design page lists what a free-threaded build would
    # still need.
    header = _c("udpio.h")
    for declaration in (
        r"atomic_int held;",
        r"atomic_int waiters;",
        r"atomic_int wake_pending;",
        r"atomic_ulong owner;",
        r"_Atomic Py_ssize_t exports;",
        r"atomic_char closed;",
        r"_Atomic Py_ssize_t received;",
        r"_Atomic Py_ssize_t sent;",
    ):
        assert declaration in header, f"not atomic: {declaration}"
    assert "Py_MOD_GIL_NOT_USED" not in _c(), "free-threading declared before the suite has run on it"
    design = (C_SOURCES.parents[1] / "docs" / "design.md").read_text(encoding="utf-8")
    section = design.split("## Free-threaded CPython (V4)", 1)[1].split("\n## ", 1)[0]
    assert "Py_mod_gil" in section and "would still need" in section
