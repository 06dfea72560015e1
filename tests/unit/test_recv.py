"""R1-R8: what recv returns, how long a frame lives, and the read buffers behind it."""

from __future__ import annotations

import errno
import gc
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest

import udpio
from tests.helpers import HANG, join, pair, plain_peer, run_in_thread, wait_blocked
from udpio._pool import BufferPool

MAX_PAYLOAD = {"127.0.0.1": 65507, "::1": 65527}


@contextmanager
def linked(family: str = "127.0.0.1") -> Iterator[tuple[udpio.Socket, udpio.Socket, udpio.Address]]:
    """A receiving and a sending Socket on loopback, and the receiver's address."""
    with pair(family) as (rx, tx):
        dst = rx.local_addr()
        assert dst is not None
        yield rx, tx, dst


def _pattern(size: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(size))


def test_r1_every_size_arrives_exactly(loopback: str) -> None:
    top = MAX_PAYLOAD[loopback]
    sizes = [0, 1, 2, 63, 64, 1472, 1500, 8192, top - 1, top, 0, 5]
    with linked(loopback) as (rx, tx, dst):
        for seed, size in enumerate(sizes):
            payload = _pattern(size, seed)
            assert tx.send(payload, dst) == size
            frame, src = rx.recv(timeout=HANG)
            assert len(frame) == size
            assert bytes(frame) == payload
            assert src[:2] == tx.local_addr()[:2]  # type: ignore[index]


def test_r1_each_frame_comes_with_its_own_source_address(loopback: str) -> None:
    # The native backend reuses the last source's tuple when the next
    # datagram comes from the same place: "the same place" must mean the
    # same host *and* port (and flowinfo and scope for IPv6).
    family = socket.AF_INET6 if ":" in loopback else socket.AF_INET
    with pair(loopback) as (rx, _), plain_peer(family) as a, plain_peer(family) as b:
        dst = rx.local_addr()
        assert dst is not None
        order = [a, a, b, a, b, b, a]
        for i, peer in enumerate(order):
            peer.sendto(bytes([i]), dst[:2])
            frame, src = rx.recv(timeout=HANG)
            assert bytes(frame) == bytes([i])
            assert src == peer.getsockname(), (i, src)


def test_r1_sends_reach_each_destination_given() -> None:
    # The native send caches the last destination it parsed: a new tuple,
    # even an equal-looking one for another port, must be parsed afresh.
    with pair() as (tx, _), plain_peer() as a, plain_peer() as b:
        for i, peer in enumerate([a, a, b, a, b]):
            host, port = peer.getsockname()
            tx.send(bytes([i]), (host, port))
            assert peer.recv(16) == bytes([i])


def test_r1_zero_length_datagram_is_an_empty_frame_not_eof() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"", dst)
        tx.send(b"after", dst)
        frame, _ = rx.recv(timeout=HANG)
        assert len(frame) == 0 and bytes(frame) == b""
        frame, _ = rx.recv(timeout=HANG)
        assert bytes(frame) == b"after"


def test_r1_no_stale_byte_of_a_longer_datagram_is_visible() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"A" * 4000, dst)
        tx.send(b"B" * 3, dst)
        rx.recv(timeout=HANG)
        frame, _ = rx.recv(timeout=HANG)
        assert bytes(frame) == b"BBB"
        with pytest.raises(IndexError):
            frame[3]
        assert b"A" not in bytes(frame)


def test_r1_larger_than_any_datagram_by_construction() -> None:
    from udpio._pool import BUFFER_SIZE

    assert BUFFER_SIZE >= 65535


def test_r2_frame_is_read_only_1d_contiguous_bytes() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"read only", dst)
        frame, _ = rx.recv(timeout=HANG)
        assert isinstance(frame, memoryview)
        assert frame.readonly and frame.ndim == 1 and frame.c_contiguous and frame.format == "B"
        with pytest.raises(TypeError):
            frame[0] = 0
        with pytest.raises(TypeError):
            frame[0:2] = b"xx"
        assert bytes(frame) == b"read only"


@pytest.mark.parametrize("ending", ["frame", "timeout", "closed"])
def test_r3_frame_released_on_next_recv(ending: str) -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"first", dst)
        frame, _ = rx.recv(timeout=HANG)
        assert bytes(frame) == b"first"
        if ending == "frame":
            tx.send(b"second", dst)
            rx.recv(timeout=HANG)
        elif ending == "timeout":
            with pytest.raises(TimeoutError):
                rx.recv(timeout=0)
        else:
            rx.close()
            with pytest.raises(udpio.ClosedError):
                rx.recv()
        with pytest.raises(ValueError, match="released"):
            bytes(frame)


