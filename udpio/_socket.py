"""The Socket: one nonblocking UDP socket, its selectors, its wake-up, and the close protocol.

This is the pure-Python backend and the reference for the native one
(``_native.py`` over the C extension in ``_c/``), which replaces the calls
``udpio._seam.OVERRIDES`` lists (the receive calls, ``send``, ``reply``,
``send_batch``, ``send_many``) and calls back into this
class, by the names ``udpio._seam.CALLBACKS`` lists, for everything else.

How a call and ``close()`` share the descriptors (docs/design.md has the
long form):

* A call touches the descriptors only while it holds its role lock
  (``_reader`` for ``recv``, ``_writer`` for ``send``) and only after it
  has seen ``_closed`` false under that lock.
* ``close()`` sets ``_closed``, signals the wake-up so that a call waiting
  in a selector returns at once, then acquires and releases each role lock
  in turn: that waits out the call holding it. After both, no call can be
  using a descriptor, so closing them cannot pull a number from under a
  running syscall.
* If ``close()`` runs on a thread that itself holds a role (a signal
  handler that interrupted ``recv``), waiting would deadlock. It waits out
  the other role only, and leaves the final release to the interrupted
  call, which does it as it unwinds (C5).
"""

from __future__ import annotations

import errno
import functools
import os
import selectors
import socket
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from time import monotonic
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Final,
    NamedTuple,
    Optional,
    Protocol,
    Self,
    TypeVar,
    Union,
)

from udpio import _cmsg, _options
from udpio._addresses import (
    Address,
    check_ipv6_fields,
    destination_family,
    format_address,
    resolve,
    resolver_error,
)
from udpio._datagram import Datagram, Stats
from udpio._drops import kernel_drops
from udpio._errors import ClosedError, ConcurrentRecvError
from udpio._gro import set_gro
from udpio._messages import LARGEST_IPV6_PAYLOAD, Message, check_frame, check_messages, largest_payload
from udpio._pool import BUFFER_SIZE, BufferPool, is_exported, shared_pool
from udpio._reports import (
    ANCILLARY_SIZE,
    UNREAD_REPORTS,
    PeerError,
    PeerErrors,
    Reports,
    parse_report,
    try_again,
)
from udpio._wakeup import Wakeup

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["Socket", "listen_with", "wrap_conn_with"]

_FAMILIES: Final = (socket.AF_INET, socket.AF_INET6)
_T = TypeVar("_T")

#: What the kernel says when told to send from an address it will not send
#: from (Linux: ENETUNREACH for a broadcast address; EINVAL, EADDRNOTAVAIL
#: elsewhere). reply() then lets the kernel choose (M2).
_NOT_A_SOURCE: Final = frozenset({errno.ENETUNREACH, errno.EINVAL, errno.EADDRNOTAVAIL})

#: One control message as socket.sendmsg takes it: (level, type, data).
_Cmsg = tuple[int, int, bytes]


