"""The Socket's whole life as a state machine: C1, C3, R3-R6, S1, B1-B3, K1, K2, F1 against a model.

The model says what must be queued and what each call must return or
raise; invariants after every step check descriptors, the pool and every
byte the caller still holds.
"""

from __future__ import annotations

import socket
from typing import Optional, cast

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import udpio
from tests.helpers import HANG, descriptors_closed, fd_count, join, run_in_thread, send_joined, wait_blocked

payloads = st.binary(min_size=0, max_size=2048) | st.sampled_from([b"", b"x" * 65507])
#: Small enough that a burst or batch never overflows a socket buffer on loopback.
small_payloads = st.binary(min_size=0, max_size=512)


class SocketLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fds_before = fd_count()
        conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        conn.bind(("127.0.0.1", 0))
        self.pool = udpio.Socket._make_pool(max_idle=2)
        self.sock = udpio.Socket._adopt_unchecked(conn, self.pool)
        self.addr = conn.getsockname()
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer.bind(("127.0.0.1", 0))
        self.peer.settimeout(HANG)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a second destination (K2)
        self.other.bind(("127.0.0.1", 0))
        self.other.settimeout(HANG)
        self.fds_open = fd_count()
        # The model.
        self.queued: list[bytes] = []  # datagrams sent to the Socket, not yet received
        self.closed = False
        self.frame: Optional[memoryview] = None  # the current frame, and its bytes
        self.frame_bytes = b""
        self.batch: list[tuple[memoryview, bytes]] = []  # the last recv_batch's frames (K1)
        self.released: list[memoryview] = []  # frames a later recv must have released
        self.kept: list[tuple[object, bytes]] = []  # slices/views/copies the caller holds

    # -- traffic --------------------------------------------------------------

    @rule(data=payloads)
    def peer_sends(self, data: bytes) -> None:
        self.peer.sendto(data, self.addr)
        if not self.closed:
            self.queued.append(data)

    @rule(data=payloads)
    def socket_sends(self, data: bytes) -> None:
        if self.closed:
            with pytest.raises(udpio.ClosedError):
                self.sock.send(data, self.peer.getsockname())
            return
        assert self.sock.send(data, self.peer.getsockname()) == len(data)  # S1
        got, src = self.peer.recvfrom(65536)
        assert got == data and src == self.addr

    @rule(burst=st.lists(small_payloads, min_size=2, max_size=20))
    def peer_sends_a_burst(self, burst: list[bytes]) -> None:
        # Natively, one recv takes the burst into its batch (B1).
        for data in burst:
            self.peer.sendto(data, self.addr)
            if not self.closed:
                self.queued.append(data)

    @rule(
        run=st.integers(1, 512).flatmap(
            lambda size: st.tuples(st.just(size), st.integers(2, 20), st.integers(1, size))
        ),
        seed=st.integers(0, 255),
    )
    def peer_sends_a_joined_run(self, run: tuple[int, int, int], seed: int) -> None:
        # One UDP GSO send: natively (GRO on) one read that recv splits (B1).
        size, count, last = run
        datagrams = [bytes([(seed + i) & 0xFF]) * (size if i < count - 1 else last) for i in range(count)]
        send_joined(self.peer, datagrams, self.addr)
        if not self.closed:
            self.queued += datagrams

    @rule(batch=st.lists(small_payloads, max_size=20))
    def socket_sends_a_batch(self, batch: list[bytes]) -> None:
        if self.closed:
            with pytest.raises(udpio.ClosedError) as info:
                self.sock.send_batch(batch, self.peer.getsockname())
            assert info.value.sent == 0  # type: ignore[attr-defined]
            return
        assert self.sock.send_batch(batch, self.peer.getsockname()) == len(batch)  # B3
        for data in batch:
            got, src = self.peer.recvfrom(65536)
            assert got == data and src == self.addr

    @rule(messages=st.lists(st.tuples(small_payloads, st.booleans()), max_size=30))
    def socket_sends_many(self, messages: list[tuple[bytes, bool]]) -> None:
        # K2: each message to its own destination (one of two), in order.
        peers = (self.peer, self.other)
        batch = [(data, peers[to_other].getsockname()) for data, to_other in messages]
        if self.closed:
            with pytest.raises(udpio.ClosedError) as info:
                self.sock.send_many(batch)
            assert info.value.sent == 0  # type: ignore[attr-defined]
            return
        assert self.sock.send_many(iter(batch)) == len(batch)
        for which, peer in enumerate(peers):
            for data in [data for data, to_other in messages if to_other == which]:
                got, src = peer.recvfrom(65536)
                assert got == data and src == self.addr

    def _took_frame(self, frame: memoryview, expected: bytes) -> None:
        assert bytes(frame) == expected  # R1
        assert frame.readonly  # R2
        self._frame_gone()
        self.frame, self.frame_bytes = frame, expected

    @rule(limit=st.integers(1, 70))
    def recv_batch(self, limit: int) -> None:
        # K1: everything queued is ready (loopback delivers before sendto
        # returns), so the batch is exactly the oldest min(limit, queued).
        if self.closed:
            with pytest.raises(udpio.ClosedError):
                self.sock.recv_batch(limit, timeout=0)
            self._frame_gone()
            return
        if not self.queued:
            with pytest.raises(TimeoutError):
                self.sock.recv_batch(limit, timeout=0)
            self._frame_gone()
            return
        got = self.sock.recv_batch(limit, timeout=HANG)
        self._frame_gone()
        assert len(got) == min(limit, len(self.queued))
        for datagram in got:
            expected = self.queued.pop(0)
            assert bytes(datagram.frame) == expected and datagram.frame.readonly  # R1, R2
            assert datagram.src == self.peer.getsockname()
            # M1: natively, a datagram a recv batch took before the Socket's
            # first recv_datagram/recv_batch reports no destination (never a
            # wrong one); the pure Socket asks the kernel on every read.
            allowed = [self.addr] if udpio.BACKEND == "python" else [self.addr, None]
            assert datagram.dst in allowed
            self.batch.append((datagram.frame, expected))

    @rule()
    def recv(self) -> None:
        if self.closed:
            with pytest.raises(udpio.ClosedError):
                self.sock.recv(timeout=0)
            self._frame_gone()
            return
        if not self.queued:
            with pytest.raises(TimeoutError):
                self.sock.recv(timeout=0)
            self._frame_gone()
            return
        frame, src = self.sock.recv(timeout=HANG)
        assert src == self.peer.getsockname()
        self._took_frame(frame, self.queued.pop(0))

    @precondition(lambda self: not self.closed and not self.queued)
    @rule()
    def recv_times_out_on_empty_socket(self) -> None:
        with pytest.raises(TimeoutError):
            self.sock.recv(timeout=0.005)
        self._frame_gone()

    def _frame_gone(self) -> None:
        # Any receive call that got the reader role releases the current
        # frame, or every frame of the last batch (R3, K1).
        if self.frame is not None:
            self.released.append(self.frame)
            self.frame = None
        self.released += [frame for frame, _ in self.batch]
        self.batch.clear()

    # -- what the caller keeps -------------------------------------------------

    @precondition(lambda self: self.frame is not None or bool(self.batch))
    @rule(how=st.sampled_from(["slice", "view", "copy"]), index=st.integers(0, 70))
    def keep(self, how: str, index: int) -> None:
        current = [(self.frame, self.frame_bytes)] if self.frame is not None else self.batch
        frame, data = current[index % len(current)]
        if how == "slice":
            self.kept.append((frame[1:-1], data[1:-1]))
        elif how == "view":
            self.kept.append((memoryview(frame), data))
        else:
            self.kept.append((bytes(frame), data))

    @precondition(lambda self: bool(self.kept))
    @rule(index=st.integers(0, 50))
    def drop_kept(self, index: int) -> None:
        self.kept.pop(index % len(self.kept))

    # -- a second reader -------------------------------------------------------

    @precondition(lambda self: not self.closed and not self.queued)
    @rule(data=payloads)
    def second_reader_is_refused(self, data: bytes) -> None:
        reader, outcome = run_in_thread(lambda: self.sock.recv(timeout=HANG), "first-reader")
        wait_blocked(reader)
        self._frame_gone()  # the first reader took the role and released it
        with pytest.raises(udpio.ConcurrentRecvError):  # C1
            self.sock.recv(timeout=0)
        self.peer.sendto(data, self.addr)
        join(reader)
        assert outcome.error is None, outcome.error
        frame, _ = cast("tuple[memoryview, udpio.Address]", outcome.value)
        self._took_frame(frame, data)  # no datagram lost to the refused call

    # -- close -------------------------------------------------------------------

    @rule(where=st.sampled_from(["here", "other thread", "twice"]))
    def close(self, where: str) -> None:
        if where == "other thread":
            closer, outcome = run_in_thread(self.sock.close, "closer")
            join(closer)
            assert outcome.error is None
        else:
            self.sock.close()
            if where == "twice":
                self.sock.close()
        self.closed = True
        self.queued.clear()
        assert descriptors_closed(self.sock)  # C3

    @precondition(lambda self: not self.closed and not self.queued)
    @rule()
    def close_wakes_a_blocked_reader(self) -> None:
        reader, outcome = run_in_thread(self.sock.recv, "blocked-reader")
        wait_blocked(reader)
        self._frame_gone()
        self.sock.close()
        self.closed = True
        join(reader)
        assert isinstance(outcome.error, udpio.ClosedError)  # C3, C4
        assert descriptors_closed(self.sock)

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def released_frames_fail_loudly(self) -> None:
        for frame in self.released:
            with pytest.raises(ValueError):
                bytes(frame)  # R3

    @invariant()
    def current_frame_is_intact(self) -> None:
        if self.frame is not None:
            assert bytes(self.frame) == self.frame_bytes  # R3, R5: valid until the next recv
        for frame, data in self.batch:
            assert bytes(frame) == data  # K1: the whole batch, until the next receive call

    @invariant()
    def kept_bytes_never_change(self) -> None:
        for obj, expected in self.kept:
            assert bytes(obj) == expected  # type: ignore[call-overload]  # R4

    @invariant()
    def pool_is_bounded_and_clean(self) -> None:
        idle = self.pool._idle
        assert len(idle) <= self.pool.max_idle  # R6
        for buf in idle:
            assert not self.pool.exported(buf)
            assert buf is not self.sock._buf

    @invariant()
    def descriptors_accounted_for(self) -> None:
        # Open: the socket, its read selector and two wake-up ends (UDP sends
        # never wait here, so no write selector). Closed: all four gone (C3, F1).
        if self.closed:
            assert fd_count() == self.fds_open - 4
        else:
            assert fd_count() == self.fds_open

    def teardown(self) -> None:
        self.sock.close()
        self.peer.close()
        self.other.close()
        assert fd_count() == self.fds_before  # F1


def test_c1_c3_r3_r4_r5_r6_s1_b1_b2_b3_k1_k2_f1_socket_life_state_machine() -> None:
    # A plain test function rather than SocketLife.TestCase, so that it
    # runs once per backend like every other test.
    run_state_machine_as_test(SocketLife)  # type: ignore[no-untyped-call,unused-ignore]  # typed in newer Hypothesis


def test_c1_refusal_does_not_touch_the_socket() -> None:
    # A plain check the state machine relies on: refusing a second reader
    # leaves the first one's wait and the queue alone.
    with udpio.listen("127.0.0.1:0") as sock:
        reader, outcome = run_in_thread(lambda: sock.recv(timeout=HANG), "reader")
        wait_blocked(reader)
        for _ in range(10):
            with pytest.raises(udpio.ConcurrentRecvError):
                sock.recv(timeout=0)
        assert reader.is_alive()
        sock.close()
        join(reader)
        assert isinstance(outcome.error, udpio.ClosedError)
