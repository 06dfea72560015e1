"""M1-M4 on loopback: where a datagram went, answers from there, the kernel's drops.

Loopback carries all of 127.0.0.0/8, so a Socket bound to 0.0.0.0 hears
datagrams sent to 127.0.0.2 as a multi-address host would; the IPv6 side
and real devices are in tests/system/test_real_hosts.py.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import udpio
from tests.helpers import (
    HANG,
    full_send_buffer,
    has_ipv6,
    join,
    numbered,
    run_in_thread,
    send_joined,
    wait_blocked,
)
from udpio import _cmsg
from udpio._datagram import Datagram

LO = socket.if_nametoindex("lo")


@contextmanager
def client(host: str, port: int) -> Iterator[socket.socket]:
    """A connected client, as dig or a QUIC client has: it hears only from (host, port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.connect((host, port))
        sock.settimeout(HANG)
        yield sock
    finally:
        sock.close()


def _port(sock: udpio.Socket) -> int:
    local = sock.local_addr()
    assert local is not None
    return local[1]


@pytest.mark.parametrize("asked", ["127.0.0.1", "127.0.0.2", "127.3.4.5"])
def test_m1_m2_a_wildcard_server_learns_the_address_asked_and_answers_from_it(asked: str) -> None:
    with udpio.listen("0.0.0.0:0") as server, client(asked, _port(server)) as peer:
        peer.send(b"question")
        got = server.recv_datagram(timeout=HANG)
        assert bytes(got.frame) == b"question"
        assert got.src == peer.getsockname()
        assert got.dst == (asked, _port(server))
        assert got.ifindex == LO
        assert server.reply(b"answer", got) == 6
        assert peer.recv(100) == b"answer"  # a connected socket drops any other source


@pytest.mark.ipv6
def test_m1_a_dual_stack_server_gives_an_ipv4_senders_destination_mapped() -> None:
    if not has_ipv6():
        pytest.skip("no IPv6 loopback")
    with udpio.listen("[::]:0") as server:
        port = _port(server)
        for asked, dst in (("127.0.0.2", "::ffff:127.0.0.2"), ("::1", "::1")):
            with client(asked, port) as peer:
                peer.send(b"q")
                got = server.recv_datagram(timeout=HANG)
                assert got.dst == (dst, port, 0, 0)
                assert got.ifindex == LO
                server.reply(b"a", got)
                assert peer.recv(10) == b"a"


def test_m1_a_server_bound_to_one_address_reports_that_address() -> None:
    with udpio.listen("127.0.0.7:0") as server, client("127.0.0.7", _port(server)) as peer:
        peer.send(b"x")
        assert server.recv_datagram(timeout=HANG).dst == ("127.0.0.7", _port(server))


@pytest.mark.parametrize("tos", [0, 0x2E << 2, 0xB8 | 1, 0x02])
def test_m1_the_tos_byte_each_datagram_carried(tos: int) -> None:
    with udpio.listen("127.0.0.1:0") as server, client("127.0.0.1", _port(server)) as peer:
        peer.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        peer.send(b"marked")
        assert server.recv_datagram(timeout=HANG).tos == tos


@pytest.mark.ipv6
def test_m1_the_ipv6_traffic_class_each_datagram_carried() -> None:
    if not has_ipv6():
        pytest.skip("no IPv6 loopback")
    with udpio.listen("[::1]:0") as server, client("::1", _port(server)) as peer:
        peer.setsockopt(socket.IPPROTO_IPV6, _cmsg.IPV6_TCLASS, 0xB9)
        peer.send(b"marked")
        assert server.recv_datagram(timeout=HANG).tos == 0xB9


def test_m1_r3_a_frame_from_either_call_is_released_by_the_next_receive_of_any_kind() -> None:
    with udpio.listen("127.0.0.1:0") as server, client("127.0.0.1", _port(server)) as peer:
        for i in range(4):
            peer.send(numbered(i, 32))
        frame, _ = server.recv(timeout=HANG)
        got = server.recv_datagram(timeout=HANG)  # releases the recv's frame
        with pytest.raises(ValueError):
            bytes(frame)
        assert bytes(got.frame) == numbered(1, 32)
        kept = got.frame[:4]  # R4: a slice survives what follows
        frame, _ = server.recv(timeout=HANG)  # releases the datagram's frame
        with pytest.raises(ValueError):
            bytes(got.frame)
        assert bytes(frame) == numbered(2, 32)
        assert server.recv_datagram(timeout=HANG).frame.tobytes() == numbered(3, 32)
        assert bytes(kept) == numbered(1, 32)[:4]


def test_m1_b1_datagrams_a_batch_took_keep_their_own_destinations() -> None:
    # Natively one recvmmsg takes all of them; each slot's control data must
    # stay its own until it is handed out.
    with udpio.listen("0.0.0.0:0") as server:
        port = _port(server)
        hosts = [f"127.0.0.{i}" for i in range(1, 21)]
        for i, host in enumerate(hosts):
            with client(host, port) as peer:
                peer.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, i * 4)
                peer.send(numbered(i, 40))
        first = server.recv_datagram(timeout=HANG)  # takes the batch natively
        assert (bytes(first.frame), first.dst) == (numbered(0, 40), (hosts[0], port))
        for i, host in enumerate(hosts[1:], 1):
            if i % 3 == 0:  # a plain recv in between takes its datagram from the same queue
                frame, src = server.recv(timeout=HANG)
                assert (bytes(frame), src[0]) == (numbered(i, 40), "127.0.0.1")
                continue
            got = server.recv_datagram(timeout=HANG)
            assert (bytes(got.frame), got.dst, got.tos) == (numbered(i, 40), (host, port), i * 4)


