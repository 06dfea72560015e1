"""The native backend: ``udpio.Socket`` with its hot calls in C (udpio._seam lists which).

``_speedups.Core`` (the C extension, udpio/_c/) carries the hot path; everything
else is the pure Socket's, inherited unchanged: construction, the close
protocol, ``local_addr``, waiting in the selector (the C code calls back
into ``_await_readable``) and every case the C code does not take on
(a send that must wait or has a timeout, an argument to complain about, a
destination that is not a numeric tuple), which goes to the pure method
under the fallback name ``udpio._seam.OVERRIDES`` gives it. Importing this
module fails where the extension was not built; ``udpio._backend`` then
falls back to the pure backend.
"""

from __future__ import annotations

from typing import Any

from udpio import _speedups
from udpio._pool import BUFFER_SIZE, BufferPool
from udpio._seam import OVERRIDES
from udpio._socket import Socket as PureSocket

__all__ = ["Socket"]


def _exported(buf: _speedups.ReadBuffer) -> bool:
    return buf.exported


def _new_pool(size: int = BUFFER_SIZE, max_idle: int = 16) -> BufferPool[_speedups.ReadBuffer]:
    return BufferPool(size, max_idle, new=_speedups.ReadBuffer, exported=_exported)


_SHARED = _new_pool()


class Socket(_speedups.Core, PureSocket):
    __doc__ = PureSocket.__doc__

    _SPLITS_GRO = _speedups.SPLITS_GRO

    @staticmethod
    def _new_role() -> _speedups.Role:
        return _speedups.Role()

    @staticmethod
    def _default_pool() -> BufferPool[Any]:
        return _SHARED

    @staticmethod
    def _make_pool(size: int = BUFFER_SIZE, max_idle: int = 16) -> BufferPool[Any]:
        """A private pool of ReadBuffers (for tests and diagnostics)."""
        return _new_pool(size, max_idle)


# The pure method of each call C overrides, under the name the C code calls
# for the cases it hands back (udpio._seam declares both sides).
for _name, _fallback in OVERRIDES.items():
    if _fallback is not None:
        setattr(Socket, _fallback, getattr(PureSocket, _name))
del _name, _fallback
