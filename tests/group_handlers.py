"""Handlers for Group's tests: importable by name, as a worker process needs them.

Each answers every datagram with its own pid, so a test can tell which
worker answered. A datagram that says ``crash`` makes ``echo_pid`` raise
(a handler's bug: G4); one that says ``exit`` makes it end its process
the hard way.
"""

from __future__ import annotations

import os

import udpio


def echo_pid(sock: udpio.Socket) -> None:
    """Answer each datagram with b"<payload> <pid>"; ``crash`` raises, ``exit`` ends the process."""
    while True:
        try:
            datagram = sock.recv_datagram()
        except udpio.ClosedError:
            return
        payload = bytes(datagram.frame)
        if payload == b"crash":
            raise ValueError("a datagram this handler cannot take")
        if payload == b"exit":
            os._exit(3)
        sock.reply(payload + b" %d" % os.getpid(), datagram)


def always_crashes(sock: udpio.Socket) -> None:
    """A handler with a bug at its start: every worker dies at once (G4's crash loop)."""
    raise RuntimeError("broken at start")


def ignores_close(sock: udpio.Socket) -> None:
    """A handler that never returns: stop() must end it (G3)."""
    while True:
        try:
            sock.recv()
        except udpio.ClosedError:
            import threading

            threading.Event().wait()  # stuck for good, as a buggy handler would be
