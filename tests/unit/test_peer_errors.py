"""E1-E4, E6 on loopback: the network's reports per peer, and no call raising another datagram's error.

A datagram to a loopback port nothing listens on comes back as an ICMP
port unreachable; a Socket made with ``peer_errors=True`` keeps it as a
``PeerError``. Every test runs on both backends. (The bound, the flood
and the router's reports need the kernel's ICMP rate limits lifted, so
they are in tests/system/test_peer_errors_hosts.py, in namespaces.)
"""

from __future__ import annotations

import errno
import functools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import udpio
from tests.helpers import (
    HANG,
    join,
    plain_peer,
    report_queued,
    reports_until,
    run_in_thread,
    thread_cpu_seconds,
    wait_until,
)
from udpio._reports import MAX_REPORTS, PeerError, Reports

LOCAL4, LOCAL6 = "127.0.0.1", "::1"


def _dead_address(host: str = LOCAL4) -> udpio.Address:
    # A port nothing listens on: bound for a moment, then closed.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as gone:
        gone.bind((host, 0))
        return gone.getsockname()  # type: ignore[no-any-return]


def _provoke(sock: udpio.Socket, dead: udpio.Address, count: int = 1) -> None:
    # Send to a dead port and wait until its report came: queued by the
    # kernel, or already gathered by a call on another thread.
    before = _gathered(sock)
    for _ in range(count):
        sock.send(b"anyone?", dead)
    wait_until(lambda: report_queued(sock) or _gathered(sock) > before, what="the port unreachable report")


def _gathered_more_than(sock: udpio.Socket, count: int) -> bool:
    return _gathered(sock) > count


def _gathered(sock: udpio.Socket) -> int:
    # How many reports the Socket keeps, not yet taken by peer_errors().
    return len(sock._reports)


@contextmanager
def _reporting(bind: str = f"{LOCAL4}:0") -> Iterator[udpio.Socket]:
    with udpio.listen(bind, peer_errors=True) as sock:
        yield sock


# -- E1: asked for, or nothing changes ---------------------------------------


def test_e1_off_by_default_a_dead_peer_changes_nothing() -> None:
    dead = _dead_address()
    with udpio.listen(f"{LOCAL4}:0") as sock, plain_peer() as peer:
        for _ in range(3):
            sock.send(b"anyone?", dead)
        assert sock.send(b"live", peer.getsockname()) == 4
        assert peer.recvfrom(16)[0] == b"live"
        assert sock.peer_errors() == [] and sock.peer_errors().dropped == 0
        assert not sock.conn().getsockopt(socket.IPPROTO_IP, 11)  # IP_RECVERR stays off
        with pytest.raises(TimeoutError):
            sock.recv(timeout=0.05)


@pytest.mark.parametrize("bind", [f"{LOCAL4}:0", pytest.param(f"[{LOCAL6}]:0", marks=pytest.mark.ipv6)])
def test_e1_listen_and_wrap_conn_ask_the_kernel_for_its_reports(bind: str) -> None:
    with udpio.listen(bind, peer_errors=True) as sock:
        level, option = (socket.IPPROTO_IPV6, 25) if bind.startswith("[") else (socket.IPPROTO_IP, 11)
        assert sock.conn().getsockopt(level, option) == 1
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with udpio.wrap_conn(conn, peer_errors=True) as wrapped:
        assert wrapped.conn().getsockopt(socket.IPPROTO_IP, 11) == 1


@pytest.mark.ipv6
def test_e1_a_dual_stack_socket_asks_for_both_families_reports() -> None:
    with udpio.listen("[::]:0", peer_errors=True) as sock:
        assert sock.conn().getsockopt(socket.IPPROTO_IPV6, 25) == 1
        assert sock.conn().getsockopt(socket.IPPROTO_IP, 11) == 1


@pytest.mark.parametrize("name", ["peer_errors", "dont_fragment"])
@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_e1_e5_a_flag_that_is_not_a_bool_is_a_type_error_naming_it(name: str, bad: object) -> None:
    with pytest.raises(TypeError, match=rf"^udpio: {name} must be True or False, not {bad!r}$"):
        udpio.listen(f"{LOCAL4}:0", **{name: bad})  # type: ignore[arg-type]
    conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(TypeError, match=name):
            udpio.wrap_conn(conn, **{name: bad})  # type: ignore[arg-type]
        assert conn.fileno() != -1 and conn.getblocking()  # left as it was
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["peer_errors", "dont_fragment"])
def test_e1_e5_an_option_on_a_socket_that_is_not_ip_is_a_value_error_and_leaves_it(name: str) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        with pytest.raises(ValueError, match="AF_INET or AF_INET6"):
            udpio.wrap_conn(a, **{name: True})
        assert a.fileno() != -1 and a.getblocking()


# -- E2: what a report says ----------------------------------------------------


