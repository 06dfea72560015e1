"""Races on a Socket's roles, run in a child process by tests/unit/test_role.py.

``python tests/role_stress.py SCENARIO`` runs one scenario on the backend
the environment selects (``UDPIO_NO_EXTENSIONS=1``: pure) and prints
``ok`` when it finished. In a child, because what these races broke was
the interpreter itself: CPython 3.15 aborts (``Fatal Python error:
PyMutex_Unlock: unlocking mutex that is not locked``) when a role's wake-up
lock is released more often than it is taken, and an abort in the test
process would end the whole run instead of failing one test.

Every thread is joined with a timeout; a scenario that hangs fails.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable

import udpio

HANG = 30.0


def _run_threads(targets: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG)
        if thread.is_alive():
            raise SystemExit(f"a thread is still running after {HANG} s")
    if errors:
        raise errors[0]


def _sink() -> socket.socket:
    # A bound socket nobody reads: what is sent to it is dropped when its
    # queue is full, and no ICMP error comes back.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.bind(("127.0.0.1", 0))
    return sink


def senders(count: int, sends: int) -> None:
    """``count`` threads send ``sends`` datagrams each on one Socket (C2)."""
    with _sink() as sink, udpio.listen("127.0.0.1:0") as sock:
        dst = sink.getsockname()

        def send() -> None:
            for _ in range(sends):
                sock.send(b"x", dst)

        _run_threads([send] * count)
        assert sock.stats().sent == count * sends, sock.stats()


def _close_under_senders(dst: tuple[str, int]) -> None:
    sock = udpio.listen("127.0.0.1:0")
    started = [threading.Event() for _ in range(3)]

    def send(started: threading.Event) -> None:
        try:
            while True:
                sock.send(b"x", dst)
                started.set()
        except udpio.ClosedError:
            started.set()

    def close() -> None:
        for event in started:
            if not event.wait(HANG):
                raise AssertionError("a sender never sent")
        sock.close()

    _run_threads([lambda e=e: send(e) for e in started] + [close])


def senders_racing_close(rounds: int) -> None:
    """Three senders on one Socket, closed under them once each has sent (C2, C3)."""
    with _sink() as sink:
        for _ in range(rounds):
            _close_under_senders(sink.getsockname())


def _close_under_reader() -> None:
    sock = udpio.listen("127.0.0.1:0")

    def read() -> None:
        try:
            sock.recv()
        except udpio.ClosedError:
            return
        raise AssertionError("recv returned on a Socket nobody sent to")

    _run_threads([read, sock.close])


def reader_and_closer(rounds: int) -> None:
    """A reader blocked in recv and a closer, many Socket lives (C3, C4)."""
    for _ in range(rounds):
        _close_under_reader()


def _race_one_role() -> None:
    role = udpio.Socket._new_role()

    def take(timeout: float) -> None:
        for _ in range(200):
            if role.acquire(True, timeout):
                # Held across a call that lets other threads run, as a send
                # holds its role across the system call.
                os.sched_yield()
                role.release()

    _run_threads([lambda: take(-1), lambda: take(0.0001), lambda: take(-1), lambda: take(0.00001)])
    # Returning drops the last reference: the role is freed, a wake-up
    # pending or not.


def roles_with_timeouts(rounds: int) -> None:
    """Four threads take one role, two of them with short timeouts (C1, C2).

    Givers meet waiters that give up, waiters that take the role without
    sleeping, and waiters that are woken: every path of the wake-up.
    """
    for _ in range(rounds):
        _race_one_role()


SCENARIOS: dict[str, Callable[[], None]] = {
    "two_senders": lambda: senders(2, 50_000),
    "three_senders_racing_close": lambda: senders_racing_close(200),
    "reader_and_closer": lambda: reader_and_closer(500),
    "roles_with_timeouts": lambda: roles_with_timeouts(100),
}


def main(argv: list[str]) -> int:
    SCENARIOS[argv[1]]()
    print("ok", udpio.BACKEND, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