class _Role(Protocol):
    """What a role lock offers: an RLock here, ``_speedups.Role`` natively."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
        /,
    ) -> None: ...


def _owned_by_me(lock: _Role) -> Callable[[], bool]:
    # RLock records its owner atomically with the acquisition, which is what
    # lets close() tell "my own interrupted call holds this" from "another
    # thread holds this" without a window between acquiring and recording.
    # _is_owned is private but has been on both RLock implementations since
    # 3.2 (threading.Condition relies on it).
    return lock._is_owned  # type: ignore[attr-defined,no-any-return]


def _check_timeout(timeout: object) -> None:
    # Every call that takes a timeout checks it here (R7, S4): a real number
    # >= 0; infinity (or any time past what a wait can take) waits forever,
    # as None does. "not >= 0" also rejects NaN, which would never expire.
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"udpio: timeout must be None or a number >= 0, not {type(timeout).__name__}")
    if not timeout >= 0:
        raise ValueError(f"udpio: timeout must be None or a number >= 0, not {timeout!r}")


def _check_max_datagrams(value: object) -> None:
    # K1: a batch's bound is a positive int.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"udpio: max_datagrams must be a positive int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"udpio: max_datagrams must be a positive int, not {value!r}")


class Socket:
    """One UDP socket with a blocking ``recv`` that ``close()`` can interrupt.

    Make one with :func:`listen`, or adopt a UDP socket with
    :func:`wrap_conn` (``Socket(conn)`` is the same). ``recv`` has one
    caller at a time (others get :class:`ConcurrentRecvError`); ``send``
    and ``close`` may be called from any thread at any time. Use it as a
    context manager to close it on exit.
    """

    # What a backend supplies: its role locks, its buffers and whether its
    # recv splits what UDP GRO joins. The native Socket (udpio._native)
    # overrides these, and the calls udpio._seam.OVERRIDES lists.
    _check_timeout = staticmethod(_check_timeout)
    _check_max_datagrams = staticmethod(_check_max_datagrams)
    _SPLITS_GRO: ClassVar[bool] = False

    @staticmethod
    def _new_role() -> _Role:
        # C1, C2: a role is a re-entrant lock whose non-blocking acquire is
        # the atomic ownership test. (Natively, _c/role.c: the same test as
        # one compare-and-swap, with a lock only for threads that wait.)
        return threading.RLock()

    @staticmethod
    def _default_pool() -> BufferPool[Any]:
        return shared_pool()

    @staticmethod
    def _make_pool(size: int = BUFFER_SIZE, max_idle: int = 16) -> BufferPool[Any]:
        """A private pool of this backend's buffers (for tests and diagnostics)."""
        return BufferPool(size, max_idle)

    @classmethod
    def _adopt_unchecked(cls, conn: socket.socket, pool: Optional[BufferPool[Any]] = None) -> Self:
        """A Socket over ``conn`` without W1's checks, and with its own pool.

        For tests and diagnostics only: a Unix datagram socket gives the
        flow control UDP over loopback lacks (a send that must wait), and a
        private pool shows which buffers a Socket used.
        """
        return cls(_Unchecked(conn, pool))  # type: ignore[arg-type]  # the private way in

    def __init__(self, conn: socket.socket) -> None:
        """Adopt ``conn``, a UDP socket: the same as :func:`wrap_conn`, with its checks and errors."""
        pool: Optional[BufferPool[Any]] = None
        if isinstance(conn, _Unchecked):
            conn, pool = conn.conn, conn.pool
        else:
            _check_adoptable(conn)  # W1
        rsel = selectors.DefaultSelector()
        wakeup: Optional[Wakeup] = None
        try:
            wakeup = Wakeup()
            rsel.register(conn, selectors.EVENT_READ)
            rsel.register(wakeup.fileno(), selectors.EVENT_READ)
            local = _bound_address(conn)
            conn.setblocking(False)  # last: on any failure above, conn is untouched
        except BaseException:
            if wakeup is not None:
                wakeup.close()
            rsel.close()
            raise
        # R1, B1: the kernel may join datagrams (UDP GRO) only for a recv
        # that splits them again. This one reads one datagram per call, so
        # GRO goes off, also on an adopted socket that had it on.
        self._gro = set_gro(conn, self._SPLITS_GRO)
        # M1, M4: the kernel says with each datagram where it went, through
        # which interface, with which TOS (recv_datagram reads it).
        dual_stack = _cmsg.dual_stack(conn)
        _cmsg.enable(conn, dual_stack)
        # E1: whether the kernel queues its reports on this socket (and hands
        # their errors to the next call): asked of the socket, so an adopted
        # one that has IP_RECVERR on already is protected as well (E4).
        peer_errors = _options.asks_for_reports(conn)
        self._sock: Final = conn
        self._family: Final = conn.family
        # An IPv6 Socket that also carries IPv4 (IPV6_V6ONLY off): fixed once
        # bound, asked once here (S3's mapping and M4's IPv4 options use it).
        self._dual_stack: Final = dual_stack
        self._pool: Final = pool if pool is not None else self._default_pool()
        self._rsel: Final = rsel
        self._wait_readable: Final = _waiter(rsel)
        self._wakeup: Final = wakeup
        # Made on the first send that finds the kernel buffer full; guarded by _writer.
        self._wsel: Optional[selectors.BaseSelector] = None

        # The reader role: held for the whole of recv. Owns _buf, _frame,
        # _received and recv's use of the descriptors and of _rsel (C1, R3, R4).
        self._reader: Final = self._new_role()
        self._reader_is_me: Final = _owned_by_me(self._reader)
        self._buf: Optional[bytearray] = None
        self._frame: Optional[memoryview] = None
        # K1: the frames the last recv_batch handed out (None: it was not
        # the last receive call), the arenas they were read into, and a
        # kernel error met after the batch's first datagram, which the next
        # receive call raises (B1: no datagram is lost to it).
        self._batch: Optional[list[memoryview]] = None
        self._arenas: list[bytearray] = []
        self._pending_error: Optional[OSError] = None
        self._received = 0  # M3: datagrams the receive calls returned

        # The writer role: held while send uses the descriptor or waits for
        # room in the kernel buffer. Owns _wsel and _sent (C2, S4, M3).
        self._writer: Final = self._new_role()
        self._writer_is_me: Final = _owned_by_me(self._writer)
        self._sent = 0  # M3: datagrams that went out

        # Set once by close(), before it waits out the roles; a role holder
        # that sees it false may use the descriptors until it lets go.
        self._closed = False
        # Set by a close() that interrupted its own thread's recv/send: that
        # call releases the descriptors as it unwinds (C5).
        self._recv_exit_releases = False
        self._send_exit_releases = False

        # Serialises the wake-up signal with the final release, so a late
        # close() never writes to a freed descriptor number. Re-entrant: a
        # signal handler may call close() while this thread holds it.
        self._fds_lock: Final = threading.RLock()
        self._woken = False
        self._released = False
        # M3: the kernel's drop count as the descriptor closed; guarded by _fds_lock.
        self._final_drops: Optional[int] = None

        # Cached: the bound address never changes, and reading it from the
        # cache needs no role. None until an adopted socket gets bound.
        self._local: Optional[Address] = local

        # E1-E4: whether calls must tell reports from their own errors, and
        # the reports gathered for peer_errors(). _gathering: at most one
        # thread reads the error queue at a time, so the reports keep the
        # order they came in; a thread that finds it taken goes on.
        self._peer_errors = peer_errors
        self._reports: Final = Reports()
        self._gathering: Final = threading.Lock()
        # Reports left queued since the queue was last read (a hint: two
        # threads may count at once, which only moves when it is read).
        self._unread = 0

    # -- the hot path -------------------------------------------------------

    def recv(self, timeout: Optional[float] = None) -> tuple[memoryview, Address]:
        """Block until one datagram arrives; return ``(frame, source address)``.

        ``frame`` is a read-only view of exactly the datagram's bytes. It
        stays valid until the next ``recv`` on this Socket, which releases
        it; keep ``bytes(frame)`` to hold on longer. Slices of a frame that
        you keep are never overwritten.

        ``timeout``: ``None`` waits until a datagram or ``close()``; ``0``
        polls; ``t > 0`` waits at most ``t`` seconds in all.

        Raises ``ClosedError`` once the Socket is closed (also when
        ``close()`` interrupts the wait), ``TimeoutError`` on timeout,
        ``ConcurrentRecvError`` if another ``recv`` is running,
        ``ValueError`` for a negative timeout, and the kernel's ``OSError``
        (e.g. ``ConnectionRefusedError``) verbatim.

        Thread-safe, one caller at a time: a second thread calling ``recv``
        meanwhile gets ``ConcurrentRecvError`` at once.
        """
        if timeout is not None:
            _check_timeout(timeout)
        reader = self._reader
        # The ownership test is the non-blocking acquire itself: atomic, so
        # two threads can never both pass it (C1). _reader_is_me catches a
        # nested call from a signal handler on the reading thread.
        if self._reader_is_me() or not reader.acquire(False):
            raise self._recv_refused()
        try:
            if self._batch is not None:
                self._release_batch()  # K1: the last call was a recv_batch
            frame = self._frame
            if frame is not None:
                self._frame = None
                try:
                    frame.release()  # R3: a stale frame now fails loudly
                except BufferError:
                    pass  # the caller exports the frame itself: it stays valid
                buf = self._buf
                if buf is not None:
                    # R4: is anything still viewing buf? This is _pool.is_exported
                    # inlined (measured: the call alone was ~60 ns of ~730 ns overhead).
                    try:
                        buf.append(0)
                    except BufferError:
                        self._buf = None  # retained by the caller: never write it again
                    else:
                        del buf[-1]
            if self._closed:  # R5: the reader's next recv after close()
                self._return_buffer()
                raise ClosedError()
            buf = self._buf
            if buf is None:
                buf = self._buf = self._pool.get()
            try:
                nbytes, addr = self._sock.recvfrom_into(buf)
            except BlockingIOError:
                nbytes, addr = self._wait_and_recv(functools.partial(self._sock.recvfrom_into, buf), timeout)
            except OSError as exc:  # E4: maybe a report about an earlier datagram
                nbytes, addr = self._wait_and_recv(
                    functools.partial(self._sock.recvfrom_into, buf), timeout, exc
                )
            frame = self._frame = memoryview(buf).toreadonly()[:nbytes]
            self._received += 1
            return frame, addr
        finally:
            if self._recv_exit_releases:
                self._release()
            reader.release()

    def recv_datagram(self, timeout: Optional[float] = None) -> Datagram:
        """Receive one datagram as ``recv`` does, with where it was sent to.

        Returns a ``Datagram`` ``(frame, src, dst, ifindex, tos)``: ``frame``
        and ``src`` as ``recv`` returns them, ``dst`` the local address the
        sender used (on a Socket bound to every address, the one the client
        wrote to), ``ifindex`` the interface, ``tos`` the TOS or traffic
        class byte. Answer it with ``reply``. The frame follows ``recv``'s
        rules: valid until the next receive call of any kind.

        Raises what ``recv`` raises. Thread-safe, one caller at a time,
        shared with ``recv``: a second thread in either gets
        ``ConcurrentRecvError``.
        """
        if timeout is not None:
            _check_timeout(timeout)
        self._take_reader()
        try:
            buf = self._read_buffer()
            recvmsg_into = self._sock.recvmsg_into
            read = functools.partial(recvmsg_into, [buf], _cmsg.SPACE)
            try:
                nbytes, ancdata, flags, src = read()
            except BlockingIOError:
                nbytes, ancdata, flags, src = self._wait_and_recv(read, timeout)
            except OSError as exc:  # E4: maybe a report about an earlier datagram
                nbytes, ancdata, flags, src = self._wait_and_recv(read, timeout, exc)
            frame = self._frame = memoryview(buf).toreadonly()[:nbytes]
            dst, ifindex, tos = _cmsg.parse(ancdata, flags, self._family, self._port())
            self._received += 1
            return Datagram(frame, src, dst, ifindex, tos)
        finally:
            self._give_reader()

    def _read_many(self, batch: list[memoryview], limit: int, timeout: Optional[float]) -> list[Datagram]:
        # The body of recv_batch: the first datagram waits, the rest only take
        # what is ready. Each frame is appended to `batch` as it is made, so the
        # next receive call releases it even if this one fails part-way. Caller
        # holds the reader role.
        datagrams: list[Datagram] = []
        arenas = self._arenas
        family, port = self._family, self._port()
        recvmsg_into = self._sock.recvmsg_into
        used = 0  # arenas[:used] hold this batch's frames
        offset = _ARENA_SIZE  # where the next datagram goes in arenas[used - 1]
        while len(datagrams) < limit:
            if _ARENA_SIZE - offset < BUFFER_SIZE:
                if used == len(arenas):
                    arenas.append(bytearray(_ARENA_SIZE))
                used += 1
                offset = 0
            arena = arenas[used - 1]
            with memoryview(arena) as room:
                into = [room[offset:]]
                read = functools.partial(recvmsg_into, into, _cmsg.SPACE)
                try:
                    nbytes, ancdata, flags, src = read()
                except BlockingIOError:
                    if datagrams:
                        break  # nothing more is ready
                    nbytes, ancdata, flags, src = self._wait_and_recv(read, timeout)
                except OSError as exc:
                    if not datagrams:  # E4: maybe a report about an earlier datagram
                        nbytes, ancdata, flags, src = self._wait_and_recv(read, timeout, exc)
                    elif self._report_explains(exc, 0, sending=False):  # E4: counted, not raised
                        break
                    else:
                        self._pending_error = exc  # B1: raised by the next receive call
                        break
                finally:
                    into[0].release()
            frame = memoryview(arena).toreadonly()[offset : offset + nbytes]
            batch.append(frame)
            offset += nbytes
            dst, ifindex, tos = _cmsg.parse(ancdata, flags, family, port)
            datagrams.append(Datagram(frame, src, dst, ifindex, tos))
        return datagrams

    def _take_reader(self) -> None:
        # C1, as in recv (which does this inlined, for P1): the ownership
        # test is the non-blocking acquire itself; _reader_is_me refuses a
        # nested call from a signal handler on the reading thread.
        if self._reader_is_me() or not self._reader.acquire(False):
            raise self._recv_refused()

    def _give_reader(self) -> None:
        # The way out of every receive call that took the role; C5: a
        # close() on this thread interrupted it, so the descriptors go now.
        if self._recv_exit_releases:
            self._release()
        self._reader.release()

    def _read_buffer(self) -> bytearray:
        # What recv_datagram does first, holding the reader role: the steps
        # of _release_last, then the buffer to read into.
        self._release_last()
        buf = self._buf
        if buf is None:
            buf = self._buf = self._pool.get()
        return buf

    def _release_last(self) -> None:
        # What every receive does first, holding the reader role (recv does
        # the same steps inlined, for P1; test_inlined_copies.py holds the
        # two to one text): release the last frame or batch (R3, K1), drop a
        # buffer the caller still views (R4), refuse after close (R5).
        if self._batch is not None:
            self._release_batch()
        frame = self._frame
        if frame is not None:
            self._frame = None
            try:
                frame.release()
            except BufferError:
                pass  # the caller exports the frame itself: it stays valid
            buf = self._buf
            if buf is not None:
                # R4: is anything still viewing buf? This is _pool.is_exported
                # inlined (measured: the call alone was ~60 ns of ~730 ns overhead).
                try:
                    buf.append(0)
                except BufferError:
                    self._buf = None  # retained by the caller: never write it again
                else:
                    del buf[-1]
        if self._closed:  # R5: the reader's next recv after close()
            self._return_buffer()
            raise ClosedError()

    def recv_batch(self, max_datagrams: int = 64, timeout: Optional[float] = None) -> list[Datagram]:
        """Wait for a datagram, then take every one already there, up to ``max_datagrams``.

        Waits as ``recv_datagram`` does for the first datagram, then,
        without waiting again, takes the datagrams this Socket and the
        kernel already hold, in arrival order, until ``max_datagrams`` or
        until nothing more is ready. Returns a non-empty list of
        ``Datagram``; answer each with ``reply`` or all at once with
        ``send_many``. Every frame of the list stays valid until the next
        receive call of any kind, which releases them all; slices of them
        that you keep are never overwritten.

        Raises what ``recv`` raises (``TimeoutError`` rather than an empty
        list), and ``TypeError``/``ValueError`` for a ``max_datagrams`` that
        is not a positive int. A kernel error met after the first datagram
        is raised by the next receive call, so no datagram is lost to it.

        Thread-safe, one caller at a time, shared with ``recv``: a second
        thread in any receive call gets ``ConcurrentRecvError``.
        """
        _check_max_datagrams(max_datagrams)
        if timeout is not None:
            _check_timeout(timeout)
        self._take_reader()
        try:
            self._release_last()
            batch = self._batch = []
            datagrams = self._read_many(batch, max_datagrams, timeout)
            self._received += len(datagrams)
            return datagrams
        finally:
            self._give_reader()

    def _release_batch(self) -> None:
        # K1: the next receive call releases every frame of the last batch
        # (R3) and keeps no arena the caller still views (R4); then it
        # raises the kernel error the batch met after its first datagram.
        # Caller holds the reader role.
        batch, self._batch = self._batch, None
        for frame in batch or ():
            try:
                frame.release()
            except BufferError:
                pass  # the caller exports the frame itself: it stays valid
        self._arenas = [arena for arena in self._arenas if not is_exported(arena)]
        error, self._pending_error = self._pending_error, None
        if error is not None and not self._closed:
            raise error

    def _port(self) -> int:
        # The bound port, for Datagram.dst. Caller holds the reader role,
        # which lets it ask the descriptor when the cache is empty (an
        # adopted socket bound by a send since).
        local = self._local
        if local is not None:
            return local[1]
        name: object = self._sock.getsockname()
        return name[1] if isinstance(name, tuple) else 0

    def send(
        self,
        frame: ReadableBuffer,
        dst: Address,
        timeout: Optional[float] = None,
        *,
        src: Union[str, Address, None] = None,
    ) -> int:
        """Send ``frame`` as one datagram to ``dst``; return the bytes written.

        ``frame`` is anything with the buffer protocol (a frame from
        ``recv`` echoes without a copy); ``dst`` is an address tuple as
        ``recv`` returns it. When the kernel's send buffer is full, waits for
        room: ``timeout`` bounds that wait as in ``recv``. ``src``, a
        numeric address of this host (or an address tuple with port 0 or
        this Socket's), is the address it leaves from (``reply`` does this
        for you); by default the kernel chooses.

        Raises ``TypeError``/``ValueError``/``OverflowError`` naming a bad
        ``frame``, ``dst`` or ``src`` (the Socket stays usable),
        ``ClosedError``, ``TimeoutError``, and kernel errors (``EMSGSIZE``,
        ``ECONNREFUSED``, a ``src`` not of this host, ...) verbatim with
        their errno.

        Thread-safe: any number of threads may send, also while another
        thread is in ``recv``.
        """
        if src is not None:
            return self._send_from(frame, dst, self._source_cmsg(src), timeout)
        # _take_writer and _give_writer, inlined: two method calls were 3-5%
        # of a pure send on 3.10 (P2).
        writer = self._writer
        deadline = None
        if timeout is None:
            writer.acquire()
        else:
            deadline = self._take_writer(timeout, "send")
        try:
            if self._closed:
                raise ClosedError()
            try:
                if self._family == socket.AF_INET6:  # S3: fields sendto would truncate
                    check_ipv6_fields(dst)
                nbytes = self._sock.sendto(frame, dst)
            except BlockingIOError:
                nbytes = self._wait_and_send(
                    functools.partial(self._sock.sendto, frame, dst), deadline, timeout
                )
            except (TypeError, ValueError, OverflowError, BufferError) as exc:
                raise _bad_send_arguments(frame, dst, exc) from None
            except socket.gaierror as exc:  # the other family's address, or a name
                nbytes = self._send_after_resolver_error(frame, dst, exc, deadline, timeout)
            except OSError as exc:
                send = functools.partial(self._sock.sendto, frame, dst)
                nbytes = self._send_failed(send, exc, deadline, timeout, frame, dst)
            self._sent += 1
            return nbytes
        finally:
            if self._send_exit_releases:
                self._release()
            writer.release()

    def _send_failed(
        self,
        send: Callable[[], int],
        failed: OSError,
        deadline: Optional[float],
        timeout: Optional[float],
        frame: ReadableBuffer,
        dst: object,
    ) -> int:
        # send's syscall (send() sends `frame` to `dst`) failed with
        # `failed`: with peer_errors on, maybe an earlier datagram's report,
        # so it tries again as E4 says; its own error is raised, in S5's
        # words where udpio has them. Caller holds the writer role.
        try:
            return self._send_slowly(send, failed, deadline, timeout, "send")
        except OSError as exc:
            explained = self._explain_send_error(frame, dst, exc.errno or 0)
            if explained is None:
                raise
            raise explained from None

    def _explain_send_error(self, frame: ReadableBuffer, dst: object, err: int) -> Optional[OSError]:
        # S5: the kernel's error for this send, its class and errno kept,
        # saying what it means where udpio can (a datagram larger than UDP
        # carries, port 0); None where the kernel's own words are all there
        # is, and the error goes on as it came. Natively, send.c asks too.
        if err == errno.EMSGSIZE:
            size, largest = memoryview(frame).nbytes, largest_payload(self._family, dst)
            if size > largest:
                over = "IPv6" if largest == LARGEST_IPV6_PAYLOAD else "IPv4"
                why = f"a datagram of {size:,} bytes is more than UDP over {over} carries ({largest:,})"
                return OSError(err, f"udpio: {why}: {os.strerror(err)}")
        if err == errno.EINVAL and isinstance(dst, tuple) and len(dst) >= 2 and dst[1] == 0:
            return OSError(err, f"udpio: cannot send to port 0 ({dst!r}): {os.strerror(err)}")
        return None

    def _send_after_resolver_error(
        self,
        frame: ReadableBuffer,
        dst: Address,
        exc: socket.gaierror,
        deadline: Optional[float],
        timeout: Optional[float],
    ) -> int:
        # S3: sendto's resolver said no. For an IPv4 address on a dual-stack
        # Socket, send to its mapped form; for the other family's address, a
        # ValueError naming it; for a name, the resolver's error naming it.
        # Caller holds the writer role.
        mapped = self._checked_destination(dst)
        if mapped is dst:
            raise _unresolved(dst, exc) from None
        send = functools.partial(self._sock.sendto, frame, mapped)
        try:
            return send()
        except BlockingIOError:
            return self._wait_and_send(send, deadline, timeout)
        except OSError as exc:
            return self._send_failed(send, exc, deadline, timeout, frame, mapped)

    def _prepared_destination(self, dst: Address) -> Address:
        # S3 before a batch or a send from a src: the checks sendto cannot
        # make (a flowinfo or scope_id it would truncate), then the other
        # family's address mapped or refused, in the order send meets them.
        if self._family == socket.AF_INET6:
            try:
                check_ipv6_fields(dst)
            except OverflowError as exc:
                raise OverflowError(f"udpio: bad destination {dst!r}: {exc}") from None
        return self._checked_destination(dst)

    def _checked_destination(self, dst: Address) -> Address:
        # S3, before a batch or a send from a src, and after a resolver
        # error: the other family's address mapped or refused.
        return destination_family(dst, self._family, self._dual_stack)  # type: ignore[return-value]

    def _send_from(self, frame: ReadableBuffer, dst: Address, cmsg: _Cmsg, timeout: Optional[float]) -> int:
        # send() with a src (M2): one sendmsg carrying the source's pktinfo.
        # The same steps as send; off the hot path, so not inlined.
        deadline = self._take_writer(timeout, "send")
        try:
            if self._closed:
                raise ClosedError()
            dst = self._prepared_destination(dst)
            sendmsg = functools.partial(self._sock.sendmsg, [frame], [cmsg], 0, dst)
            try:
                nbytes = sendmsg()
            except BlockingIOError:
                nbytes = self._wait_and_send(sendmsg, deadline, timeout)
            except (TypeError, ValueError, OverflowError, BufferError) as exc:
                raise _bad_send_arguments(frame, dst, exc) from None
            except socket.gaierror as exc:
                raise _unresolved(dst, exc) from None
            except OSError as exc:
                nbytes = self._send_failed(sendmsg, exc, deadline, timeout, frame, dst)
            self._sent += 1
            return nbytes
        finally:
            self._give_writer()

    def _source_cmsg(self, src: object) -> _Cmsg:
        # M2: the control message for a source address, checked before
        # anything is sent. (The native send calls this on a cache miss.)
        local = self._local
        if local is None and not isinstance(src, str) and not self._closed:
            local = self.local_addr()  # the Socket may have been bound by a send since
        return _cmsg.source(src, self._family, local[1] if local is not None else 0)

    def reply(self, frame: ReadableBuffer, to: Datagram, timeout: Optional[float] = None) -> int:
        """Answer ``to`` (a ``Datagram``): send ``frame`` to ``to.src`` from ``to.dst``.

        A client with a connected socket (``dig``, DNS, QUIC and STUN
        clients) drops an answer from any other address than the one it
        wrote to; on a Socket bound to ``0.0.0.0`` or ``[::]`` on a host
        with several addresses, only this answers every client. Where
        ``to.dst`` is unknown, a wildcard, multicast or broadcast address,
        the kernel chooses the source, as for ``send``.

        Raises what ``send`` raises. Thread-safe, as ``send``.
        """
        src = _cmsg.reply_source(to.dst)
        # Bound to that very address, the kernel sends from it anyway: a send
        # without the control message is the cheaper one (P9). (The native
        # reply makes the same two tests on the parsed address.)
        if src is None or self._sends_from(src[0]):
            return self.send(frame, to.src, timeout)
        try:
            return self.send(frame, to.src, timeout, src=src)
        except OSError as exc:
            if exc.errno not in _NOT_A_SOURCE:
                raise
        # to.dst is an address of this host that the kernel will not send
        # from: a subnet broadcast address, which shows itself only here
        # (nothing was sent). Let the kernel choose, as for a broadcast.
        return self.send(frame, to.src, timeout)

    def _sends_from(self, host: str) -> bool:
        # Whether every datagram leaves from `host` anyway: the Socket is
        # bound to that very address (M2 needs no control message then).
        local = self._local
        return local is not None and local[0] == host and host not in ("0.0.0.0", "::")

    def _message_source(self, src: object) -> Optional[_Cmsg]:
        # K2: a message's source control message, checked as send's; None
        # where the Socket sends from that address anyway, as reply (P9).
        cmsg = self._source_cmsg(src)
        host = src if isinstance(src, str) else src[0]  # type: ignore[index]  # checked by _source_cmsg
        return None if self._sends_from(host) else cmsg

    def send_batch(
        self,
        frames: Iterable[ReadableBuffer],
        dst: Address,
        timeout: Optional[float] = None,
        *,
        src: Union[str, Address, None] = None,
    ) -> int:
        """Send each buffer in ``frames`` as one datagram to ``dst``, in order; return how many.

        As many datagrams go per system call as the platform allows (with
        the native backend on Linux: runs of equal-sized datagrams as one UDP
        GSO send, the rest by ``sendmmsg``; one ``sendto`` each otherwise).
        The batch holds the writer role throughout, so another thread's
        ``send`` never lands in the middle of it. ``frames`` is any
        iterable, read once as the call starts; every frame is checked
        before anything is sent. ``timeout`` bounds the whole batch,
        waits for buffer room included. ``src`` is as for ``send``. Where the
        path cannot take a GSO run (a small MTU, a device without the
        offload), the same datagrams go out without it.

        Raises what ``send`` raises (a bad frame is named by its index).
        Every exception it raises carries ``.sent``: how many datagrams of
        the batch went out before it, so none is resent or lost.

        Thread-safe, as ``send``.
        """
        sent = 0
        try:
            batch = tuple(frames)  # read once: a list changed meanwhile changes nothing sent
            dst = self._prepared_destination(dst)
            largest = largest_payload(self._family, dst)
            for index, frame in enumerate(batch):  # B3: all checked before the first goes out
                check_frame(frame, largest, "frames", index)
            cmsg = None if src is None else self._source_cmsg(src)
            deadline = self._take_writer(timeout, "send_batch")
            try:
                if self._closed:
                    raise ClosedError()
                while sent < len(batch):
                    # One datagram per call here; the native twin sends up to
                    # 64 per system call (GSO runs, sendmmsg: B3, B5).
                    if cmsg is None:
                        send = functools.partial(self._sock.sendto, batch[sent], dst)
                    else:
                        send = functools.partial(self._sock.sendmsg, [batch[sent]], [cmsg], 0, dst)
                    try:
                        send()
                    except BlockingIOError:
                        self._send_slowly(send, None, deadline, timeout, "send_batch")
                    except (TypeError, ValueError, OverflowError) as exc:
                        raise _bad_send_arguments(batch[sent], dst, exc) from None
                    except socket.gaierror as exc:  # a name that does not resolve
                        raise _unresolved(dst, exc) from None
                    except OSError as exc:  # E4: maybe a report about an earlier datagram
                        self._send_slowly(send, exc, deadline, timeout, "send_batch")
                    sent += 1
                    self._sent += 1
            finally:
                self._give_writer()
        except BaseException as exc:
            exc.sent = sent  # type: ignore[attr-defined]  # B3: the caller resends nothing
            raise
        return sent

    def send_many(self, messages: Iterable[tuple[Any, ...]], timeout: Optional[float] = None) -> int:
        """Send each ``(frame, dst)`` or ``(frame, dst, src)`` message as one datagram, in order.

        For a server that answers many peers at once: each message goes to
        its own ``dst`` (a numeric address tuple; no names), from its own
        ``src`` where given (as for ``send``; ``None`` lets the kernel
        choose), in as few system calls as the platform allows (natively on
        Linux, ``sendmmsg``; one ``sendto`` each otherwise). ``messages`` is
        any iterable. Every message is checked before anything is sent. The
        call holds the writer role throughout, so another thread's ``send``
        never lands in the middle of it; ``timeout`` bounds the whole call.
        Returns how many datagrams went out.

        Raises ``TypeError``/``ValueError``/``OverflowError`` naming a bad
        message by its index, an ``OSError`` for a size no datagram can
        carry or port 0 (before anything is sent), ``ClosedError``,
        ``TimeoutError``, and kernel errors verbatim. Every exception it
        raises carries ``.sent``: how many datagrams went out before it.

        Thread-safe, as ``send``.
        """
        sent = 0
        try:
            batch = messages if isinstance(messages, (list, tuple)) else list(messages)
            checked = check_messages(batch, self._family, self._prepared_destination, self._message_source)
            deadline = self._take_writer(timeout, "send_many")
            try:
                if self._closed:
                    raise ClosedError()
                while sent < len(checked):
                    send = functools.partial(self._send_messages, checked, sent)
                    try:
                        went = send()
                    except BlockingIOError:
                        went = self._send_slowly(send, None, deadline, timeout, "send_many")
                    except OSError as exc:  # E4: maybe a report about an earlier datagram
                        went = self._send_slowly(send, exc, deadline, timeout, "send_many")
                    sent += went
                    self._sent += went
            finally:
                self._give_writer()
        except BaseException as exc:
            exc.sent = sent  # type: ignore[attr-defined]  # K2, as B3
            raise
        return sent

    def _send_messages(self, messages: Sequence[Message], start: int) -> int:
        # Send messages[start] and return how many went out: one here (K2).
        # Caller holds the writer role.
        frame, dst, cmsg = messages[start]
        if cmsg is None:
            self._sock.sendto(frame, dst)
        else:
            self._sock.sendmsg([frame], [cmsg], 0, dst)
        return 1

    def _take_writer(self, timeout: Optional[float], what: str) -> Optional[float]:
        # Take the writer role (C2, C3); a timeout also bounds waiting for
        # it (S4). Returns the call's deadline.
        if timeout is None:
            self._writer.acquire()
            return None
        _check_timeout(timeout)
        deadline = monotonic() + timeout
        if not self._writer.acquire(True, min(timeout, threading.TIMEOUT_MAX)):
            raise TimeoutError(f"udpio: {what} timed out after {timeout + 0.0:g} s waiting for another send")
        return deadline

    def _give_writer(self) -> None:
        if self._send_exit_releases:  # C5: a close() on this thread interrupted the send
            self._release()
        self._writer.release()

    # -- waiting (the slow path) --------------------------------------------

    def _wait_and_recv(
        self, read: Callable[[], _T], timeout: Optional[float], failed: Optional[OSError] = None
    ) -> _T:
        # The slow path of every receive, holding the reader role: the read
        # said "would block" (failed None) or failed with a kernel error.
        # Wait only after "would block", and read again after every wake-up
        # (R7). With peer_errors on (E4), an error is the kernel handing this
        # call an earlier datagram's report: it reads again
        # (_report_explains); and the error queue is read before every
        # wait, or its readiness would end the wait at once, again and again
        # (E6). Without it, the error is raised (R8).
        # (The native receive calls run this same loop in C.)
        deadline = None if timeout is None else monotonic() + timeout
        attempt = 0
        while True:
            if failed is None:
                if self._peer_errors:
                    self._gather_reports()
                self._await_readable(deadline, timeout)
            elif self._report_explains(failed, attempt, sending=False):
                attempt += 1
            else:
                raise failed
            try:
                return read()
            except BlockingIOError:
                failed = None  # a wake-up with nothing to read; wait again
            except OSError as exc:
                failed = exc

    def _await_readable(self, deadline: Optional[float], timeout: Optional[float]) -> None:
        # One wait for the socket or the wake-up, then the closed check (C3).
        # Caller holds the reader role.
        # The same wait serves recv, recv_datagram and recv_batch (natively
        # too): the message says what it waited for, not which call.
        _wait(self._wait_readable, deadline, timeout, "the wait for a datagram")
        if self._closed:
            raise ClosedError("closed while waiting for a datagram") from None

    def _wait_and_send(
        self, send: Callable[[], int], deadline: Optional[float], timeout: Optional[float]
    ) -> int:
        # Wait for room and call send() again, until it goes out. Caller
        # holds the writer role.
        return self._send_slowly(send, None, deadline, timeout, "send")

    def _send_slowly(
        self,
        send: Callable[[], int],
        failed: Optional[OSError],
        deadline: Optional[float],
        timeout: Optional[float],
        what: str,
    ) -> int:
        # The slow path of every send's syscall, holding the writer role:
        # it said "would block" (failed None) or failed with a kernel error.
        # Wait for room after "would block" (S4) and send again. With
        # peer_errors on (E4), an error may be an earlier datagram's report:
        # the reports are gathered and the send tried again as try_again
        # says (its own error is raised); and the error queue is read before
        # every wait, as for a receive (E6). (Natively: send_retry, in C.)
        attempt = 0
        while True:
            if failed is None:
                if self._peer_errors:
                    self._gather_reports()
                self._await_writable(deadline, timeout, what)
            elif self._report_explains(failed, attempt, sending=True):
                attempt += 1
            else:
                raise failed
            try:
                return send()
            except BlockingIOError:
                failed = None
            except OSError as exc:
                failed = exc

    def _await_writable(self, deadline: Optional[float], timeout: Optional[float], what: str) -> None:
        # One wait for buffer room or the wake-up, then the closed check
        # (S4, C3). Caller holds the writer role, which also guards _wsel.
        wsel = self._wsel
        if wsel is None:
            wsel = selectors.DefaultSelector()
            try:
                wsel.register(self._sock, selectors.EVENT_WRITE)
                wsel.register(self._wakeup.fileno(), selectors.EVENT_READ)
            except BaseException:
                wsel.close()
                raise
            self._wsel = wsel
        _wait(wsel.select, deadline, timeout, what)
        if self._closed:
            raise ClosedError(f"closed while waiting in {what}")

    # -- close --------------------------------------------------------------

    def close(self) -> None:
        """Close the Socket. Idempotent; thread-safe; safe in a signal handler.

        A ``recv`` or ``send`` blocked on another thread raises
        ``ClosedError`` at once. When ``close()`` returns, no call is using
        the descriptors and all of them are closed, with one exception:
        called on a thread whose own ``recv``/``send`` it interrupted (a
        signal handler), it cannot wait for that call, which then raises
        ``ClosedError`` and closes the descriptors as it unwinds.

        A frame the caller is still reading stays valid until its next
        ``recv`` (which raises ``ClosedError``).
        """
        self._closed = True
        self._wake()
        interrupted_recv = self._reader_is_me()
        interrupted_send = self._writer_is_me()
        # Waiting out a role = acquiring and releasing its lock; the holder
        # was just woken and sees _closed, so this takes microseconds.
        if not interrupted_recv:
            with self._reader:
                pass
        if not interrupted_send:
            with self._writer:
                pass
        if interrupted_recv:
            self._recv_exit_releases = True
        elif interrupted_send:
            self._send_exit_releases = True
        else:
            self._release()

    def _wake(self) -> None:
        with self._fds_lock:
            if not (self._woken or self._released):
                self._woken = True
                self._wakeup.signal()

    def _release(self) -> None:
        # Every step is idempotent, so a re-entrant call from a signal
        # handler that interrupted this very method is harmless.
        with self._fds_lock:
            if self._released:
                return
            self._closed = True
            try:
                self._final_drops = kernel_drops(self._sock)  # M3: stats() after close
                self._rsel.close()
                if self._wsel is not None:
                    self._wsel.close()
                self._wakeup.close()
            finally:
                self._sock.close()
                self._released = True

    def stats(self) -> Stats:
        """``Stats(received, sent, kernel_drops)``: what this Socket has moved so far.

        ``kernel_drops`` is the kernel's own count of datagrams it dropped
        for this socket (most often: the receive buffer was full; a larger
        ``rcvbuf`` helps), or ``None`` where the platform keeps none. After
        ``close()`` it answers with the final counts. Cheap (one
        ``getsockopt``); thread-safe; never waits for a ``recv`` or ``send``.
        """
        with self._fds_lock:  # the descriptor stays open meanwhile (C3)
            drops = self._final_drops if self._released else kernel_drops(self._sock)
        return Stats(self._received, self._sent, drops)

    def peer_errors(self) -> PeerErrors:
        """The network's reports about datagrams this Socket sent, gathered since the last call.

        Each is a ``PeerError(peer, errno, origin, type, code, info,
        reporter)``, oldest first: a peer whose port is closed
        (``ECONNREFUSED``), a host or network that cannot be reached, a path
        smaller than a datagram sent with ``dont_fragment`` (``EMSGSIZE``,
        ``info`` its MTU). The Socket keeps at most 1,024; the list's
        ``dropped`` says how many older ones it dropped since the last call.
        Only a Socket made with ``peer_errors=True`` hears any; otherwise the
        list is always empty. After ``close()`` it returns what was gathered
        before.

        Raises nothing of its own. Never waits; thread-safe, also while
        other threads are in ``recv`` or ``send``.
        """
        if self._peer_errors:
            with self._fds_lock:  # the descriptor stays open meanwhile (C3)
                if not self._released:
                    self._gather_reports()
        return self._reports.take()

    def _gather_reports(self) -> Optional[list[PeerError]]:
        # E2, E3: read the error queue until it is empty, keep the reports
        # and return them (E4's rule looks at them). One reader at a time,
        # so they are kept in the order they came; a thread that finds the
        # queue being read goes on, with None: the reader takes what is
        # there. Caller keeps the descriptor open (a role, or _fds_lock).
        # (Natively: _c/reports.c, which reads up to 16 per recvmmsg.)
        if not self._gathering.acquire(False):
            return None
        gathered: list[PeerError] = []
        self._unread = 0
        try:
            for _ in range(_REPORTS_PER_GATHER):
                try:
                    _, ancdata, _, peer = self._sock.recvmsg(0, ANCILLARY_SIZE, socket.MSG_ERRQUEUE)
                except (BlockingIOError, InterruptedError):
                    break  # empty; or a signal: the next gathering reads on
                report = parse_report(ancdata, peer)
                if report is not None:
                    gathered.append(report)
            if gathered:
                self._keep_reports(gathered)
        finally:
            self._gathering.release()
        return gathered

    def _report_explains(self, failed: OSError, attempt: int, sending: bool) -> bool:
        # E4: whether a call whose syscall failed with `failed` tries again.
        # A receive's failure is always a report's (UDP's receive has no
        # errors of its own: each is the socket's pending error, which one
        # report sets and the failed read clears): it reads again at once,
        # and the queue is read every UNREAD_REPORTS such failures (P13: read
        # one report at a time as each came, a flood cost 3x a datagram's
        # receive). A send's failure: the queue is read, and try_again
        # decides. (Natively: retry_past_reports.)
        if not self._peer_errors:
            return False
        if not sending:
            self._unread += 1
            if self._unread >= UNREAD_REPORTS:
                self._unread = 0
                self._gather_reports()
            return True
        return try_again(failed.errno or 0, self._gather_reports(), attempt, sending=sending)

    def _keep_reports(self, reports: list[PeerError]) -> None:
        # E3: into the store peer_errors() takes from (the native gathering calls this too).
        self._reports.keep(reports)

    def _return_buffer(self) -> None:
        # Caller holds the reader role.
        buf, self._buf = self._buf, None
        if buf is not None:
            self._pool.put(buf)

    def _recv_refused(self) -> Exception:
        if self._closed:
            return ClosedError()
        return ConcurrentRecvError(
            "udpio: recv called while another recv is running on this Socket "
            "(one reader at a time; dispatch frames from a single reader thread)"
        )

    # -- introspection and lifetime -----------------------------------------

    def conn(self) -> socket.socket:
        """The underlying ``socket.socket`` (the very one given to ``wrap_conn``).

        An escape hatch: using it bypasses every rule of this class. After
        ``close()`` it is closed. Thread-safe. Reading from it directly
        misses the datagrams the Socket already took (B2) and, on the
        native backend, may return several datagrams joined by UDP GRO.
        """
        return self._sock

    def local_addr(self) -> Optional[Address]:
        """The bound address (with the real port), or ``None`` if closed or never bound.

        An adopted socket that was never bound gets an address from its
        first ``send``. Thread-safe; it may wait for a ``send`` that is
        waiting for buffer room.
        """
        if self._closed:
            return None
        local = self._local
        if local is None:
            with self._writer:  # the descriptor may only be used under a role
                if self._closed:
                    return None
                local = self._local = _bound_address(self._sock)
        return local

    def bound_addr(self) -> Address:
        """The bound address, for a Socket you know is bound (``listen`` binds).

        ``local_addr()`` without the ``Optional``: raises ``ClosedError``
        after ``close()``, and ``OSError`` (``EINVAL``) for an adopted socket
        that no ``send`` has bound yet. Thread-safe, as ``local_addr``.
        """
        local = self.local_addr()
        if local is not None:
            return local
        if self._closed:
            raise ClosedError()
        raise OSError(errno.EINVAL, "udpio: the socket is not bound (send once, or bind it before wrap_conn)")

    def __repr__(self) -> str:
        if self._closed:
            return "<udpio.Socket closed>"
        local = self._local
        where = "unbound" if local is None else format_address(local)
        return f"<udpio.Socket {where}>"

    def __enter__(self) -> Socket:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # No call can be running: it would hold a reference to self.
        if getattr(self, "_released", True):
            return  # closed, or __init__ never finished
        warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1, source=self)
        self._release()


