"""B3: send_batch sends every frame as one datagram, in order, and an error says how many went out."""

from __future__ import annotations

import errno
import signal
import socket
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Optional

import pytest

import udpio
from tests.helpers import (
    HANG,
    drain_counting_refusals,
    facing_a_peer,
    full_send_buffer,
    has_ipv6,
    held_elsewhere,
    join,
    numbered,
    refuse,
    run_in_thread,
    wait_asleep_on_a_lock,
    wait_blocked,
)

RCVBUF = 8 << 20


def _frames(count: int) -> list[bytes]:
    # Mixed sizes, empty and 8 KiB included, each datagram's bytes its own.
    sizes = [0, 1, 8192, 64, 1472, 3]
    return [bytes([i & 0xFF]) * sizes[i % len(sizes)] for i in range(count)]


@contextmanager
def receiver() -> Iterator[tuple[udpio.Socket, udpio.Address]]:
    with udpio.listen("127.0.0.1:0", rcvbuf=RCVBUF) as rx:
        dst = rx.local_addr()
        assert dst is not None
        yield rx, dst


def _room(rx: udpio.Socket) -> int:
    return int(rx.conn().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


@pytest.mark.parametrize("count", [0, 1, 64, 1000])
def test_b3_send_batch_sends_each_frame_as_one_datagram_in_order(count: int) -> None:
    frames = _frames(count)
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        if sum(len(f) + 1024 for f in frames) > _room(rx) // 2:
            pytest.skip("net.core.rmem_max is too small to queue this burst on loopback")
        assert tx.send_batch(frames, dst) == count
        for expected in frames:
            frame, src = rx.recv(timeout=HANG)
            assert bytes(frame) == expected
            assert src == tx.local_addr()
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0)  # exactly one datagram per frame


def test_b3_any_iterable_of_buffers_and_a_frame_from_recv() -> None:
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        tx.send(b"echo me", dst)
        frame, _ = rx.recv(timeout=HANG)
        batch: list[bytes | bytearray | memoryview] = [bytearray(b"a"), memoryview(b"bc"), frame]
        assert tx.send_batch(iter(batch), dst) == 3
        assert [bytes(rx.recv(timeout=HANG)[0]) for _ in range(3)] == [b"a", b"bc", b"echo me"]


@pytest.mark.parametrize(
    ("bad", "message"), [("text", "buffer protocol, not str"), (memoryview(b"abcd")[::2], "C-contiguous")]
)
def test_b3_a_bad_frame_anywhere_fails_before_anything_is_sent(bad: object, message: str) -> None:
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        with pytest.raises(TypeError, match=rf"frames\[2\] .*{message}") as info:
            tx.send_batch([b"a", b"b", bad, b"d"], dst)  # type: ignore[list-item]
        assert info.value.sent == 0  # type: ignore[attr-defined]
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0.05)  # nothing went out
        assert tx.send_batch([b"ok"], dst) == 1  # the Socket stays usable


@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ is 3.12+")
def test_b3_frames_are_read_once_so_a_frame_that_empties_its_list_changes_nothing_sent() -> None:
    # Asking a frame for its buffer may run Python code that changes the
    # very list passed in. Both backends read the frames once, as the call
    # starts: what is sent is what was passed, and nothing reads past an end.
    batch: list[object] = []

    class Emptier:
        def __buffer__(self, flags: int) -> memoryview:
            batch.clear()
            return memoryview(b"gone")

    batch += [b"a", Emptier(), b"c", b"d"]
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        assert tx.send_batch(batch, dst) == 4  # type: ignore[arg-type]
        assert batch == []
        assert [bytes(rx.recv(timeout=HANG)[0]) for _ in range(4)] == [b"a", b"gone", b"c", b"d"]
        assert tx.send_batch([b"ok"], dst) == 1  # the Socket stays usable
        assert bytes(rx.recv(timeout=HANG)[0]) == b"ok"


def test_b3_frames_are_read_once_so_another_thread_changing_the_list_changes_nothing_sent() -> None:
    # A list another thread appends to while the batch waits for the writer
    # role: the batch is what the list held when the call began.
    frames = [b"one", b"two"]
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        with held_elsewhere(tx._writer):
            waiting, result = run_in_thread(lambda: tx.send_batch(frames, dst), "batch")
            wait_asleep_on_a_lock(waiting)
            frames.append(b"three")
        join(waiting)
        assert result.error is None and result.value == 2
        assert [bytes(rx.recv(timeout=HANG)[0]) for _ in range(2)] == [b"one", b"two"]
        with pytest.raises(TimeoutError):  # and "three" was never sent
            rx.recv(timeout=0)


def test_b3_a_bad_destination_names_it_and_sends_nothing() -> None:
    with udpio.listen("127.0.0.1:0") as tx:
        with pytest.raises(OverflowError, match="bad destination") as info:
            tx.send_batch([b"a"], ("127.0.0.1", 70000))
        assert info.value.sent == 0  # type: ignore[attr-defined]


