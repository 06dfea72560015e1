"""M5: M1-M3 and B1-B5 across real devices, between two test hosts the suite builds.

A client and a server network namespace joined by a veth pair
(tests/netns.py): several addresses of each family on the server, a
1280-byte MTU, GRO on the receiving device, a lossy and duplicating link.
Root only; CI runs them (UDPIO_TEST_REQUIRE_TOOLS turns a skip into a
failure there).
"""

from __future__ import annotations

import errno
import functools
import itertools
import random
import socket

import pytest

import udpio
from tests.helpers import HANG, dig, need_dig, numbered
from tests.netns import BROADCAST4, CLIENT4, SERVER4, SERVER6, Host, two_hosts
from tests.readme_examples import README, every_address_example, responder


def _connected(host: Host, family: int, address: str, port: int) -> socket.socket:
    sock = host.udp_socket(family)
    sock.connect((address, port))
    sock.settimeout(HANG)
    return sock


def _port(sock: udpio.Socket) -> int:
    local = sock.local_addr()
    assert local is not None
    return local[1]


def test_m5_m1_m2_a_wildcard_server_answers_from_each_of_its_addresses() -> None:
    with two_hosts() as link:
        index = link.server.ifindex()
        for bind, asked in (
            ("0.0.0.0:0", [(socket.AF_INET, a, a) for a in SERVER4]),
            (
                "[::]:0",
                [(socket.AF_INET6, a, a) for a in SERVER6]
                + [(socket.AF_INET, a, f"::ffff:{a}") for a in SERVER4[1:]],
            ),
        ):
            server = link.server.run(functools.partial(udpio.listen, bind))
            with server:
                port = _port(server)
                for family, address, dst in asked:
                    with _connected(link.client, family, address, port) as peer:
                        peer.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x28)
                        peer.send(b"which address?")
                        got = server.recv_datagram(timeout=HANG)
                        assert got.dst is not None and (got.dst[0], got.dst[1]) == (dst, port)
                        assert got.ifindex == index
                        if family == socket.AF_INET:
                            assert got.tos == 0x28
                        server.reply(b"this one", got)
                        assert peer.recv(100) == b"this one"  # connected: only from the address asked
                assert server.stats().received == len(asked)


def test_m5_m1_a_link_local_destination_carries_its_interface_as_scope() -> None:
    # fe80::/10 means nothing without its interface: Datagram.dst carries
    # it as scope_id, so that reply can send from it.
    with two_hosts() as link:
        server = link.server.run(lambda: udpio.listen("[::]:0"))
        with server, link.client.udp_socket(socket.AF_INET6) as peer:
            address, index = link.server.link_local(), link.server.ifindex()
            peer.settimeout(HANG)
            peer.connect((address, _port(server), 0, link.client.ifindex()))
            peer.send(b"on the link")
            got = server.recv_datagram(timeout=HANG)
            assert got.dst == (address, _port(server), 0, index)
            server.reply(b"answered", got)
            assert peer.recv(100) == b"answered"


def test_m5_m1_a_broadcast_on_the_link_reports_the_broadcast_address() -> None:
    with two_hosts(ipv6=False) as link:
        server = link.server.run(lambda: udpio.listen("0.0.0.0:0"))
        with server, link.client.udp_socket() as peer:
            peer.bind((CLIENT4, 0))
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            peer.settimeout(HANG)
            peer.sendto(b"anyone?", (BROADCAST4, _port(server)))
            got = server.recv_datagram(timeout=HANG)
            assert got.dst == (BROADCAST4, _port(server))  # the header's, not the kernel's choice of source
            server.reply(b"here", got)
            data, (host, _) = peer.recvfrom(10)
            assert data == b"here" and host in SERVER4


@pytest.mark.parametrize(
    "sizes",
    [[1400] * 64, [1400, 1399, 1398], [3000, 3000], [9000] * 3, [1400] * 10 + [100]],
    ids=["64x1400", "1400-1399-1398", "2x3000", "3x9000", "10x1400+100"],
)
def test_m5_b5_batches_over_a_1280_byte_mtu_arrive_whole(backend: str, sizes: list[int]) -> None:
    # GSO segments larger than the path MTU are refused by the kernel; the
    # same datagrams go out without GSO, fragmented as send's are, and a
    # later batch that fits still goes as one GSO send.
    with two_hosts(mtu=1280) as link:
        rx = link.server.udp_socket()
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        rx.bind((SERVER4[0], 0))
        rx.settimeout(HANG)
        tx = link.client.run(lambda: udpio.listen(f"{CLIENT4}:0"))
        with rx, tx:
            frames = [numbered(i, size) for i, size in enumerate(sizes)]
            assert tx.send_batch(frames, rx.getsockname()) == len(frames)
            assert [rx.recv(65536) for _ in frames] == frames
            before = getattr(tx, "_gso_sends", 0)
            small = [numbered(i, 500) for i in range(20)]  # 500 B segments fit in 1280
            assert tx.send_batch(small, rx.getsockname(), src=CLIENT4) == 20
            assert [rx.recvfrom(2048) for _ in small] == [(f, tx.local_addr()) for f in small]
            if backend == "native":
                assert tx._gso_sends == before + 1  # type: ignore[attr-defined]  # one GSO send: GSO stayed on
                assert tx._gso_off is False  # type: ignore[attr-defined]
            assert tx.stats().sent == len(frames) + 20