def test_r3_a_kept_result_tuple_is_never_refilled_by_the_next_recv() -> None:
    # Natively recv fills its last tuple again when no one else holds it
    # (no tuple made per datagram). A tuple the caller kept must stay as it
    # was: the same address, and its frame released as R3 says, not swapped
    # for the next datagram's.
    with linked() as (rx, tx, dst):
        src = tx.local_addr()
        tx.send(b"one", dst)
        kept = rx.recv(timeout=HANG)
        tx.send(b"two", dst)
        second = rx.recv(timeout=HANG)
        assert second is not kept
        assert kept[1] == src and len(kept) == 2
        with pytest.raises(ValueError, match="released"):
            bytes(kept[0])
        assert bytes(second[0]) == b"two"
        # Dropped results may be refilled; each call still returns its own datagram.
        for i in range(50):
            tx.send(b"n%d" % i, dst)
            frame, addr = rx.recv(timeout=HANG)
            assert (bytes(frame), addr) == (b"n%d" % i, src)


def test_n4_no_half_made_tuple_is_visible_while_recv_waits() -> None:
    # While recv waits (natively, its old tuple parked for reuse with its
    # items cleared), another thread walks every object the GC tracks and
    # reads every item of each tuple: an empty slot would crash the process.
    with linked() as (rx, tx, dst):
        tx.send(b"first", dst)
        rx.recv(timeout=HANG)  # dropped at once: the next recv may park it
        got: list[bytes] = []
        reader, outcome = run_in_thread(lambda: got.append(bytes(rx.recv(timeout=HANG)[0])), name="reader")
        wait_blocked(reader)
        tuples = [o for o in gc.get_objects() if type(o) is tuple]
        items = [item for t in tuples for item in t]  # an empty slot: a NULL dereferenced
        assert len(items) == sum(len(t) for t in tuples)
        tx.send(b"second", dst)
        join(reader)
        assert outcome.error is None and got == [b"second"]


def test_r3_frame_stays_valid_until_next_recv() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"hold", dst)
        frame, _ = rx.recv(timeout=HANG)
        tx.send(b"next", dst)
        tx.send(b"more", dst)
        assert bytes(frame) == b"hold"  # sends and queued datagrams do not touch it


def test_r3_refused_recv_does_not_release_the_frame() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"keep", dst)
        frame, _ = rx.recv(timeout=HANG)
        with pytest.raises(ValueError):
            rx.recv(timeout=-1)  # bad input: never got the reader role
        assert bytes(frame) == b"keep"


def test_r3_frame_exported_by_caller_stays_valid_and_recv_does_not_fail() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"\x01\x02\x03\x04", dst)
        frame, _ = rx.recv(timeout=HANG)
        unpacker = struct.iter_unpack("B", frame)  # holds a buffer export of the frame itself
        tx.send(b"\xff\xff\xff\xff", dst)
        second, _ = rx.recv(timeout=HANG)  # must not raise BufferError
        assert bytes(second) == b"\xff" * 4
        assert bytes(frame) == b"\x01\x02\x03\x04"  # still valid, not overwritten (R4)
        assert [v for (v,) in unpacker] == [1, 2, 3, 4]


def test_r4_retained_slice_not_overwritten() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"0123456789", dst)
        frame, _ = rx.recv(timeout=HANG)
        kept = frame[2:5]
        for i in range(5):
            tx.send(bytes([65 + i]) * 10, dst)
            rx.recv(timeout=HANG)
        assert bytes(kept) == b"234"


def test_r4_retained_memoryview_of_frame_not_overwritten() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"keep me", dst)
        frame, _ = rx.recv(timeout=HANG)
        view = memoryview(frame)
        tx.send(b"XXXXXXXXXXXXXXXX", dst)
        nxt, _ = rx.recv(timeout=HANG)
        assert bytes(view) == b"keep me"
        assert nxt.obj is not view.obj  # the next datagram went into another buffer


def test_r4_buffer_is_reused_once_nothing_exports_it() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"a", dst)
        first, _ = rx.recv(timeout=HANG)
        owner = first.obj
        tx.send(b"b", dst)
        second, _ = rx.recv(timeout=HANG)
        assert second.obj is owner  # steady state: one buffer, no allocation


