"""The two named tuples a Socket returns besides frames: ``Datagram`` and ``Stats`` (M1, M3).

Defined once, here, and returned as they are by both backends (the C code
builds a ``Datagram`` with ``tuple.__new__``, as the pure code does with
the class).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from udpio._addresses import Address

__all__ = ["Datagram", "Stats"]


class Datagram(NamedTuple):
    """One received datagram and where it went (``recv_datagram``, ``recv_batch``).

    ``frame`` and ``src`` are what ``recv`` returns. ``dst`` is the local
    address the sender wrote to, with this Socket's port (on a wildcard
    bind, the address the client used; ``::ffff:a.b.c.d`` for an IPv4
    sender on a dual-stack IPv6 Socket), or ``None`` where the platform
    cannot say. ``ifindex`` is the interface it arrived on (0: unknown);
    ``tos`` is the IPv4 TOS / IPv6 traffic-class byte (ECN in its two low
    bits), or ``None`` where unknown. ``reply`` answers from ``dst``.
    """

    frame: memoryview
    src: Address
    dst: Optional[Address]
    ifindex: int
    tos: Optional[int]


class Stats(NamedTuple):
    """What a Socket has moved (``Socket.stats``).

    ``received``: datagrams its receive calls returned. ``sent``: datagrams
    it sent (a batch stopped part-way counts what went out).
    ``kernel_drops``: datagrams the kernel dropped for this socket, most
    often because its receive buffer was full (Linux's own per-socket
    counter, the ``drops`` column of ``/proc/net/udp``), or ``None`` where
    the platform keeps none.
    """

    received: int
    sent: int
    kernel_drops: Optional[int]
