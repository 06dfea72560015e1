"""Group: several workers on one address, each with its own Socket, supervised (G2-G7).

One Python process answers on one core. A Group binds ``workers`` Sockets
to one address with ``SO_REUSEPORT`` (the kernel spreads the datagrams
among them, one client on one Socket) and runs ``handler(sock)`` in a
worker for each: a process (the default: the way past the GIL) or a
thread. How the traps of doing this by hand are avoided, one by one:

- **No socket nobody reads.** The owner binds each worker's socket (port 0:
  the first bind picks the port, the others take it) and hands it to the
  worker; it closes its own copy once the worker says it is ready. A
  socket that stayed open in the owner would keep its share of the
  traffic after its worker died. ``start()`` returns once every worker is
  ready, so a client may send at once.
- **No orphans.** Each worker process has a control pipe from its owner.
  When the owner dies, even by SIGKILL, the kernel closes the owner's end;
  the worker sees end-of-file, closes its Socket (which wakes its
  ``recv``) and exits, at the latest ``_ORPHAN_GRACE`` seconds later.
  (``PR_SET_PDEATHSIG`` is not used: it fires when the *thread* that
  started the worker ends, not the process.)
- **Signals.** Workers ignore SIGINT, which a terminal sends to the whole
  process group: the owner decides. ``serve`` (udpio._daemon) takes the
  owner's SIGINT and SIGTERM with ``sigwait``.
- **Death and restarts.** One supervisor thread waits on every worker's
  sentinel (a descriptor that becomes readable when the worker ends),
  logs each death with its cause (logger ``"udpio"``), and starts another
  worker on a new Socket. More than ``_CRASH_LIMIT`` deaths within
  ``_CRASH_WINDOW`` seconds stop the group; ``wait()`` then raises,
  naming the last cause.

Processes come from ``multiprocessing``'s ``spawn`` context (never
``fork`` from a process that has threads), so the handler must be
importable by name; the Socket travels as an argument, which
``multiprocessing`` passes at exec time.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

from udpio import _socket
from udpio._addresses import Address
from udpio._datagram import Stats

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

__all__ = ["Group"]

log = logging.getLogger("udpio")

Handler = Callable[[_socket.Socket], object]

_MODES = ("processes", "threads")
_BALANCES = ("hash", "random")
#: listen()'s options a Group passes on to every worker's Socket.
_LISTEN_OPTIONS = ("rcvbuf", "sndbuf")
#: G4: more than this many deaths within this many seconds stop the group.
_CRASH_LIMIT, _CRASH_WINDOW = 5, 10.0
#: G3: a worker whose owner died exits this long after, at the latest.
_ORPHAN_GRACE = 0.5
#: How long start() and a restart wait for a worker to say it is ready.
_READY_TIMEOUT = 60.0
#: G7: SO_ATTACH_REUSEPORT_CBPF (Linux 4.5) and the classic BPF program that
#: picks a member at random: A = random(); A %= members; return A.
_SO_ATTACH_REUSEPORT_CBPF = 51
_SKF_AD_RANDOM = 0xFFFFF000 + 56


class Group:
    """Workers on one address, each with its own Socket, started, watched and stopped together.

    ``Group(addr, handler, *, workers, mode="processes", balance="hash",
    **listen_options)``: ``start()`` binds ``workers`` Sockets to ``addr``
    with ``reuse_port`` and calls ``handler(sock)`` in a worker for each;
    ``handler`` returns when its Socket is closed (its ``recv`` raises
    ``ClosedError``), and anything it raises is a crash: the worker is
    replaced. ``mode="threads"`` runs the workers as threads of this
    process (for handlers that wait on other I/O). ``balance="random"``
    spreads every datagram at random among the workers, for stateless
    request/response servers with few clients; ``"hash"`` (the kernel's:
    one client, one worker) is what a protocol that keeps state per client
    needs. ``listen_options`` are ``rcvbuf`` and ``sndbuf``.

    Raises ``TypeError``/``ValueError`` for a bad argument (in
    ``"processes"`` mode, a handler that cannot be sent to a process by
    name) before anything is bound. Thread-safe; a context manager
    (``with Group(...) as g:`` starts it and stops it).
    """

    def __init__(
        self,
        addr: Union[str, tuple[str, int]],
        handler: Handler,
        *,
        workers: int,
        mode: str = "processes",
        balance: str = "hash",
        **listen_options: Any,
    ) -> None:
        _check_arguments(handler, workers, mode, balance, listen_options)
        self._addr = addr
        self._handler = handler
        self._size = workers
        self._mode = mode
        self._balance = balance
        self._listen_options = listen_options
        # _lock guards the members, the retired counts, the deaths and the
        # state flags below; the supervisor and the callers of stop() and
        # stats() all take it (never while waiting on a worker).
        self._lock = threading.Lock()
        self._members: list[_Worker] = []
        self._retired = Stats(0, 0, 0)
        self._deaths: deque[float] = deque()
        self._restarts = 0
        self._started = False
        self._stopping = False
        self._failure: Optional[str] = None
        self._local: Optional[Address] = None
        self._stopped = threading.Event()
        # stop() wakes the supervisor through it; made by start(), closed by stop().
        self._wake: Optional[tuple[int, int]] = None
        self._supervisor: Optional[threading.Thread] = None

    # -- the public face ---------------------------------------------------

    @property
    def restarts(self) -> int:
        """How many workers were replaced after they died (G4)."""
        return self._restarts

    def local_addr(self) -> Optional[Address]:
        """The group's one address (the real port after port 0), or None before ``start()``."""
        return self._local

    def start(self) -> None:
        """Bind every worker's Socket and start the workers; return once every one is ready.

        Raises the kernel's ``OSError`` (an address in use), ``RuntimeError``
        if it was started before, or if a worker failed to start (then
        nothing is left running). Thread-safe.
        """
        with self._lock:
            if self._started or self._stopping:
                raise RuntimeError("udpio: a Group starts once, and not after stop()")
            self._started = True
            self._wake = os.pipe()
        pending: list[_socket.Socket] = []  # bound, its worker not started yet
        try:
            cls, backend = _socket_class()
            pending.append(self._bind(cls, self._addr))
            self._local = pending[0].local_addr()
            while len(pending) < self._size:
                pending.append(self._bind(cls, self._local))
            if self._balance == "random":
                _attach_random(pending[0].conn(), self._size)
            for index in range(self._size):
                worker = self._new_worker(index, pending.pop(0), backend)
                with self._lock:
                    self._members.append(worker)
        except BaseException:
            for sock in pending:
                sock.close()
            self._shut_down(0.0)
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="udpio-group", daemon=True)
        self._supervisor.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close every worker's Socket, wait up to ``timeout`` for the handlers, end what is left.

        A worker process still running after ``timeout`` seconds is killed
        (SIGKILL) and said so in the log. Leaves no process, thread or
        descriptor behind. Idempotent and thread-safe.
        """
        with self._lock:
            if self._stopping:
                first = False
            else:
                self._stopping = first = True
        if first:
            if self._wake is not None:
                with contextlib.suppress(OSError):
                    os.write(self._wake[1], b"x")
            supervisor = self._supervisor
            if supervisor is not None and supervisor is not threading.current_thread():
                supervisor.join()
            self._shut_down(timeout)
        self._stopped.wait()

    def wait(self) -> None:
        """Block until the group has stopped.

        Raises ``RuntimeError`` naming the last cause when the group stopped
        itself because its workers kept dying (G4). Thread-safe.
        """
        self._stopped.wait()
        if self._failure is not None:
            raise RuntimeError(f"udpio: the group stopped itself: {self._failure}")

    @property
    def mode(self) -> str:
        """``"processes"`` or ``"threads"``: what each worker is."""
        return self._mode

    @property
    def failure(self) -> Optional[str]:
        """Why the group stopped itself, or None (it runs, or was stopped by ``stop()``)."""
        return self._failure

    def wait_until_stopped(self) -> None:
        """``wait()`` without the error: returns once the group has stopped, however."""
        self._stopped.wait()

    def stats(self) -> Stats:
        """What every worker received, sent and had dropped, the replaced ones included (G6)."""
        total = self._retired
        for stats in self.worker_stats():
            total = _add(total, stats)
        return total

    def worker_stats(self) -> list[Stats]:
        """One ``Stats`` for each current worker (empty once stopped). Thread-safe."""
        with self._lock:
            members = list(self._members)
        return [member.stats() for member in members]

    def __enter__(self) -> Group:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped.is_set() else "running" if self._started else "new"
        return f"<udpio.Group {state} {self._mode} x{self._size} on {self._local or self._addr!r}>"

    # -- workers -----------------------------------------------------------

    def _bind(self, cls: type[_socket.Socket], addr: object) -> _socket.Socket:
        return _socket.listen_with(cls, addr, reuse_port=True, **self._listen_options)

    def _new_worker(self, index: int, sock: _socket.Socket, backend: str) -> _Worker:
        worker: _Worker
        if self._mode == "threads":
            worker = _ThreadWorker(index, sock, self._handler)
        else:
            worker = _ProcessWorker(index, sock, self._handler, backend)
        worker.start()
        return worker

    def _supervise(self) -> None:
        # G4: wait for any worker to end (or stop() to say so); reap it, log
        # why, and start another in its place, until stop() or a crash loop.
        while True:
            with self._lock:
                if self._stopping or self._wake is None:
                    return
                wake = self._wake[0]
                by_sentinel = {member.sentinel: member for member in self._members}
            ready = wait_for([wake, *by_sentinel])
            for sentinel in ready:
                if sentinel == wake:
                    return
                with self._lock:
                    if self._stopping:
                        return
                if not self._replace(by_sentinel[sentinel]):  # type: ignore[index]
                    self.stop()  # from this thread: stop() does not wait for it
                    return

    def _replace(self, dead: _Worker) -> bool:
        # The dead worker out, its counts kept; another in, unless the
        # workers keep dying. Returns False when the group must stop.
        cause = dead.reap()
        now = time.monotonic()
        with self._lock:
            self._members.remove(dead)
            self._retired = _add(self._retired, dead.final_stats())
            self._deaths.append(now)
            while self._deaths and now - self._deaths[0] > _CRASH_WINDOW:
                self._deaths.popleft()
            if len(self._deaths) > _CRASH_LIMIT:
                self._failure = (
                    f"{len(self._deaths)} workers died within {_CRASH_WINDOW:g} s; the last {cause}"
                )
                log.error("udpio: %s; stopping the group", self._failure)
                return False
        log.warning("udpio: worker %d %s; starting another", dead.index, cause)
        try:
            cls, backend = _socket_class(dead.backend)
            worker = self._new_worker(dead.index, self._bind(cls, self._local), backend)
        except Exception as exc:
            with self._lock:
                self._failure = f"a worker could not be started again: {exc}"
            log.error("udpio: %s; stopping the group", self._failure)
            return False
        with self._lock:
            self._members.append(worker)
            self._restarts += 1
        return True

    def _shut_down(self, timeout: float) -> None:
        # G3: ask every worker to stop, give them `timeout` together, end the rest.
        with self._lock:
            members, self._members = self._members, []
        for member in members:
            member.ask_to_stop()
        deadline = time.monotonic() + timeout
        for member in members:
            if not member.join(max(0.0, deadline - time.monotonic())):
                log.warning(
                    "udpio: worker %d did not stop within %g s: %s", member.index, timeout, member.kill()
                )
            member.reap()
            with self._lock:
                self._retired = _add(self._retired, member.final_stats())
        with self._lock:
            wake, self._wake = self._wake, None
        for fd in wake or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stopped.set()


Group.__module__ = "udpio"  # where users import it from (help(), reprs, the API page)


# -- one worker, either kind -------------------------------------------------------------------


class _Worker(Protocol):
    """What the supervisor needs of a worker, a process or a thread."""

    index: int
    backend: str
    sentinel: int  # becomes readable when the worker has ended

    def start(self) -> None: ...
    def stats(self) -> Stats: ...
    def final_stats(self) -> Stats: ...
    def ask_to_stop(self) -> None: ...
    def join(self, timeout: float) -> bool: ...
    def kill(self) -> str: ...  # what it did, for the log
    def reap(self) -> str: ...  # why it ended, for the log


class _ThreadWorker:
    """A worker thread of this process, with its own Socket (mode="threads")."""

    def __init__(self, index: int, sock: _socket.Socket, handler: Handler) -> None:
        self.index = index
        self.backend = "native" if type(sock) is not _socket.Socket else "python"
        self._sock = sock
        self._handler = handler
        self._cause: Optional[str] = None
        # The thread closes the write end as it ends: the read end is its sentinel.
        self.sentinel, self._ended = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"udpio-worker-{index}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._handler(self._sock)
            if not self._sock._closed:
                self._cause = "returned while its Socket was open"
        except BaseException as exc:  # G4: a crash, replaced by the supervisor
            self._cause = f"raised {type(exc).__name__}: {exc}"
            log.exception("udpio: worker %d raised", self.index)
        finally:
            self._sock.close()
            os.close(self._ended)

    def stats(self) -> Stats:
        return self._sock.stats()

    def final_stats(self) -> Stats:
        return self._sock.stats()  # it still answers after close (M3)

    def ask_to_stop(self) -> None:
        self._sock.close()  # wakes its recv (C4)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def kill(self) -> str:
        return "a thread cannot be killed: waiting for its handler to return"

    def reap(self) -> str:
        self._thread.join()
        with contextlib.suppress(OSError):
            os.close(self.sentinel)
        return self._cause or "returned"


class _ProcessWorker:
    """A worker process with its own Socket, bound here and handed over (mode="processes")."""

    _context = multiprocessing.get_context("spawn")

    def __init__(self, index: int, sock: _socket.Socket, handler: Handler, backend: str) -> None:
        self.index = index
        self.backend = backend
        self._sock: Optional[_socket.Socket] = sock  # this process's copy, until the worker is ready
        self._control, child = self._context.Pipe()
        # One request at a time on the pipe: stats() from any thread, stop().
        self._lock = threading.Lock()
        self._last = Stats(0, 0, 0)
        self._cause: Optional[str] = None
        self._process: BaseProcess = self._context.Process(
            target=_worker_main,
            args=(sock.conn(), handler, backend, child),
            name=f"udpio-worker-{index}",
            # Daemonic: an owner that exits without stop() ends its workers
            # instead of waiting for them (they would wait for it).
            daemon=True,
        )
        self._child_end = child
        self.sentinel = -1

    def start(self) -> None:
        # multiprocessing starts its resource tracker (on first use) with
        # SIGINT and SIGTERM blocked, then unblocks them in this thread: a
        # daemon's sigwait (udpio.serve) would lose them. Put the mask back.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        try:
            self._process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._child_end.close()
        self.sentinel = self._process.sentinel
        try:
            ready = self._control.poll(_READY_TIMEOUT)
            message = self._control.recv() if ready else ("late", f"not ready within {_READY_TIMEOUT:g} s")
        except (EOFError, OSError):
            message = ("died", "it ended before it was ready")
        finally:
            # The worker has its copy now (or is gone): this one must not stay
            # in the reuseport group, unread.
            assert self._sock is not None
            self._sock.close()
            self._sock = None
        if message[0] != "ready":
            # Not a member yet, so nothing else would end it: end it here.
            self._process.kill()
            self.reap()
            raise RuntimeError(f"udpio: worker {self.index} failed to start: {message[1]}")

    def _ask(self, request: str) -> None:
        # Send a request; read until its answer, keeping what else comes
        # (an exit report). A worker that does not answer within a second
        # (stuck, or ending) leaves the last answer standing. Caller holds _lock.
        self._control.send(request)
        while self._control.poll(1.0):
            message = self._control.recv()
            self._note(message)
            if message[0] == request:
                return

    def _note(self, message: tuple[Any, ...]) -> None:
        if message[0] == "stats":
            self._last = Stats(*message[1])
        elif message[0] == "exit":
            self._last = Stats(*message[1])
            self._cause = message[2]

    def stats(self) -> Stats:
        with self._lock:
            with contextlib.suppress(EOFError, OSError):
                self._ask("stats")
            return self._last

    def final_stats(self) -> Stats:
        return self._last

    def ask_to_stop(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._control.send("stop")

    def join(self, timeout: float) -> bool:
        self._process.join(timeout)
        return self._process.exitcode is not None

    def kill(self) -> str:
        self._process.kill()
        return "killed (SIGKILL)"

    def reap(self) -> str:
        # Its last words (an exit report with its final counts, a crash's
        # cause), then its exit status.
        self._process.join()
        with self._lock:
            with contextlib.suppress(EOFError, OSError):
                while self._control.poll(0):
                    self._note(self._control.recv())
            self._control.close()
        code = self._process.exitcode
        self._process.close()
        if self._cause is not None:
            return self._cause
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"


def _worker_main(conn: socket.socket, handler: Handler, backend: str, control: Connection) -> None:
    """A worker process: adopt the Socket, serve, report; end with the owner (G3)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # the owner's sigwait blocked them
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # G3: Ctrl-C reaches every process; the owner decides
    cls, _ = _socket_class(backend)
    sock = _socket.wrap_conn_with(cls, conn)
    send_lock = threading.Lock()  # the watcher answers while this thread may report its exit

    def send(message: tuple[Any, ...]) -> None:
        with send_lock, contextlib.suppress(OSError):
            control.send(message)

    ended = threading.Event()  # the handler has returned: the watcher's grace ends early
    watcher = threading.Thread(target=_watch_owner, args=(sock, control, send, ended), name="udpio-owner")
    watcher.daemon = True
    watcher.start()
    send(("ready",))
    cause: Optional[str] = None
    try:
        handler(sock)
        if not sock._closed:
            cause = "returned while its Socket was open"
    except BaseException as exc:  # G4: reported, then this process ends; the owner starts another
        cause = f"raised {type(exc).__name__}: {exc}"
        log.exception("udpio: worker raised")
    finally:
        sock.close()
        ended.set()
        send(("exit", tuple(sock.stats()), cause))
    for stream in (sys.stdout, sys.stderr):  # os._exit flushes nothing: the handler's last words
        if stream is not None:
            stream.flush()
    os._exit(0 if cause is None else 1)


