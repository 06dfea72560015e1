"""B3: send_batch sends every frame as one datagram, in order, and an error says how many went out."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import udpio
from tests.helpers import HANG, full_send_buffer, join, run_in_thread, wait_blocked

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


def test_b3_a_bad_destination_names_it_and_sends_nothing() -> None:
    with udpio.listen("127.0.0.1:0") as tx:
        with pytest.raises(OverflowError, match="bad destination") as info:
            tx.send_batch([b"a"], ("127.0.0.1", 70000))
        assert info.value.sent == 0  # type: ignore[attr-defined]


def test_b3_s5_a_kernel_error_part_way_says_how_many_went_out() -> None:
    with receiver() as (rx, dst), udpio.listen("127.0.0.1:0") as tx:
        with pytest.raises(OSError) as info:
            tx.send_batch([b"a", b"b", b"x" * 70000, b"d"], dst)  # the third is too big
        assert info.value.errno == errno.EMSGSIZE
        assert info.value.sent == 2  # type: ignore[attr-defined]
        assert [bytes(rx.recv(timeout=HANG)[0]) for _ in range(2)] == [b"a", b"b"]
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0.05)
        # The caller resends from .sent on: nothing is lost, nothing doubled.
        assert tx.send_batch([b"x" * 100, b"d"], dst) == 2


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
