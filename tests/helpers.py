"""Shared test helpers: descriptor counts, bounded joins and deadline polling.

Every thread a test starts is joined with a timeout and the test fails if
it is still alive; every wait for "a moment" polls with a deadline. No
test sleeps to synchronise.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

import udpio

T = TypeVar("T")

#: Generous bound for anything that should take microseconds: the CI machine
#: is shared and noisy, so a bound only catches hangs, not slowness.
HANG = 10.0


def fd_count() -> int:
    """How many descriptors this process has open (Linux /proc, else /dev/fd)."""
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return len(os.listdir(path))
    raise RuntimeError("no way to count descriptors on this platform")


def open_fds() -> set[int]:
    """The descriptor numbers open now."""
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return {int(name) for name in os.listdir(path)}
    raise RuntimeError("no way to list descriptors on this platform")


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def join(thread: threading.Thread, timeout: float = HANG) -> None:
    """Join ``thread`` or fail the test if it is still running after ``timeout``."""
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"thread {thread.name} still running after {timeout} s (hang)")


def wait_until(predicate: Callable[[], bool], timeout: float = HANG, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.001)


class Outcome:
    """What a call on another thread returned or raised."""

    def __init__(self) -> None:
        self.value: object = None
        self.error: BaseException | None = None
        self.done = threading.Event()


def run_in_thread(fn: Callable[[], object], name: str = "worker") -> tuple[threading.Thread, Outcome]:
    """Start ``fn`` on a daemon thread; the Outcome records its result or exception."""
    outcome = Outcome()

    def body() -> None:
        try:
            outcome.value = fn()
        except BaseException as exc:  # recorded for the test to assert on
            outcome.error = exc
        finally:
            outcome.done.set()

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread, outcome


def thread_is_waiting_in_select(thread: threading.Thread) -> bool:
    """Whether ``thread`` is parked in a selector wait (its frame stack shows select)."""
    import sys

    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        # udpio._socket._wait: parked in the selector. (Under mutmut the
        # function's body runs as x__wait__mutmut_orig or _N.)
        if frame.f_code.co_name == "_wait" or frame.f_code.co_name.startswith("x__wait__mutmut"):
            return True
        frame = frame.f_back
    return False


def wait_blocked(thread: threading.Thread) -> None:
    """Wait until ``thread`` is blocked in a udpio selector wait (or fail)."""
    wait_until(lambda: thread_is_waiting_in_select(thread), what=f"{thread.name} to block in select")


def report_queued(sock: udpio.Socket) -> bool:
    """Whether the kernel holds a report for ``sock`` (POLLERR), without taking it (E)."""
    poller = select.poll()
    poller.register(sock.conn().fileno(), 0)
    return any(event & select.POLLERR for _, event in poller.poll(0))


def reports_until(sock: udpio.Socket, count: int) -> list[udpio.PeerError]:
    """``sock.peer_errors()`` polled until ``count`` reports came (each call forgets what it returned)."""
    got: list[udpio.PeerError] = []

    def enough() -> bool:
        got.extend(sock.peer_errors())
        return len(got) >= count

    wait_until(enough, what=f"{count} reports")
    return got


def wait_asleep_on_a_lock(thread: threading.Thread) -> None:
    """Wait until ``thread`` sleeps in the kernel on a lock (a futex: a role it waits for), or fail."""

    def asleep() -> bool:
        with open(f"/proc/self/task/{thread.native_id}/wchan") as wchan:
            return "futex" in wchan.read()

    wait_until(asleep, what=f"{thread.name} to sleep on a lock")


@contextmanager
def pair(family: str = "127.0.0.1") -> Iterator[tuple[udpio.Socket, udpio.Socket]]:
    """Two bound udpio Sockets on loopback, closed on exit."""
    host = f"[{family}]" if ":" in family else family
    a = udpio.listen(f"{host}:0")
    try:
        b = udpio.listen(f"{host}:0")
        try:
            yield a, b
        finally:
            b.close()
    finally:
        a.close()


@contextmanager
def plain_peer(family: int = socket.AF_INET) -> Iterator[socket.socket]:
    """A plain blocking UDP socket on loopback, for talking to a udpio Socket."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, 0))
        sock.settimeout(HANG)
        yield sock
    finally:
        sock.close()


def has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def descriptors_closed(sock: udpio.Socket) -> bool:
    """Whether the socket, its selectors and both wake-up ends are all closed.

    Looks at the objects (white-box) rather than at descriptor numbers,
    which the kernel hands out again at once to whoever opens next.
    """
    wakeup = sock._wakeup
    selectors = [sock._rsel] + ([sock._wsel] if sock._wsel is not None else [])
    return (
        sock.conn().fileno() == -1
        and all(sel.get_map() is None for sel in selectors)
        and wakeup._reader.fileno() == -1
        and wakeup._writer.fileno() == -1
    )


