"""The two exceptions udpio raises of its own; every other error is the kernel's."""

from __future__ import annotations

__all__ = ["ClosedError", "ConcurrentRecvError"]

_CLOSED_MESSAGE = "udpio: socket closed"


class ClosedError(OSError):
    """The Socket was closed: raised by ``recv``/``send`` after or during ``close()``.

    It is an ``OSError`` so that code already handling socket errors keeps
    working; its message always starts with ``udpio: socket closed`` and it
    carries no errno (it is udpio's verdict, not the kernel's).
    """

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{_CLOSED_MESSAGE}: {detail}" if detail else _CLOSED_MESSAGE)


class ConcurrentRecvError(RuntimeError):
    """A second ``recv`` started while another one was still running.

    A Socket has one reader at a time (C1 in docs/reference.md). The call already
    inside ``recv`` is not disturbed; only the newcomer gets this error.
    """