@contextmanager
def with_own_pool(max_idle: int = 4) -> Iterator[tuple[udpio.Socket, BufferPool[Any], socket.socket]]:
    """A receiving Socket that draws from a pool of its own, and a plain peer that sends to it."""
    pool = udpio.Socket._make_pool(max_idle=max_idle)
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn.bind(("127.0.0.1", 0))
    rx = udpio.Socket._adopt_unchecked(conn, pool)
    try:
        with plain_peer() as peer:
            peer.connect(conn.getsockname())
            yield rx, pool, peer
    finally:
        rx.close()


def test_r4_exported_buffer_never_returns_to_the_pool() -> None:
    with with_own_pool() as (rx, pool, peer):
        peer.send(b"retained")
        frame, _ = rx.recv(timeout=HANG)
        kept = frame[:3]
        retained = frame.obj
        rx.close()
        with pytest.raises(udpio.ClosedError):
            rx.recv()  # releases the frame; the buffer is still exported by `kept`
        assert all(buf is not retained for buf in pool._idle)
        assert bytes(kept) == b"ret"


def test_r5_close_does_not_pull_the_frame_from_the_handler() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"in the handler", dst)
        frame, _ = rx.recv(timeout=HANG)
        closer, outcome = run_in_thread(rx.close, "closer")
        join(closer)
        assert outcome.error is None
        assert bytes(frame) == b"in the handler"  # the handler finishes reading
        with pytest.raises(udpio.ClosedError):
            rx.recv()
        with pytest.raises(ValueError):
            bytes(frame)  # ... and the next recv released it


def test_r6_pool_never_hands_one_buffer_to_two_owners() -> None:
    pool = udpio.Socket._make_pool(max_idle=3)
    held = [pool.get() for _ in range(5)]
    assert len({id(b) for b in held}) == 5
    for buf in held:
        pool.put(buf)
    again = [pool.get() for _ in range(5)]
    assert len({id(b) for b in again}) == 5


def test_r6_pool_is_bounded() -> None:
    pool = udpio.Socket._make_pool(max_idle=3)
    fresh = [pool.get() for _ in range(10)]
    kept = [pool.put(buf) for buf in fresh]
    assert kept.count(True) == 3
    assert pool.idle_count() == 3


def test_r6_pool_refuses_exported_buffers_and_double_puts() -> None:
    pool = udpio.Socket._make_pool(max_idle=3)
    buf = pool.get()
    view = memoryview(buf)
    assert pool.exported(buf)
    assert pool.put(buf) is False
    view.release()
    assert not pool.exported(buf)
    assert pool.put(buf) is True
    with pytest.raises(RuntimeError, match="twice"):
        pool.put(buf)


def test_r6_pool_is_thread_safe() -> None:
    pool = udpio.Socket._make_pool(max_idle=4)
    errors: list[str] = []
    start = threading.Barrier(8)
    owners: dict[int, int] = {}  # id(buffer) -> the thread holding it
    owners_lock = threading.Lock()
    every_buffer: list[object] = []  # keeps each alive, so no id() is reused

    def worker(tag: int) -> None:
        start.wait()
        for _ in range(500):
            buf = pool.get()
            with owners_lock:
                every_buffer.append(buf)
                if id(buf) in owners:
                    errors.append(f"buffer handed to {tag} while thread {owners[id(buf)]} held it")
                owners[id(buf)] = tag
            with owners_lock:
                del owners[id(buf)]
            pool.put(buf)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        join(thread)
    assert errors == []
    assert pool.idle_count() <= 4


def test_r7_timeout_raises_after_about_t() -> None:
    with pair() as (rx, _):
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"^udpio: the wait for a datagram timed out after 0\.2 s$"):
            rx.recv(timeout=0.2)
        elapsed = time.monotonic() - start
        assert elapsed >= 0.19


def test_r7_zero_timeout_polls() -> None:
    with pair() as (rx, tx):
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0)
        dst = rx.local_addr()
        assert dst is not None
        tx.send(b"queued", dst)
        deadline = time.monotonic() + HANG
        while True:  # loopback delivery is synchronous, but poll with a deadline anyway
            try:
                frame, _ = rx.recv(timeout=0)
                break
            except TimeoutError:
                assert time.monotonic() < deadline
        assert bytes(frame) == b"queued"


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan"), float("-inf")])
def test_r7_negative_timeout_is_value_error(bad: float) -> None:
    with pair() as (rx, tx):
        with pytest.raises(ValueError, match="timeout"):
            rx.recv(timeout=bad)
        dst = rx.local_addr()
        assert dst is not None
        tx.send(b"still usable", dst)
        assert bytes(rx.recv(timeout=HANG)[0]) == b"still usable"


