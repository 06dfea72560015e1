"""C3, C4, F1: close() at a moment Hypothesis picks, against a blocked or busy reader and senders.

Every close here runs on a helper thread (never the test's own), so a
close that fails to wake a reader makes the test fail with an example
instead of hanging the run.
"""

from __future__ import annotations

import socket
import threading

from hypothesis import given
from hypothesis import strategies as st

import udpio
from tests.helpers import descriptors_closed, fd_count, run_in_thread, wait_until

#: A bound for "this should take microseconds" that still fails fast while shrinking.
PROMPT = 3.0


def _join_all(threads: list[threading.Thread]) -> list[str]:
    hung = []
    for thread in threads:
        thread.join(PROMPT)
        if thread.is_alive():
            hung.append(thread.name)
    return hung


def _cleanup(rx: udpio.Socket, peer: socket.socket, dst: tuple[str, int] | tuple[str, int, int, int]) -> None:
    # Never close on the test's own thread: if close() is broken it would
    # hang here instead of failing. A datagram moves a reader that close()
    # failed to wake, so the stuck closers can finish before the next example.
    if not descriptors_closed(rx):
        peer.sendto(b"unstick", dst[:2])
    closer, _ = run_in_thread(rx.close, "cleanup-closer")
    closer.join(PROMPT)
    peer.close()


@given(
    datagrams_before_close=st.integers(0, 30),
    senders=st.integers(0, 4),
    reader_pace=st.sampled_from(["blocked", "busy"]),
    closers=st.integers(1, 4),
)
def test_c3_close_at_any_moment_ends_every_call(
    datagrams_before_close: int, senders: int, reader_pace: str, closers: int
) -> None:
    fds_before = fd_count()
    rx = udpio.listen("127.0.0.1:0")
    dst = rx.local_addr()
    assert dst is not None
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    received = [0]
    stray: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while True:
                rx.recv(timeout=None if reader_pace == "blocked" else 0.001)
                received[0] += 1
        except udpio.ClosedError:
            return
        except TimeoutError:
            if not stop.is_set():
                reader()  # busy pace: keep polling until closed
        except BaseException as exc:
            stray.append(exc)

    def sender(tag: int) -> None:
        payload = bytes([tag]) * 64
        try:
            while True:
                rx.send(payload, dst)
        except udpio.ClosedError:
            return
        except BaseException as exc:
            stray.append(exc)

    try:
        threads = [threading.Thread(target=reader, name="reader", daemon=True)]
        threads += [
            threading.Thread(target=sender, args=(i,), name=f"sender{i}", daemon=True) for i in range(senders)
        ]
        for thread in threads:
            thread.start()
        for _ in range(datagrams_before_close):
            peer.sendto(b"d", dst)
        if datagrams_before_close:
            wait_until(lambda: received[0] > 0, timeout=PROMPT, what="the reader to get going")

        closing = [run_in_thread(rx.close, f"closer{i}") for i in range(closers)]
        hung = _join_all([t for t, _ in closing])
        assert not hung, f"close() did not return: {hung}"
        for _, outcome in closing:
            assert outcome.error is None, outcome.error
        # C3: once close() has returned, everything is closed ...
        assert descriptors_closed(rx)
        stop.set()
        # ... and every call that was running ends with its result or ClosedError.
        hung = _join_all(threads)
        assert not hung, f"still running after close(): {hung}"
        assert stray == [], stray
    finally:
        stop.set()
        _cleanup(rx, peer, dst)
    assert fd_count() == fds_before  # F1


@given(closes=st.lists(st.sampled_from(["reader-thread", "other-thread"]), min_size=1, max_size=3))
def test_c3_reader_closing_its_own_socket_does_not_deadlock(closes: list[str]) -> None:
    # The reader itself closes after one datagram, while other threads close too.
    rx = udpio.listen("127.0.0.1:0")
    dst = rx.local_addr()
    assert dst is not None
    outcome: list[BaseException] = []

    def reader() -> None:
        # An outside closer may win before the first datagram: whichever
        # recv ends the loop must end it with ClosedError.
        try:
            rx.recv(timeout=PROMPT)
            if "reader-thread" in closes:
                rx.close()
            rx.recv(timeout=PROMPT)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.sendto(b"x", dst)
        others = [run_in_thread(rx.close, "closer") for c in closes if c == "other-thread"]
        assert not _join_all([thread] + [t for t, _ in others])
        assert len(outcome) == 1 and isinstance(outcome[0], udpio.ClosedError), outcome
        assert descriptors_closed(rx)
    finally:
        _cleanup(rx, peer, dst)
