"""B1 with UDP GRO: what the kernel joins into one read, recv hands out one datagram at a time.

A GSO sender's datagrams reach a loopback receiver that has UDP GRO on as
one read (the kernel never cuts them apart). The native Socket turns GRO on
and splits each read by the segment size the kernel reports; the pure one
reads one datagram per call, so it turns GRO off. Either way every R rule
holds per datagram, which is what these tests check on both backends; the
natively-only tests prove the joined path was taken, so the others cannot
pass by accident on a receiver that never saw a joined read.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import udpio
from tests.helpers import HANG, UDP_GRO, gro_is_on, numbered, send_joined
from udpio._gro import set_gro

RCVBUF = 8 << 20


def _joined(first: int, size: int, count: int, last: int) -> list[bytes]:
    """``count`` numbered datagrams of ``size`` bytes, the last of ``last`` bytes."""
    return [numbered(first + i, size if i < count - 1 else last) for i in range(count)]


@contextmanager
def gso_pair(host: str = "127.0.0.1") -> Iterator[tuple[udpio.Socket, socket.socket, tuple[str, int]]]:
    """A udpio receiver and a plain sender that can send with UDP GSO (or skip)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listen_on = f"[{host}]:0" if ":" in host else f"{host}:0"
    with udpio.listen(listen_on, rcvbuf=RCVBUF) as rx, socket.socket(family, socket.SOCK_DGRAM) as tx:
        tx.bind((host, 0))
        dst = rx.local_addr()
        assert dst is not None
        try:
            send_joined(tx, [b"probe", b"pr"], dst)
        except OSError as exc:
            pytest.skip(f"this kernel has no UDP GSO to send joined datagrams with: {exc}")
        assert bytes(rx.recv(timeout=HANG)[0]) == b"probe"
        assert bytes(rx.recv(timeout=HANG)[0]) == b"pr"
        yield rx, tx, dst[:2]


def _kernel_has_gro() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.setsockopt(socket.IPPROTO_UDP, UDP_GRO, 1)
        except OSError:
            return False
    return True


def _receive(rx: udpio.Socket, count: int) -> list[tuple[bytes, udpio.Address]]:
    return [(bytes(frame), src) for frame, src in (rx.recv(timeout=HANG) for _ in range(count))]


# segment size, datagrams, size of the last: every shape the kernel may join
SHAPES = [
    (1, 100, 1),
    (64, 64, 64),
    (64, 65, 4),
    (1000, 10, 1),
    (1472, 44, 300),
    (32000, 2, 1499),
    (4, 128, 4),
]


@pytest.mark.parametrize(("size", "count", "last"), SHAPES)
def test_b1_r1_gro_joined_datagrams_come_out_one_per_recv_exactly(
    loopback: str, size: int, count: int, last: int
) -> None:
    with gso_pair(loopback) as (rx, tx, dst):
        sent = _joined(0, size, count, last)
        try:
            send_joined(tx, sent, dst)
        except OSError as exc:
            if count <= 64:
                raise
            pytest.skip(f"this kernel's UDP GSO takes at most 64 datagrams per send: {exc}")
        tx.sendto(b"after", dst)  # a plain datagram behind the joined ones
        tx.sendto(b"", dst)  # and an empty one: a frame of length 0
        got = _receive(rx, count + 2)
        assert [data for data, _ in got] == [*sent, b"after", b""]
        assert {src[:2] for _, src in got} == {tx.getsockname()[:2]}
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0)  # exactly one frame per datagram


def test_b1_gro_two_senders_interleaved_each_frame_with_its_own_source() -> None:
    with gso_pair() as (rx, tx, dst), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))
        expected: list[tuple[bytes, object]] = []
        for round_ in range(6):
            a = _joined(round_ * 100, 48, 7, 5)
            b = _joined(round_ * 100 + 50, 200, 3, 200)
            send_joined(tx, a, dst)
            send_joined(other, b, dst)
            expected += [(d, tx.getsockname()) for d in a] + [(d, other.getsockname()) for d in b]
        assert _receive(rx, len(expected)) == expected