def test_e2_a_port_unreachable_report_over_ipv4() -> None:
    dead = _dead_address()
    with _reporting() as sock:
        _provoke(sock, dead)
        (report,) = reports_until(sock, 1)
    assert report == PeerError(dead, errno.ECONNREFUSED, "icmp", 3, 3, 0, (LOCAL4, 0))
    assert report.peer == dead and report.errno == errno.ECONNREFUSED


@pytest.mark.ipv6
def test_e2_a_port_unreachable_report_over_ipv6() -> None:
    dead = _dead_address(LOCAL6)
    with _reporting(f"[{LOCAL6}]:0") as sock:
        _provoke(sock, dead)
        (report,) = reports_until(sock, 1)
    assert report == PeerError(dead, errno.ECONNREFUSED, "icmp6", 1, 4, 0, (LOCAL6, 0, 0, 0))


@pytest.mark.ipv6
def test_e2_a_dual_stack_socket_reports_an_ipv4_peer_in_its_mapped_form() -> None:
    dead = _dead_address()
    mapped = f"::ffff:{LOCAL4}"
    with _reporting("[::]:0") as sock:
        _provoke(sock, dead)
        (report,) = reports_until(sock, 1)
    assert report == PeerError(
        (mapped, dead[1], 0, 0), errno.ECONNREFUSED, "icmp", 3, 3, 0, (mapped, 0, 0, 0)
    )


# -- E3: the store ----------------------------------------------------------------


def test_e3_reports_come_oldest_first_and_each_once() -> None:
    dead = [_dead_address() for _ in range(3)]
    with _reporting() as sock:
        for address in dead:
            _provoke(sock, address)
        got = reports_until(sock, 3)
        assert [r.peer for r in got] == dead
        assert sock.peer_errors() == []


def test_e3_after_close_peer_errors_returns_what_was_gathered_before() -> None:
    dead = _dead_address()
    with _reporting() as sock, plain_peer() as peer:
        _provoke(sock, dead)
        sock.send(b"live", peer.getsockname())  # E4: this send gathers the report
        sock.close()
        got = sock.peer_errors()
        assert [r.peer for r in got] == [dead]
        assert sock.peer_errors() == []


def test_e3_the_store_keeps_the_newest_1024_and_counts_the_dropped() -> None:
    store = Reports()
    made = [
        PeerError((LOCAL4, port), errno.ECONNREFUSED, "icmp", 3, 3, 0, (LOCAL4, 0)) for port in range(1, 1101)
    ]
    store.keep(made[:600])
    store.keep(made[600:])
    taken = store.take()
    assert taken == made[-MAX_REPORTS:] and taken.dropped == 1100 - MAX_REPORTS
    again = store.take()
    assert again == [] and again.dropped == 0


# -- E4: no call raises an earlier datagram's error -----------------------------


def test_e4_a_send_to_a_live_peer_after_another_peers_report_is_sent_not_raised() -> None:
    dead = _dead_address()
    with _reporting() as sock, plain_peer() as peer:
        for _ in range(3):
            _provoke(sock, dead)
            assert sock.send(b"live", peer.getsockname()) == 4
        assert [peer.recvfrom(16)[0] for _ in range(3)] == [b"live"] * 3
        assert [r.peer for r in reports_until(sock, 3)] == [dead] * 3


@pytest.mark.parametrize("call", ["send_batch", "send_many", "send_from", "reply"])
def test_e4_every_send_call_sends_with_reports_queued_and_sent_stays_exact(call: str) -> None:
    dead = _dead_address()
    with _reporting() as sock, plain_peer() as peer:
        to = peer.getsockname()
        peer.sendto(b"ask", sock.bound_addr())
        asked = sock.recv_datagram(timeout=HANG)
        _provoke(sock, dead)
        if call == "send_batch":
            assert sock.send_batch([b"x"] * 10, to) == 10
        elif call == "send_many":
            assert sock.send_many([(b"x", to)] * 10) == 10
        elif call == "send_from":
            assert sock.send(b"x", to, src=LOCAL4) == 1
        else:
            assert sock.reply(b"x", asked) == 1
        expected = {"send_batch": 10, "send_many": 10}.get(call, 1)
        assert [peer.recvfrom(16)[0] for _ in range(expected)] == [b"x"] * expected
        assert sock.stats().sent == expected + 1  # and the one to the dead port
        assert [r.peer for r in reports_until(sock, 1)] == [dead]


def test_e4_a_calls_own_error_still_reaches_it() -> None:
    dead = _dead_address()
    with _reporting() as sock:
        _provoke(sock, dead)
        with pytest.raises(OSError) as info:
            sock.send(b"x" * 65508, dead)  # more than UDP over IPv4 carries
        assert info.value.errno == errno.EMSGSIZE
        with pytest.raises(PermissionError):  # a broadcast without SO_BROADCAST: EACCES
            sock.send(b"x", ("255.255.255.255", 9))
        assert sock.send(b"usable", dead) == 6


