"""E3, E5, E6, E7: the network's reports on the suite's own test hosts, with the kernel's ICMP limits off.

A client, a router and a server, each a network namespace
(tests/netns.py ``routed_hosts``): the router's link to the server has a
1280-byte MTU, so a datagram sent with don't-fragment over it gets a real
router's fragmentation-needed (IPv4) or packet-too-big (IPv6) report, and
the server, where nothing listens on the port, answers port unreachable.
The bound and the flood need thousands of reports, more than the kernel's
ICMP rate limits let through: in these namespaces they are off. Root
only; CI runs them (UDPIO_TEST_REQUIRE_TOOLS turns a skip into a failure).
"""

from __future__ import annotations

import errno
import functools
import json
import socket
from collections.abc import Callable

import pytest

import udpio
from tests.helpers import HANG, python_child, readline_within, report_queued, reports_until, wait_until
from tests.netns import (
    ROUTED_CLIENT4,
    ROUTED_SERVER4,
    ROUTED_SERVER6,
    ROUTER_NEAR4,
    ROUTER_NEAR6,
    Host,
    routed_hosts,
)
from udpio._reports import MAX_REPORTS, PeerError

DEAD_PORT = 9  # nothing listens on it on the test hosts


def _listen(host: Host, addr: str, **options: bool) -> udpio.Socket:
    return host.run(functools.partial(udpio.listen, addr, **options))


# -- E7: a real router's and a real host's reports -------------------------------


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_e7_e2_a_host_without_a_listener_reports_port_unreachable(family: str) -> None:
    ipv4 = family == "ipv4"
    server = ROUTED_SERVER4 if ipv4 else ROUTED_SERVER6
    with (
        routed_hosts() as hosts,
        _listen(hosts.client, "0.0.0.0:0" if ipv4 else "[::]:0", peer_errors=True) as sock,
    ):
        dead = (server, DEAD_PORT) if ipv4 else (server, DEAD_PORT, 0, 0)
        sock.send(b"anyone?", dead)
        (report,) = reports_until(sock, 1)
    if ipv4:
        assert report == PeerError(dead, errno.ECONNREFUSED, "icmp", 3, 3, 0, (server, 0))
    else:
        assert report == PeerError(dead, errno.ECONNREFUSED, "icmp6", 1, 4, 0, (server, 0, 0, 0))


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_e7_e5_a_router_on_a_smaller_path_reports_its_mtu(family: str) -> None:
    ipv4 = family == "ipv4"
    with routed_hosts(far_mtu=1280) as hosts:
        bind = "0.0.0.0:0" if ipv4 else "[::]:0"
        with _listen(hosts.client, bind, peer_errors=True, dont_fragment=True) as sock:
            to = (ROUTED_SERVER4, DEAD_PORT) if ipv4 else (ROUTED_SERVER6, DEAD_PORT, 0, 0)
            assert sock.send(b"x" * 1400, to) == 1400  # fits the client's link: it goes, DF set
            report = reports_until(sock, 1)[0]
    if ipv4:
        assert report == PeerError(to, errno.EMSGSIZE, "icmp", 3, 4, 1280, (ROUTER_NEAR4, 0))
    else:
        assert report == PeerError(to, errno.EMSGSIZE, "icmp6", 2, 0, 1280, (ROUTER_NEAR6, 0, 0, 0))


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_e5_a_datagram_over_the_local_mtu_is_the_sends_own_emsgsize(family: str) -> None:
    ipv4 = family == "ipv4"
    with routed_hosts() as hosts:
        bind = "0.0.0.0:0" if ipv4 else "[::]:0"
        with _listen(hosts.client, bind, peer_errors=True, dont_fragment=True) as sock:
            to = (ROUTED_SERVER4, DEAD_PORT) if ipv4 else (ROUTED_SERVER6, DEAD_PORT, 0, 0)
            with pytest.raises(OSError) as info:
                sock.send(b"x" * 1600, to)  # the client's link is 1500
            assert info.value.errno == errno.EMSGSIZE
            local = [r for r in sock.peer_errors() if r.origin == "local"]
            assert local and local[0].errno == errno.EMSGSIZE and local[0].info == 1500
            assert local[0].reporter is None and (local[0].type, local[0].code) == (0, 0)
            assert sock.send(b"x" * 1000, to) == 1000  # the Socket stays usable


