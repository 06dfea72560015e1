"""Test hosts of the suite's own: two network namespaces joined by a veth pair (M5).

``two_hosts()`` builds a client host and a server host with addresses of
both families (the server has several of each), an MTU, GRO and offload
settings, and optionally a lossy, duplicating link; it removes every
namespace and link on the way out, also when the test fails. Addresses are
from ranges reserved for exactly this (198.18.0.0/15, benchmarking; a ULA
prefix), and the namespaces reach nothing but each other.

A socket belongs to the namespace of the thread that made it, and keeps it
when used from any other thread: ``Host.run(fn)`` runs ``fn`` on a short
helper thread that has joined the namespace (``setns(2)`` is per thread;
``os.setns`` on 3.12+, libc through ctypes before). ``Host.exec`` runs a
program there (``ip netns exec``).

Needs root and iproute2; ``skip_reason()`` says why not where they are
missing. Where ``UDPIO_TEST_REQUIRE_TOOLS`` is set (CI, which runs as
root), a missing piece fails the test instead: these tests must run there.

This kernel has no netem (``CONFIG_NET_SCH_NETEM`` is off), so the lossy
link is made with nftables on the client's output: ``numgen random`` drops
and ``dup to`` duplicates. Reordering has no such tool; the tests that
want it send in a shuffled order.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional, TypeVar

import pytest

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_counter = itertools.count()

#: The client's and the server's addresses on the link.
CLIENT4, CLIENT6 = "198.18.0.1", "fd75:6470:696f::1"
SERVER4 = ["198.18.0.2", "198.18.0.3", "198.18.0.4"]
SERVER6 = ["fd75:6470:696f::2", "fd75:6470:696f::3"]
BROADCAST4 = "198.18.0.255"


def skip_reason() -> Optional[str]:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    for tool in ("ip", "nft", "ethtool", "sysctl"):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian: iproute2, nftables, ethtool, procps)"
    return None


def require() -> None:
    """Skip (or, where CI requires these tests, fail) when they cannot run."""
    reason = skip_reason()
    if reason is None:
        return
    if os.environ.get("UDPIO_TEST_REQUIRE_TOOLS"):
        pytest.fail(f"namespace tests must run here: {reason}")
    pytest.skip(reason)


def _sh(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):
        os.setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


@dataclass
class Host:
    """One namespace: its name and its end of the veth pair."""

    name: str
    device: str

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a thread inside this namespace; its result, or its exception."""
        out: list[T] = []
        errors: list[BaseException] = []

        def body() -> None:
            try:
                fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
                try:
                    _setns(fd)
                finally:
                    os.close(fd)
                out.append(fn())
            except BaseException as exc:  # handed to the caller below
                errors.append(exc)

        thread = threading.Thread(target=body, name=f"in {self.name}")
        thread.start()
        thread.join(30)
        if thread.is_alive():
            raise AssertionError(f"{fn!r} still running in {self.name} after 30 s")
        if errors:
            raise errors[0]
        return out[0]

    def exec(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a program in this namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        """Start a program in this namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], text=True, **kwargs)  # type: ignore[call-overload,no-any-return]

    def ifindex(self) -> int:
        """The index of this host's veth end, as its own namespace numbers it."""
        return self.run(lambda: socket.if_nametoindex(self.device))

    def link_local(self) -> str:
        """This host's link-local IPv6 address on its veth end."""
        out = self.exec("ip", "-6", "-o", "addr", "show", "dev", self.device, "scope", "link").stdout
        match = re.search(r"inet6 (fe80::[0-9a-f:]+)/", out)
        assert match, out
        return match.group(1)

    def rx_packets(self) -> int:
        """Packets this host's veth end has received (its own counter)."""
        return int(self.exec("cat", f"/sys/class/net/{self.device}/statistics/rx_packets").stdout)

    def udp_socket(self, family: int = socket.AF_INET) -> socket.socket:
        """A plain UDP socket made in this namespace."""
        return self.run(lambda: socket.socket(family, socket.SOCK_DGRAM))


@dataclass
class Link:
    """Two hosts joined by one veth pair, and what was set on it."""

    client: Host
    server: Host
    mtu: int
    impaired: list[str] = field(default_factory=list)

    def impair(self, loss_percent: int, duplicate_percent: int, port: int) -> None:
        """Duplicate (on the client's way out) and drop (on the server's way in) datagrams to ``port``.

        nftables, at random: a drop on the client's output would fail its
        sendto with EPERM, so the loss is at the server's prerouting, and a
        counter after it counts what reached the server's UDP layer
        (``arrived``).
        """
        chance = f"udp dport {port} numgen random mod 100"
        self._nft(
            self.client,
            f'''
table ip udpio_impair {{
  chain out {{
    type filter hook output priority 0; policy accept;
    {chance} < {duplicate_percent} dup to {SERVER4[0]} device "{self.client.device}"
  }}
}}''',
        )
        self._nft(
            self.server,
            f"""
table ip udpio_impair {{
  counter arrived {{}}
  chain in {{
    type filter hook prerouting priority -300; policy accept;
    {chance} < {loss_percent} drop
    udp dport {port} counter name "arrived"
  }}
}}""",
        )
        self.impaired.append(f"loss {loss_percent}%, duplicate {duplicate_percent}%")

    def arrived(self) -> int:
        """Datagrams that passed the impairment into the server's stack (its counter)."""
        out = self.server.exec("nft", "list", "counter", "ip", "udpio_impair", "arrived").stdout
        match = re.search(r"packets (\d+)", out)
        assert match, out
        return int(match.group(1))

    @staticmethod
    def _nft(host: Host, rules: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", host.name, "nft", "-f", "-"],
            input=rules,
            text=True,
            capture_output=True,
            timeout=30,
            check=True,
        )


@contextmanager
def two_hosts(
    mtu: int = 1500, gro: bool = False, sender_tso: bool = True, ipv6: bool = True
) -> Iterator[Link]:
    """A client and a server namespace joined by veth; removed on exit, whatever happened.

    ``mtu`` on both ends; ``gro`` turns GRO (and threaded NAPI) on at the
    server's end (a real device joining datagrams); ``sender_tso=False`` turns segmentation
    offload off at the client's end; ``ipv6=False`` leaves IPv6 off the
    link, and with static neighbours no packet but the test's crosses it.
    """
    require()
    tag = f"udpio{os.getpid()}x{next(_counter)}"
    client, server = Host(f"{tag}c", "vc"), Host(f"{tag}s", "vs")
    made: list[str] = []
    try:
        for host in (client, server):
            _sh("ip", "netns", "add", host.name)
            made.append(host.name)
            _sh("ip", "-n", host.name, "link", "set", "lo", "up")
        _veth(client, "vc", server, "vs")
        for host in (client, server):
            # No IPv6 at all, or its link-local address usable at once (as
            # nodad makes the others).
            setting = "disable_ipv6=1" if not ipv6 else "accept_dad=0"
            _sh("ip", "netns", "exec", host.name, "sysctl", "-q", f"net.ipv6.conf.{host.device}.{setting}")
            _sh("ip", "-n", host.name, "link", "set", host.device, "mtu", str(mtu))
        _sh("ip", "-n", client.name, "addr", "add", f"{CLIENT4}/24", "dev", "vc")
        for address in SERVER4:
            _sh("ip", "-n", server.name, "addr", "add", f"{address}/24", "brd", BROADCAST4, "dev", "vs")
        if ipv6:
            _sh("ip", "-n", client.name, "addr", "add", f"{CLIENT6}/64", "dev", "vc", "nodad")
            for address in SERVER6:
                _sh("ip", "-n", server.name, "addr", "add", f"{address}/64", "dev", "vs", "nodad")
        if gro:
            _sh("ip", "netns", "exec", server.name, "ethtool", "-K", "vs", "gro", "on")
        if not sender_tso:
            _sh("ip", "netns", "exec", client.name, "ethtool", "-K", "vc", "tso", "off")
        for host in (client, server):
            _sh("ip", "-n", host.name, "link", "set", host.device, "up")
        if gro:
            # Threaded NAPI (settable once the device is up): its poll runs in
            # a kernel thread of its own, so packets queue up behind a
            # sender's loop and GRO has runs to join (softirq NAPI on the
            # sender's CPU would poll them one by one).
            _sh("ip", "netns", "exec", server.name, "sh", "-c", "echo 1 > /sys/class/net/vs/threaded")
        _static_neighbours(client, server)
        yield Link(client, server, mtu)
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def _veth(one: Host, one_end: str, other: Host, other_end: str) -> None:
    # A veth pair between two namespaces, each end named.
    _sh(
        "ip",
        "-n",
        one.name,
        "link",
        "add",
        one_end,
        "type",
        "veth",
        "peer",
        "name",
        other_end,
        "netns",
        other.name,
    )


def _mac(host: Host) -> str:
    return _sh("ip", "netns", "exec", host.name, "cat", f"/sys/class/net/{host.device}/address").strip()


def _static_neighbours(client: Host, server: Host) -> None:
    # No ARP on the link: every packet that crosses it is a test's.
    server_mac, client_mac = _mac(server), _mac(client)
    for address in SERVER4:
        _sh(
            "ip",
            "-n",
            client.name,
            "neigh",
            "replace",
            address,
            "lladdr",
            server_mac,
            "dev",
            "vc",
            "nud",
            "permanent",
        )
    _sh(
        "ip",
        "-n",
        server.name,
        "neigh",
        "replace",
        CLIENT4,
        "lladdr",
        client_mac,
        "dev",
        "vs",
        "nud",
        "permanent",
    )


#: The routed hosts' addresses: the client's side of the router, and the
#: server's (E7).
NEAR4, FAR4 = "198.18.1.0/24", "198.18.2.0/24"
ROUTED_CLIENT4, ROUTER_NEAR4, ROUTER_FAR4, ROUTED_SERVER4 = (
    "198.18.1.1",
    "198.18.1.254",
    "198.18.2.254",
    "198.18.2.1",
)
ROUTED_CLIENT6, ROUTER_NEAR6 = "fd75:6470:696f:1::1", "fd75:6470:696f:1::fe"
ROUTER_FAR6, ROUTED_SERVER6 = "fd75:6470:696f:2::fe", "fd75:6470:696f:2::1"

#: The kernel's ICMP rate limits, off (the defaults let one error a second
#: per peer and 1,000 a second in all through): a test counts every report.
_NO_ICMP_LIMITS = (
    "net.ipv4.icmp_ratelimit=0",
    "net.ipv4.icmp_msgs_per_sec=1000000",
    "net.ipv4.icmp_msgs_burst=1000000",
    "net.ipv6.icmp.ratelimit=0",
)


@dataclass
class Routed:
    """A client and a server with a router between them (E7)."""

    client: Host
    router: Host
    server: Host
    far_mtu: int


@contextmanager
def routed_hosts(far_mtu: int = 1280) -> Iterator[Routed]:
    """Client -- router -- server, each its own namespace; removed on exit, whatever happened.

    The router forwards both families; its link to the server has MTU
    ``far_mtu`` (the client's link 1500), so a datagram the client sends
    with DF over that size gets a real router's fragmentation-needed
    (IPv4) or packet-too-big (IPv6) report. ICMP rate limits are off in
    all three, so every report a test provokes comes.
    """
    require()
    tag = f"udpio{os.getpid()}r{next(_counter)}"
    client, router, server = Host(f"{tag}c", "vc"), Host(f"{tag}r", "rn"), Host(f"{tag}s", "vs")
    made: list[str] = []
    try:
        for host in (client, router, server):
            _sh("ip", "netns", "add", host.name)
            made.append(host.name)
            _sh("ip", "-n", host.name, "link", "set", "lo", "up")
            for setting in _NO_ICMP_LIMITS:
                # Some kernels keep a limit global, not per namespace: skip what is not there.
                subprocess.run(
                    ["ip", "netns", "exec", host.name, "sysctl", "-q", "-w", setting],
                    capture_output=True,
                    timeout=30,
                )
        _veth(client, "vc", router, "rn")
        _veth(router, "rf", server, "vs")
        _sh("ip", "netns", "exec", router.name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        _sh("ip", "netns", "exec", router.name, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        for ns, dev, mtu, v4, v6 in (
            (client.name, "vc", 1500, f"{ROUTED_CLIENT4}/24", f"{ROUTED_CLIENT6}/64"),
            (router.name, "rn", 1500, f"{ROUTER_NEAR4}/24", f"{ROUTER_NEAR6}/64"),
            (router.name, "rf", far_mtu, f"{ROUTER_FAR4}/24", f"{ROUTER_FAR6}/64"),
            (server.name, "vs", far_mtu, f"{ROUTED_SERVER4}/24", f"{ROUTED_SERVER6}/64"),
        ):
            _sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.accept_dad=0")
            _sh("ip", "-n", ns, "link", "set", dev, "mtu", str(mtu))
            _sh("ip", "-n", ns, "addr", "add", v4, "dev", dev)
            _sh("ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad")
            _sh("ip", "-n", ns, "link", "set", dev, "up")
        _sh("ip", "-n", client.name, "route", "add", "default", "via", ROUTER_NEAR4)
        _sh("ip", "-n", client.name, "-6", "route", "add", "default", "via", ROUTER_NEAR6)
        _sh("ip", "-n", server.name, "route", "add", "default", "via", ROUTER_FAR4)
        _sh("ip", "-n", server.name, "-6", "route", "add", "default", "via", ROUTER_FAR6)
        yield Routed(client, router, server, far_mtu)
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
