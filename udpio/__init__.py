"""udpio: blocking UDP datagram I/O for threaded daemons, with a ``close()`` that wakes readers.

In plain CPython on Linux, closing a socket from one thread does not wake
another thread blocked in ``recvfrom``; a daemon cannot stop its reader.
A udpio :class:`Socket` waits in a selector together with a wake-up
descriptor that ``close()`` signals, so ``recv`` returns ``ClosedError``
at once. Frames are read-only views into a reused buffer: valid until the
next ``recv``, never overwritten while you keep a slice.

The behaviour is specified rule by rule in the project's contract; see
README.md.
"""

from udpio._addresses import Address
from udpio._errors import ClosedError, ConcurrentRecvError
from udpio._socket import Socket, listen, wrap_conn

#: Alias kept for the Go-flavoured name in the contract's seed API.
ErrClosed = ClosedError

__all__ = [
    "Address",
    "ClosedError",
    "ConcurrentRecvError",
    "ErrClosed",
    "Socket",
    "listen",
    "wrap_conn",
]

__version__ = "0.1.0"
