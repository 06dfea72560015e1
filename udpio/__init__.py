"""udpio: blocking UDP datagram I/O for threaded daemons, with a ``close()`` that wakes readers.

In plain CPython on Linux, closing a socket from one thread does not wake
another thread blocked in ``recvfrom``; a daemon cannot stop its reader.
A udpio :class:`Socket` waits in a selector together with a wake-up
descriptor that ``close()`` signals, so ``recv`` returns ``ClosedError``
at once. Frames are read-only views into a reused buffer: valid until the
next ``recv``, never overwritten while you keep a slice.

``BACKEND`` says which implementation runs: ``"native"`` (the C hot path)
or ``"python"``. The behaviour is the same; docs/reference.md has it rule
by rule.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Optional, Union

from udpio import _socket
from udpio._addresses import Address
from udpio._backend import BACKEND, Socket
from udpio._datagram import Datagram, Stats
from udpio._errors import ClosedError, ConcurrentRecvError, datagrams_sent
from udpio._reports import PeerError

if TYPE_CHECKING:
    from udpio._daemon import serve
    from udpio._group import Group

#: Alias kept for the Go-flavoured name of the seed API.
ErrClosed = ClosedError

# Public names say where users import them from (help(), reprs, the API page).
for _public in (Socket, Datagram, Stats, ClosedError, ConcurrentRecvError, PeerError):
    _public.__module__ = __name__
del _public

__all__ = [
    "BACKEND",
    "Address",
    "ClosedError",
    "ConcurrentRecvError",
    "Datagram",
    "ErrClosed",
    "Group",
    "PeerError",
    "Socket",
    "Stats",
    "datagrams_sent",
    "listen",
    "serve",
    "wrap_conn",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Group and serve bring multiprocessing, pickle and logging with them: a
    # program that only uses a Socket should not load them (they slowed its
    # start, and its every recv, through the collector's larger heap).
    if name == "Group":
        from udpio._group import Group

        return Group
    if name == "serve":
        from udpio._daemon import serve

        return serve
    raise AttributeError(f"module 'udpio' has no attribute {name!r}")


def __dir__() -> list[str]:
    # dir(udpio) and tab completion show what users may use, not the
    # module's own imports (socket, typing's names, annotations).
    return sorted([*__all__, "__version__"])


def listen(
    addr: Union[str, tuple[str, int]],
    *,
    rcvbuf: Optional[int] = None,
    sndbuf: Optional[int] = None,
    reuse_port: bool = False,
    peer_errors: bool = False,
    dont_fragment: bool = False,
) -> Socket:
    """Resolve ``addr``, bind a UDP socket to it, and return it as a Socket.

    ``addr`` is ``"host:port"`` (``"127.0.0.1:0"``, ``"[::1]:9000"``,
    ``"localhost:0"``, ``":9000"`` for all IPv4 interfaces, ``"[::]:9000"``)
    or a ``(host, port)`` tuple; port 0 picks a free port. The first
    resolved address that binds wins. ``rcvbuf``/``sndbuf`` set
    ``SO_RCVBUF``/``SO_SNDBUF`` (1 to ``2**31 - 1`` bytes; Linux grants at
    most ``net.core.rmem_max``/``wmem_max`` and doubles what it grants, so
    ``stats().kernel_drops`` is the way to see whether it was enough).

    ``reuse_port=True`` sets ``SO_REUSEPORT`` before binding: Sockets that
    all set it, in this process or others, share the address, each
    datagram going to one of them and one client's datagrams to the same
    one while the members stay the same (see :class:`Group`, which does
    this for a group of workers). Where the platform has no
    ``SO_REUSEPORT`` it is an ``OSError`` naming it, before anything is
    bound; binding where a socket without the option holds the address
    is the kernel's ``EADDRINUSE``.

    ``peer_errors=True`` asks the kernel for the network's reports about
    the datagrams this Socket sends (a peer's closed port, an unreachable
    host, a path smaller than a datagram): ``Socket.peer_errors()`` returns
    them, each with the peer it is about, and no receive or send call
    raises an error that belongs to an earlier datagram. Off by default,
    and then such reports are not heard at all.

    ``dont_fragment=True`` sends every datagram with the don't-fragment
    bit: one larger than the local link carries is the send's own
    ``EMSGSIZE``, and a router on a smaller path answers with a report
    carrying that path's MTU (with ``peer_errors=True``; for a tunnel or a
    QUIC daemon sizing its packets). Both are Linux's; elsewhere asking
    for them is an ``OSError`` naming the option.

    Raises ``ValueError``/``TypeError`` for a malformed address (four
    numbers over 255 included) or buffer size (quoting it),
    ``socket.gaierror`` for a host that does not resolve, and the kernel's
    ``OSError`` with its errno, naming the address it could not bind
    (e.g. ``EADDRINUSE``). A failed call leaves no descriptor open.
    Thread-safe.
    """
    return _socket.listen_with(
        Socket,
        addr,
        rcvbuf=rcvbuf,
        sndbuf=sndbuf,
        reuse_port=reuse_port,
        peer_errors=peer_errors,
        dont_fragment=dont_fragment,
    )


def wrap_conn(conn: socket.socket, *, peer_errors: bool = False, dont_fragment: bool = False) -> Socket:
    """Adopt an existing UDP socket (IPv4 or IPv6, bound or not) as a Socket.

    On success the Socket owns ``conn``: it makes it nonblocking, turns
    its UDP GRO option on where ``recv`` splits joined reads (the native
    backend on Linux) and off elsewhere, and ``close()`` closes it; do not
    close it yourself. ``peer_errors`` and ``dont_fragment`` are as for
    :func:`listen` (set on ``conn`` once it passed the checks); a socket
    that has ``IP_RECVERR`` on already is handled as with
    ``peer_errors=True``.

    Raises ``TypeError`` for something that is not a ``socket.socket`` and
    ``ValueError`` for a closed, non-UDP or non-IP socket; then ``conn`` is
    left exactly as it was. Thread-safe.
    """
    return _socket.wrap_conn_with(Socket, conn, peer_errors=peer_errors, dont_fragment=dont_fragment)