#: linux/in.h: the socket module lacks them before 3.12.
_IP_MTU_DISCOVER, _IP_PMTUDISC_DO = 10, 2


def test_b3_s5_m3_a_kernel_error_part_way_says_how_many_went_out() -> None:
    # Only the kernel knows this one: with don't-fragment set, a datagram
    # bigger than the path's 1280-byte MTU is EMSGSIZE. The two before it
    # went out (.sent, and stats() counts them); the caller resends from there.
    with two_hosts(mtu=1280) as link:
        rx = link.server.udp_socket()
        rx.bind((SERVER4[0], 0))
        rx.settimeout(HANG)
        tx = link.client.run(lambda: udpio.listen(f"{CLIENT4}:0"))
        with rx, tx:
            tx.conn().setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DO)
            frames = [b"a" * 100, b"b" * 100, b"x" * 1400, b"d" * 100]
            with pytest.raises(OSError) as info:
                tx.send_batch(frames, rx.getsockname())
            assert info.value.errno == errno.EMSGSIZE
            assert info.value.sent == 2  # type: ignore[attr-defined]
            assert tx.stats().sent == 2
            assert [rx.recv(2048) for _ in range(2)] == frames[:2]
            assert tx.send_batch([b"x" * 1000, frames[3]], rx.getsockname()) == 2  # nothing lost or doubled
            assert [rx.recv(2048) for _ in range(2)] == [b"x" * 1000, frames[3]]


def test_m5_b1_a_real_device_joins_a_plain_senders_datagrams_and_recv_splits_them(backend: str) -> None:
    # GRO on the receiving veth joins back-to-back datagrams of one flow
    # whether or not the sender used GSO; natively the Socket takes the
    # joined read and splits it; the pure one has GRO off and gets them one
    # by one. Either way every datagram comes out exactly, in order. Whether
    # the device joins a given burst depends on how its poll thread is
    # scheduled, so up to five bursts are sent until one is joined; each
    # burst is checked whole.
    with two_hosts(gro=True, sender_tso=False) as link:
        rx = link.server.run(lambda: udpio.listen(f"{SERVER4[0]}:0", rcvbuf=1 << 22))
        tx = link.client.udp_socket()
        with rx, tx:
            tx.bind((CLIENT4, 0))
            joined = 0
            for burst in range(5):
                frames = [numbered(burst * 1000 + i, 1000) for i in range(400)] + [numbered(burst, 10)]
                for frame in frames:
                    tx.sendto(frame, (SERVER4[0], _port(rx)))
                got, owners = [], []
                for _ in frames:
                    datagram = rx.recv_datagram(timeout=HANG)
                    got.append(bytes(datagram.frame))
                    owners.append(id(datagram.frame.obj))
                    assert datagram.dst == (SERVER4[0], _port(rx))
                assert got == frames
                joined += sum(1 for a, b in itertools.pairwise(owners) if a == b)
                if joined > 0 or backend == "python":
                    break
            if backend == "native":
                # Some frames shared a read: the device joined them (GRO).
                assert joined > 0, "no joined read in five bursts: GRO on the veth did not join"


def test_m5_m3_a_lossy_duplicating_link_every_copy_that_arrives_comes_out_once() -> None:
    # 5% dropped and 2% duplicated on the way (nftables; this kernel has no
    # netem), sent in a shuffled order. Whatever reached the server's stack
    # comes out of udpio exactly, once per copy, or is counted as the
    # kernel's drop: nothing that arrived is lost by udpio.
    with two_hosts(ipv6=False) as link:
        rx = link.server.run(lambda: udpio.listen(f"{SERVER4[0]}:0", rcvbuf=1 << 22))
        with rx, link.client.udp_socket() as tx:
            tx.bind((CLIENT4, 0))
            link.impair(loss_percent=5, duplicate_percent=2, port=_port(rx))
            order = list(range(2000))
            random.Random(2026).shuffle(order)
            for seq in order:
                tx.sendto(numbered(seq, 200), (SERVER4[0], _port(rx)))
            copies: dict[int, int] = {}
            while True:
                try:
                    frame, src = (
                        rx.recv(timeout=0.5) if len(copies) % 2 else rx.recv_datagram(timeout=0.5)[:2]
                    )
                except TimeoutError:
                    break
                seq = int.from_bytes(bytes(frame[:4]), "big")
                assert bytes(frame) == numbered(seq, 200) and src == tx.getsockname()
                copies[seq] = copies.get(seq, 0) + 1
            arrived = link.arrived()
            stats = rx.stats()
            assert stats.received == sum(copies.values())
            assert stats.received + (stats.kernel_drops or 0) == arrived
            assert 1500 < len(copies) < 2000, "the link lost nothing, or far too much"
            assert any(n == 2 for n in copies.values()), "nothing was duplicated"
            assert all(n <= 2 for n in copies.values())


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
def test_m5_m2_readme_responder_on_every_address_of_a_dual_stack_host_answers_dig() -> None:
    need_dig()
    with two_hosts() as link:
        runner = ("ip", "netns", "exec", link.server.name)
        with responder(every_address_example("[::]:0"), runner) as port:
            ask = ("ip", "netns", "exec", link.client.name)
            for address in [*SERVER6, *SERVER4]:
                assert dig(f"@{address}", "-p", str(port), runner=ask) == "127.0.0.1", address