def test_m1_a_batch_recv_took_before_the_first_recv_datagram_reports_no_destination(backend: str) -> None:
    # Natively, until a Socket's first recv_datagram, a batch asks the kernel
    # only for GRO's control message (recv reads nothing else, and the rest
    # costs it; P10). A datagram such a batch took, handed out by a later
    # recv_datagram, reports the destination unknown: never a guess. The
    # batches after it report everything; the pure backend has no batches.
    with udpio.listen("0.0.0.0:0") as server, client("127.0.0.3", _port(server)) as peer:
        for i in range(4):
            peer.send(numbered(i, 20))
        # A new Socket's first batch reads into one slot, the next (after a
        # full one) into two (P11): the second recv's batch takes 1 and 2.
        assert bytes(server.recv(timeout=HANG)[0]) == numbered(0, 20)
        assert bytes(server.recv(timeout=HANG)[0]) == numbered(1, 20)
        got = server.recv_datagram(timeout=HANG)
        assert bytes(got.frame) == numbered(2, 20)
        expected = (None, 0, None) if backend == "native" else (("127.0.0.3", _port(server)), LO, 0)
        assert (got.dst, got.ifindex, got.tos) == expected
        assert bytes(server.recv_datagram(timeout=HANG).frame) == numbered(3, 20)
        peer.send(b"after")
        later = server.recv_datagram(timeout=HANG)
        assert (bytes(later.frame), later.dst) == (b"after", ("127.0.0.3", _port(server)))


def test_m1_m4_every_datagram_of_a_joined_read_carries_that_reads_destination() -> None:
    with udpio.listen("0.0.0.0:0", rcvbuf=1 << 20) as server, client("127.0.0.9", _port(server)) as peer:
        peer.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x20)
        payloads = [numbered(i, 100) for i in range(9)] + [b"last"]
        send_joined(peer, payloads, ("127.0.0.9", _port(server)))
        for payload in payloads:
            got = server.recv_datagram(timeout=HANG)
            assert (bytes(got.frame), got.dst, got.ifindex, got.tos) == (
                payload,
                ("127.0.0.9", _port(server)),
                LO,
                0x20,
            )


_SO_RCVMARK = 75  # linux/asm-generic/socket.h (Linux 5.19)


def test_m1_control_data_the_kernel_cut_short_says_nothing() -> None:
    # Options a user turns on through conn() add control messages until
    # they no longer fit: the kernel cuts them (MSG_CTRUNC). What is left
    # may be only part of the truth, so nothing of it is reported.
    with udpio.listen("127.0.0.1:0") as server, client("127.0.0.1", _port(server)) as peer:
        conn = server.conn()
        try:
            conn.setsockopt(socket.SOL_SOCKET, _SO_RCVMARK, 1)
        except OSError:
            pytest.skip("this kernel has no SO_RCVMARK (Linux 5.19)")
        for level, option in ((socket.SOL_SOCKET, 35), (socket.IPPROTO_IP, 12), (socket.IPPROTO_IP, 20)):
            conn.setsockopt(level, option, 1)  # SO_TIMESTAMPNS, IP_RECVTTL, IP_RECVORIGDSTADDR
        peer.send(b"x")
        got = server.recv_datagram(timeout=HANG)
        assert bytes(got.frame) == b"x"
        assert (got.dst, got.ifindex, got.tos) == (None, 0, None)


