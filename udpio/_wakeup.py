"""A one-shot wake-up descriptor that ``close()`` uses to interrupt a selector wait.

A socketpair rather than ``os.pipe()``: ``select`` on Windows waits only on
sockets, so this works wherever ``selectors.DefaultSelector`` does.

The wake-up is never drained. Once signalled its read end stays readable,
so every wait that starts later, on any thread, returns at once: "closed"
is a level, not an edge.
"""

from __future__ import annotations

import socket

__all__ = ["Wakeup"]


class Wakeup:
    """The read end goes to a selector; ``signal()`` makes it readable for good.

    Not thread-safe on its own: the Socket serialises ``signal()`` and
    ``close()`` (they must never race, or ``signal()`` could write to a
    descriptor number that ``close()`` just freed and someone reused).
    """

    __slots__ = ("_reader", "_writer")

    def __init__(self) -> None:
        reader, writer = socket.socketpair()
        try:
            reader.setblocking(False)
            writer.setblocking(False)
        except BaseException:
            reader.close()
            writer.close()
            raise
        self._reader = reader
        self._writer = writer

    def fileno(self) -> int:
        """The descriptor to register for reading."""
        return self._reader.fileno()

    def signal(self) -> None:
        """Make the read end readable. Never blocks; safe to call more than once."""
        try:
            self._writer.send(b"\0")
        except BlockingIOError:
            pass  # the buffer is full of earlier wake-ups: already readable

    def close(self) -> None:
        """Close both ends. Idempotent."""
        self._reader.close()
        self._writer.close()
