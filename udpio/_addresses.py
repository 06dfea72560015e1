"""Turning what a user writes ("127.0.0.1:0", "[::1]:9000", ("", 53)) into sockaddrs.

Parsing is strict and local: every malformed address fails here with a
``ValueError``/``TypeError`` that quotes it, before any socket exists, so
a bad address cannot leak a descriptor (A2, A3). Resolution is
``getaddrinfo``'s job and its ``socket.gaierror`` passes through.
"""

from __future__ import annotations

import socket
from typing import Union

__all__ = [
    "MAX_FLOWINFO",
    "MAX_PORT",
    "MAX_SCOPE_ID",
    "Address",
    "check_ipv6_fields",
    "destination_family",
    "format_address",
    "parse",
    "quote",
    "resolve",
    "resolver_error",
]

#: What the standard socket module uses: (host, port) for IPv4,
#: (host, port, flowinfo, scope_id) for IPv6.
Address = Union[tuple[str, int], tuple[str, int, int, int]]

#: The largest value of each numeric field of an address tuple: the port,
#: the IPv6 flow label (20 bits) and the IPv6 scope_id (an interface index,
#: 32 bits). The C code's twins are checked against these (test_native.py).
MAX_PORT = 65535
MAX_FLOWINFO = 0xFFFFF
MAX_SCOPE_ID = 0xFFFFFFFF


def check_ipv6_fields(dst: object) -> None:
    """Raise ``OverflowError`` for an IPv6 flowinfo or scope_id out of range (S3).

    ``socket.sendto`` reads both as a C ``unsigned int`` without an overflow
    check: a scope_id of ``2**32`` would quietly become 0 and -1 become
    ``2**32 - 1`` (a datagram for another interface), and a flowinfo of
    ``2**32 + 5`` becomes 5 and is sent. Fields of other types, and tuples of
    other shapes, are left for ``sendto`` to judge. Pure; thread-safe.
    """
    if type(dst) is not tuple or len(dst) < 3:
        return
    fields = zip(("flowinfo", "scope_id"), (MAX_FLOWINFO, MAX_SCOPE_ID), dst[2:4], strict=False)
    for field, top, value in fields:
        if isinstance(value, int) and not 0 <= value <= top:
            raise OverflowError(f"the {field} must be 0-{top}")


def quote(addr: object) -> str:
    """``repr(addr)`` for an error message, also for an int too long for ``str()``."""
    try:
        return repr(addr)
    except ValueError:  # Python's digit limit for int -> str (sys.set_int_max_str_digits)
        if isinstance(addr, tuple):
            return "(" + ", ".join(quote(item) for item in addr) + ("," if len(addr) == 1 else "") + ")"
        if isinstance(addr, int):
            return f"<int of {addr.bit_length()} bits>"
        return f"<{type(addr).__name__} that cannot be shown>"


def _invalid(addr: object, why: str) -> ValueError:
    return ValueError(f"udpio: invalid address {quote(addr)}: {why}")


def _parse_port(text: str, addr: object) -> int:
    # isdigit() alone accepts non-ASCII digits such as "٩"; int() accepts
    # "+1", " 1" and "1_0": none of them is a decimal port.
    if not text:
        raise _invalid(addr, "no port (write host:port, e.g. 127.0.0.1:0)")
    if not (text.isascii() and text.isdigit()):
        raise _invalid(addr, f"port {text!r} is not a decimal integer")
    if len(text) > 5 or int(text) > MAX_PORT:
        raise _invalid(addr, f"port {text} is outside 0..{MAX_PORT}")
    return int(text)


def _check_host(host: str, addr: object) -> str:
    if "\0" in host:
        raise _invalid(addr, "host contains a NUL character")
    return host


def _parse_text(addr: str) -> tuple[str, int]:
    if not addr:
        raise _invalid(addr, "empty address")
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise _invalid(addr, "unbalanced '[': no closing ']'")
        host, rest = addr[1:end], addr[end + 1 :]
        if "[" in host or "]" in rest or "[" in rest:
            raise _invalid(addr, "unbalanced brackets")
        if not host:
            raise _invalid(addr, "empty host between brackets")
        if not rest.startswith(":"):
            raise _invalid(addr, "no port after ']' (write [host]:port)")
        return _check_host(host, addr), _parse_port(rest[1:], addr)
    if "[" in addr or "]" in addr:
        raise _invalid(addr, "unbalanced brackets")
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise _invalid(addr, "no port (write host:port, e.g. 127.0.0.1:0)")
    if ":" in host:
        raise _invalid(addr, "an IPv6 host needs brackets, e.g. [::1]:9000")
    return _check_host(host, addr), _parse_port(port, addr)


def _parse_tuple(addr: tuple[object, ...]) -> tuple[str, int]:
    if len(addr) != 2:
        raise TypeError(f"udpio: invalid address {quote(addr)}: a tuple address must be (host, port)")
    host, port = addr
    if not isinstance(host, str):
        raise TypeError(f"udpio: invalid address {quote(addr)}: host must be str, not {type(host).__name__}")
    # bool is an int subclass; (host, True) is a bug, not port 1.
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"udpio: invalid address {quote(addr)}: port must be int, not {type(port).__name__}")
    if not 0 <= port <= MAX_PORT:
        raise _invalid(addr, f"port {quote(port)} is outside 0..{MAX_PORT}")
    return _check_host(host, addr), port