def test_e4_a_recv_waits_through_reports_and_keeps_its_deadline() -> None:
    dead = _dead_address()
    with _reporting() as sock:
        waiting, outcome = run_in_thread(lambda: sock.recv(timeout=0.6), "reader")
        for i in range(5):
            # Each report wakes the waiting reader, which gathers it and waits on.
            sock.send(b"anyone?", dead)
            wait_until(
                functools.partial(_gathered_more_than, sock, i), what="the reader to gather the report"
            )
        join(waiting)
        assert isinstance(outcome.error, TimeoutError), outcome.error
        assert len(reports_until(sock, 5)) == 5


@pytest.mark.parametrize("call", ["recv", "recv_datagram", "recv_batch"])
def test_e4_a_blocked_receive_gets_the_datagram_that_follows_the_reports(call: str) -> None:
    dead = _dead_address()
    with _reporting() as sock, plain_peer() as peer:
        receive = getattr(sock, call)
        waiting, outcome = run_in_thread(lambda: receive(timeout=HANG), "reader")
        _provoke(sock, dead, count=3)
        peer.sendto(b"after the reports", sock.bound_addr())
        join(waiting)
        assert outcome.error is None, outcome.error
        value: Any = outcome.value
        got = value[0] if call == "recv_batch" else value
        assert bytes(got[0]) == b"after the reports"


def test_e4_reports_queued_between_datagrams_cost_no_datagram() -> None:
    dead = _dead_address()
    with _reporting() as sock, plain_peer() as peer:
        here = sock.bound_addr()
        for i in range(20):
            peer.sendto(b"%d" % i, here)
            _provoke(sock, dead)
        got: list[bytes] = []
        while len(got) < 20:
            got += [bytes(d.frame) for d in sock.recv_batch(timeout=HANG)]
        assert got == [b"%d" % i for i in range(20)]


def test_e4_peer_errors_may_run_while_another_thread_receives() -> None:
    dead = _dead_address()
    with _reporting() as sock, plain_peer() as peer:
        here = sock.bound_addr()
        received: list[bytes] = []

        def read() -> None:
            while len(received) < 50:
                received.extend(bytes(d.frame) for d in sock.recv_batch(timeout=HANG))

        reader, outcome = run_in_thread(read, "reader")
        reports: list[PeerError] = []
        for i in range(50):
            peer.sendto(b"%d" % i, here)
            if i % 5 == 0:
                sock.send(b"anyone?", dead)
            reports += sock.peer_errors()
        join(reader)
        assert outcome.error is None, outcome.error
        assert received == [b"%d" % i for i in range(50)]
        reports += reports_until(sock, 10 - len(reports)) if len(reports) < 10 else []
        assert [r.peer for r in reports] == [dead] * 10


# -- E6: no spin ------------------------------------------------------------------


def _assert_idle_then_wake(sock: udpio.Socket, waiting: threading.Thread, peer: socket.socket) -> None:
    # The waiting reader's CPU over 0.3 s (a spinning one burns it all),
    # then a datagram that ends its wait.
    before = thread_cpu_seconds(waiting)
    time.sleep(0.3)  # the window measured, not a synchronisation
    used = thread_cpu_seconds(waiting) - before
    peer.sendto(b"done", sock.bound_addr())
    join(waiting)
    assert used < 0.05, f"the waiting reader used {used:.3f} s of CPU in 0.3 s"


def test_e6_a_recv_waiting_on_an_idle_socket_whose_queue_holds_reports_uses_no_cpu() -> None:
    # A report queued with the socket's pending error already taken (here
    # by SO_ERROR; in life by a call that raced a gathering): no read fails
    # to say it is there, yet epoll says "error" until the queue is read.
    # A reader that waits without reading it first wakes at once, forever.
    dead = _dead_address()
    with _reporting() as sock, plain_peer() as peer:
        _provoke(sock, dead)
        assert sock.conn().getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED
        assert report_queued(sock)
        waiting, outcome = run_in_thread(lambda: sock.recv(timeout=HANG), "reader")
        wait_until(lambda: _gathered(sock) == 1, what="the reader to gather the report before it waits")
        _assert_idle_then_wake(sock, waiting, peer)
        assert outcome.error is None, outcome.error
        assert bytes(outcome.value[0]) == b"done"  # type: ignore[index]
        assert [r.peer for r in sock.peer_errors()] == [dead]


def test_e6_a_recv_waiting_while_reports_arrive_uses_no_cpu() -> None:
    dead = _dead_address()
    with _reporting() as sock, plain_peer() as peer:
        waiting, outcome = run_in_thread(lambda: sock.recv(timeout=HANG), "reader")
        for _ in range(5):
            sock.send(b"anyone?", dead)
        wait_until(lambda: _gathered(sock) >= 1, what="the reader to gather a report")
        _assert_idle_then_wake(sock, waiting, peer)
        assert outcome.error is None, outcome.error