def _watch_owner(
    sock: _socket.Socket, control: Connection, send: Callable[[tuple[Any, ...]], None], ended: threading.Event
) -> None:
    # Answers the owner's requests; when the owner says stop, or is gone
    # (end of file: it exited or was killed), closes the Socket, which
    # ends the handler; an orphan whose handler does not return in time is
    # ended here (the main thread's os._exit ends it first otherwise).
    while True:
        try:
            request = control.recv()
        except (EOFError, OSError):
            sock.close()
            ended.wait(_ORPHAN_GRACE)
            os._exit(1)
        if request == "stats":
            send(("stats", tuple(sock.stats())))
        elif request == "stop":
            sock.close()
            return


# -- helpers -------------------------------------------------------------------------------------


def _check_arguments(
    handler: object, workers: object, mode: object, balance: object, listen_options: dict[str, Any]
) -> None:
    # G2: every bad argument is refused before anything is bound.
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"udpio: workers must be an int >= 1, not {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"udpio: workers must be an int >= 1, not {workers}")
    if mode not in _MODES:
        raise ValueError(f"udpio: mode must be 'processes' or 'threads', not {mode!r}")
    if balance not in _BALANCES:
        raise ValueError(f"udpio: balance must be 'hash' or 'random', not {balance!r}")
    unknown = sorted(set(listen_options) - set(_LISTEN_OPTIONS))
    if unknown:
        raise TypeError(f"udpio: Group got unknown options {unknown} (listen options: rcvbuf, sndbuf)")
    if not callable(handler):
        raise TypeError(f"udpio: handler must be callable, not {type(handler).__name__}")
    if mode == "processes":
        try:
            pickle.dumps(handler)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(
                f"udpio: in 'processes' mode the handler must be importable by name (a function at a "
                f"module's top level), which {handler!r} is not: {exc}"
            ) from None


