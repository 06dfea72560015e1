"""Which Socket this process uses: the native one where the extension is built (N2).

``UDPIO_NO_EXTENSIONS=1`` in the environment forces the pure-Python
backend, as it skips the build at install time.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from udpio import _socket

__all__ = ["BACKEND", "Socket", "native_socket"]


def _pure_forced() -> bool:
    return os.environ.get("UDPIO_NO_EXTENSIONS", "") not in ("", "0")


def native_socket() -> type[_socket.Socket]:
    """The native Socket class; raises ImportError where the extension is missing."""
    from udpio import _native

    return _native.Socket


def _load() -> tuple[type[_socket.Socket], Literal["native", "python"]]:
    if _pure_forced():
        return _socket.Socket, "python"
    try:
        return native_socket(), "native"
    except ImportError:
        return _socket.Socket, "python"


_SOCKET, BACKEND = _load()

if TYPE_CHECKING:
    Socket = _socket.Socket
else:
    Socket = _SOCKET