def test_r7_none_blocks_until_datagram() -> None:
    with pair() as (rx, tx):
        reader, outcome = run_in_thread(rx.recv, "reader")
        wait_blocked(reader)
        assert not outcome.done.is_set()
        dst = rx.local_addr()
        assert dst is not None
        tx.send(b"wake", dst)
        join(reader)
        assert outcome.error is None
        frame, _ = cast("tuple[memoryview, udpio.Address]", outcome.value)
        assert bytes(frame) == b"wake"


def _refused_pair() -> tuple[udpio.Socket, tuple[str, int]]:
    """A Socket connected to a loopback port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        dead: tuple[str, int] = gone.getsockname()
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn.bind(("127.0.0.1", 0))
    conn.connect(dead)
    return udpio.wrap_conn(conn), dead


def test_r8_icmp_error_raised_verbatim_and_socket_usable() -> None:
    sock, dead = _refused_pair()
    with sock, plain_peer() as peer:
        sock.send(b"to nobody", dead)
        with pytest.raises(ConnectionRefusedError) as info:
            sock.recv(timeout=HANG)  # the ICMP port-unreachable surfaces here
        assert info.value.errno == errno.ECONNREFUSED
        assert not isinstance(info.value, udpio.ClosedError)
        # Still usable: point it at a live peer through the escape hatch and talk.
        sock.conn().connect(peer.getsockname())
        peer.sendto(b"alive", sock.conn().getsockname())
        frame, src = sock.recv(timeout=HANG)
        assert bytes(frame) == b"alive" and src == peer.getsockname()


def test_r8_icmp_error_wakes_a_recv_that_is_already_waiting() -> None:
    # The error arrives while recv waits in the selector (not on its first
    # try): the wake-up must surface it, not swallow it and wait again.
    sock, dead = _refused_pair()
    with sock:
        reader, outcome = run_in_thread(lambda: sock.recv(timeout=5), "reader")
        wait_blocked(reader)
        sock.send(b"to nobody", dead)  # send may run beside a waiting recv (C2)
        join(reader)
        assert isinstance(outcome.error, ConnectionRefusedError), outcome.error
        assert outcome.error.errno == errno.ECONNREFUSED
        with pytest.raises(TimeoutError):
            sock.recv(timeout=0)  # still usable


def test_r6_p5_read_buffer_keeps_the_pool_size_and_goes_back_on_close() -> None:
    with with_own_pool() as (rx, pool, peer):
        for size in [0, 1, 65507, 3, 1500] * 40:
            peer.send(b"s" * size)
            rx.recv(timeout=HANG)
            assert rx._buf is not None and len(rx._buf) == pool.size  # no growth per datagram, ever
        buf = rx._buf
        rx.close()
        with pytest.raises(udpio.ClosedError):
            rx.recv()  # releases the last frame and hands the buffer back
        assert rx._buf is None
        # Back in the pool (natively with the rest of the batch's buffers).
        assert any(idle is buf for idle in pool._idle)
        assert all(len(idle) == pool.size for idle in pool._idle)


@pytest.mark.parametrize(("size", "max_idle"), [(0, 4), (-1, 4), (64, -1)])
def test_r6_pool_refuses_a_bad_shape(size: int, max_idle: int) -> None:
    with pytest.raises(ValueError, match=f"size={size} max_idle={max_idle}"):
        udpio.Socket._make_pool(size=size, max_idle=max_idle)


def test_r6_pool_of_one_byte_and_no_idle_buffers_is_valid() -> None:
    pool = udpio.Socket._make_pool(size=1, max_idle=0)
    buf = pool.get()
    assert len(buf) == 1 and pool.size == 1
    assert pool.put(buf) is False and pool.idle_count() == 0  # max_idle=0 keeps none


def test_r6_a_double_put_is_refused_naming_it() -> None:
    pool = udpio.Socket._make_pool(max_idle=2)
    buf = pool.get()
    assert pool.put(buf) is True
    with pytest.raises(RuntimeError, match=r"^udpio: buffer returned to the pool twice$"):
        pool.put(buf)


def test_r4_a_slice_kept_across_a_thousand_recvs_is_untouched() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"keep me", dst)
        first, _ = rx.recv(timeout=HANG)
        kept = first[:4]
        for i in range(1000):
            tx.send(bytes([i & 0xFF]) * 64, dst)
            frame, _ = rx.recv(timeout=HANG)
            assert frame == bytes([i & 0xFF]) * 64
        assert bytes(kept) == b"keep"
        with pytest.raises(ValueError):
            first[0]  # the frame itself was released by the next recv (R3)


def test_r3_r7_a_recv_that_times_out_releases_the_frame_and_the_next_recv_works() -> None:
    with linked() as (rx, tx, dst):
        tx.send(b"one", dst)
        frame, _ = rx.recv(timeout=HANG)
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0)  # nothing queued: raises, and still releases `frame`
        with pytest.raises(ValueError):
            bytes(frame)
        for payload in (b"two", b"three"):
            tx.send(payload, dst)
            assert bytes(rx.recv(timeout=HANG)[0]) == payload


@pytest.mark.parametrize("timeout", [float("inf"), 1e10, 2**40])
def test_r7_an_infinite_or_huge_timeout_waits_until_close(timeout: float) -> None:
    # The bug this pins: recv(timeout=inf) raised OverflowError ("timestamp
    # out of range for platform time_t") while send accepted it.
    with udpio.listen("127.0.0.1:0") as sock:
        for call in (lambda: sock.recv(timeout=timeout), lambda: sock.recv_datagram(timeout=timeout)):
            reader, outcome = run_in_thread(call, "reader")
            wait_blocked(reader)
            assert not outcome.done.is_set()
            with udpio.listen("127.0.0.1:0") as peer:
                local = sock.local_addr()
                assert local is not None
                peer.send(b"late", local, timeout=timeout)
            join(reader)
            assert outcome.error is None, outcome.error


@pytest.mark.parametrize("timeout", ["1", b"1", [1], True, 1j])
def test_r7_s4_a_timeout_that_is_not_a_number_is_a_type_error_naming_it(timeout: object) -> None:
    with udpio.listen("127.0.0.1:0") as sock, plain_peer() as peer:
        dst = peer.getsockname()
        calls: list[Callable[[], object]] = [
            lambda: sock.recv(timeout=timeout),  # type: ignore[arg-type]
            lambda: sock.recv_datagram(timeout=timeout),  # type: ignore[arg-type]
            lambda: sock.send(b"x", dst, timeout=timeout),  # type: ignore[arg-type]
            lambda: sock.send_batch([b"x"], dst, timeout=timeout),  # type: ignore[arg-type]
        ]
        for call in calls:
            with pytest.raises(TypeError, match=r"^udpio: timeout must be None or a number >= 0, not "):
                call()
        assert sock.send(b"ok", dst) == 2  # usable after each


@pytest.mark.parametrize("call", ["recv", "recv_datagram", "recv_batch"])
@pytest.mark.parametrize("timeout", [0, -0.0])
def test_r7_a_timeout_says_what_it_waited_for_and_nothing_else(call: str, timeout: float) -> None:
    # A recv_batch timeout said "recv timed out", a timeout of -0.0 "after
    # -0.0 s", and the pure backend's TimeoutError came with a chained
    # BlockingIOError ("During handling of the above exception ...").
    with pair() as (rx, _):
        with pytest.raises(TimeoutError) as info:
            getattr(rx, call)(timeout=timeout)
        assert str(info.value) == "udpio: the wait for a datagram timed out after 0 s"
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__


def test_r3_a_released_frame_fails_every_read_but_compares_unequal() -> None:
    # What the README says, exactly: every read of a released frame raises
    # ValueError; == is quietly False and repr works, as for any released
    # memoryview (a user took the first for a bug of ours).
    with pair() as (rx, tx):
        tx.send(b"one", rx.local_addr())  # type: ignore[arg-type]
        tx.send(b"two", rx.local_addr())  # type: ignore[arg-type]
        frame, _ = rx.recv(timeout=HANG)
        assert frame.tobytes() == b"one"
        rx.recv(timeout=HANG)
        reads: list[Callable[[memoryview], object]] = [
            bytes,
            len,
            lambda f: f[0],
            lambda f: f[1:],
            list,
            lambda f: 1 in f,
            hash,
            bool,
            lambda f: f.tobytes(),
            memoryview,
        ]
        for read in reads:
            with pytest.raises(ValueError, match="released"):
                read(frame)
        one: object = b"one"
        assert (frame == one) is False and frame != one
        assert repr(frame).startswith("<released memory at 0x") and str(frame) == repr(frame)
