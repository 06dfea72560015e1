# Types of the C extension (udpio/_c/), for mypy --strict.
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Optional, Union

from udpio._addresses import Address
from udpio._datagram import Datagram
from udpio._reports import PeerError

SPLITS_GRO: bool
#: The most read buffers ("slots") one Socket reads a batch into.
RECV_MANY: int
#: The most one UDP datagram carries (udpio._messages has the same two).
LARGEST_IPV4_PAYLOAD: int
LARGEST_IPV6_PAYLOAD: int
#: Reports a receive leaves queued before it reads them (udpio._reports has the same).
UNREAD_REPORTS: int

class ReadBuffer:
    """A pool buffer whose exports are read-only views of its current datagram."""

    def __init__(self, size: int = 65536) -> None: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    @property
    def exports(self) -> int: ...
    @property
    def exported(self) -> bool: ...

class Role:
    """A re-entrant lock that records its owner: a Socket's reader or writer role."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...
    def release(self) -> None: ...
    def _is_owned(self) -> bool: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
        /,
    ) -> None: ...

class Core:
    """The native hot path of udpio.Socket; a base class of udpio._native.Socket."""

    # Also the attributes _sock, _reader, _writer, _pool, _buf, _frame,
    # _gro, _closed, _recv_exit_releases, _send_exit_releases, _received and
    # _sent, typed where udpio._socket.Socket declares them.
    _gso_sends: int
    _peer_errors: bool
    def _gather_reports(self) -> Optional[list[PeerError]]: ...
    def recv(self, timeout: Optional[float] = None) -> tuple[memoryview, Address]: ...
    def reply(self, frame: Any, to: Datagram, timeout: Optional[float] = None) -> int: ...
    def send_batch(
        self,
        frames: Iterable[Any],
        dst: Address,
        timeout: Optional[float] = None,
        *,
        src: Union[str, Address, None] = None,
    ) -> int: ...
    def send_many(self, messages: Iterable[tuple[Any, ...]], timeout: Optional[float] = None) -> int: ...
    def recv_batch(self, max_datagrams: int = 64, timeout: Optional[float] = None) -> list[Datagram]: ...
    def recv_datagram(self, timeout: Optional[float] = None) -> Datagram: ...
    def send(
        self,
        frame: Any,
        dst: Address,
        timeout: Optional[float] = None,
        *,
        src: Union[str, Address, None] = None,
    ) -> int: ...
