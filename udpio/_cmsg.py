"""Control messages: where a datagram went (M1) and which address an answer leaves from (M2).

The pure twin of ``udpio/_c/cmsg.c``. A Socket turns on the options that
make the kernel say, with every datagram, the address it was sent to, the
interface it came in on and its TOS byte (``enable``); a receive reads them
back (``parse``); a send from a chosen address carries one control message
(``source``). Linux's constants are defined here where older Pythons lack
them (``IP_PKTINFO`` arrived in the socket module in 3.12).
"""

from __future__ import annotations

import socket
import struct
from typing import Final, Optional

from udpio._addresses import Address

__all__ = ["SPACE", "dual_stack", "enable", "parse", "reply_source", "source"]

# Linux's values (netinet/in.h, linux/in6.h); the socket module's where it has them.
IP_TOS: Final[int] = getattr(socket, "IP_TOS", 1)
IP_PKTINFO: Final[int] = getattr(socket, "IP_PKTINFO", 8)
IP_RECVTOS: Final[int] = getattr(socket, "IP_RECVTOS", 13)
IPV6_RECVPKTINFO: Final[int] = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO: Final[int] = getattr(socket, "IPV6_PKTINFO", 50)
IPV6_RECVTCLASS: Final[int] = getattr(socket, "IPV6_RECVTCLASS", 66)
IPV6_TCLASS: Final[int] = getattr(socket, "IPV6_TCLASS", 67)

#: struct in_pktinfo {int ifindex; in_addr spec_dst; in_addr addr} and
#: struct in6_pktinfo {in6_addr addr; unsigned ifindex}, in host byte order.
_IN_PKTINFO: Final = struct.Struct("=i4s4s")
_IN6_PKTINFO: Final = struct.Struct("=16sI")
_INT: Final = struct.Struct("=i")

#: Room for every control message a datagram can carry here: a pktinfo of
#: either family, a TOS or traffic class, and UDP GRO's segment size.
SPACE: Final = (
    socket.CMSG_SPACE(_IN6_PKTINFO.size) + socket.CMSG_SPACE(_IN_PKTINFO.size) + 3 * socket.CMSG_SPACE(4)
)

_MAPPED: Final = b"\0" * 10 + b"\xff\xff"


def _set(conn: socket.socket, level: int, option: int) -> bool:
    try:
        conn.setsockopt(level, option, 1)
    except OSError:
        return False
    return True


def dual_stack(conn: socket.socket) -> bool:
    """Whether ``conn`` is an IPv6 socket that also carries IPv4 (``IPV6_V6ONLY`` off). Never raises."""
    if conn.family != socket.AF_INET6:
        return False
    try:
        return conn.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    except OSError:
        return False


def enable(conn: socket.socket, dual: bool) -> bool:
    """Ask the kernel for each datagram's destination, interface and TOS (M4).

    IPv4: ``IP_PKTINFO`` and ``IP_RECVTOS``. IPv6: ``IPV6_RECVPKTINFO`` and
    ``IPV6_RECVTCLASS``, and the IPv4 pair too where the socket is
    dual-stack (``dual``), for its IPv4 senders. Returns whether the
    destination will be reported; never raises (a platform without the
    options reports ``None``).
    """
    if conn.family == socket.AF_INET:
        _set(conn, socket.IPPROTO_IP, IP_RECVTOS)
        return _set(conn, socket.IPPROTO_IP, IP_PKTINFO)
    on = _set(conn, socket.IPPROTO_IPV6, IPV6_RECVPKTINFO)
    _set(conn, socket.IPPROTO_IPV6, IPV6_RECVTCLASS)
    if dual:
        _set(conn, socket.IPPROTO_IP, IP_PKTINFO)
        _set(conn, socket.IPPROTO_IP, IP_RECVTOS)
    return on