def test_m1_options_turned_off_through_conn_report_nothing() -> None:
    # Without IP_PKTINFO and IP_RECVTOS the kernel says nothing: unknown,
    # not a guess (and not an empty string).
    with udpio.listen("127.0.0.1:0") as server, client("127.0.0.1", _port(server)) as peer:
        for option in (_cmsg.IP_PKTINFO, _cmsg.IP_RECVTOS):
            server.conn().setsockopt(socket.IPPROTO_IP, option, 0)
        peer.send(b"x")
        got = server.recv_datagram(timeout=HANG)
        assert (bytes(got.frame), got.dst, got.ifindex, got.tos) == (b"x", None, 0, None)


def test_m1_c1_recv_datagram_is_the_same_single_reader_as_recv() -> None:
    with udpio.listen("127.0.0.1:0") as server:
        reader, outcome = run_in_thread(lambda: server.recv_datagram(timeout=HANG), "reader")
        wait_blocked(reader)
        with pytest.raises(udpio.ConcurrentRecvError):
            server.recv(timeout=0)
        with pytest.raises(udpio.ConcurrentRecvError):
            server.recv_datagram(timeout=0)
        server.close()
        join(reader)
        assert isinstance(outcome.error, udpio.ClosedError)


def test_m1_r7_recv_datagram_times_out_and_refuses_bad_timeouts() -> None:
    with udpio.listen("127.0.0.1:0") as server:
        with pytest.raises(TimeoutError):
            server.recv_datagram(timeout=0)
        with pytest.raises(ValueError):
            server.recv_datagram(timeout=-1)


def test_m1_datagram_is_a_named_tuple_exported_as_udpio_datagram() -> None:
    assert udpio.Datagram is Datagram
    assert Datagram._fields == ("frame", "src", "dst", "ifindex", "tos")
    assert udpio.Stats._fields == ("received", "sent", "kernel_drops")


# -- M2 ----------------------------------------------------------------------------------------


def test_m2_send_leaves_from_the_source_given() -> None:
    with udpio.listen("0.0.0.0:0") as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(HANG)
        port = _port(server)
        for src in ("127.0.0.5", ("127.0.0.6", 0), ("127.0.0.7", port)):
            assert server.send(b"hi", peer.getsockname(), src=src) == 2
            host = src if isinstance(src, str) else src[0]
            assert peer.recvfrom(10) == (b"hi", (host, port))


def test_m2_send_batch_leaves_from_the_source_given() -> None:
    with udpio.listen("0.0.0.0:0") as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(HANG)
        port = _port(server)
        # Equal sizes (a GSO run natively) and mixed sizes (sendmmsg).
        for frames in ([b"g" * 100] * 10, [numbered(i, 10 + i) for i in range(10)]):
            assert server.send_batch(frames, peer.getsockname(), src="127.0.0.8") == len(frames)
            for frame in frames:
                assert peer.recvfrom(200) == (frame, ("127.0.0.8", port))


@pytest.mark.parametrize(
    "src, error, words",
    [
        ("localhost", ValueError, "numeric"),
        ("::1", ValueError, "IPv6 address"),
        (("127.0.0.1", 1), ValueError, "port"),
        (("127.0.0.1", "0"), TypeError, "port"),
        (("127.0.0.1",), TypeError, "address"),
        (5, TypeError, "int"),
        (b"127.0.0.1", TypeError, "bytes"),
    ],
)
def test_m2_a_bad_src_is_refused_before_anything_is_sent(
    src: object, error: type[Exception], words: str
) -> None:
    with udpio.listen("0.0.0.0:0") as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        calls: list[Callable[[], int]] = [
            lambda: server.send(b"x", peer.getsockname(), src=src),  # type: ignore[arg-type]
            lambda: server.send_batch([b"x", b"y"], peer.getsockname(), src=src),  # type: ignore[arg-type]
        ]
        for call in calls:
            with pytest.raises(error, match=words) as info:
                call()
            assert repr(src) in str(info.value)
            assert getattr(info.value, "sent", 0) == 0
        with pytest.raises(BlockingIOError):
            peer.recv(10)  # nothing went out
        assert server.send(b"ok", peer.getsockname()) == 2  # the Socket stays usable


@pytest.mark.ipv6
def test_m2_an_ipv4_src_on_a_dual_stack_socket_means_its_mapped_form() -> None:
    if not has_ipv6():
        pytest.skip("no IPv6 loopback")
    with udpio.listen("[::]:0") as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(HANG)
        for src in ("127.0.0.5", "::ffff:127.0.0.6", ("::ffff:127.0.0.7", 0, 0, 0)):
            assert server.send(b"hi", peer.getsockname(), src=src) == 2
            host = src if isinstance(src, str) else src[0]
            assert peer.recvfrom(10) == (b"hi", (host.replace("::ffff:", ""), _port(server)))