def test_b3_a_refused_destination_is_reported_with_sent() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        dead = gone.getsockname()
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn.connect(dead)
    with udpio.wrap_conn(conn) as tx:
        tx.send(b"provoke", dead)  # the kernel learns the port is closed
        with pytest.raises(ConnectionRefusedError) as info:
            for _ in range(100):
                tx.send_batch([b"a", b"b"], dead)
        assert info.value.sent in (0, 1, 2)  # type: ignore[attr-defined]


def test_b3_s4_a_full_buffer_waits_times_out_and_wakes_on_close(tmp_path: Path) -> None:
    with full_send_buffer(tmp_path) as (sock, path, _):
        with pytest.raises(TimeoutError, match=r"^udpio: send_batch timed out after 0\.05 s$") as timed_out:
            sock.send_batch([b"a", b"b"], path, timeout=0.05)  # type: ignore[arg-type]
        assert timed_out.value.sent == 0  # type: ignore[attr-defined]
        sender, outcome = run_in_thread(lambda: sock.send_batch([b"a", b"b"], path), "sender")  # type: ignore[arg-type]
        wait_blocked(sender)
        sock.close()
        join(sender)
        assert isinstance(outcome.error, udpio.ClosedError)
        assert outcome.error.sent == 0  # type: ignore[attr-defined]


def test_b3_closed_socket_raises_closed_error() -> None:
    tx = udpio.listen("127.0.0.1:0")
    tx.close()
    with pytest.raises(udpio.ClosedError) as info:
        tx.send_batch([b"a"], ("127.0.0.1", 9))
    assert info.value.sent == 0  # type: ignore[attr-defined]


def test_b1_a_burst_of_mixed_sizes_arrives_exactly_and_in_order() -> None:
    sizes = [0, 1, 4, 64, 1472, 9000, 65507, 100, 3] * 6  # more than one batch, both ends of R1
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        if sum(size + 1024 for size in sizes) > _room(rx) // 2:
            pytest.skip("net.core.rmem_max is too small to queue this burst on loopback")
        sent = [numbered(seq, size) for seq, size in enumerate(sizes)]
        for datagram in sent:
            tx.send(datagram, dst)
        for expected in sent:
            frame, _ = rx.recv(timeout=HANG)
            assert len(frame) == len(expected) and bytes(frame) == expected


def test_b1_r4_slices_kept_across_batch_boundaries_are_never_overwritten() -> None:
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        for round_ in range(4):
            for seq in range(40):  # 40 > the native batch: the burst spans batches
                tx.send(numbered(round_ * 100 + seq, 64), dst)
        kept: list[tuple[memoryview, bytes]] = []
        for _ in range(160):
            frame, _ = rx.recv(timeout=HANG)
            if len(kept) % 2 == 0 or bytes(frame[:4])[-1] % 3 == 0:
                kept.append((frame[:16], bytes(frame[:16])))
        for view, expected in kept:
            assert bytes(view) == expected, "a retained slice was overwritten"


def test_b2_queued_datagrams_come_first_also_with_timeout_0() -> None:
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        for seq in range(5):
            tx.send(numbered(seq, 32), dst)
        assert bytes(rx.recv(timeout=HANG)[0]) == numbered(0, 32)
        for seq in range(1, 5):  # natively these already sit in the Socket's queue
            assert bytes(rx.recv(timeout=0)[0]) == numbered(seq, 32)
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0)


def test_b2_close_discards_what_was_taken_and_not_handed_out() -> None:
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        for seq in range(10):
            tx.send(numbered(seq, 32), dst)
        frame, _ = rx.recv(timeout=HANG)
        closer, _ = run_in_thread(rx.close, "closer")
        join(closer)
        assert bytes(frame) == numbered(0, 32)  # R5: the handler's frame survives close()
        for _ in range(3):
            with pytest.raises(udpio.ClosedError):
                rx.recv(timeout=0)


@pytest.mark.parametrize("call", ["recv", "recv_batch"])
def test_b1_k1_r8_a_kernel_error_in_a_burst_costs_no_datagram(call: str) -> None:
    # Three datagrams queued, then an ICMP error: a plain recvfrom reports
    # the error first; a batch may report it after the datagrams it took
    # (recv_batch returns them, and the next call raises it). Either way
    # every datagram comes out, in order, and the error once.
    with facing_a_peer() as (sock, peer):
        peer_addr = peer.getsockname()
        for seq in range(3):
            peer.sendto(numbered(seq, 16), sock.conn().getsockname())
        peer.close()
        refuse(sock, peer_addr)

        def receive() -> list[bytes]:
            if call == "recv":
                return [bytes(sock.recv(timeout=0.2)[0])]
            return [bytes(d.frame) for d in sock.recv_batch(timeout=0.2)]

        got, refused = drain_counting_refusals(receive)
        assert got == [numbered(seq, 16) for seq in range(3)]
        assert refused == 1