@contextmanager
def full_send_buffer(tmp_path: object) -> Iterator[tuple[udpio.Socket, str, socket.socket]]:
    """A Socket whose next send must wait, asleep: a Unix datagram peer that never reads.

    UDP over loopback drops datagrams instead of blocking the sender, so the
    only honest way to make the kernel say "would block" is a datagram
    socket family with flow control. The Socket's descriptor is *connected*
    to the sink: only then does poll() report it unwritable while the sink's
    queue is full, so a waiting send sleeps in the selector (an unconnected
    one is reported writable and would spin). ``Socket._adopt_unchecked``
    accepts it. Yields the Socket, the sink's path (the destination) and the
    sink.
    """
    path = os.path.join(str(tmp_path), "sink")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        conn.connect(path)
        sock = udpio.Socket._adopt_unchecked(conn)
    except BaseException:
        conn.close()
        sink.close()
        raise
    try:
        deadline = time.monotonic() + HANG
        while True:
            try:
                conn.sendto(b"x" * 512, path)
            except BlockingIOError:
                break
            assert time.monotonic() < deadline, "the sink never filled"
        yield sock, path, sink
    finally:
        sock.close()
        sink.close()
        os.unlink(path)


@contextmanager
def held_elsewhere(role: object) -> Iterator[None]:
    """``role`` (a Socket's ``_reader`` or ``_writer``) held by another thread for the block.

    The block starts once the other thread holds it; leaving the block lets
    it go and joins that thread.
    """
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with role:  # type: ignore[attr-defined]  # a role: RLock or _speedups.Role
            holding.set()
            release.wait(HANG)

    holder = threading.Thread(target=hold, name="role-holder")
    holder.start()
    try:
        assert holding.wait(HANG), "the other thread never got the role"
        yield
    finally:
        release.set()
        join(holder)


