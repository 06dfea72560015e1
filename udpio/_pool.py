"""Reusable 64 KiB read buffers, and the test for whether a buffer is still in use.

A buffer is "in use" while anything exports it: a frame ``recv`` handed
out, or any view or array derived from that frame. The pool only ever
holds buffers that nothing exports (R6), so a buffer it hands out can be
written without touching bytes a caller still sees (R4).

The pure backend's buffers are bytearrays; the native backend's are
``udpio._speedups.ReadBuffer`` objects, which count their exports. One
pool class serves both: it is told how to make a buffer and how to ask
whether one is exported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sized
from typing import Generic, TypeVar, overload

__all__ = ["BUFFER_SIZE", "BufferPool", "is_exported", "shared_pool"]

B = TypeVar("B", bound=Sized)

#: Every datagram fits: the largest UDP payload is 65535 - 8 bytes.
BUFFER_SIZE = 65536


def is_exported(buf: bytearray) -> bool:
    """Whether any memoryview (or other buffer export) of ``buf`` is alive.

    CPython refuses to resize a bytearray that has exports, so a one-byte
    grow-and-shrink is an exact, cheap probe (no copy: bytearrays
    over-allocate, so after the first probe both steps stay in place).
    """
    try:
        buf.append(0)
    except BufferError:
        return True
    del buf[-1]
    return False


class BufferPool(Generic[B]):
    """A bounded, thread-safe free list of equally sized buffers (bytearrays by default).

    ``get`` returns a buffer nobody else holds; ``put`` takes one back only
    if nothing exports it and fewer than ``max_idle`` are idle; otherwise
    the buffer is simply dropped for the garbage collector.
    """

    @overload
    def __init__(self: BufferPool[bytearray], size: int = ..., max_idle: int = ...) -> None: ...

    @overload
    def __init__(
        self, size: int = ..., max_idle: int = ..., *, new: Callable[[int], B], exported: Callable[[B], bool]
    ) -> None: ...

    def __init__(
        self,
        size: int = BUFFER_SIZE,
        max_idle: int = 16,
        *,
        new: Callable[[int], object] = bytearray,
        exported: Callable[[B], bool] = is_exported,  # type: ignore[assignment]
    ) -> None:
        if size < 1 or max_idle < 0:
            raise ValueError(f"udpio: bad pool shape size={size} max_idle={max_idle}")
        self.size = size
        self.max_idle = max_idle
        self._new = new
        #: Whether anything still views a buffer (R4, R6).
        self.exported: Callable[[B], bool] = exported
        # Guards _idle so the length check and the append are one step (the
        # bound is exact). An RLock: a signal handler that closes or reads
        # another Socket while this thread is inside the pool must not
        # deadlock; each step below is a single list operation, so a
        # re-entrant call sees a consistent list.
        self._lock = threading.RLock()
        self._idle: list[B] = []

    def get(self) -> B:
        """A buffer of ``size`` bytes that no other owner holds. Thread-safe."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._new(self.size)  # type: ignore[return-value]

    def put(self, buf: B) -> bool:
        """Offer ``buf`` back; returns whether the pool kept it. Thread-safe.

        The caller must not use ``buf`` afterwards either way.
        """
        if len(buf) != self.size or self.exported(buf):
            return False
        with self._lock:
            if len(self._idle) >= self.max_idle:
                return False
            if any(idle is buf for idle in self._idle):
                # A double put would hand one buffer to two owners (R6).
                raise RuntimeError("udpio: buffer returned to the pool twice")
            self._idle.append(buf)
            return True

    def idle_count(self) -> int:
        """How many buffers wait in the pool now (for tests and diagnostics)."""
        with self._lock:
            return len(self._idle)


_SHARED = BufferPool()


def shared_pool() -> BufferPool[bytearray]:
    """The process-wide pool every Socket draws its read buffer from."""
    return _SHARED