def test_b1_r4_an_export_of_the_whole_buffer_keeps_its_bytes() -> None:
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        tx.send(b"first datagram", dst)
        frame, _ = rx.recv(timeout=HANG)
        whole = memoryview(frame.obj)  # frame.obj: the buffer under the frame
        for seq in range(100):  # several batches later
            tx.send(numbered(seq, 64), dst)
            rx.recv(timeout=HANG)
        assert bytes(whole[:14]) == b"first datagram"


@pytest.mark.parametrize(
    ("sizes", "why"),
    [
        ([100] * 199 + [50], "equal sizes, a shorter last one: UDP GSO natively"),
        ([2000] * 40, "more than one UDP payload's worth: GSO runs split at 65,507 bytes"),
        ([64, 64, 128, 64, 0, 64, 64], "a longer one and an empty one break the runs"),
        ([1, 0], "an empty datagram after a run: its own datagram, not lost in the run"),
        ([64, 64, 0, 0, 64], "empty ones in the middle of equal sizes"),
    ],
    ids=["gso", "gso-split", "mixed", "empty-last", "empty-middle"],
)
def test_b3_b4_every_datagram_arrives_whole_whatever_the_batch_shape(sizes: list[int], why: str) -> None:
    frames = [numbered(seq, size) for seq, size in enumerate(sizes)]
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        assert tx.send_batch(frames, dst) == len(frames), why
        for expected in frames:
            assert bytes(rx.recv(timeout=HANG)[0]) == expected, why
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0)


def test_b4_a_batch_allocates_nothing_per_datagram() -> None:
    # Sending: the frames are handed to the kernel where they lie (iovecs);
    # peak traced memory during a 1,000-datagram batch stays that of a few
    # objects, not a few per datagram. Receiving a burst: once the batch's
    # buffers are in place, nothing accumulates per datagram (P5 per frame).
    frames = [b"b" * 64] * 1000
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        tx.send_batch(frames[:100], dst)  # warm-up: caches, the write path, the pool
        for _ in range(100):
            rx.recv(timeout=HANG)
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            assert tx.send_batch(frames, dst) == 1000
            _, peak = tracemalloc.get_traced_memory()
            for _ in range(1000):
                frame, _ = rx.recv(timeout=HANG)
            del frame
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - before < 16 * 1024, f"send_batch peaked at {peak - before} bytes for 1,000 datagrams"
        assert after - before < 16 * 1024, f"receiving 1,000 datagrams kept {after - before} bytes"


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_b3_c6_a_keyboard_interrupt_while_a_batch_waits_carries_sent(tmp_path: Path) -> None:
    # Ctrl-C lands while send_batch waits for buffer room: the
    # KeyboardInterrupt (a BaseException, not an Exception) still says how
    # many datagrams went out, and the Socket stays usable.
    assert threading.current_thread() is threading.main_thread()
    main = threading.main_thread()

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        raise KeyboardInterrupt

    def interrupt_when_blocked() -> None:
        wait_blocked(main)
        signal.pthread_kill(main.ident or 0, signal.SIGUSR1)

    with full_send_buffer(tmp_path) as (sock, path, sink):
        previous = signal.signal(signal.SIGUSR1, handler)
        try:
            helper = threading.Thread(target=interrupt_when_blocked, name="interrupter", daemon=True)
            helper.start()
            with pytest.raises(KeyboardInterrupt) as info:
                sock.send_batch([b"a" * 10, b"b" * 10], path, timeout=HANG)  # type: ignore[arg-type]
            join(helper)
        finally:
            signal.signal(signal.SIGUSR1, previous)
        assert info.value.sent == 0  # type: ignore[attr-defined]  # B3
        sink.setblocking(False)
        while True:
            try:
                sink.recv(1024)
            except BlockingIOError:
                break
        assert sock.send_batch([b"after"], path, timeout=HANG) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(("family", "largest"), [("127.0.0.1", 65507), ("::1", 65527)])
def test_b3_a_datagram_over_the_protocols_maximum_is_refused_before_anything_is_sent(
    family: str, largest: int
) -> None:
    # The bug this pins: [1 byte, 70,000 bytes, 1 byte] sent the first and
    # then raised EMSGSIZE with .sent == 1.
    if ":" in family and not has_ipv6():
        pytest.skip("no IPv6 loopback")
    host = f"[{family}]" if ":" in family else family
    with udpio.listen(f"{host}:0") as rx, udpio.listen(f"{host}:0") as tx:
        dst = rx.local_addr()
        assert dst is not None
        with pytest.raises(OSError) as info:
            tx.send_batch([b"1", b"x" * (largest + 1), b"3"], dst)
        assert info.value.errno == errno.EMSGSIZE and "frames[1]" in str(info.value)
        assert info.value.sent == 0  # type: ignore[attr-defined]
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0)  # nothing went out
        assert tx.send_batch([b"x" * largest], dst) == 1  # the largest that fits still goes
        assert len(rx.recv(timeout=HANG)[0]) == largest
