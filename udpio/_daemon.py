"""A daemon's main thread: its signals taken with sigwait, whichever thread they land on.

``run_until_signal`` is what ``udpio echo`` and ``udpio.serve`` stand on:
every thread blocks SIGINT and SIGTERM, and the main thread takes them
with ``sigwait``, so none is ever lost to a thread that cannot run a
Python handler (see its docstring for the two ways that happened).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from typing import Any, Union

from udpio._group import Group, Handler

__all__ = ["STOP_SIGNALS", "run_group", "run_until_signal", "serve", "signals_blocked"]


#: The signals that stop a daemon: Ctrl-C and a supervisor's stop.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def signals_blocked(signals: set[signal.Signals]) -> Iterator[None]:
    """Block ``signals`` in this thread for the block; threads started inside inherit the mask."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_until_signal(
    serve: Callable[[], None],
    stop: Callable[[], None],
    signals: set[signal.Signals] = STOP_SIGNALS,
    ready: Callable[[], None] = lambda: None,
) -> None:
    """Run ``serve`` on a thread until one of ``signals`` arrives; then ``stop()`` and join it.

    ``ready()`` runs once the signals are taken care of and ``serve`` runs:
    that is when a daemon may say it is ready, since a supervisor may send
    SIGTERM the moment it reads that (before, one sent right after the
    readiness line met the default action and killed the daemon).

    Why not a handler and ``thread.join()``: a process-directed signal may
    land on any thread that does not block it, but CPython runs handlers
    only on the main thread, which nothing wakes from ``join()`` if another
    thread took the signal; and even when the main thread takes it, a
    signal that arrives just before the main thread goes to sleep in
    ``join()`` runs its C handler but wakes no one. Both hang a daemon now
    and then. Here every thread blocks the signals (the server thread
    inherits the mask) and the main thread takes them with ``sigwait``: a
    pending signal cannot be missed. If ``serve`` ends on its own, it
    signals this process so the wait ends too. Call from the main thread.
    """
    if not hasattr(signal, "sigwait"):  # no POSIX signal masks (Windows): handlers only reach main
        for sig in signals:
            signal.signal(sig, lambda signum, frame: stop())
        thread = threading.Thread(target=serve, name="udpio-server")
        thread.start()
        ready()
        thread.join()
        return

    stopping = threading.Event()

    def serve_then_wake() -> None:
        try:
            serve()
        finally:
            if not stopping.is_set():  # ended by itself (an error): end the wait below
                os.kill(os.getpid(), next(iter(signals)))

    with signals_blocked(signals):
        thread = threading.Thread(target=serve_then_wake, name="udpio-server")
        thread.start()
        ready()  # a signal from here on stays pending until sigwait takes it
        signal.sigwait(signals)
        stopping.set()
        stop()
        thread.join()


def run_group(group: Group, ready: Callable[[], None] = lambda: None) -> int:
    """Start ``group``, run it until SIGINT or SIGTERM (or until it stops itself), stop it.

    Returns 0 after a clean stop, 1 when the group stopped itself (its
    workers kept dying; the log says why). ``ready()`` runs once every
    worker is ready and the signals are taken care of. Call from the main
    thread.
    """
    # multiprocessing's resource tracker unblocks SIGINT and SIGTERM in the
    # thread that starts it (udpio._group): started first, it cannot open a
    # window in which a signal meets its default action.
    if group.mode == "processes":
        resource_tracker.ensure_running()
    with signals_blocked(STOP_SIGNALS):  # the group's threads inherit the mask
        group.start()
        try:
            run_until_signal(group.wait_until_stopped, group.stop, ready=ready)
        finally:
            group.stop()
    return 0 if group.failure is None else 1


def serve(addr: Union[str, tuple[str, int]], handler: Handler, **group_options: Any) -> int:
    """A daemon's main: run ``Group(addr, handler, **group_options)`` until SIGINT or SIGTERM.

    Whichever thread the signal lands on, the group stops cleanly; returns
    0 then, and 1 when the group stopped itself because its workers kept
    dying (G4, G5). Every thread it starts blocks the two signals and the
    calling thread takes them with ``sigwait``: call it before starting
    threads of your own, or start those with the signals blocked, or a
    signal may land on one of them and end the process by its default
    action. ``group_options`` default to one worker
    (``workers=1``). Raises what ``Group`` raises for a bad argument, and
    the kernel's ``OSError`` for an address in use. Call from the main
    thread.
    """
    group_options.setdefault("workers", 1)
    return run_group(Group(addr, handler, **group_options))


serve.__module__ = "udpio"  # where users import it from (help(), the API page)