@pytest.mark.parametrize(
    ("dst", "source"),
    [
        (("127.0.0.2", 53), True),
        (("0.0.0.0", 53), False),
        (("255.255.255.255", 53), False),
        (("224.0.0.1", 53), False),
        (("239.255.255.250", 53), False),
        (("223.255.255.255", 53), True),
        (("240.0.0.1", 53), True),
        (("::ffff:127.0.0.2", 53, 0, 0), True),
        (("::ffff:224.0.0.251", 53, 0, 0), False),
        (("::ffff:0.0.0.0", 53, 0, 0), False),
        (("::1", 53, 0, 0), True),
        (("::", 53, 0, 0), False),
        (("ff02::fb", 53, 0, 0), False),
        (("FF05::2", 53, 0, 0), False),
        (None, False),
    ],
)
def test_m2_reply_sends_from_dst_unless_it_is_no_source(dst: object, source: bool) -> None:
    # Wildcards, multicast and the limited broadcast are never a source:
    # the kernel chooses. Every unicast address is used as it is.
    assert _cmsg.reply_source(dst) == (dst if source else None)  # type: ignore[arg-type]


def test_m2_a_src_that_is_not_an_address_of_this_host_is_the_kernels_error() -> None:
    with udpio.listen("0.0.0.0:0") as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        with pytest.raises(OSError) as info:
            server.send(b"x", peer.getsockname(), src="198.51.100.7")  # TEST-NET-2: never local
        assert info.value.errno in (errno.EINVAL, errno.EADDRNOTAVAIL, errno.ENETUNREACH)
        assert server.send(b"ok", peer.getsockname()) == 2


@pytest.mark.parametrize("dst", [None, ("0.0.0.0", 0), ("224.0.0.1", 0), ("255.255.255.255", 0)])
def test_m2_reply_lets_the_kernel_choose_where_dst_is_no_source(dst: object) -> None:
    with udpio.listen("127.0.0.1:0") as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(HANG)
        to = Datagram(memoryview(b""), peer.getsockname(), dst, 0, None)  # type: ignore[arg-type]
        assert server.reply(b"answer", to) == 6
        assert peer.recvfrom(10) == (b"answer", ("127.0.0.1", _port(server)))


def test_m2_reply_to_a_subnet_broadcast_lets_the_kernel_choose() -> None:
    # 127.255.255.255 is loopback's broadcast address: the kernel will not
    # send from it, and reply cannot tell that from the text.
    with udpio.listen("0.0.0.0:0") as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(HANG)
        to = Datagram(memoryview(b""), peer.getsockname(), ("127.255.255.255", _port(server)), LO, 0)
        assert server.reply(b"answer", to) == 6
        data, (host, port) = peer.recvfrom(10)
        assert (data, port) == (b"answer", _port(server))
        assert host != "127.255.255.255"  # from an address the kernel chose


def test_m1_m2_a_broadcast_reports_the_broadcast_address_and_reply_still_answers() -> None:
    # The header's destination (ipi_addr), not the kernel's preferred source
    # for an answer (ipi_spec_dst, here 127.0.0.1): they differ only here.
    with udpio.listen("0.0.0.0:0") as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        peer.settimeout(HANG)
        port = _port(server)
        peer.sendto(b"anyone?", ("127.255.255.255", port))
        got = server.recv_datagram(timeout=HANG)
        assert (bytes(got.frame), got.dst) == (b"anyone?", ("127.255.255.255", port))
        assert server.reply(b"me", got) == 2  # not from the broadcast address: the kernel chooses
        assert peer.recvfrom(10) == (b"me", ("127.0.0.1", port))


def test_m2_reply_answers_dig_asking_a_second_address() -> None:
    # The bug this pins: dig @127.0.0.2 timed out against a 0.0.0.0 server
    # that answered from 127.0.0.1. (dig itself: test_readme runs the pattern.)
    with udpio.listen("0.0.0.0:0") as server:
        for asked in ("127.0.0.2", "127.0.0.1"):
            with client(asked, _port(server)) as peer:
                peer.send(b"q")
                server.reply(b"a", server.recv_datagram(timeout=HANG))
                assert peer.recv(10) == b"a"


# -- M3 ----------------------------------------------------------------------------------------