def test_b1_gro_joined_datagrams_share_one_read_natively() -> None:
    # The proof that the tests above exercise the split: natively the kernel
    # joins them (one buffer under all the frames); the pure Socket turned
    # GRO off and gets one read per datagram (a buffer each time, reused).
    with gso_pair() as (rx, tx, dst):
        send_joined(tx, _joined(0, 100, 20, 100), dst)
        buffers = set()
        for _ in range(20):
            frame, _ = rx.recv(timeout=HANG)
            buffers.add(id(frame.obj))
        assert rx._gro is gro_is_on(rx)  # what recv believes is what the kernel does
        if udpio.BACKEND == "python":
            assert not gro_is_on(rx)
        elif not _kernel_has_gro():
            pytest.skip("this kernel has no UDP GRO: every datagram is its own read")
        else:
            assert gro_is_on(rx), "the native Socket turns UDP GRO on where the kernel has it"
            assert len(buffers) == 1, "the kernel joined 20 datagrams; recv must split one read"


def test_b1_r3_r4_gro_each_joined_frame_is_released_and_slices_kept_apart() -> None:
    with gso_pair() as (rx, tx, dst):
        kept: list[tuple[memoryview, bytes]] = []
        previous = None
        for round_ in range(40):  # 40 joined reads: more than one batch of reads
            send_joined(tx, _joined(round_ * 10, 64, 10, 30), dst)
            for i in range(10):
                frame, _ = rx.recv(timeout=HANG)
                assert bytes(frame) == numbered(round_ * 10 + i, 64 if i < 9 else 30)
                if previous is not None:
                    with pytest.raises(ValueError):
                        bytes(previous)  # R3: released by this recv, though its buffer lives on
                previous = frame
                if i % 3 == 0:
                    kept.append((frame[2:40], bytes(frame[2:40])))
        for view, expected in kept:
            assert bytes(view) == expected, "a retained slice of a joined read was overwritten"


def test_b2_gro_timeout_0_returns_the_rest_of_a_joined_read_first() -> None:
    with gso_pair() as (rx, tx, dst):
        sent = _joined(0, 32, 12, 32)
        send_joined(tx, sent, dst)
        assert bytes(rx.recv(timeout=HANG)[0]) == sent[0]
        assert [bytes(rx.recv(timeout=0)[0]) for _ in range(11)] == sent[1:]
        with pytest.raises(TimeoutError):
            rx.recv(timeout=0)


def test_b2_r5_gro_close_discards_the_rest_of_a_joined_read() -> None:
    with gso_pair() as (rx, tx, dst):
        sent = _joined(0, 32, 12, 32)
        send_joined(tx, sent, dst)
        frame, _ = rx.recv(timeout=HANG)
        rx.close()
        assert bytes(frame) == sent[0]  # R5: the handler's frame survives close()
        with pytest.raises(udpio.ClosedError):
            rx.recv(timeout=0)
        with pytest.raises(ValueError):
            bytes(frame)  # and that recv released it


def test_b1_r1_gro_an_adopted_socket_with_gro_on_still_gives_one_datagram_per_frame() -> None:
    # An owner may have turned UDP GRO on before handing the socket over. The
    # pure Socket cannot split joined reads, so it turns GRO off; the native
    # one keeps it on and splits.
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn.bind(("127.0.0.1", 0))
    try:
        conn.setsockopt(socket.IPPROTO_UDP, UDP_GRO, 1)
    except OSError as exc:
        conn.close()
        pytest.skip(f"this kernel has no UDP GRO: {exc}")
    with udpio.wrap_conn(conn) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        assert gro_is_on(rx) is (udpio.BACKEND == "native")
        assert rx._gro is gro_is_on(rx)
        sent = _joined(0, 500, 9, 77)
        try:
            send_joined(tx, sent, conn.getsockname())
        except OSError as exc:
            pytest.skip(f"this kernel has no UDP GSO: {exc}")
        assert [data for data, _ in _receive(rx, 9)] == sent


def test_b1_gro_stays_off_where_the_socket_has_no_such_option(tmp_path: Path) -> None:
    # set_gro never raises: a socket (or kernel) without UDP GRO keeps
    # reading one datagram at a time, which every backend can handle.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix:
        unix.bind(str(tmp_path / "sock"))
        assert set_gro(unix, True) is False
        assert set_gro(unix, False) is False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        if not _kernel_has_gro():
            pytest.skip("this kernel has no UDP GRO")
        assert set_gro(udp, True) is True
        assert udp.getsockopt(socket.IPPROTO_UDP, UDP_GRO) == 1
        assert set_gro(udp, False) is False
        assert udp.getsockopt(socket.IPPROTO_UDP, UDP_GRO) == 0
