"""What every family of figures uses: the payload, the sockets, the interleaving of rounds."""

from __future__ import annotations

import os
import socket
import statistics
from collections.abc import Callable
from typing import Any, Optional

import udpio
from udpio import _backend, _cmsg, _socket

PAYLOAD = b"u" * 64
MARKER = b"m" * 65  # a different length: ends a batch, proves none was dropped
RCVBUF = 8 << 20  # the kernel caps this at net.core.rmem_max (doubled)
LOOPBACK = "127.0.0.1"


def backends() -> dict[str, type[_socket.Socket]]:
    """The Socket class of every backend this install has, pure first."""
    found: dict[str, type[_socket.Socket]] = {"python": _socket.Socket}
    try:
        found["native"] = _backend.native_socket()
    except ImportError:
        pass
    return found


def listen(cls: type[_socket.Socket], rcvbuf: Optional[int] = None) -> udpio.Socket:
    return _socket.listen_with(cls, f"{LOOPBACK}:0", rcvbuf=rcvbuf)


def plain_receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    # A kernel-level receive timeout: a dropped datagram turns into an error
    # instead of a hang, while Python still makes one blocking syscall per call.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(5.0))
    sock.bind((LOOPBACK, 0))
    return sock


def _timeval(seconds: float) -> bytes:
    import struct

    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def fill(sender: socket.socket, dst: tuple[str, int], count: int) -> None:
    for _ in range(count):
        sender.sendto(PAYLOAD, dst)
    sender.sendto(MARKER, dst)


def check_marker(data: bytes, what: str) -> None:
    if data != MARKER:
        raise RuntimeError(f"bench: {what}: datagrams were dropped or reordered (raise net.core.rmem_max)")


def per_item_ns(seconds: float, count: int) -> float:
    return seconds / count * 1e9


# -- P1: recv of queued datagrams ----------------------------------------------------------


def interleaved(rounds: int, sides: list[Callable[[], float]]) -> list[float]:
    """The median of each side, rotating which one goes first every round."""
    samples: list[list[float]] = [[] for _ in sides]
    for index in range(rounds):
        for offset in range(len(sides)):
            side = (index + offset) % len(sides)
            samples[side].append(sides[side]())
    return [statistics.median(values) for values in samples]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Opened:
    """Every socket the run opens, closed in one place."""

    def __init__(self) -> None:
        self.sockets: list[Any] = []

    def add(self, sock: Any) -> Any:
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def package_root() -> str:
    """The folder holding the udpio under test: a child process imports it from there."""
    return os.path.dirname(os.path.dirname(os.path.abspath(udpio.__file__)))


def set_options(sock: udpio.Socket, on: bool) -> None:
    """Turn M4's options (destination and TOS of each datagram) on or off on an IPv4 Socket (P10)."""
    conn = sock.conn()
    for option in (_cmsg.IP_PKTINFO, _cmsg.IP_RECVTOS):
        conn.setsockopt(socket.IPPROTO_IP, option, int(on))