def test_m3_stats_count_what_every_call_moved() -> None:
    with udpio.listen("127.0.0.1:0") as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(HANG)
        assert server.stats() == udpio.Stats(0, 0, 0)
        for i in range(5):
            peer.sendto(numbered(i, 8), server.local_addr())  # type: ignore[arg-type]
        server.recv(timeout=HANG)
        got = server.recv_datagram(timeout=HANG)
        server.send(b"1", peer.getsockname())
        server.send(b"2", peer.getsockname(), timeout=HANG)  # the Python path natively
        server.send(b"3", peer.getsockname(), src="127.0.0.1")
        server.send_batch([b"4", b"5", b"6"], peer.getsockname())
        server.reply(b"7", got)
        assert server.stats() == udpio.Stats(received=2, sent=7, kernel_drops=0)


def _proc_net_udp_drops(sock: socket.socket) -> int:
    inode = os.fstat(sock.fileno()).st_ino
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        with open(path) as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if int(fields[9]) == inode:
                    return int(fields[-1])
    raise AssertionError("the socket is not in /proc/net/udp")


def test_m3_kernel_drops_are_the_kernels_own_count() -> None:
    # The smallest receive buffer, 200 datagrams and no reader: the kernel
    # keeps a few and drops the rest; stats() says how many, as
    # /proc/net/udp does, and what it kept plus what it dropped is all.
    with (
        udpio.listen("127.0.0.1:0", rcvbuf=1) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer,
    ):
        for i in range(200):
            peer.sendto(numbered(i, 1000), server.local_addr())  # type: ignore[arg-type]
        drops = server.stats().kernel_drops
        assert drops is not None and drops > 0
        assert drops == _proc_net_udp_drops(server.conn())
        kept = 0
        while True:
            try:
                server.recv(timeout=0)
            except TimeoutError:
                break
            kept += 1
        assert kept + drops == 200
        assert server.stats() == udpio.Stats(kept, 0, drops)


def test_m3_stats_answer_after_close_with_the_final_counts() -> None:
    server = udpio.listen("127.0.0.1:0", rcvbuf=1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        for i in range(50):
            peer.sendto(numbered(i, 1000), server.local_addr())  # type: ignore[arg-type]
    server.recv(timeout=HANG)
    before = server.stats()
    server.close()
    assert server.stats() == before
    assert before.kernel_drops is not None and before.kernel_drops > 0


def test_m3_stats_never_wait_for_a_blocked_send(tmp_path: Path) -> None:
    with full_send_buffer(tmp_path) as (sock, path, _):
        sender, outcome = run_in_thread(lambda: sock.send(b"stuck", path), "sender")  # type: ignore[arg-type]
        wait_blocked(sender)
        assert sock.stats().received == 0  # returns at once, with the sender still waiting
        sock.close()
        join(sender)
        assert isinstance(outcome.error, udpio.ClosedError)


# -- M4 ----------------------------------------------------------------------------------------


def _option(conn: socket.socket, level: int, option: int) -> int:
    return conn.getsockopt(level, option)


@pytest.mark.parametrize("how", ["listen", "wrap_conn"])
def test_m4_listen_and_wrap_conn_turn_the_options_on(how: str) -> None:
    families = [("127.0.0.1", socket.AF_INET)] + ([("::", socket.AF_INET6)] if has_ipv6() else [])
    for host, family in families:
        if how == "listen":
            sock = udpio.listen(f"[{host}]:0" if ":" in host else f"{host}:0")
        else:
            conn = socket.socket(family, socket.SOCK_DGRAM)
            conn.bind((host, 0))
            sock = udpio.wrap_conn(conn)
        with sock:
            conn = sock.conn()
            if family == socket.AF_INET:
                assert _option(conn, socket.IPPROTO_IP, _cmsg.IP_PKTINFO) == 1
                assert _option(conn, socket.IPPROTO_IP, _cmsg.IP_RECVTOS) == 1
            else:
                assert _option(conn, socket.IPPROTO_IPV6, _cmsg.IPV6_RECVPKTINFO) == 1
                assert _option(conn, socket.IPPROTO_IPV6, _cmsg.IPV6_RECVTCLASS) == 1
                # dual-stack: the IPv4 pair too, for IPv4 senders
                assert _option(conn, socket.IPPROTO_IP, _cmsg.IP_PKTINFO) == 1


def test_m4_udpio_defines_the_linux_constants_older_pythons_lack() -> None:
    assert (_cmsg.IP_PKTINFO, _cmsg.IP_RECVTOS, _cmsg.IPV6_RECVPKTINFO, _cmsg.IPV6_TCLASS) == (8, 13, 49, 67)
    if sys.version_info >= (3, 12):
        assert socket.IP_PKTINFO == _cmsg.IP_PKTINFO
