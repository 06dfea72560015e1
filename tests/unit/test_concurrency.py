"""C1-C6: one reader, many senders, close from anywhere (threads, signal handlers)."""

from __future__ import annotations

import signal
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Optional, cast

import pytest

import udpio
from tests.helpers import (
    HANG,
    descriptors_closed,
    full_send_buffer,
    join,
    pair,
    plain_peer,
    run_in_thread,
    wait_blocked,
    wait_until,
)

needs_signals = pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")


def test_c1_refusal_says_what_to_do() -> None:
    with udpio.listen("127.0.0.1:0") as sock:
        reader, _ = run_in_thread(sock.recv, "reader")
        wait_blocked(reader)
        with pytest.raises(udpio.ConcurrentRecvError, match="one reader at a time"):
            sock.recv(timeout=0)
        sock.close()
        join(reader)


def test_c1_second_reader_fails_at_once_first_undisturbed() -> None:
    with pair() as (rx, tx):
        reader, outcome = run_in_thread(lambda: rx.recv(timeout=HANG), "reader")
        wait_blocked(reader)
        with pytest.raises(udpio.ConcurrentRecvError):
            rx.recv(timeout=HANG)  # would block for HANG seconds if it were let in
        dst = rx.local_addr()
        assert dst is not None
        tx.send(b"for the first reader", dst)
        join(reader)
        assert outcome.error is None
        frame, _ = cast("tuple[memoryview, udpio.Address]", outcome.value)
        assert bytes(frame) == b"for the first reader"  # no datagram lost to the refused call


def test_c1_ownership_is_atomic_no_datagram_lost_or_duplicated() -> None:
    count, threads_n = 100, 6
    with pair() as (rx, _), plain_peer() as peer:
        rx.conn().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        dst = rx.local_addr()
        assert dst is not None
        got: list[bytes] = []
        refused = [0]
        lock = threading.Lock()
        start = threading.Barrier(threads_n + 1)
        stop = threading.Event()

        def contender() -> None:
            start.wait()
            while not stop.is_set():
                try:
                    frame, _ = rx.recv(timeout=0.01)
                except (udpio.ConcurrentRecvError, TimeoutError) as exc:
                    if isinstance(exc, udpio.ConcurrentRecvError):
                        with lock:
                            refused[0] += 1
                    continue
                data = bytes(frame)
                with lock:
                    got.append(data)

        threads = [threading.Thread(target=contender) for _ in range(threads_n)]
        for thread in threads:
            thread.start()
        start.wait()
        for i in range(count):
            peer.sendto(i.to_bytes(4, "big"), dst)
        wait_until(lambda: len(got) >= count, what="every datagram to be received")
        stop.set()
        for thread in threads:
            join(thread)
        assert sorted(int.from_bytes(d, "big") for d in got) == list(range(count))
        assert refused[0] > 0  # the contenders really did collide