#: K1: a pure batch reads datagram after datagram into one arena, each
#: where the last ended, while a whole datagram still fits (so a batch of
#: small datagrams costs one arena, not a buffer each).
_ARENA_SIZE: Final = 2 * BUFFER_SIZE


def _waiter(sel: selectors.BaseSelector) -> Callable[[Optional[float]], object]:
    # What recv calls to wait. Its result is ignored (recv retries the
    # syscall and checks _closed after every wake-up), so on epoll we skip
    # EpollSelector.select's bookkeeping (timeout conversion, sizing, mapping
    # each ready fd back to its key) and call the epoll object it wraps:
    # measured at ~0.5 us less per wait, a third of what separated a udpio
    # ping-pong round trip from a plain one. Same syscall, same EINTR retry
    # with the remaining time (PEP 475). Any other selector: its select().
    if type(sel) is selectors.EpollSelector:
        epoll = getattr(sel, "_selector", None)
        if epoll is not None and hasattr(epoll, "poll"):
            # maxevents=2: our two descriptors. The default (-1) would make
            # CPython allocate room for FD_SETSIZE events on every call.
            return functools.partial(epoll.poll, maxevents=2)
    return sel.select


def _bound_address(sock: socket.socket) -> Optional[Address]:
    # Port 0 from getsockname() means "not bound yet": binding to port 0
    # always yields a real port.
    # (The private constructor also takes non-IP datagram sockets in tests,
    # whose names are not tuples: they count as unbound.)
    addr: object = sock.getsockname()
    if isinstance(addr, tuple) and addr[1] != 0:
        return addr
    return None


