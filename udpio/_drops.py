"""The kernel's count of datagrams it dropped for one socket (M3).

Linux keeps it per socket (``sk_drops``: a full receive buffer, a failed
checksum, a filter) and gives it at any time with ``SO_MEMINFO``, without a
datagram having to arrive; it is the ``drops`` column of ``/proc/net/udp``.
(``SO_RXQ_OVFL`` would report the same number only as a control message on
the next datagram.)
"""

from __future__ import annotations

import socket
import struct
from typing import Final, Optional

__all__ = ["kernel_drops"]

_SO_MEMINFO: Final[int] = getattr(socket, "SO_MEMINFO", 55)
#: linux/sock_diag.h: SK_MEMINFO_VARS counters of 32 bits; DROPS is the ninth.
_MEMINFO: Final = struct.Struct("=9I")
_DROPS: Final = 8


def kernel_drops(conn: socket.socket) -> Optional[int]:
    """The kernel's drop counter for ``conn``, or ``None`` where there is none.

    The caller keeps the descriptor open meanwhile. Never raises.
    """
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size)
    except OSError:
        return None
    if len(raw) < _MEMINFO.size:
        return None
    return int(_MEMINFO.unpack_from(raw)[_DROPS])
