"""K1-K3: recv_batch takes what is ready, send_many answers many peers, and neither allocates per datagram."""

from __future__ import annotations

import errno
import socket
import statistics
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

import udpio
from tests.helpers import (
    HANG,
    drain_counting_refusals,
    facing_a_peer,
    held_elsewhere,
    join,
    numbered,
    refuse,
    run_in_thread,
    wait_asleep_on_a_lock,
    wait_blocked,
)
from udpio._messages import largest_payload

RCVBUF = 8 << 20


@contextmanager
def server(addr: str = "127.0.0.1:0") -> Iterator[tuple[udpio.Socket, udpio.Address]]:
    with udpio.listen(addr, rcvbuf=RCVBUF) as sock:
        local = sock.local_addr()
        assert local is not None
        yield sock, local


@contextmanager
def peers(count: int, host: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    """Plain sockets on loopback, each with its own port, closed on exit."""
    with ExitStack() as stack:
        made = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((host, 0))
            sock.settimeout(HANG)
            made.append(sock)
        yield made


def _burst(sock: udpio.Socket, dst: udpio.Address, count: int, size: int = 32) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for seq in range(count):
            sender.sendto(numbered(seq, size), dst)


def _drain(sock: udpio.Socket, count: int, limit: int = 64) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < count:
        got += [bytes(d.frame) for d in sock.recv_batch(limit, timeout=HANG)]
    return got


# -- K1: recv_batch ------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 5, 64, 1000])
def test_k1_recv_batch_takes_what_is_ready_in_arrival_order_up_to_the_bound(limit: int) -> None:
    # 300 queued in the kernel: every batch is full (the bound) until the
    # last, which stops when nothing more is ready; 1000 is more than one
    # recvmmsg takes natively, so that batch takes several.
    with server() as (sock, dst):
        _burst(sock, dst, 300)
        sizes: list[int] = []
        got: list[bytes] = []
        while len(got) < 300:
            batch = sock.recv_batch(limit, timeout=HANG)
            sizes.append(len(batch))
            got += [bytes(d.frame) for d in batch]
        assert got == [numbered(seq, 32) for seq in range(300)]
        assert sizes == [limit] * (300 // limit) + ([300 % limit] if 300 % limit else [])
        with pytest.raises(TimeoutError):
            sock.recv_batch(limit, timeout=0)


def test_k1_each_datagram_of_a_batch_says_where_it_came_from_and_went() -> None:
    with server("0.0.0.0:0") as (sock, local), peers(6) as clients:
        port = local[1]
        for i, client in enumerate(clients):
            client.sendto(numbered(i, 20), (f"127.0.0.{i + 1}", port))
        got: list[udpio.Datagram] = []
        while len(got) < 6:
            got += sock.recv_batch(timeout=HANG)
        assert [bytes(d.frame) for d in got] == [numbered(i, 20) for i in range(6)]
        assert [d.src for d in got] == [c.getsockname() for c in clients]
        assert [d.dst for d in got] == [(f"127.0.0.{i + 1}", port) for i in range(6)]
        assert all(isinstance(d, udpio.Datagram) and d.ifindex > 0 and d.tos == 0 for d in got)


@pytest.mark.parametrize("next_call", ["recv", "recv_datagram", "recv_batch"])
def test_k1_r3_a_batch_is_released_as_a_whole_by_the_next_receive_call(next_call: str) -> None:
    with server() as (sock, dst):
        _burst(sock, dst, 10)
        batch = sock.recv_batch(5, timeout=HANG)
        frames = [d.frame for d in batch]
        assert [bytes(f) for f in frames] == [numbered(seq, 32) for seq in range(5)]
        getattr(sock, next_call)(timeout=HANG)
        for frame in frames:
            with pytest.raises(ValueError, match="released"):
                bytes(frame)


def test_k1_r4_retained_slices_of_a_batch_are_never_overwritten() -> None:
    with server() as (sock, dst):
        kept: list[tuple[memoryview, bytes]] = []
        for round_ in range(20):
            _burst(sock, dst, 70)
            for i, datagram in enumerate(sock.recv_batch(70, timeout=HANG)):
                if i % 7 == round_ % 7:
                    kept.append((datagram.frame[2:], bytes(datagram.frame[2:])))
            _drain_ready(sock)
        assert len(kept) >= 100
        for view, expected in kept:
            assert bytes(view) == expected


def _drain_ready(sock: udpio.Socket) -> None:
    while True:
        try:
            sock.recv_batch(timeout=0)
        except TimeoutError:
            return


def test_k1_recv_and_recv_batch_share_one_queue_in_order() -> None:
    with server() as (sock, dst):
        _burst(sock, dst, 100)
        got = [bytes(sock.recv(timeout=HANG)[0]) for _ in range(3)]
        while len(got) < 100:
            got += [bytes(d.frame) for d in sock.recv_batch(7, timeout=HANG)]
            if len(got) < 100:
                got.append(bytes(sock.recv_datagram(timeout=HANG).frame))
        assert got == [numbered(seq, 32) for seq in range(100)]
        assert sock.stats().received == len(got)


def test_k1_r7_a_timeout_with_nothing_there_raises_timeout_error_never_an_empty_list() -> None:
    with server() as (sock, _):
        with pytest.raises(TimeoutError):
            sock.recv_batch(timeout=0)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.recv_batch(64, 0.05)
        assert time.monotonic() - started >= 0.05


@pytest.mark.parametrize(
    ("bound", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (1.5, TypeError),
        (True, TypeError),
        ("3", TypeError),
        (None, TypeError),
    ],
)
def test_k1_a_bad_bound_is_refused_and_the_socket_stays_usable(bound: object, error: type[Exception]) -> None:
    with server() as (sock, dst):
        with pytest.raises(error, match=r"^udpio: max_datagrams must be a positive int"):
            sock.recv_batch(bound)  # type: ignore[arg-type]
        _burst(sock, dst, 1)
        assert [bytes(d.frame) for d in sock.recv_batch(timeout=HANG)] == [numbered(0, 32)]


def test_k1_a_huge_bound_takes_what_is_ready() -> None:
    with server() as (sock, dst):
        _burst(sock, dst, 3)
        assert len(sock.recv_batch(2**80, timeout=HANG)) == 3


def test_k1_c4_close_wakes_a_blocked_recv_batch() -> None:
    latencies = []
    for _ in range(10):
        with server() as (sock, _):
            thread, outcome = run_in_thread(lambda s=sock: s.recv_batch(), "reader")  # type: ignore[misc]
            wait_blocked(thread)
            closed_at = time.perf_counter()
            sock.close()
            assert outcome.done.wait(HANG)
            latencies.append(time.perf_counter() - closed_at)
            join(thread)
            assert isinstance(outcome.error, udpio.ClosedError)
    assert statistics.median(latencies) < 0.05, latencies  # the loose C4 bound of test_concurrency


@pytest.mark.parametrize("second", ["recv", "recv_datagram", "recv_batch"])
def test_k1_c1_recv_batch_is_the_single_reader(second: str) -> None:
    with server() as (sock, dst):
        thread, outcome = run_in_thread(lambda: sock.recv_batch(timeout=HANG), "reader")
        wait_blocked(thread)
        with pytest.raises(udpio.ConcurrentRecvError):
            getattr(sock, second)(timeout=0)
        _burst(sock, dst, 1)
        join(thread)
        assert outcome.error is None
        assert [bytes(d.frame) for d in outcome.value] == [numbered(0, 32)]  # type: ignore[attr-defined]


def test_k1_r5_after_close_recv_batch_raises_closed_error() -> None:
    with server() as (sock, dst):
        _burst(sock, dst, 5)
        batch = sock.recv_batch(2, timeout=HANG)
        sock.close()
        assert bytes(batch[0].frame) == numbered(0, 32)  # valid until the next receive call
        with pytest.raises(udpio.ClosedError):
            sock.recv_batch()
        with pytest.raises(ValueError, match="released"):
            bytes(batch[0].frame)


def test_k1_b1_an_error_after_the_datagrams_a_batch_took_comes_with_the_next_call() -> None:
    # Natively, recv's batches leave datagrams in the Socket's queue; an
    # ICMP error then arrives. recv_batch hands out the queue, meets the
    # error when it asks the kernel for more, and must not lose it: the
    # next call raises it. (The pure Socket, which has no queue, raises it
    # first.) Either way: every datagram once, in order, the error once.
    with facing_a_peer() as (sock, peer):
        peer_addr = peer.getsockname()
        for seq in range(10):
            peer.sendto(numbered(seq, 16), sock.conn().getsockname())
        got = [bytes(sock.recv(timeout=HANG)[0]) for _ in range(4)]  # natively: batches of 1, 2, 4
        peer.close()
        refuse(sock, peer_addr)
        rest, refused = drain_counting_refusals(
            lambda: [bytes(d.frame) for d in sock.recv_batch(timeout=0.2)]
        )
        got += rest
        assert got == [numbered(seq, 16) for seq in range(10)]
        assert refused == 1


# -- K2: send_many -------------------------------------------------------------


def _received(client: socket.socket, count: int) -> list[tuple[bytes, Any]]:
    return [client.recvfrom(2048) for _ in range(count)]


@pytest.mark.parametrize("count", [1, 63, 64, 65, 300])
def test_k2_each_message_goes_to_its_own_destination_in_order(count: int) -> None:
    with server() as (sock, local), peers(3) as clients:
        messages = [(numbered(i, 40 + i % 5), clients[i % 3].getsockname()) for i in range(count)]
        assert sock.send_many(messages) == count
        for k, client in enumerate(clients):
            expected = [frame for i, (frame, _) in enumerate(messages) if i % 3 == k]
            got = _received(client, len(expected))
            assert [frame for frame, _ in got] == expected
            assert {src for _, src in got} <= {local}
        assert sock.stats().sent == count


def test_k2_m2_each_message_leaves_from_its_own_source() -> None:
    with server("0.0.0.0:0") as (sock, local), peers(1) as (client,):
        port, to = local[1], client.getsockname()
        sources: list[Any] = ["127.0.0.2", ("127.0.0.3", port), None, ("127.0.0.4", 0), "127.0.0.2"]
        messages = [(numbered(i, 10), to, src) for i, src in enumerate(sources)]
        assert sock.send_many(messages) == 5
        got = _received(client, 5)
        assert [frame for frame, _ in got] == [numbered(i, 10) for i in range(5)]
        hosts = [addr[0] for _, addr in got]
        assert hosts[:2] + hosts[3:] == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"]
        assert hosts[2] == "127.0.0.1"  # None: the kernel's choice, the route's source
        assert all(addr[1] == port for _, addr in got)


def test_k2_m2_a_source_that_send_just_used_again() -> None:
    # Natively a send's source is cached by identity and send_many starts
    # from that cache: the cached control message must still say 127.0.0.3.
    with server("0.0.0.0:0") as (sock, local), peers(1) as (client,):
        src, to = ("127.0.0.3", local[1]), client.getsockname()
        sock.send(b"first", to, src=src)
        assert sock.send_many([(b"second", to, src), (b"third", to, src)]) == 2
        got = _received(client, 3)
        assert got == [(b"first", src), (b"second", src), (b"third", src)]


def test_k2_answers_a_batch_from_where_each_query_went() -> None:
    # The server pattern: recv_batch, then send_many with each Datagram's
    # own src and dst; connected clients (dig's kind) hear every answer.
    with server("0.0.0.0:0") as (sock, local):
        port = local[1]
        clients = []
        with ExitStack() as stack:
            for i in range(8):
                client = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                client.connect((f"127.0.0.{i + 1}", port))
                client.settimeout(HANG)
                client.send(numbered(i, 12))
                clients.append(client)
            batch: list[udpio.Datagram] = []
            while len(batch) < 8:
                batch += sock.recv_batch(timeout=HANG)
            assert sock.send_many((b"re:" + bytes(d.frame), d.src, d.dst) for d in batch) == 8
            assert [c.recv(100) for c in clients] == [b"re:" + numbered(i, 12) for i in range(8)]


def test_k2_an_empty_iterable_and_a_generator() -> None:
    with server() as (sock, _), peers(1) as (client,):
        assert sock.send_many([]) == 0
        assert sock.send_many(iter(())) == 0
        to = client.getsockname()
        assert sock.send_many((numbered(i, 8), to) for i in range(100)) == 100
        assert [frame for frame, _ in _received(client, 100)] == [numbered(i, 8) for i in range(100)]
        assert sock.send_many(((memoryview(b"view"), to), (bytearray(b"array"), to))) == 2
        assert [frame for frame, _ in _received(client, 2)] == [b"view", b"array"]


_GOOD = (b"ok", ("127.0.0.1", 9))
_BAD_MESSAGES: list[tuple[object, type[Exception], str]] = [
    ("not a tuple", TypeError, r"messages\[5\] must be a \(frame, dst\) or \(frame, dst, src\) tuple"),
    ((b"x",), TypeError, r"messages\[5\] must be a"),
    ((b"x", ("127.0.0.1", 9), None, None), TypeError, r"messages\[5\] must be a"),
    ([b"x", ("127.0.0.1", 9)], TypeError, r"messages\[5\] must be a"),
    ((42, ("127.0.0.1", 9)), TypeError, r"messages\[5\]'s frame must support the buffer protocol"),
    (
        (memoryview(b"abcd")[::2], ("127.0.0.1", 9)),
        TypeError,
        r"messages\[5\]'s frame must be a C-contiguous",
    ),
    (
        (b"x" * 65508, ("127.0.0.1", 9)),
        OSError,
        r"^\[Errno 90\] udpio: messages\[5\]'s frame is 65,508 bytes, more than the 65,507 a UDP datagram "
        r"can carry here \(nothing was sent\)$",
    ),
    ((b"x", "127.0.0.1:9"), TypeError, r"bad destination in messages\[5\]"),
    ((b"x", ("127.0.0.1",)), TypeError, r"bad destination in messages\[5\]"),
    ((b"x", ("127.0.0.1", 9, 0, 0)), TypeError, r"bad destination in messages\[5\]"),
    ((b"x", ("127.0.0.1", 9, 0)), TypeError, r"bad destination in messages\[5\]"),
    ((b"x", ("127.0.0.1", 65536)), OverflowError, r"messages\[5\].*the port must be 0-65535"),
    ((b"x", ("127.0.0.1", -1)), OverflowError, r"messages\[5\].*the port must be 0-65535"),
    ((b"x", ("127.0.0.1", "9")), TypeError, r"messages\[5\].*the port must be an int"),
    ((b"x", ("127.0.0.1", 0)), OSError, r"messages\[5\].*port 0"),
    (
        (b"x", ("a" * 300, 9)),
        ValueError,
        r"^udpio: bad destination in messages\[5\]: \('a+', 9\): send_many needs a numeric address "
        r"\(it resolves no names\)$",
    ),
    ((b"x", ("localhost", 9)), ValueError, r"messages\[5\].*numeric address"),  # /etc/hosts has it
    ((b"x", (None, 9)), TypeError, r"messages\[5\].*the host must be a str"),
    ((b"x", ("::1", 9)), ValueError, r"an IPv6 address on an IPv4 Socket"),
    ((b"x", ("127.0.0.1", 9), "::1"), ValueError, r"messages\[5\]: bad src"),
    ((b"x", ("127.0.0.1", 9), ("127.0.0.1", 1)), ValueError, r"messages\[5\]: bad src"),
    ((b"x", ("127.0.0.1", 9), 7), TypeError, r"messages\[5\]: bad src"),
    ((b"x", ("127.0.0.1", 9), "a" * 300), ValueError, r"messages\[5\]: bad src"),
]


@pytest.mark.parametrize(
    ("bad", "error", "message"), _BAD_MESSAGES, ids=[repr(b)[:40] for b, _, _ in _BAD_MESSAGES]
)
def test_k2_every_kind_of_bad_message_is_refused_before_anything_is_sent(
    bad: object, error: type[Exception], message: str
) -> None:
    with server() as (sock, _), peers(1) as (client,):
        to = client.getsockname()
        good = [(numbered(i, 8), to) for i in range(5)]
        with pytest.raises(error, match=message) as info:
            sock.send_many([*good, bad, *good])  # type: ignore[list-item]  # bad on purpose
        assert info.value.sent == 0  # type: ignore[attr-defined]
        if error is OSError:
            assert info.value.errno in (errno.EMSGSIZE, errno.EINVAL)  # type: ignore[attr-defined]
        client.settimeout(0.05)
        with pytest.raises(TimeoutError):
            client.recv(100)  # nothing went out
        assert sock.stats().sent == 0
        assert sock.send_many(good) == 5  # and the Socket stays usable


_BAD_IPV6_MESSAGES: list[tuple[object, type[Exception], str]] = [
    ((b"x", ("::1", 9, 0, 0, 0)), TypeError, r"bad destination in messages\[1\]"),
    ((b"x", ("::1", 9, 1 << 20)), OverflowError, r"messages\[1\].*the flowinfo must be 0-1048575"),
    ((b"x", ("::1", 9, -1, 0)), OverflowError, r"messages\[1\].*the flowinfo must be 0-1048575"),
    (
        (b"x", ("::1", 9, 0, 1 << 32)),
        OverflowError,
        r"^udpio: bad destination in messages\[1\]: \('::1', 9, 0, 4294967296\): "
        r"the scope_id must be 0-4294967295$",
    ),
    ((b"x", ("::1", 9, "0", 0)), TypeError, r"messages\[1\].*the flowinfo must be an int"),
    ((b"x", ("::1", 9, 0, 1.0)), TypeError, r"messages\[1\].*the scope_id must be an int"),
]


@pytest.mark.ipv6
@pytest.mark.parametrize(
    ("bad", "error", "message"), _BAD_IPV6_MESSAGES, ids=[repr(b)[:40] for b, _, _ in _BAD_IPV6_MESSAGES]
)
def test_k2_every_field_of_an_ipv6_destination_is_checked_before_anything_is_sent(
    bad: object, error: type[Exception], message: str
) -> None:
    with udpio.listen("[::1]:0") as sock, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
        client.bind(("::1", 0))
        good = (b"first", client.getsockname())
        with pytest.raises(error, match=message) as info:
            sock.send_many([good, bad])  # type: ignore[list-item]  # bad on purpose
        assert info.value.sent == 0  # type: ignore[attr-defined]
        assert sock.send_many([good, (b"top", ("::1", client.getsockname()[1], 0xFFFFF, 0))]) == 2
        client.settimeout(HANG)
        assert [client.recv(10) for _ in range(2)] == [b"first", b"top"]  # and nothing before them


@pytest.mark.parametrize(
    ("family", "dst", "largest"),
    [
        (socket.AF_INET, ("127.0.0.1", 9), 65507),
        (socket.AF_INET6, ("::1", 9, 0, 0), 65527),
        (socket.AF_INET6, ("::ffff:127.0.0.1", 9, 0, 0), 65507),
        (socket.AF_INET6, ("::FFFF:127.0.0.1", 9, 0, 0), 65507),
        (socket.AF_INET6, ("64:ff9b::192.0.2.1", 9, 0, 0), 65527),  # NAT64: dotted, but IPv6 on the wire
        (socket.AF_INET6, ("::ffff:7f00:1", 9, 0, 0), 65527),  # mapped, but not as the kernel writes it
    ],
)
def test_k2_b3_the_largest_payload_follows_the_protocol_the_datagram_goes_over(
    family: int, dst: udpio.Address, largest: int
) -> None:
    assert largest_payload(family, dst) == largest


def test_k2_the_highest_port_is_a_destination() -> None:
    with server() as (sock, _):
        assert sock.send_many([(b"x", ("127.0.0.1", 65535))]) == 1  # nobody there: the datagram is just lost


def test_k2_the_largest_datagram_each_family_can_carry() -> None:
    with server() as (sock, _), peers(1) as (client,):
        assert sock.send_many([(b"x" * 65507, client.getsockname())]) == 1
        assert len(client.recv(65536)) == 65507


@pytest.mark.ipv6
def test_k2_the_largest_datagram_over_ipv6_and_mapped_ipv4() -> None:
    with (
        udpio.listen("[::]:0", rcvbuf=RCVBUF) as sock,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as c6,
    ):
        c6.bind(("::1", 0))
        c6.settimeout(HANG)
        assert sock.send_many([(b"x" * 65527, c6.getsockname())]) == 1
        assert len(c6.recv(65536)) == 65527
        with pytest.raises(OSError, match=r"messages\[0\]'s frame is 65,508 bytes") as info:
            sock.send_many([(b"x" * 65508, ("::ffff:127.0.0.1", 9, 0, 0))])
        assert info.value.errno == errno.EMSGSIZE


def test_k2_sent_is_exact_after_a_kernel_error_part_way() -> None:
    # A connected Socket whose peer is gone: the kernel refuses a datagram
    # once it has the ICMP answer. .sent says how many went before it,
    # and stats() counts exactly those.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        dead = gone.getsockname()
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    conn.connect(dead)
    with udpio.wrap_conn(conn) as sock:
        sock.send(b"provoke", dead)
        before = sock.stats().sent
        total_sent = 0
        with pytest.raises(ConnectionRefusedError) as info:
            for _ in range(100):
                total_sent += sock.send_many([(b"a", dead), (b"b", dead), (b"c", dead)])
        sent = info.value.sent  # type: ignore[attr-defined]
        assert sent in (0, 1, 2)
        assert sock.stats().sent - before == total_sent + sent


def test_k2_after_close_closed_error_with_sent_zero() -> None:
    with server() as (sock, _):
        sock.close()
        with pytest.raises(udpio.ClosedError) as info:
            sock.send_many([(b"x", ("127.0.0.1", 9))])
        assert info.value.sent == 0  # type: ignore[attr-defined]


def test_k2_a_bad_iterable_carries_sent_zero() -> None:
    def broken() -> Iterator[tuple[bytes, udpio.Address]]:
        yield b"x", ("127.0.0.1", 9)
        raise KeyError("the generator broke")

    with server() as (sock, _):
        with pytest.raises(KeyError) as info:
            sock.send_many(broken())
        assert info.value.sent == 0  # type: ignore[attr-defined]
        with pytest.raises(TypeError) as not_iterable:
            sock.send_many(5)  # type: ignore[arg-type]
        assert not_iterable.value.sent == 0  # type: ignore[attr-defined]


#: A one-datagram call of each batch send, to 127.0.0.1:9 (nothing listens).
BATCH_SENDS = {
    "send_many": lambda sock, **kw: sock.send_many([(b"x", ("127.0.0.1", 9))], **kw),
    "send_batch": lambda sock, **kw: sock.send_batch([b"x"], ("127.0.0.1", 9), **kw),
}


@pytest.mark.parametrize("call", sorted(BATCH_SENDS))
def test_b3_k2_s4_the_timeout_bounds_waiting_for_another_senders_role(call: str) -> None:
    with server() as (sock, _):
        with held_elsewhere(sock._writer):
            with pytest.raises(TimeoutError, match=rf"^udpio: {call} timed out after 0\.05 s") as info:
                BATCH_SENDS[call](sock, timeout=0.05)
            assert info.value.sent == 0  # type: ignore[attr-defined]
        assert BATCH_SENDS[call](sock, timeout=HANG) == 1


@pytest.mark.parametrize("call", sorted(BATCH_SENDS))
def test_b3_k2_c2_without_a_timeout_a_batch_waits_for_the_role_and_then_sends(call: str) -> None:
    with server() as (sock, _):
        with held_elsewhere(sock._writer):
            waiting, result = run_in_thread(lambda: BATCH_SENDS[call](sock), call)
            wait_asleep_on_a_lock(waiting)  # asleep on the role: not spinning, not refused
            assert result.value is None and result.error is None
        join(waiting)
        assert result.error is None and result.value == 1


def test_k2_c2_no_other_send_lands_in_the_middle() -> None:
    # 1,000 messages in one call (16 sendmmsg natively) while another thread
    # sends markers: every marker comes before or after the whole run.
    with server() as (sock, _), peers(1) as (client,):
        to = client.getsockname()
        started = threading.Event()

        def markers() -> None:
            started.set()
            for _ in range(50):
                sock.send(b"marker", to)

        thread = threading.Thread(target=markers)
        thread.start()
        assert started.wait(HANG)
        assert sock.send_many([(numbered(i, 16), to) for i in range(1000)]) == 1000
        join(thread)
        got = [frame for frame, _ in _received(client, 1050)]
        run = [i for i, frame in enumerate(got) if frame != b"marker"]
        assert run == list(range(run[0], run[0] + 1000)), "a marker landed inside send_many's run"
        assert [got[i] for i in run] == [numbered(i, 16) for i in range(1000)]


# -- K3: nothing allocated per datagram -----------------------------------------


def test_k3_a_server_loop_of_recv_batch_and_send_many_allocates_nothing_per_datagram() -> None:
    with server("0.0.0.0:0") as (sock, local), peers(4) as clients:
        port = local[1]

        def round_trip(count: int) -> None:
            for seq in range(count):
                clients[seq % 4].sendto(numbered(seq, 48), ("127.0.0.2", port))
            answered = 0
            while answered < count:
                batch = sock.recv_batch(timeout=HANG)
                answered += sock.send_many((d.frame, d.src, d.dst) for d in batch)
            for seq in range(count):
                clients[seq % 4].recv(100)

        round_trip(400)  # warm-up: the slots, the caches, the pool
        tracemalloc.start()
        try:
            round_trip(100)
            before, _ = tracemalloc.get_traced_memory()
            round_trip(2000)
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert after - before < 16 * 1024, f"2,000 answered datagrams kept {after - before} bytes"


def test_k3_natively_a_few_busy_peers_cost_no_address_tuple_per_datagram(backend: str) -> None:
    # The native Socket keeps the tuples of its last 8 senders: a server
    # whose queries come from a few busy peers (forwarders, a load
    # generator's sockets) makes none per datagram. (The pure Socket gets a
    # new tuple from the socket module for every datagram.)
    if backend != "native":
        pytest.skip("the pure Socket's addresses come from socket.recvmsg_into, a tuple each")
    with server() as (sock, dst), peers(5) as clients:
        for _ in range(4):
            for client in clients:
                client.sendto(b"q", dst)
        got: list[udpio.Datagram] = []
        while len(got) < 20:
            got += sock.recv_batch(timeout=HANG)
        for client in clients:
            tuples = {id(d.src) for d in got if d.src == client.getsockname()}
            assert len(tuples) == 1, f"{len(tuples)} tuples for one peer"


def test_k2_c2_a_send_many_waits_for_another_senders_role_then_sends_everything() -> None:
    with server() as (sock, _), peers(1) as (client,):
        to = client.getsockname()
        with held_elsewhere(sock._writer):
            sender, outcome = run_in_thread(
                lambda: sock.send_many([(numbered(i, 8), to) for i in range(100)]), "sender"
            )
            assert not outcome.done.wait(0.05), "send_many went out while another thread held the writer role"
        join(sender)
        assert outcome.error is None and outcome.value == 100
        assert [frame for frame, _ in _received(client, 100)] == [numbered(i, 8) for i in range(100)]


def test_k2_m2_more_sources_than_one_call_caches_each_leave_from_their_own() -> None:
    # Natively a call parses at most 8 distinct sources itself; a call with
    # more is the pure twin's. Either way each datagram leaves from its own.
    with server("0.0.0.0:0") as (sock, local), peers(1) as (client,):
        to = client.getsockname()
        sources = [f"127.0.0.{i}" for i in range(2, 14)]
        assert sock.send_many([(src.encode(), to, (src, local[1])) for src in sources]) == len(sources)
        got = _received(client, len(sources))
        assert [(frame.decode(), addr) for frame, addr in got] == [(src, (src, local[1])) for src in sources]
