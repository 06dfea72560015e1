from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Iterator

import pytest

from tests.helpers import has_ipv6


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
    # stderr taken while capture is suspended, so a hang's stack dump shows.
    global _dump_to
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.suspend_global_capture()
    try:
        _dump_to = os.fdopen(os.dup(2), "w")
    finally:
        if capman is not None:
            capman.resume_global_capture()


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