def _socket_class(backend: Optional[str] = None) -> tuple[type[_socket.Socket], str]:
    # The Socket class of `backend`, or of the one udpio uses now (tests
    # point udpio.Socket at the backend under test), and its name.
    import udpio

    if backend is None:
        cls: type[_socket.Socket] = udpio.Socket
        return cls, "python" if cls is _socket.Socket else "native"
    if backend == "python":
        return _socket.Socket, backend
    from udpio import _backend

    return _backend.native_socket(), backend


def _attach_random(sock: socket.socket, members: int) -> None:
    # G7: classic BPF for the reuseport group: A = random(); A %= members;
    # return A (the index of the member that gets the datagram).
    import ctypes

    code = [(0x20, 0, 0, _SKF_AD_RANDOM), (0x94, 0, 0, members), (0x16, 0, 0, 0)]
    program = (ctypes.c_ubyte * (8 * len(code)))(*b"".join(struct.pack("HBBI", *op) for op in code))
    fprog = struct.pack("HP", len(code), ctypes.addressof(program))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        if exc.errno not in (errno.ENOPROTOOPT, errno.EINVAL):
            raise
        why = f"udpio: balance='random' needs SO_ATTACH_REUSEPORT_CBPF: {exc.strerror}"
        raise OSError(exc.errno, why) from None


def _add(a: Stats, b: Stats) -> Stats:
    drops = None if a.kernel_drops is None or b.kernel_drops is None else a.kernel_drops + b.kernel_drops
    return Stats(a.received + b.received, a.sent + b.sent, drops)