def thread_cpu_seconds(thread: threading.Thread) -> float:
    """CPU time ``thread`` has used so far (Linux: its per-thread clock)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def numbered(seq: int, size: int) -> bytes:
    """A datagram of ``size`` bytes: its sequence number, then bytes that differ per datagram."""
    body = bytes((seq * 7 + i) & 0xFF for i in range(max(0, size - 4)))
    return (seq.to_bytes(4, "big") + body)[:size] if size >= 4 else bytes([seq & 0xFF]) * size


#: linux/udp.h: the socket module does not name these.
UDP_SEGMENT = 103
UDP_GRO = 104


def send_joined(sender: socket.socket, payloads: list[bytes], dst: udpio.Address) -> None:
    """Send ``payloads`` in one sendmsg with UDP GSO, as a GSO sender would.

    The kernel cuts the bytes into one datagram per payload; on loopback it
    hands them whole to a receiver that has UDP GRO on (one read), and one by
    one to any other. Every payload but the last must have the same size;
    the last may be shorter. Uses only the socket module, so it does not
    depend on the send_batch under test.
    """
    size = len(payloads[0])
    if not all(len(p) == size for p in payloads[:-1]) or not 0 < len(payloads[-1]) <= size:
        raise ValueError("UDP GSO needs equal sizes, the last no longer and not empty")
    cmsg = (socket.IPPROTO_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))
    sender.sendmsg([b"".join(payloads)], [cmsg], 0, dst)


def gro_is_on(sock: udpio.Socket) -> bool:
    """Whether the kernel may join datagrams for ``sock`` (its UDP_GRO option)."""
    return bool(sock.conn().getsockopt(socket.IPPROTO_UDP, UDP_GRO))


@contextmanager
def facing_a_peer() -> Iterator[tuple[udpio.Socket, socket.socket]]:
    """A udpio Socket adopted from a socket connected to a plain peer, and the peer.

    Close the peer, then ``refuse(sock, peer_addr)``: the kernel answers
    with port unreachable, which the Socket's next reads report as
    ``ConnectionRefusedError`` (R8).
    """
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("127.0.0.1", 0))
        conn.bind(("127.0.0.1", 0))
        conn.connect(peer.getsockname())
    except BaseException:
        peer.close()
        conn.close()
        raise
    with peer, udpio.wrap_conn(conn) as sock:
        yield sock, peer


def refuse(sock: udpio.Socket, peer_addr: tuple[str, int]) -> None:
    """Send to the closed peer: the kernel queues an ICMP error for ``sock``."""
    sock.send(b"to a closed port", peer_addr)


def drain_counting_refusals(receive: Callable[[], list[bytes]]) -> tuple[list[bytes], int]:
    """Call ``receive`` until it times out; what it returned, and how many times it was refused."""
    got: list[bytes] = []
    refused = 0
    while True:
        try:
            got += receive()
        except ConnectionRefusedError:
            refused += 1
        except TimeoutError:
            return got, refused


def build_shim(folder: Path, source: str) -> Path:
    """Compile ``source`` (C) into a shared object to preload into a child; skip without a compiler."""
    import pytest

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the preloaded shim")
    (folder / "shim.c").write_text(source)
    library = folder / "shim.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(folder / "shim.c"), "-ldl"],
        check=True,
        timeout=120,
    )
    return library


def preloading(env: dict[str, str], shim: Path) -> dict[str, str]:
    """``env`` with ``shim`` preloaded after what is preloaded already (ASan's runtime stays first)."""
    return {**env, "LD_PRELOAD": " ".join(filter(None, [env.get("LD_PRELOAD", ""), str(shim)]))}


#: Where the udpio under test lives. Children run there: ``python -m`` and
#: ``-c`` put the working directory first on sys.path, and a source checkout
#: there would shadow the installed package (and its built extension).
PACKAGE_ROOT = str(Path(udpio.__file__).resolve().parents[1])


def child_env() -> dict[str, str]:
    # The child imports the udpio under test, on the backend under test.
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    if udpio.BACKEND == "python":
        env["UDPIO_NO_EXTENSIONS"] = "1"
    else:
        env.pop("UDPIO_NO_EXTENSIONS", None)
    return env


@contextmanager
def python_child(
    *args: str,
    stderr: int = subprocess.PIPE,
    env: dict[str, str] | None = None,
    cwd: str = PACKAGE_ROOT,
    runner: tuple[str, ...] = (),
    pass_fds: tuple[int, ...] = (),
) -> Iterator[subprocess.Popen[str]]:
    """``sys.executable`` with ``args``, on the udpio and backend under test; always reaped.

    Text pipes for stdin and stdout (and stderr unless told otherwise);
    killed on the way out if it is still running, so a failing test leaves
    no process. ``runner`` goes before the interpreter (``ip netns exec
    NS``); ``pass_fds`` are inherited.
    """
    proc = subprocess.Popen(
        [*runner, sys.executable, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=child_env() if env is None else env,
        cwd=cwd,
        pass_fds=pass_fds,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=HANG)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def readline_within(proc: subprocess.Popen[str], timeout: float) -> str:
    # readline() could block forever on a silent child: read on a thread, join with a bound.
    assert proc.stdout is not None
    stdout = proc.stdout
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    reader.start()
    join(reader, timeout)
    return result[0]


def in_sigwait(pid: int, tid: int) -> bool:
    # While in sigwait the kernel unblocks the awaited signals for the wait
    # (SigBlk no longer shows them), so ask where the thread sleeps instead.
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{tid}/wchan") as wchan:
            if "sigtimedwait" in wchan.read():
                return True
        time.sleep(0.001)
    return False


def blocked_signals(pid: int, tid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{tid}/status") as status:
        for line in status:
            if line.startswith("SigBlk:"):
                mask = int(line.split()[1], 16)
                return {sig for sig in range(1, 65) if mask >> (sig - 1) & 1}
    raise AssertionError("no SigBlk line")


def public_names() -> dict[str, list[str]]:
    """Every public name of the package: ``udpio.__all__``, and for each public
    class its public attributes (those defined by udpio's own classes, not
    inherited from ``object``, ``tuple`` or ``Exception``), as
    ``{"udpio.Socket": ["close", ...], "udpio.listen": [], ...}``. Taken from
    the package itself, so a new public name is seen without a list kept by
    hand."""
    names: dict[str, list[str]] = {}
    for name in udpio.__all__:
        obj = getattr(udpio, name)
        members: set[str] = set()
        if isinstance(obj, type):
            for klass in obj.__mro__:
                if klass.__module__.split(".")[0] == "udpio":
                    members |= {m for m in vars(klass) if not m.startswith("_")}
        names[f"udpio.{name}"] = sorted(members)
    return names


# -- real clients from Debian's packages -------------------------------------


def dig(*args: str, runner: tuple[str, ...] = ()) -> str:
    """``dig +short`` of an A query, in ``runner`` (e.g. ``ip netns exec NS``); its answer."""
    result = subprocess.run(
        [*runner, "dig", *args, "x.example.", "A", "+short", "+tries=1", "+time=3"],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    return result.stdout.strip() or f"(no answer: exit {result.returncode}: {result.stdout}{result.stderr})"


def need_dig() -> None:
    if shutil.which("dig") is None:
        if os.environ.get("UDPIO_TEST_REQUIRE_TOOLS"):
            pytest.fail("dig must be installed here (Debian: dnsutils)")
        pytest.skip("needs dig (Debian: dnsutils)")


def need_dnsperf() -> None:
    if shutil.which("dnsperf") is None:
        if os.environ.get("UDPIO_TEST_REQUIRE_TOOLS"):
            pytest.fail("dnsperf must be installed here (Debian: dnsperf)")
        pytest.skip("needs dnsperf (Debian: dnsperf)")
