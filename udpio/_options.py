"""The options a Socket is made with, beyond its buffers: checked, and set before it is bound.

``reuse_port`` (G1: ``SO_REUSEPORT``, before ``bind``), ``peer_errors``
(E1: ``IP_RECVERR``/``IPV6_RECVERR``, both on a dual-stack socket) and
``dont_fragment`` (E5: ``IP_MTU_DISCOVER`` = ``IP_PMTUDISC_PROBE``, and
``IPV6_DONTFRAG``). ``listen`` and ``wrap_conn`` set them; the Socket
then asks the socket itself whether it reports (``asks_for_reports``), so
an adopted socket that had ``IP_RECVERR`` on already is handled as one
made with ``peer_errors=True``.
"""

from __future__ import annotations

import errno
import socket
import sys

from udpio._cmsg import dual_stack
from udpio._reports import IP_MTU_DISCOVER, IP_PMTUDISC_PROBE, IP_RECVERR, IPV6_RECVERR

__all__ = ["apply", "asks_for_reports", "check_flags"]

_LINUX_ONLY = ("peer_errors", "dont_fragment")


def check_flags(**flags: object) -> None:
    """Refuse a flag that is not ``True`` or ``False``, naming it (``TypeError``).

    A flag this platform cannot honour is an ``OSError`` (``ENOPROTOOPT``)
    naming it, before anything is bound. Pure; thread-safe.
    """
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"udpio: {name} must be True or False, not {value!r}")
    if flags.get("reuse_port") and not hasattr(socket, "SO_REUSEPORT"):
        raise OSError(errno.ENOPROTOOPT, "udpio: reuse_port: this platform has no SO_REUSEPORT")
    for name in _LINUX_ONLY:
        if flags.get(name) and not _is_linux():
            raise OSError(errno.ENOPROTOOPT, f"udpio: {name}: this platform's sockets have no such option")


def apply(
    conn: socket.socket, *, reuse_port: bool = False, peer_errors: bool = False, dont_fragment: bool = False
) -> None:
    """Set the options asked for on ``conn`` (an IP datagram socket, before ``bind`` for ``reuse_port``).

    Raises the kernel's ``OSError``. Not thread-safe for one ``conn``.
    """
    ipv6 = conn.family == socket.AF_INET6
    ipv4 = not ipv6 or dual_stack(conn)
    if reuse_port:  # G1: before bind, or the kernel refuses to share the address
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if peer_errors:  # E1: IPv4's reports on a dual-stack socket need IP_RECVERR too
        if ipv6:
            conn.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        if ipv4:
            conn.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    if dont_fragment:  # E5: DF on every datagram; the route's learnt MTU is not used to cut it
        if ipv6:
            conn.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DONTFRAG, 1)
        if ipv4:
            conn.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)


def asks_for_reports(conn: socket.socket) -> bool:
    """Whether the kernel queues reports on ``conn`` (E1). Never raises."""
    if not _is_linux():
        return False
    try:
        if conn.family == socket.AF_INET6 and conn.getsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR):
            return True
        return bool(conn.getsockopt(socket.IPPROTO_IP, IP_RECVERR))
    except OSError:
        return False


def _is_linux() -> bool:
    return sys.platform.startswith("linux")