def test_c1_closed_socket_recv_raises_closed_never_concurrent() -> None:
    with pair() as (rx, _):
        reader, outcome = run_in_thread(rx.recv, "reader")
        wait_blocked(reader)
        rx.close()
        join(reader)
        assert isinstance(outcome.error, udpio.ClosedError)
        results: list[BaseException] = []
        start = threading.Barrier(8)

        def late() -> None:
            start.wait()
            try:
                rx.recv()
            except BaseException as exc:
                results.append(exc)

        threads = [threading.Thread(target=late) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            join(thread)
        assert len(results) == 8
        assert all(type(exc) is udpio.ClosedError for exc in results), results


def test_c1_nested_recv_on_the_reading_thread_is_refused() -> None:
    # A signal handler that calls recv while recv runs on the same thread.
    with pair() as (rx, tx):
        dst = rx.local_addr()
        assert dst is not None
        seen: list[BaseException] = []

        def nested(signum: int, frame: Optional[FrameType]) -> None:
            try:
                rx.recv(timeout=0)
            except BaseException as exc:
                seen.append(exc)
            tx.send(b"after the handler", dst)

        with _signal_handler(signal.SIGUSR1, nested):
            _kill_main_when_blocked()
            frame, _ = rx.recv(timeout=HANG)
        assert bytes(frame) == b"after the handler"
        assert len(seen) == 1 and isinstance(seen[0], udpio.ConcurrentRecvError)


def test_c2_many_senders_and_a_reader_at_once() -> None:
    senders, each = 8, 150
    with pair() as (rx, tx):
        rx.conn().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        dst = rx.local_addr()
        assert dst is not None
        got: set[bytes] = set()
        expected = {f"{s}:{i}".encode() for s in range(senders) for i in range(each)}

        def read_all() -> None:
            while len(got) < len(expected):
                frame, _ = rx.recv(timeout=HANG)
                got.add(bytes(frame))

        reader, outcome = run_in_thread(read_all, "reader")
        start = threading.Barrier(senders)

        def send_all(s: int) -> None:
            start.wait()
            for i in range(each):
                assert tx.send(f"{s}:{i}".encode(), dst) == len(f"{s}:{i}")

        threads = [threading.Thread(target=send_all, args=(s,)) for s in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            join(thread)
        join(reader)
        assert outcome.error is None
        assert got == expected


def test_c3_close_from_16_threads_at_once() -> None:
    rx = udpio.listen("127.0.0.1:0")
    reader, outcome = run_in_thread(rx.recv, "reader")
    wait_blocked(reader)
    start = threading.Barrier(16)
    verdicts: list[str] = []
    lock = threading.Lock()

    def closer() -> None:
        start.wait()
        rx.close()
        # The moment any close() returns: the reader is out and every descriptor is gone.
        closed = descriptors_closed(rx)
        # The reader thread holds the reader role until recv has raised;
        # RLock's repr names its owner (other closers may hold it briefly).
        reader_out = f"owner={reader.ident} " not in repr(rx._reader)
        with lock:
            verdicts.append(f"closed={closed} reader_out={reader_out}")

    threads = [threading.Thread(target=closer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        join(thread)
    join(reader)
    assert isinstance(outcome.error, udpio.ClosedError)
    assert set(verdicts) == {"closed=True reader_out=True"}, verdicts
    with pytest.raises(udpio.ClosedError):
        rx.recv()
    with pytest.raises(udpio.ClosedError):
        rx.send(b"x", ("127.0.0.1", 9))


def test_c3_close_waits_for_sends_in_flight() -> None:
    # Senders hammer the socket while it closes: each call must end with its
    # result or ClosedError, never EBADF from a descriptor closed under it.
    with plain_peer() as peer:
        rx = udpio.listen("127.0.0.1:0")
        dst = peer.getsockname()
        errors: list[BaseException] = []
        sent = [0]
        start = threading.Barrier(5)

        def hammer() -> None:
            start.wait()
            while True:
                try:
                    rx.send(b"x", dst)
                    sent[0] += 1
                except udpio.ClosedError:
                    return
                except BaseException as exc:
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        start.wait()
        wait_until(lambda: sent[0] > 200, what="senders to get going")
        rx.close()
        for thread in threads:
            join(thread)
        assert errors == []


class _PausingSocket(socket.socket):
    """A UDP socket whose next sendto/recvfrom_into stops half-way, until released.

    It holds open the window in which a call has committed to the
    descriptor but not finished with it: close() must not free the
    descriptor then (C3), however long the window lasts.
    """

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
        self.armed = ""
        self.entered = threading.Event()
        self.proceed = threading.Event()
        self.fd_during_call = -2

    def _pause(self, name: str) -> None:
        if self.armed == name:
            self.armed = ""
            self.entered.set()
            assert self.proceed.wait(HANG)
            self.fd_during_call = self.fileno()

    def sendto(self, *args: Any) -> int:
        self._pause("sendto")
        return super().sendto(*args)

    def recvfrom_into(self, *args: Any) -> Any:
        self._pause("recvfrom_into")
        return super().recvfrom_into(*args)


@pytest.mark.parametrize("call", ["sendto", "recvfrom_into"])
def test_c3_close_never_frees_the_descriptor_under_a_running_call(call: str, backend: str) -> None:
    if backend == "native":
        pytest.skip(
            "the native backend makes its syscalls on the descriptor in C, not through the socket "
            "object's methods, so there is nothing to pause; its role is held across the syscall "
            "(test_c3_close_waits_for_a_role_holder covers the roles on both backends)"
        )
    conn = _PausingSocket()
    conn.bind(("127.0.0.1", 0))
    sock = udpio.wrap_conn(conn)
    with plain_peer() as peer:
        peer.sendto(b"queued", conn.getsockname())
        conn.armed = call
        if call == "sendto":
            worker, outcome = run_in_thread(lambda: sock.send(b"late", peer.getsockname()), "sender")
        else:
            worker, outcome = run_in_thread(lambda: sock.recv(timeout=HANG), "reader")
        assert conn.entered.wait(HANG)
        closer, closed = run_in_thread(sock.close, "closer")
        # While the call is inside the syscall wrapper, close() must wait.
        # (A correct close() is blocked here for sure; a broken one would
        # free the descriptor at once.)
        closer.join(0.2)
        assert closer.is_alive(), "close() returned while a call was still using the descriptor"
        assert conn.fileno() != -1
        conn.proceed.set()
        join(worker)
        join(closer)
        assert closed.error is None
        assert conn.fd_during_call >= 0  # the call ran on a live descriptor ...
        assert outcome.error is None, outcome.error  # ... and completed normally
        assert descriptors_closed(sock)


def test_c3_close_waits_for_a_role_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    # recv holds the reader role from its first step to its last, its wait
    # included, on both backends (natively the C code calls back into
    # _await_readable while holding it): close() must not release the
    # descriptors until that call lets go.
    with udpio.listen("127.0.0.1:0") as sock:
        entered, proceed = threading.Event(), threading.Event()
        real_wait = sock._await_readable

        def paused_wait(deadline: Optional[float], timeout: Optional[float]) -> None:
            entered.set()
            assert proceed.wait(HANG)
            real_wait(deadline, timeout)

        monkeypatch.setattr(sock, "_await_readable", paused_wait)
        reader, read_out = run_in_thread(sock.recv, "reader")
        assert entered.wait(HANG)
        closer, close_out = run_in_thread(sock.close, "closer")
        closer.join(0.2)  # a correct close() is blocked here for sure
        assert closer.is_alive(), "close() returned while recv still held the reader role"
        assert sock.conn().fileno() != -1
        proceed.set()
        join(reader)
        join(closer)
        assert close_out.error is None
        assert isinstance(read_out.error, udpio.ClosedError)
        assert descriptors_closed(sock)


def test_c3_close_wakes_blocked_recv_and_blocked_send_together(tmp_path: Path) -> None:
    with full_send_buffer(tmp_path) as (sock, path, _):
        reader, read_out = run_in_thread(sock.recv, "reader")
        sender, send_out = run_in_thread(lambda: sock.send(b"y", path), "sender")  # type: ignore[arg-type]
        wait_blocked(reader)
        wait_blocked(sender)
        sock.close()
        assert descriptors_closed(sock)
        join(reader)
        join(sender)
        assert isinstance(read_out.error, udpio.ClosedError)
        assert isinstance(send_out.error, udpio.ClosedError)


def test_c4_close_wakes_blocked_recv_within_milliseconds() -> None:
    latencies = []
    for _ in range(30):
        rx = udpio.listen("127.0.0.1:0")
        woke_at: list[float] = []

        def reader(sock: udpio.Socket = rx, out: list[float] = woke_at) -> None:
            try:
                sock.recv()
            except udpio.ClosedError:
                out.append(time.perf_counter())

        thread = threading.Thread(target=reader)
        thread.start()
        wait_blocked(thread)
        closed_at = time.perf_counter()
        rx.close()
        join(thread)
        assert len(woke_at) == 1
        latencies.append(woke_at[0] - closed_at)
    # C4's target is p99 < 1 ms on an idle machine (the benchmark
    # reports it). Here only a loose bound, for a shared, noisy CI machine:
    # a poll interval or a missed wake-up would take far longer.
    assert statistics.median(latencies) < 0.05, latencies
    assert max(latencies) < 1.0, latencies


@contextmanager
def _signal_handler(signum: int, handler: signal.Handlers | object) -> Iterator[None]:
    previous = signal.signal(signum, handler)  # type: ignore[arg-type]
    try:
        yield
    finally:
        signal.signal(signum, previous)


def _kill_main_when_blocked(signum: int = signal.SIGUSR1) -> threading.Thread:
    """From a helper thread: wait until the main thread waits in select, then signal it."""
    main = threading.main_thread()

    def fire() -> None:
        wait_blocked(main)
        signal.pthread_kill(main.ident or 0, signum)

    helper = threading.Thread(target=fire, name="signaller", daemon=True)
    helper.start()
    return helper


@needs_signals
def test_c5_close_from_signal_handler_on_the_reading_thread() -> None:
    assert threading.current_thread() is threading.main_thread()
    rx = udpio.listen("127.0.0.1:0")

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        rx.close()  # must not deadlock: the interrupted recv is on this thread

    with _signal_handler(signal.SIGUSR1, handler):
        helper = _kill_main_when_blocked()
        with pytest.raises(udpio.ClosedError):
            rx.recv(timeout=HANG)  # a TimeoutError here would mean the close did not wake it
        join(helper)
    assert descriptors_closed(rx)  # released as the interrupted recv unwound


@needs_signals
def test_c5_k1_close_from_signal_handler_on_the_thread_blocked_in_recv_batch() -> None:
    # As for recv: the handler's close() cannot wait for the recv_batch it
    # interrupted, which must release the descriptors as it unwinds.
    rx = udpio.listen("127.0.0.1:0")

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        rx.close()

    with _signal_handler(signal.SIGUSR1, handler):
        helper = _kill_main_when_blocked()
        with pytest.raises(udpio.ClosedError):
            rx.recv_batch(timeout=HANG)
        join(helper)
    assert descriptors_closed(rx)


@needs_signals
def test_c5_close_from_signal_handler_during_blocked_send(tmp_path: Path) -> None:
    with full_send_buffer(tmp_path) as (sock, path, _):

        def handler(signum: int, frame: Optional[FrameType]) -> None:
            sock.close()

        with _signal_handler(signal.SIGUSR1, handler):
            helper = _kill_main_when_blocked()
            with pytest.raises(udpio.ClosedError):
                sock.send(b"y", path, timeout=HANG)  # type: ignore[arg-type]
            join(helper)
        assert descriptors_closed(sock)


@needs_signals
def test_c5_close_from_signal_handler_while_another_thread_reads() -> None:
    rx = udpio.listen("127.0.0.1:0")
    reader, outcome = run_in_thread(rx.recv, "reader")
    wait_blocked(reader)

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        rx.close()

    with _signal_handler(signal.SIGUSR1, handler):
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
        wait_until(lambda: rx.conn().fileno() == -1, what="the handler's close to finish")
    join(reader)
    assert isinstance(outcome.error, udpio.ClosedError)


class _Interrupt(Exception):
    pass


@needs_signals
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, _Interrupt])
def test_c6_exception_from_signal_handler_propagates_and_socket_stays_usable(
    exc_type: type[BaseException],
) -> None:
    def handler(signum: int, frame: Optional[FrameType]) -> None:
        raise exc_type("from the handler")

    with pair() as (rx, tx):
        dst = rx.local_addr()
        assert dst is not None
        with _signal_handler(signal.SIGUSR1, handler):
            helper = _kill_main_when_blocked()
            with pytest.raises(exc_type):
                rx.recv(timeout=HANG)
            join(helper)
        tx.send(b"next datagram", dst)
        frame, _ = rx.recv(timeout=HANG)  # the reader role was released
        assert bytes(frame) == b"next datagram"


@needs_signals
def test_c6_interrupted_wait_is_retried_with_the_deadline_kept() -> None:
    # A signal every 20 ms for about a second: if each one restarted the
    # 0.3 s timeout, recv would return only after the signals stop (>1 s).
    fired = [0]

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        fired[0] += 1
        if fired[0] >= 50:
            signal.setitimer(signal.ITIMER_REAL, 0)

    with pair() as (rx, _), _signal_handler(signal.SIGALRM, handler):
        signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
        try:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                rx.recv(timeout=0.3)
            elapsed = time.monotonic() - start
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    assert fired[0] >= 3  # the wait really was interrupted
    assert 0.29 <= elapsed < 0.9, elapsed


@contextmanager
def _tiny_switch_interval() -> Iterator[None]:
    # Make the interpreter switch threads every microsecond, so a
    # check-then-act window between two bytecodes is actually hit.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _two_readers_at_once() -> None:
    sock = udpio.listen("127.0.0.1:0")
    try:
        start = threading.Barrier(2)

        def enter() -> object:
            start.wait()
            return sock.recv()

        (first, first_out), (second, second_out) = (run_in_thread(enter, f"r{i}") for i in range(2))
        wait_until(lambda: first_out.done.is_set() or second_out.done.is_set(), HANG / 2, "a refusal")
        refused, refused_out, inside = (
            (first, first_out, second) if first_out.done.is_set() else (second, second_out, first)
        )
        join(refused, HANG / 2)
        assert isinstance(refused_out.error, udpio.ConcurrentRecvError), refused_out.error
        assert inside.is_alive(), "both readers returned: neither got in"
    finally:
        sock.close()
    join(first)
    join(second)
    assert {type(first_out.error), type(second_out.error)} == {udpio.ConcurrentRecvError, udpio.ClosedError}


def test_c1_two_readers_entering_at_the_same_instant_one_in_one_refused_at_once() -> None:
    # Nothing arrives: the reader that gets in waits until close(). The
    # other must fail at once; if it waited instead, it would wait for a
    # close() that comes only after it returned, and the wait would time out.
    with _tiny_switch_interval():
        for _ in range(300):
            _two_readers_at_once()


def test_c3_simultaneous_closes_never_raise_nor_touch_a_released_descriptor() -> None:
    closers = 4
    with _tiny_switch_interval():
        for _ in range(500):
            sock = udpio.listen("127.0.0.1:0")
            start = threading.Barrier(closers)
            errors: list[BaseException] = []

            def close(
                sock: udpio.Socket = sock,
                start: threading.Barrier = start,
                errors: list[BaseException] = errors,
            ) -> None:
                start.wait()
                try:
                    sock.close()
                except BaseException as exc:  # a write to a released wake-up raises EBADF here
                    errors.append(exc)

            threads = [threading.Thread(target=close) for _ in range(closers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                join(thread)
            assert errors == []
            assert descriptors_closed(sock)


def test_c2_c5_a_role_taken_twice_by_one_thread_is_held_until_released_twice() -> None:
    # A Socket's roles are re-entrant for one caller: a signal handler on the
    # sending thread sends too (C5). Each acquire counts; only the last
    # release frees the role. (Both backends: an RLock, the C Role.)
    role = udpio.Socket._new_role()

    def other_thread_takes_it() -> bool:
        taken: list[bool] = []

        def take() -> None:
            got = role.acquire(False)
            taken.append(got)
            if got:
                role.release()

        thread = threading.Thread(target=take, name="other")
        thread.start()
        join(thread)
        return taken[0]

    assert role.acquire() and role.acquire()
    role.release()
    assert role._is_owned()  # type: ignore[attr-defined]  # both kinds have it
    assert not other_thread_takes_it(), "one release of two freed the role"
    role.release()
    assert not role._is_owned()  # type: ignore[attr-defined]
    assert other_thread_takes_it(), "two releases of two did not free the role"
    with pytest.raises(RuntimeError):
        role.release()  # a release too many is refused, as RLock does


def _contend(role: Any, threads: int, rounds: int, timeout: Optional[float]) -> tuple[int, int, int]:
    # Every thread takes the role `rounds` times (blocking, or with
    # `timeout`), and inside it checks that it is alone and adds one to a
    # counter in two steps. Returns (counted, taken, gave up).
    inside = [0]
    counter = [0]
    overlaps: list[int] = []
    taken = [0]
    gave_up = [0]
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(rounds):
            got = role.acquire() if timeout is None else role.acquire(True, timeout)
            if not got:
                gave_up[0] += 1  # the GIL makes += safe enough for a count of the losers
                continue
            try:
                inside[0] += 1
                if inside[0] != 1:
                    overlaps.append(inside[0])
                value = counter[0]
                counter[0] = value + 1
                taken[0] += 1
                inside[0] -= 1
            finally:
                role.release()

    # Daemons: a thread that a lost wake-up left asleep must not keep the run alive.
    workers = [threading.Thread(target=work, name=f"contender-{i}", daemon=True) for i in range(threads)]
    with _tiny_switch_interval():
        for worker in workers:
            worker.start()
        for worker in workers:
            join(worker)  # a waiter that slept through a release hangs here
    assert overlaps == [], "two threads held the role at once"
    return counter[0], taken[0], gave_up[0]


def test_c2_c3_a_role_many_threads_wait_for_admits_one_at_a_time_and_wakes_every_waiter() -> None:
    # The roles are taken without a lock call (natively one compare-and-swap)
    # and only a thread that must wait sleeps: the writer role between
    # senders, the reader role for close(). No holder may be doubled, and no
    # waiter may sleep through the release that freed it (a lost wake-up
    # hangs a thread: join() fails the test).
    role = udpio.Socket._new_role()
    counted, taken, gave_up = _contend(role, threads=4, rounds=3000, timeout=None)
    assert (counted, taken, gave_up) == (12000, 12000, 0)
    assert role.acquire(False), "the role was left taken"
    role.release()


def test_c2_s4_waiters_that_give_up_leave_no_other_waiter_asleep() -> None:
    # Waiters with a short timeout give up while others wait without one: a
    # wake-up a quitter took must not leave the role free and a patient
    # waiter asleep. Everyone finishes; the counts add up.
    role = udpio.Socket._new_role()
    counted, taken, gave_up = _contend(role, threads=4, rounds=2000, timeout=0.0005)
    assert counted == taken and taken + gave_up == 8000
    patient = _contend(role, threads=3, rounds=2000, timeout=None)
    assert patient == (6000, 6000, 0)


def test_c3_a_waiter_is_woken_by_the_release_not_by_its_timeout() -> None:
    # close() waits for the reader role without a timeout: the reader's
    # release must wake it at once, and a waiter with a timeout gives up
    # after about that long, holding nothing.
    role = udpio.Socket._new_role()
    assert role.acquire()
    began = time.monotonic()
    assert not _take_on_another_thread(role, timeout=0.2)
    assert 0.15 <= time.monotonic() - began < HANG
    got = threading.Event()
    woken_after: list[float] = []

    def wait() -> None:
        assert role.acquire()
        woken_after.append(time.monotonic() - released_at[0])
        role.release()
        got.set()

    released_at = [0.0]
    waiter = threading.Thread(target=wait, name="waiter", daemon=True)
    waiter.start()
    wait_until(lambda: not _take_on_another_thread(role, timeout=0), what="the role to stay taken")
    # Give the waiter time to fall asleep in acquire(). Not a synchronisation:
    # the outcome is the same whether it got there or not (a waiter that
    # slept through the release hangs and fails join()); this only makes the
    # wake-up path the one usually taken.
    time.sleep(0.05)
    released_at[0] = time.monotonic()
    role.release()
    assert got.wait(HANG)
    join(waiter)
    assert woken_after[0] < 1.0  # C4's loose bound: woken, not polled


def _take_on_another_thread(role: Any, timeout: float) -> bool:
    result: list[bool] = []

    def take() -> None:
        got = role.acquire(True, timeout) if timeout > 0 else role.acquire(False)
        result.append(got)
        if got:
            role.release()

    thread = threading.Thread(target=take, name="taker", daemon=True)
    thread.start()
    join(thread)
    return result[0]


@needs_signals
def test_c2_c5_a_send_from_a_signal_handler_keeps_the_waiting_sends_role(tmp_path: Path) -> None:
    # The main thread's send waits for room; a signal handler on that thread
    # sends as well (re-entering the writer role) and gives up at once. The
    # role must still be the waiting send's afterwards: no other thread's
    # send may get in, and the waiting send finishes without an error.
    assert threading.current_thread() is threading.main_thread()
    with full_send_buffer(tmp_path) as (sock, path, sink):
        handler_saw: list[BaseException] = []
        role_free_after_handler: list[bool] = []
        handled = threading.Event()

        def handler(signum: int, frame: Optional[FrameType]) -> None:
            try:
                sock.send(b"from the handler", path, timeout=0)  # type: ignore[arg-type]
            except TimeoutError as exc:  # the buffer is still full
                handler_saw.append(exc)
            handled.set()

        def signal_then_drain() -> None:
            main = threading.main_thread()
            wait_blocked(main)
            signal.pthread_kill(main.ident or 0, signal.SIGUSR1)
            assert handled.wait(HANG)
            wait_blocked(main)  # the interrupted send waits again
            got = sock._writer.acquire(False)
            role_free_after_handler.append(got)
            if got:
                sock._writer.release()
            sink.setblocking(False)
            while True:  # make room: the waiting send goes out
                try:
                    sink.recv(1024)
                except BlockingIOError:
                    break

        with _signal_handler(signal.SIGUSR1, handler):
            helper = threading.Thread(target=signal_then_drain, name="drainer", daemon=True)
            helper.start()
            assert sock.send(b"waited", path, timeout=HANG) == 6  # type: ignore[arg-type]
            join(helper)
        assert len(handler_saw) == 1
        assert role_free_after_handler == [False], "the handler's release freed the waiting send's role"


def test_c1_the_refusal_is_the_reader_roles_own_test() -> None:
    # Deterministic form of the race the two-readers test hunts for: another
    # thread holds the reader role (as a first recv does from its acquire to
    # its syscall), and recv must be refused at once. A check of anything
    # but the role itself (a flag set after a check) lets this recv in, to
    # wait for the role: then it is not refused, every time.
    with udpio.listen("127.0.0.1:0") as sock:
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with sock._reader:
                holding.set()
                release.wait(HANG)

        holder = threading.Thread(target=hold, name="holder")
        holder.start()
        try:
            assert holding.wait(HANG)
            reader, outcome = run_in_thread(lambda: sock.recv(timeout=HANG), "second reader")
            refused_at_once = outcome.done.wait(HANG / 2)
        finally:
            release.set()
            join(holder)
        sock.close()
        join(reader)
        assert refused_at_once, "recv waited for the role instead of refusing"
        assert isinstance(outcome.error, udpio.ConcurrentRecvError), outcome.error
