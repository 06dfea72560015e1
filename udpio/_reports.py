"""The network's reports about datagrams a Socket sent, per peer (E1-E6).

With ``IP_RECVERR`` (``IPV6_RECVERR``) set, Linux queues each ICMP error
about a datagram this socket sent (port unreachable, fragmentation
needed, ...) on the socket's error queue, *and* hands the same error to
whichever call comes next on the socket, about any peer: a send to a live
peer fails with another peer's ``ECONNREFUSED`` and is never sent, and a
reader whose wait wakes for the queue (epoll reports it as ``EPOLLERR``)
spins if nothing reads it. So a Socket with ``peer_errors=True`` reads
the queue (``MSG_ERRQUEUE``) wherever a call meets it, keeps the reports
here for ``Socket.peer_errors()``, and lets no call raise an error that
belongs to an earlier datagram (docs/design.md, "Reports from the
network", lists each place).

This module holds what both backends share: the report's type, the
bounded store, the rule that tells a call's own error from a report's,
and the pure backend's parsing of one report. The native backend reads
and parses the queue in C (``udpio/_c/reports.c``) and keeps its reports
in the same store.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Optional

from udpio._addresses import Address

__all__ = [
    "ANCILLARY_SIZE",
    "IPV6_MTU_DISCOVER",
    "IPV6_PMTUDISC_PROBE",
    "IPV6_RECVERR",
    "IP_MTU_DISCOVER",
    "IP_PMTUDISC_PROBE",
    "IP_RECVERR",
    "MAX_REPORTS",
    "UNREAD_REPORTS",
    "PeerError",
    "PeerErrors",
    "Reports",
    "parse_report",
    "try_again",
]

#: Linux's option numbers (linux/in.h, linux/in6.h), which the socket
#: module does not export: ask for reports; path-MTU discovery's mode, and
#: its "probe" value (DF set, the route's learnt MTU ignored).
IP_RECVERR = 11
IPV6_RECVERR = 25
IP_MTU_DISCOVER = 10
IP_PMTUDISC_PROBE = 3
IPV6_MTU_DISCOVER = 23
IPV6_PMTUDISC_PROBE = 3

#: The most reports a Socket keeps; older ones are dropped first (E3).
MAX_REPORTS = 1024

#: A receive whose read failed for a report reads again at once and leaves
#: the report queued; the queue is read after this many such failures (or
#: before a wait), so a flood is read in rounds of this many, not one by
#: one (P13), and holds at most this many reports in the receive buffer.
UNREAD_REPORTS = 16

#: ``sock_extended_err.ee_origin`` (linux/errqueue.h): who made the report.
_ORIGINS = {1: "local", 2: "icmp", 3: "icmp6"}
#: ``struct sock_extended_err``: errno, origin, type, code, pad, info, data.
_EE_SIZE = 16
#: Room for the report's control message and the others a Socket enables
#: (M1: pktinfo, TOS), which the kernel adds to a report as to a datagram.
ANCILLARY_SIZE = 512


class PeerError(NamedTuple):
    """One report from the network about a datagram this Socket sent (``Socket.peer_errors``).

    ``peer``: where that datagram went (as ``recv`` gives addresses).
    ``errno``: the report's error, e.g. ``ECONNREFUSED`` (port
    unreachable), ``EHOSTUNREACH``, ``ENETUNREACH``, ``EMSGSIZE`` (the
    path is smaller than the datagram). ``origin``: ``"icmp"``,
    ``"icmp6"``, or ``"local"`` (this host's own stack). ``type``, ``code``:
    the ICMP type and code (0, 0 for a local report). ``info``: for
    ``EMSGSIZE``, the MTU of the path (the next hop's, from a router's
    report), else 0. ``reporter``: the address (port 0) of the host or
    router that sent the report, ``None`` for a local one.
    """

    peer: Address
    errno: int
    origin: str
    type: int
    code: int
    info: int
    reporter: Optional[Address]


class PeerErrors(list[PeerError]):
    """What ``Socket.peer_errors()`` returns: the reports, oldest first, and ``dropped``.

    ``dropped``: how many reports the Socket dropped since the last call
    because it already kept ``MAX_REPORTS`` (1,024), oldest first.
    """

    dropped: int

    def __init__(self, reports: Iterable[PeerError] = (), dropped: int = 0) -> None:
        super().__init__(reports)
        self.dropped = dropped


class Reports:
    """A Socket's store of reports: at most ``MAX_REPORTS``, oldest dropped first. Thread-safe."""

    def __init__(self) -> None:
        # Guards _kept and _dropped: a receive, a send and peer_errors()
        # may keep or take reports on three threads at once (E3).
        self._lock = threading.Lock()
        self._kept: deque[PeerError] = deque(maxlen=MAX_REPORTS)
        self._dropped = 0

    def __len__(self) -> int:
        """How many reports are kept now."""
        return len(self._kept)

    def keep(self, reports: Sequence[PeerError]) -> None:
        """Add ``reports`` (oldest first), dropping the oldest kept beyond the bound."""
        with self._lock:
            self._dropped += max(0, len(self._kept) + len(reports) - MAX_REPORTS)
            self._kept.extend(reports)

    def take(self) -> PeerErrors:
        """Everything kept, oldest first, with the count dropped; the store is then empty."""
        with self._lock:
            taken = PeerErrors(self._kept, self._dropped)
            self._kept.clear()
            self._dropped = 0
        return taken


def try_again(err: int, gathered: Optional[Sequence[PeerError]], attempt: int, *, sending: bool) -> bool:
    """Whether a call that failed with ``err`` should try again, having gathered ``gathered`` (E4).

    The kernel hands a pending report's error to the next call on the
    socket, which clears it: so a call's first failure is always tried
    again (its own error comes back; a report's does not, unless a new
    report came meanwhile), and a later one while the reports just
    gathered explain it, or while another thread is reading them
    (``gathered`` None). A send whose failure this host reported at once
    (a ``"local"`` report of the same error: a datagram over the MTU with
    ``dont_fragment``) failed on its own. ``attempt`` counts the failures
    before this one. Pure; thread-safe.
    """
    if gathered is None:
        return True
    if sending and any(r.origin == "local" and r.errno == err for r in gathered):
        return False
    return attempt == 0 or any(r.origin != "local" and r.errno == err for r in gathered)


def parse_report(ancdata: list[tuple[int, int, bytes]], peer: Address) -> Optional[PeerError]:
    """The ``PeerError`` in one ``recvmsg(..., MSG_ERRQUEUE)``'s control data, or ``None`` if it has none.

    ``peer`` is that ``recvmsg``'s address: where the reported datagram went.
    """
    for level, kind, data in ancdata:
        if (level, kind) in _RECVERR and len(data) >= _EE_SIZE:
            err = int.from_bytes(data[0:4], sys.byteorder)
            origin = _ORIGINS.get(data[4], "local")
            ee_type, ee_code = (data[5], data[6]) if origin != "local" else (0, 0)
            info = int.from_bytes(data[8:12], sys.byteorder) if err == errno.EMSGSIZE else 0
            reporter = _offender(data[_EE_SIZE:]) if origin != "local" else None
            return PeerError(peer, err, origin, ee_type, ee_code, info, reporter)
    return None


_RECVERR = {(socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)}


def _offender(raw: bytes) -> Optional[Address]:
    # The sockaddr after the sock_extended_err (SO_EE_OFFENDER): the host
    # or router that sent the report, with port 0, as the socket module
    # would give it.
    if len(raw) < 2:
        return None
    family = int.from_bytes(raw[0:2], sys.byteorder)
    if family == socket.AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6 and len(raw) >= 28:
        host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        port = int.from_bytes(raw[2:4], "big")
        return host, port, int.from_bytes(raw[4:8], "big"), int.from_bytes(raw[24:28], sys.byteorder)
    return None