#: The longest single selector wait, in seconds (R7: longer timeouts and
#: infinity are several such waits).
_LONGEST_WAIT: Final = 86400.0


def _wait(
    select: Callable[[Optional[float]], object],
    deadline: Optional[float],
    timeout: Optional[float],
    what: str,
) -> None:
    # One selector wait bounded by the deadline. epoll/select retry EINTR
    # themselves with the remaining time (PEP 475), and we recompute from
    # the deadline on every loop, so neither signals nor spurious wake-ups
    # stretch a timeout (R7, C6).
    if deadline is None:
        select(None)
        return
    remaining = deadline - monotonic()
    if remaining <= 0:
        # from None: raised while a "would block" is being handled, which
        # says nothing to the caller. (A timeout of -0.0 is said as 0 s.)
        raise TimeoutError(f"udpio: {what} timed out after {float(timeout or 0):g} s") from None
    # A selector cannot wait longer than its clock allows (epoll: about 24
    # days); a longer wait is several, each retried by the caller's loop.
    select(min(remaining, _LONGEST_WAIT))


def _unresolved(dst: object, exc: socket.gaierror) -> socket.gaierror:
    # The resolver's error for a destination, naming its host.
    return resolver_error(dst[0] if isinstance(dst, tuple) and dst else dst, exc)