def parse(
    ancdata: list[tuple[int, int, bytes]], flags: int, family: int, port: int
) -> tuple[Optional[Address], int, Optional[int]]:
    """``(dst, ifindex, tos)`` from what ``recvmsg`` returned (M1).

    ``dst`` has the Socket's family and ``port``: an IPv4 destination on an
    IPv6 Socket is given in its mapped form, and a link-local IPv6 one
    carries its interface as the scope. Where the kernel truncated the
    control data (``MSG_CTRUNC``), nothing it says can be trusted:
    ``(None, 0, None)``, never a guess.
    """
    if flags & socket.MSG_CTRUNC:
        return None, 0, None
    dst: Optional[Address] = None
    ifindex, tos = 0, None
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _IN_PKTINFO.size:
            # ipi_addr is the header's destination; ipi_spec_dst is only the
            # kernel's preferred source for an answer (they differ for a
            # broadcast or multicast datagram).
            ifindex, _spec_dst, addr = _IN_PKTINFO.unpack_from(data)
            dst = _address(addr, family, port, ifindex)
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= _IN6_PKTINFO.size:
            addr, ifindex = _IN6_PKTINFO.unpack_from(data)
            dst = _address(addr, family, port, ifindex)
        elif level == socket.IPPROTO_IP and kind == IP_TOS and data:
            tos = data[0]
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_TCLASS and len(data) >= _INT.size:
            tos = _INT.unpack_from(data)[0] & 0xFF
    return dst, ifindex, tos


def _address(packed: bytes, family: int, port: int, ifindex: int) -> Address:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, packed), port
    if len(packed) == 4:
        packed = _MAPPED + packed  # an IPv4 sender on a dual-stack Socket
    # A link-local address means nothing without its interface.
    scope_id = ifindex if packed[0] == 0xFE and packed[1] & 0xC0 == 0x80 else 0
    return socket.inet_ntop(socket.AF_INET6, packed), port, 0, scope_id


def source(src: object, family: int, own_port: int) -> tuple[int, int, bytes]:
    """The control message that makes a datagram leave from ``src`` (M2).

    ``src`` is a numeric address string or an ``Address`` (as
    ``Datagram.dst`` gives it) whose port is 0 or ``own_port``; on an IPv6
    Socket an IPv4 address means its mapped form. The interface is left to
    the routing table.

    Raises ``TypeError`` for a ``src`` of the wrong type or shape and
    ``ValueError`` for a host name, an address of the other family, or
    another port, each naming ``src``. Pure; thread-safe.
    """
    if isinstance(src, str):
        host, port = src, 0
    elif isinstance(src, tuple) and len(src) in (2, 4) and isinstance(src[0], str):
        host, port = src[0], src[1]
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError(f"udpio: bad src {src!r}: the port must be an int")
        if port not in (0, own_port):
            raise ValueError(
                f"udpio: bad src {src!r}: a datagram leaves from this Socket's port "
                f"({own_port}); give port 0 or that one"
            )
    else:
        raise TypeError(
            f"udpio: bad src {src!r}: expected a numeric address string or an address tuple, "
            f"not {type(src).__name__}"
        )
    packed = _numeric(host, family, src)
    if family == socket.AF_INET:
        return socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, packed, b"\0" * 4)
    # IPV6_PKTINFO also carries an IPv4-mapped source for an IPv4 destination.
    return socket.IPPROTO_IPV6, IPV6_PKTINFO, _IN6_PKTINFO.pack(packed, 0)


def _numeric(host: str, family: int, src: object) -> bytes:
    try:
        return socket.inet_pton(family, host)
    except (OSError, ValueError):
        pass
    if family == socket.AF_INET6:
        try:
            return _MAPPED + socket.inet_pton(socket.AF_INET, host)
        except (OSError, ValueError):
            pass
    try:
        other = socket.AF_INET6 if family == socket.AF_INET else socket.AF_INET
        socket.inet_pton(other, host)
    except (OSError, ValueError):
        raise ValueError(f"udpio: bad src {src!r}: not a numeric IP address (no host names)") from None
    raise ValueError(f"udpio: bad src {src!r}: an IPv6 address cannot be the source on an IPv4 Socket")


def reply_source(dst: Optional[Address]) -> Optional[Address]:
    """``dst`` if an answer can leave from it, else ``None`` (the kernel chooses).

    Not a source: unknown, a wildcard, a multicast address, the limited
    broadcast address. (A subnet broadcast address cannot be told from here;
    the kernel refuses it as a source, and ``reply`` then lets it choose.)
    """
    if dst is None:
        return None
    host = dst[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    if ":" in host:
        return None if host == "::" or host[:2].lower() == "ff" else dst
    first = host.split(".", 1)[0]
    if host in ("0.0.0.0", "255.255.255.255") or 224 <= int(first) <= 239:
        return None
    return dst
