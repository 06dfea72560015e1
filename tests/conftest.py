from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Iterator

import pytest

import udpio
from tests.helpers import has_ipv6
from udpio import _backend, _socket

#: Every test runs once per backend (N1). The native run is skipped only
#: where the extension is not built, and fails instead when
#: UDPIO_TEST_REQUIRE_NATIVE is set (tox and CI set it).
BACKENDS = ["python", "native"]


def _socket_class(name: str) -> type[_socket.Socket]:
    if name == "python":
        return _socket.Socket
    try:
        if _backend._pure_forced():
            raise ImportError("UDPIO_NO_EXTENSIONS is set")
        return _backend.native_socket()
    except ImportError as exc:
        if os.environ.get("UDPIO_TEST_REQUIRE_NATIVE", "") not in ("", "0"):
            pytest.fail(f"the native backend must be tested here but does not load: {exc}")
        pytest.skip(f"the native backend is not available here: {exc}")


@pytest.fixture(scope="module", params=BACKENDS, autouse=True)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Point udpio.Socket (and so listen, wrap_conn, the CLI) at one backend."""
    name: str = request.param
    cls = _socket_class(name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(udpio, "Socket", cls)
        patch.setattr(udpio, "BACKEND", name)
        yield name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if has_ipv6():
        return
    skip = pytest.mark.skip(reason="no IPv6 loopback on this machine")
    for item in items:
        if "ipv6" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["127.0.0.1", pytest.param("::1", marks=pytest.mark.ipv6)], ids=["ipv4", "ipv6"])
def loopback(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once on IPv4 and once on IPv6 loopback."""
    host: str = request.param
    return host


#: Seconds one test may take before the run is killed with every thread's stack.
WATCHDOG = float(os.environ.get("UDPIO_TEST_WATCHDOG", "120"))
_dump_to = sys.stderr


def pytest_configure(config: pytest.Config) -> None:
    # pytest captures descriptor 2 per test; keep a copy of the terminal's
    # stderr so a hang's stack dump shows. pytest_configure runs while
    # pytest's global capture is suspended, so descriptor 2 is the terminal
    # here. (Suspending and resuming capture here would leave it resumed and
    # swallow pytest's own header and progress.)
    global _dump_to
    _dump_to = os.fdopen(os.dup(2), "w")


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """Turn a hang into a failure: a deadlock on the main thread (say, a close()
    in a signal handler waiting for its own recv) cannot be bounded by a
    join timeout, so a hung test dumps all stacks and ends the run."""
    faulthandler.dump_traceback_later(WATCHDOG, exit=True, file=_dump_to)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _dump_to is not sys.stderr:
        _dump_to.close()
