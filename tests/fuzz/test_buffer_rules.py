"""R1-R4, R6 as properties over datagram sizes and what the caller does between receives."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import udpio
from tests.helpers import HANG, send_joined
from udpio._pool import BufferPool

MAX_V4 = 65507
EDGES = [0, 1, 2, 1471, 1472, 1473, 1499, 1500, 1501, 8191, 8192, 8193, MAX_V4 - 1, MAX_V4]

#: Sizes biased to the edges: empty, tiny, around the Ethernet MTU, 8 KiB, the maximum.
sizes = st.one_of(st.sampled_from(EDGES), st.integers(0, MAX_V4))

#: What the caller does with a frame before the next recv. (Touching the old
#: frame after the next recv is checked on every step: it must fail, R3.)
behaviours = st.sampled_from(["nothing", "copy", "slice", "view", "export", "let_go"])


def payload(size: int, seed: int) -> bytes:
    """Distinct bytes per datagram, so a stale or foreign byte is visible."""
    return bytes((seed * 31 + i * 7 + 1) & 0xFF for i in range(size))


@dataclass
class Kept:
    """Something derived from a frame that the caller still holds, and its true bytes."""

    what: str
    obj: object
    expected: bytes


@dataclass
class Harness:
    rx: udpio.Socket
    peer: socket.socket
    pool: BufferPool[Any]
    kept: list[Kept] = field(default_factory=list)
    # The last frame received, whether the caller exported it, and its bytes.
    previous: memoryview | None = None
    previous_exported: bool = False
    previous_bytes: bytes = b""

    def check_kept(self) -> None:
        for item in self.kept:
            view = item.obj if isinstance(item.obj, memoryview) else memoryview(item.obj)  # type: ignore[arg-type]
            assert bytes(view) == item.expected, f"R4: a retained {item.what} was overwritten"

    def receive_and_check(self, data: bytes, behaviour: str) -> None:
        """Receive the datagram ``data``, check R1-R4 and R6, then do ``behaviour`` with it."""
        size = len(data)
        frame, _ = self.rx.recv(timeout=HANG)

        # R1: exactly the payload; R2: read-only 1-D contiguous bytes.
        assert len(frame) == size
        assert bytes(frame) == data
        assert frame.readonly and frame.ndim == 1 and frame.format == "B" and frame.c_contiguous

        # R3: touching the previous frame fails now, unless the caller exported it.
        if self.previous is not None:
            if self.previous_exported:
                assert bytes(self.previous) == self.previous_bytes, "R3: an exported frame changed"
            else:
                try:
                    bytes(self.previous)
                except ValueError:
                    pass
                else:
                    raise AssertionError("R3: the previous frame is still readable after recv")
        self.check_kept()
        self.check_pool()

        self.previous, self.previous_exported, self.previous_bytes = frame, False, data
        if behaviour == "copy":
            self.kept.append(Kept("copy", bytes(frame), data))
        elif behaviour == "slice" and size:
            lo, hi = size // 3, max(size // 3 + 1, 2 * size // 3)
            self.kept.append(Kept("slice", frame[lo:hi], data[lo:hi]))
        elif behaviour == "view":
            self.kept.append(Kept("memoryview(frame)", memoryview(frame), data))
        elif behaviour == "export":
            self.kept.append(Kept("buffer export", pickle.PickleBuffer(frame), data))
            self.previous_exported = True
        elif behaviour == "let_go" and self.kept:
            self.kept.pop(0)  # the caller lets go of its oldest retained bytes

    def check_pool(self) -> None:
        idle = list(self.pool._idle)
        assert len(idle) <= self.pool.max_idle, "R6: pool over its bound"
        assert len({id(b) for b in idle}) == len(idle), "R6: one buffer twice in the pool"
        for buf in idle:
            assert not self.pool.exported(buf), "R6: an exported buffer sits in the pool"
            assert buf is not self.rx._buf, "R6: the socket's buffer is also in the pool"


@contextmanager
def harness() -> Iterator[Harness]:
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    conn.bind(("127.0.0.1", 0))
    pool = udpio.Socket._make_pool(max_idle=2)
    rx = udpio.Socket._adopt_unchecked(conn, pool)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        yield Harness(rx, peer, pool)
    finally:
        rx.close()
        peer.close()


@given(
    steps=st.lists(st.tuples(sizes, behaviours), min_size=1, max_size=12),
    arrival=st.sampled_from(["one by one", "burst"]),
)
def test_r1_r2_r3_r4_r6_b1_frames_over_arbitrary_sizes_and_behaviours(
    steps: list[tuple[int, str]], arrival: str
) -> None:
    # "burst": every datagram is queued before the first recv, so the native
    # backend takes them in one batch and hands them out one per recv (B1);
    # the rules hold per frame all the same. (12 datagrams of at most 64 KiB
    # fit the harness's receive buffer: none is dropped.)
    with harness() as h:
        dst = h.rx.local_addr()
        assert dst is not None
        if arrival == "burst":
            for seed, (size, _) in enumerate(steps):
                h.peer.sendto(payload(size, seed), dst)
        for seed, (size, behaviour) in enumerate(steps):
            data = payload(size, seed)
            if arrival == "one by one":
                h.peer.sendto(data, dst)
            h.receive_and_check(data, behaviour)
        h.check_kept()


#: A run a GSO sender sends in one call: segment size, datagrams, the last one's size.
runs = st.integers(1, 4000).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(1, min(40, 60000 // size)), st.integers(1, size))
)


@given(
    shape=st.lists(runs, min_size=1, max_size=4),
    arrival=st.sampled_from(["run by run", "burst"]),
    data=st.data(),
)
def test_r1_r2_r3_r4_r6_b1_joined_reads_split_into_exact_frames(
    shape: list[tuple[int, int, int]], arrival: str, data: st.DataObject
) -> None:
    # Each run goes out in one UDP GSO send. The native Socket has UDP GRO
    # on, so the kernel hands it over as one read, which recv splits; the
    # pure one reads the datagrams one by one. Per frame the rules are those
    # of every other datagram, whatever the caller keeps between receives.
    with harness() as h:
        dst = h.rx.local_addr()
        assert dst is not None
        sent: list[list[bytes]] = []
        for size, count, last in shape:
            seed = sum(len(run) for run in sent)
            sent.append([payload(size if i < count - 1 else last, seed + i) for i in range(count)])
        if arrival == "burst":
            # All of it queued at once: it must fit the receive buffer (the
            # pure Socket's kernel keeps each datagram apart, ~1 KiB extra each).
            room = h.rx.conn().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            assume(sum(len(d) + 1024 for run in sent for d in run) <= room // 2)
            for run in sent:
                send_joined(h.peer, run, dst)
        for run in sent:
            if arrival == "run by run":
                send_joined(h.peer, run, dst)
            for expected in run:
                h.receive_and_check(expected, data.draw(behaviours))
        h.check_kept()
        with pytest.raises(TimeoutError):
            h.rx.recv(timeout=0)  # one frame per datagram, no more


@given(sizes=st.lists(sizes, min_size=2, max_size=10))
def test_r1_no_stale_bytes_from_longer_earlier_datagrams(sizes: list[int]) -> None:
    with harness() as h:
        dst = h.rx.local_addr()
        assert dst is not None
        for seed, size in enumerate(sizes):
            data = payload(size, seed)
            h.peer.sendto(data, dst)
            frame, _ = h.rx.recv(timeout=HANG)
            assert bytes(frame) == data
            # Nothing past the datagram is reachable through the frame.
            assert len(frame) == size and frame.nbytes == size
