"""Checking the messages of ``Socket.send_many`` before any is sent (K2).

``send_many`` takes ``(frame, dst)`` and ``(frame, dst, src)`` tuples, each
to its own destination. Everything a send could refuse is refused here,
naming the message by its index, before the first datagram goes out: so
an error part-way (``.sent``) can only be the kernel's. Unlike ``send``,
a destination must be a numeric address: resolving names in the middle of
a server's answers is not what a batch is for.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional

from udpio._addresses import MAX_FLOWINFO, MAX_PORT, MAX_SCOPE_ID

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "LARGEST_IPV4_PAYLOAD",
    "LARGEST_IPV6_PAYLOAD",
    "Message",
    "check_frame",
    "check_messages",
    "largest_payload",
]

#: The most one UDP datagram carries: 65,535 bytes less the UDP header and
#: IPv4's, or over IPv6 the UDP header alone (the C twin's are checked
#: against these: tests/unit/test_seam.py).
LARGEST_IPV4_PAYLOAD = 65507
LARGEST_IPV6_PAYLOAD = 65527

#: One checked message: the frame, its destination as sendto takes it, and
#: the source's control message (None: the kernel chooses).
Message = tuple["ReadableBuffer", tuple[object, ...], Optional[tuple[int, int, bytes]]]


def largest_payload(family: int, dst: object) -> int:
    """The most one UDP datagram to ``dst`` can carry from a Socket of ``family``.

    65,535 bytes less the UDP header and IPv4's (65,507) or, over IPv6, the
    UDP header alone (65,527); an IPv4-mapped destination goes over IPv4.
    """
    if family == socket.AF_INET6:
        host = dst[0] if isinstance(dst, tuple) and dst and isinstance(dst[0], str) else ""
        if not (host.lower().startswith("::ffff:") and "." in host):
            return LARGEST_IPV6_PAYLOAD
    return LARGEST_IPV4_PAYLOAD


def check_frame(frame: object, largest: int, name: str, index: Optional[int] = None) -> None:
    """Refuse, naming it ``name`` (``name[index]`` where an index is given), a frame no send could carry.

    Raises ``TypeError`` for what is not a C-contiguous buffer and, as the
    kernel would (``EMSGSIZE``) but before anything is sent, ``OSError``
    for one over ``largest`` bytes (B3, K2). The name is only made when it
    is needed: a batch of thousands of good frames makes no string.
    """
    try:
        view = memoryview(frame)  # type: ignore[arg-type]  # probing an unknown object
    except TypeError:
        raise TypeError(
            f"udpio: {_label(name, index)} must support the buffer protocol, not {type(frame).__name__}"
        ) from None
    contiguous, size = view.c_contiguous, view.nbytes
    view.release()
    if not contiguous:
        raise TypeError(f"udpio: {_label(name, index)} must be a C-contiguous buffer")
    if size > largest:
        raise OSError(
            errno.EMSGSIZE,
            f"udpio: {_label(name, index)} is {size:,} bytes, more than the {largest:,} a UDP datagram "
            "can carry here (nothing was sent)",
        )


def _label(name: str, index: Optional[int]) -> str:
    return name if index is None else f"{name}[{index}]"


def _check_destination(dst: object, family: int, name: str) -> tuple[object, ...]:
    # A numeric address tuple of this Socket's family with every field in
    # range; sendto would refuse anything else, but only when its turn came.
    size = 2 if family == socket.AF_INET else 4
    if not isinstance(dst, tuple) or not 2 <= len(dst) <= size:
        raise TypeError(
            f"udpio: bad destination in {name}: {dst!r} is not an address tuple of this Socket's family"
        )
    host, port, *rest = dst
    fields = ("port", "flowinfo", "scope_id")[: 1 + len(rest)]
    for field, value, top in zip(fields, (port, *rest), (MAX_PORT, MAX_FLOWINFO, MAX_SCOPE_ID), strict=False):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"udpio: bad destination in {name}: {dst!r}: the {field} must be an int")
        if not 0 <= value <= top:
            raise OverflowError(f"udpio: bad destination in {name}: {dst!r}: the {field} must be 0-{top}")
    if port == 0:
        # What the kernel answers a send to port 0, but before anything is sent.
        raise OSError(errno.EINVAL, f"udpio: bad destination in {name}: {dst!r}: port 0 (nothing was sent)")
    if not isinstance(host, str):
        raise TypeError(f"udpio: bad destination in {name}: {dst!r}: the host must be a str")
    try:
        socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        raise ValueError(
            f"udpio: bad destination in {name}: {dst!r}: "
            "send_many needs a numeric address (it resolves no names)"
        ) from None
    return dst


def check_messages(
    messages: Sequence[object],
    family: int,
    prepared: Callable[[Any], object],
    source: Callable[[object], Optional[tuple[int, int, bytes]]],
) -> list[Message]:
    """Every message of ``messages`` checked, as ``send_many`` will send it (K2).

    ``prepared`` maps a destination of the other family where the Socket
    can (S3); ``source`` makes a ``src``'s control message (M2), or None
    where none is needed. Raises
    ``TypeError``, ``ValueError``, ``OverflowError`` or the ``OSError`` the
    kernel would raise, naming the message by its index. Pure; thread-safe.
    """
    checked: list[Message] = []
    for index, message in enumerate(messages):
        name = f"messages[{index}]"
        if not isinstance(message, tuple) or len(message) not in (2, 3):
            raise TypeError(
                f"udpio: {name} must be a (frame, dst) or (frame, dst, src) tuple, not {message!r:.80}"
            )
        frame = message[0]
        try:
            dst = prepared(message[1])
        except (TypeError, ValueError, OverflowError) as exc:  # S3's checks, named by the message's index
            why = str(exc).removeprefix("udpio: bad destination ")
            raise type(exc)(f"udpio: bad destination in {name}: {why}") from None
        dst = _check_destination(dst, family, name)
        check_frame(frame, largest_payload(family, dst), f"{name}'s frame")
        cmsg = None
        if len(message) == 3 and message[2] is not None:
            try:
                cmsg = source(message[2])
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"udpio: {name}: {str(exc).removeprefix('udpio: ')}") from None
        checked.append((frame, dst, cmsg))
    return checked