def parse(addr: object) -> tuple[str, int]:
    """Split ``addr`` into ``(host, port)`` without touching the network.

    Accepts ``"host:port"``, ``"[ipv6]:port"``, ``":port"`` and a
    ``(host, port)`` tuple. An empty host means all IPv4 interfaces.

    Raises ``ValueError`` for malformed text or an out-of-range port and
    ``TypeError`` for a wrong type or tuple shape; both quote ``addr``.
    Pure and thread-safe.
    """
    if isinstance(addr, str):
        host, port = _parse_text(addr)
    elif isinstance(addr, tuple):
        host, port = _parse_tuple(addr)
    else:
        raise TypeError(
            f"udpio: invalid address {quote(addr)}: expected a 'host:port' string or a "
            f"(host, port) tuple, not {type(addr).__name__}"
        )
    return (host or "0.0.0.0"), port


def resolver_error(host: object, exc: socket.gaierror) -> socket.gaierror:
    """``exc`` again, its message naming the host that did not resolve (the resolver's does not)."""
    return socket.gaierror(exc.errno, f"udpio: cannot resolve {quote(host)}: {exc.strerror}")


def destination_family(dst: object, family: int, dual_stack: bool) -> object:
    """``dst`` for a Socket of ``family``, where a numeric host is of the other family (S3).

    An IPv4 address on a dual-stack IPv6 Socket becomes its mapped form
    (``("::ffff:192.0.2.1", port, 0, 0)``), and a mapped one on an IPv4
    Socket its IPv4 form; any other mismatch is a ``ValueError`` naming
    ``dst``. Anything else (a name, a malformed tuple)
    is returned as it is, for ``sendto`` to judge. Pure; thread-safe.
    """
    if not (isinstance(dst, tuple) and len(dst) >= 2 and isinstance(dst[0], str)):
        return dst
    if len(dst) > (2 if family == socket.AF_INET else 4):
        return dst  # the wrong shape for this Socket: sendto says so
    port = dst[1]
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= MAX_PORT:
        return dst  # sendto names a bad port first, as it does on either family
    if not all(isinstance(field, int) and not isinstance(field, bool) for field in dst[2:]):
        return dst  # and a flowinfo or scope_id of the wrong type
    if len(dst) > 2 and not 0 <= dst[2] <= MAX_FLOWINFO:
        return dst  # or a flowinfo outside the flow label
    host = dst[0]
    other = socket.AF_INET6 if family == socket.AF_INET else socket.AF_INET
    if _is_numeric(host, family) or not _is_numeric(host, other):
        return dst
    if family == socket.AF_INET6 and dual_stack and len(dst) == 2:
        return f"::ffff:{host}", dst[1], 0, 0
    if family == socket.AF_INET and len(dst) == 2:
        packed = socket.inet_pton(socket.AF_INET6, host)
        if packed[:12] == b"\0" * 10 + b"\xff\xff":  # IPv4-mapped: the IPv4 address, as the resolver reads it
            return socket.inet_ntop(socket.AF_INET, packed[12:]), port
    mine, theirs = ("IPv4", "IPv6") if family == socket.AF_INET else ("IPv6", "IPv4")
    why = " (this Socket is IPv6-only)" if family == socket.AF_INET6 else ""
    raise ValueError(f"udpio: bad destination {quote(dst)}: an {theirs} address on an {mine} Socket{why}")


def _is_numeric(host: str, family: int) -> bool:
    try:
        socket.inet_pton(family, host.split("%", 1)[0])
    except (OSError, ValueError):
        return False
    return True


def format_address(addr: Address) -> str:
    """``addr`` as ``host:port``, with brackets around an IPv6 host (the form ``parse`` reads)."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Indirection so tests can forbid name lookups that would leave the machine.
_getaddrinfo = socket.getaddrinfo


def resolve(addr: object) -> list[tuple[socket.AddressFamily, Address]]:
    """Parse ``addr`` and resolve it to ``(family, sockaddr)`` candidates, best first.

    Raises what ``parse`` raises, ``ValueError`` for a host that cannot be
    encoded (quoting ``addr``), and ``socket.gaierror`` for a host that
    does not resolve. Thread-safe.
    """
    host, port = parse(addr)
    # Four numbers that are not an IPv4 address ("256.1.1.1") would go to the
    # resolver as a name, and fail there as one that cannot be found.
    numbers = host.split(".")
    dotted = len(numbers) == 4 and all(n.isascii() and n.isdigit() for n in numbers)
    if dotted and any(int(n) > 255 for n in numbers):
        raise _invalid(addr, f"{host} is not an IPv4 address (each of its numbers must be 0-255)")
    try:
        infos = _getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM, 0, socket.AI_PASSIVE)
    except UnicodeError as exc:
        raise _invalid(addr, f"host cannot be encoded ({exc})") from None
    except socket.gaierror as exc:
        raise resolver_error(host, exc) from None
    result: list[tuple[socket.AddressFamily, Address]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            result.append((family, sockaddr))  # type: ignore[arg-type]
    if not result:
        raise socket.gaierror(socket.EAI_FAMILY, f"udpio: {quote(addr)} has no IPv4 or IPv6 address")
    return result
