"""The two exceptions udpio raises of its own; every other error is the kernel's."""

from __future__ import annotations

__all__ = ["ClosedError", "ConcurrentRecvError", "datagrams_sent"]

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


def datagrams_sent(exc: BaseException) -> int:
    """How many datagrams of a ``send_batch`` or ``send_many`` went out before it raised ``exc``.

    Every exception those two raise carries this as ``exc.sent`` (B3, K2);
    this reads it where a type checker cannot know that (``TimeoutError``
    has no ``sent``). 0 for an exception that carries none. Pure;
    thread-safe; raises nothing.
    """
    sent = getattr(exc, "sent", 0)
    return sent if isinstance(sent, int) else 0
