"""C4, R7 and R1 on every selector class this platform has, not only the default.

On Linux recv waits on the epoll object directly (a measured shortcut);
every other selector goes through select(). Both paths must wake on
close, honour timeouts and deliver datagrams.
"""

from __future__ import annotations

import functools
import selectors
import sys
import time
from typing import cast

import pytest

import udpio
import udpio._socket as impl
from tests.helpers import HANG, join, run_in_thread, wait_blocked

SELECTORS = [
    getattr(selectors, name)
    for name in ("EpollSelector", "PollSelector", "SelectSelector", "KqueueSelector", "DevpollSelector")
    if hasattr(selectors, name)
]


@pytest.fixture(params=SELECTORS, ids=lambda cls: cls.__name__)
def selector_class(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> type[selectors.BaseSelector]:
    cls: type[selectors.BaseSelector] = request.param
    monkeypatch.setattr(selectors, "DefaultSelector", cls)  # what udpio._socket looks up
    return cls


def test_c4_close_wakes_a_blocked_recv_with_every_selector(
    selector_class: type[selectors.BaseSelector],
) -> None:
    sock = udpio.listen("127.0.0.1:0")
    assert type(sock._rsel) is selector_class
    reader, outcome = run_in_thread(sock.recv, "reader")
    wait_blocked(reader)
    sock.close()
    join(reader)
    assert isinstance(outcome.error, udpio.ClosedError)


def test_r7_timeout_and_delivery_with_every_selector(selector_class: type[selectors.BaseSelector]) -> None:
    with udpio.listen("127.0.0.1:0") as rx, udpio.listen("127.0.0.1:0") as tx:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0.1)
        assert time.monotonic() - start >= 0.09
        dst = rx.local_addr()
        assert dst is not None
        reader, outcome = run_in_thread(lambda: rx.recv(timeout=HANG), "reader")
        wait_blocked(reader)
        tx.send(b"through the selector", dst)
        join(reader)
        assert outcome.error is None
        frame, _ = cast("tuple[memoryview, udpio.Address]", outcome.value)
        assert bytes(frame) == b"through the selector"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll is Linux's")
def test_r7_linux_waits_on_epoll_directly_elsewhere_through_select() -> None:
    with udpio.listen("127.0.0.1:0") as sock:
        assert isinstance(sock._wait_readable, functools.partial)
        assert sock._wait_readable.keywords == {"maxevents": 2}
    poll = selectors.PollSelector()
    try:
        assert impl._waiter(poll) == poll.select
    finally:
        poll.close()