def _bad_send_arguments(frame: object, dst: object, exc: Exception) -> Exception:
    # Only reached after sendto refused its arguments; decide which one was
    # wrong so the message names it, keeping the exception's type.
    try:
        view = memoryview(frame)  # type: ignore[arg-type]  # probing an unknown object
    except TypeError:
        return TypeError(
            f"udpio: frame must support the buffer protocol (bytes, bytearray, "
            f"memoryview), not {type(frame).__name__}"
        )
    contiguous = view.c_contiguous
    view.release()
    if not contiguous:
        return TypeError("udpio: frame must be a C-contiguous buffer")
    return type(exc)(f"udpio: bad destination {dst!r}: {exc}")


#: The most reports one gathering reads (as the C twin's): a flood is read
#: in rounds, so no call reads for long (E6).
_REPORTS_PER_GATHER: Final = 1024

#: The largest SO_RCVBUF/SO_SNDBUF a caller may ask for: the option is a C int.
_MAX_BUFFER_SIZE: Final = 2**31 - 1


def listen_with(
    cls: type[Socket],
    addr: object,
    *,
    rcvbuf: Optional[int] = None,
    sndbuf: Optional[int] = None,
    reuse_port: bool = False,
    peer_errors: bool = False,
    dont_fragment: bool = False,
) -> Socket:
    """``udpio.listen`` for the Socket class ``cls`` (a backend's)."""
    flags = {"reuse_port": reuse_port, "peer_errors": peer_errors, "dont_fragment": dont_fragment}
    _options.check_flags(**flags)  # G1, E1, E5: before anything is bound
    for name, size in (("rcvbuf", rcvbuf), ("sndbuf", sndbuf)):
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool):
                raise TypeError(f"udpio: {name} must be an int, not {type(size).__name__}")
            # A4: the option is a C int; past it setsockopt would take the
            # value for a buffer to copy and say "a bytes-like object is
            # required". (The kernel caps what it grants at its
            # net.core.rmem_max / wmem_max without a word.)
            if not 0 < size <= _MAX_BUFFER_SIZE:
                raise ValueError(f"udpio: {name} must be 1 to {_MAX_BUFFER_SIZE} bytes, not {size}")
    first_error: Optional[OSError] = None
    first_sockaddr: Optional[Address] = None
    for family, sockaddr in resolve(addr):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if sndbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            _options.apply(sock, **flags)
            sock.bind(sockaddr)
            return cls(sock)
        except OSError as exc:
            sock.close()
            if first_error is None:
                first_error, first_sockaddr = exc, sockaddr
        except BaseException:
            sock.close()
            raise
    assert first_error is not None and first_sockaddr is not None  # resolve() never returns an empty list
    # The kernel's error, its errno and class kept, naming the address
    # ("Address already in use" alone does not say which).
    raise type(first_error)(
        first_error.errno,
        f"udpio: cannot listen on {format_address(first_sockaddr)}: {first_error.strerror}",
    ) from None