def test_e5_b5_a_gso_batch_the_path_refuses_goes_out_as_single_datagrams() -> None:
    with (
        routed_hosts() as hosts,
        _listen(hosts.client, "0.0.0.0:0", peer_errors=True, dont_fragment=True) as sock,
    ):
        to = (ROUTED_SERVER4, DEAD_PORT)
        # Over the local MTU with DF: the run is refused, each datagram then
        # fails as a send would: the first one's own EMSGSIZE, none sent.
        with pytest.raises(OSError) as info:
            sock.send_batch([b"x" * 1600] * 8, to)
        assert info.value.errno == errno.EMSGSIZE and info.value.sent == 0  # type: ignore[attr-defined]
        # Within the local MTU: all go, and the router, whose far side is
        # 1280, reports them: each datagram, or a GSO run once as a whole.
        assert sock.send_batch([b"x" * 1400] * 8, to) == 8
        reports = reports_until(sock, 1)
        assert {(r.errno, r.info, r.reporter) for r in reports if r.origin == "icmp"} == {
            (errno.EMSGSIZE, 1280, (ROUTER_NEAR4, 0))
        }


def test_e4_b5_a_reported_emsgsize_is_not_taken_for_the_path_refusing_gso(backend: str) -> None:
    # A router's fragmentation-needed report leaves EMSGSIZE pending, the
    # very error a path that cannot take a GSO run gives. The next GSO
    # send meets it: the run must go out as GSO, not be sent again without
    # it and remembered as refused (B5), or every later batch to that peer
    # would lose GSO.
    if backend != "native":
        pytest.skip("UDP GSO is the native backend's")
    with (
        routed_hosts() as hosts,
        _listen(hosts.client, "0.0.0.0:0", peer_errors=True, dont_fragment=True) as sock,
    ):
        live = hosts.server.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        with live:
            live.bind((ROUTED_SERVER4, 0))
            live.settimeout(HANG)
            to = live.getsockname()
            sock.send(b"x" * 1400, to)  # over the router's far side, DF: a report comes back
            wait_until(lambda: report_queued(sock), what="the router's report")
            before = sock._gso_sends  # type: ignore[attr-defined]
            for _ in range(2):
                assert sock.send_batch([b"g" * 100] * 8, to) == 8
            assert sock._gso_sends == before + 2  # type: ignore[attr-defined]
            assert [len(live.recv(2000)) for _ in range(16)] == [100] * 16
            assert any(r.errno == errno.EMSGSIZE and r.info == 1280 for r in reports_until(sock, 1))


_CALLS: dict[str, Callable[[udpio.Socket, socket.socket, udpio.Address], object]] = {}


def _call(name: str) -> Callable[[Callable[..., object]], Callable[..., object]]:
    def register(fn: Callable[..., object]) -> Callable[..., object]:
        _CALLS[name] = fn
        return fn

    return register


@_call("send")
def _send(sock: udpio.Socket, live: socket.socket, to: udpio.Address) -> object:
    assert sock.send(b"call", to) == 4
    return live.recv(100)


@_call("send_batch")
def _send_batch(sock: udpio.Socket, live: socket.socket, to: udpio.Address) -> object:
    assert sock.send_batch([b"call"] * 3, to) == 3
    return [live.recv(100) for _ in range(3)]


@_call("send_many")
def _send_many(sock: udpio.Socket, live: socket.socket, to: udpio.Address) -> object:
    assert sock.send_many([(b"call", to)] * 3) == 3
    return [live.recv(100) for _ in range(3)]


@_call("recv")
def _recv(sock: udpio.Socket, live: socket.socket, to: udpio.Address) -> object:
    live.sendto(b"call", (ROUTED_CLIENT4, sock.bound_addr()[1]))
    return bytes(sock.recv(timeout=HANG)[0])


@_call("recv_batch")
def _recv_batch(sock: udpio.Socket, live: socket.socket, to: udpio.Address) -> object:
    live.sendto(b"call", (ROUTED_CLIENT4, sock.bound_addr()[1]))
    return [bytes(d.frame) for d in sock.recv_batch(timeout=HANG)]


