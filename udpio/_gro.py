"""UDP GRO: whether the kernel may hand over several datagrams as one read.

With the ``UDP_GRO`` socket option (Linux 5.0 and later), the kernel may
join datagrams that one sender sent back to back, all of one size but the
last, into a single read, and says the size in a control message. Only a
reader that splits them again keeps R1 (each frame is exactly one
datagram): the native recv does, the pure one reads one datagram per call
and cannot. So each backend sets the option to what it can handle, also on
an adopted socket whose owner turned it on (docs/design.md, "Batches").
"""

from __future__ import annotations

import socket
from typing import Final

__all__ = ["set_gro"]

# linux/udp.h; the socket module does not name it.
_UDP_GRO: Final = 104


def set_gro(conn: socket.socket, on: bool) -> bool:
    """Turn UDP GRO on or off for ``conn``; return whether it is on now.

    Never raises: a kernel or platform without the option leaves it off,
    which is what a reader that cannot split needs.
    """
    try:
        conn.setsockopt(socket.IPPROTO_UDP, _UDP_GRO, int(on))
    except OSError:
        return False
    return on