def wrap_conn_with(
    cls: type[Socket], conn: socket.socket, *, peer_errors: bool = False, dont_fragment: bool = False
) -> Socket:
    """``udpio.wrap_conn`` for the Socket class ``cls`` (a backend's)."""
    _options.check_flags(peer_errors=peer_errors, dont_fragment=dont_fragment)
    if peer_errors or dont_fragment:
        _check_adoptable(conn)  # W1 before the options: a refused conn is left as it was
        _options.apply(conn, peer_errors=peer_errors, dont_fragment=dont_fragment)
    return cls(conn)  # on failure it leaves conn as it was (setblocking is its last step)


class _Unchecked(NamedTuple):
    # What Socket._adopt_unchecked hands the constructor: a socket that skips
    # W1's checks, and a pool of its own.
    conn: socket.socket
    pool: Optional[BufferPool[Any]]


def _check_adoptable(conn: object) -> None:
    # W1: a UDP socket of an IP family, open; anything else is refused with
    # conn left exactly as it was.
    if not isinstance(conn, socket.socket):
        raise TypeError(f"udpio: wrap_conn needs a socket.socket, not {type(conn).__name__}")
    if conn.fileno() == -1:
        raise ValueError("udpio: wrap_conn got a closed socket")
    if conn.type != socket.SOCK_DGRAM:
        raise ValueError(f"udpio: wrap_conn needs a UDP (SOCK_DGRAM) socket, not {conn.type!r}")
    if conn.family not in _FAMILIES:
        raise ValueError(f"udpio: wrap_conn needs an AF_INET or AF_INET6 socket, not {conn.family!r}")