@_call("reply")
def _reply(sock: udpio.Socket, live: socket.socket, to: udpio.Address) -> object:
    live.sendto(b"ask", (ROUTED_CLIENT4, sock.bound_addr()[1]))
    asked = sock.recv_datagram(timeout=HANG)
    assert sock.reply(b"call", asked) == 4
    return live.recv(100)


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_e7_e4_every_call_does_its_own_work_with_a_hosts_reports_queued(name: str) -> None:
    with routed_hosts() as hosts, _listen(hosts.client, "0.0.0.0:0", peer_errors=True) as sock:
        live = hosts.server.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        with live:
            live.bind((ROUTED_SERVER4, 0))
            live.settimeout(HANG)
            sock.send(b"anyone?", (ROUTED_SERVER4, DEAD_PORT))
            wait_until(lambda: report_queued(sock), what="the host's report")
            got = _CALLS[name](sock, live, live.getsockname())
            assert got in (b"call", [b"call"], [b"call"] * 3)
            assert [r.peer for r in reports_until(sock, 1)] == [(ROUTED_SERVER4, DEAD_PORT)]


# -- E3: the bound ----------------------------------------------------------------


def test_e3_a_socket_keeps_the_newest_1024_reports_and_says_how_many_it_dropped() -> None:
    with routed_hosts() as hosts, _listen(hosts.client, "127.0.0.1:0", peer_errors=True) as sock:
        ports = list(range(20000, 20000 + MAX_REPORTS + 76))
        for port in ports:
            # Each send meets the last one's report (E4): gathered, kept.
            sock.send(b"anyone?", ("127.0.0.1", port))
        first = sock.peer_errors()
        later: list[PeerError] = []

        def every_report_came() -> bool:
            later.extend(sock.peer_errors())
            return first.dropped + len(first) + len(later) == len(ports)

        wait_until(every_report_came, what="every report")
        assert len(first) == MAX_REPORTS and first.dropped > 0  # the bound held; the oldest went
        assert [r.peer[1] for r in first + later] == ports[first.dropped :]
        assert sock.peer_errors() == [] and sock.peer_errors().dropped == 0


# -- E6: a flood --------------------------------------------------------------------

_FLOOD = r"""
import socket, sys, time
# The Socket's own descriptor, shared: every datagram here is one the
# Socket sent, and each comes back as a port unreachable on its queue.
# (Its blocking mode is the Socket's: the open file is shared, so this
# process leaves it alone, and skips a datagram the buffer has no room for.)
sock = socket.socket(fileno=int(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic()
for i in range(int(sys.argv[2])):
    try:
        sock.sendto(b"x", ("127.0.0.1", 20000 + i % 1000))
    except OSError:
        pass  # the pending error of an earlier report: this process does not care
    if i % 100 == 99:
        ahead = (i + 1) / 50000 - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)  # 50,000 a second: a flood that leaves the receiver a core
print("done", flush=True)
"""

# 20,000 datagrams a second, paced: a rate either backend takes with room
# to spare when no report comes, so any datagram lost is the reports' doing.
_CLIENT = r"""
import socket, sys, time
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic()
for i in range(int(sys.argv[2])):
    client.sendto(b"%d" % i, ("127.0.0.1", int(sys.argv[1])))
    if i % 100 == 99:
        ahead = (i + 1) / 20000 - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)  # pacing the sender, not synchronising
print("done", flush=True)
"""


def test_e6_a_flood_of_reports_costs_no_datagram() -> None:
    datagrams, reports = 20_000, 100_000
    with routed_hosts() as hosts, _listen(hosts.client, "127.0.0.1:0", peer_errors=True) as sock:
        sock.conn().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        runner = ("ip", "netns", "exec", hosts.client.name)
        fd = sock.conn().fileno()
        with (
            python_child("-c", _FLOOD, str(fd), str(reports), runner=runner, pass_fds=(fd,)) as flood,
            python_child("-c", _CLIENT, str(sock.bound_addr()[1]), str(datagrams), runner=runner) as client,
        ):
            for child in (flood, client):
                assert readline_within(child, HANG) == "ready\n"
            for child in (flood, client):
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            got: list[int] = []
            gathered = 0
            while len(got) < datagrams - (sock.stats().kernel_drops or 0):
                got += [int(bytes(d.frame)) for d in sock.recv_batch(timeout=HANG)]
                errors = sock.peer_errors()
                gathered += len(errors) + errors.dropped
            assert readline_within(flood, HANG * 6) == "done\n"
            assert readline_within(client, HANG) == "done\n"
        errors = sock.peer_errors()
        gathered += len(errors) + errors.dropped
        drops = sock.stats().kernel_drops
        print(json.dumps({"received": len(got), "kernel_drops": drops, "reports": gathered}))
        assert drops == 0
        assert got == list(range(datagrams))
        # A real flood: tens of thousands of reports came while it received.
        assert gathered > 10_000
