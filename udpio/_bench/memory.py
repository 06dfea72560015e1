"""P11: many Sockets: resident memory per Socket, and what each one's first recv costs.

Measured in a fresh interpreter (``per_socket`` starts one), so
that memory the benchmark's other figures left to the allocator cannot
hide or inflate a Socket's: it opens a few Sockets first (imports, the
buffer pool, the allocator's arenas), then ``count`` Sockets that each
receive ``datagrams`` datagrams of 64 bytes, and reports the growth of
resident memory (``/proc/self/statm``) per Socket and the time of each
Socket's first receive call.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from typing import Optional

from udpio import _socket
from udpio._bench.common import Opened
from udpio._bench.figures import Config, Figure

__all__ = ["measure", "per_socket", "run_p11"]

#: P11's bounds: resident bytes per Socket after one small datagram (one
#: read buffer's worth), and the first native recv.
MEMORY_LIMIT = 80 * 1024
FIRST_RECV_LIMIT_NS = 50_000


def _resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _socket_class(backend: str) -> type[_socket.Socket]:
    if backend == "python":
        return _socket.Socket
    from udpio import _backend

    return _backend.native_socket()


def _round(cls: type[_socket.Socket], count: int, datagrams: int, batch: bool) -> tuple[int, list[int]]:
    # Opens `count` Sockets, gives each `datagrams`, receives them; returns
    # the growth of resident memory and each Socket's first receive, in ns.
    # The Sockets stay open until both are read.
    gc.collect()
    before = _resident()
    socks = [_socket.listen_with(cls, "127.0.0.1:0") for _ in range(count)]
    firsts = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for sock in socks:
                local = sock.bound_addr()
                for _ in range(datagrams):
                    sender.sendto(b"d" * 64, local)
        for sock in socks:
            started = time.perf_counter_ns()
            got = _receive(sock, datagrams, batch)
            firsts.append(time.perf_counter_ns() - started)
            while got < datagrams:
                got += _receive(sock, datagrams - got, batch)
        return _resident() - before, firsts
    finally:
        for sock in socks:
            sock.close()


def _receive(sock: _socket.Socket, most: int, batch: bool) -> int:
    # One receive call; how many datagrams it returned.
    if batch:
        return len(sock.recv_batch(most, timeout=10))
    sock.recv(timeout=10)
    return 1


def measure(backend: str, count: int, datagrams: int = 1, batch: bool = False) -> dict[str, float]:
    """In this process: resident bytes per Socket and the first receive's median and p90 (ns).

    Meant for a fresh interpreter (``per_socket`` runs one). Needs four
    descriptors per Socket; raises the soft limit as far as the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * count + 64
    if soft < need:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard), hard)
        )
    cls = _socket_class(backend)
    _round(cls, 8, datagrams, batch)  # warm-up: code paths, the pool, the allocator
    growth, firsts = _round(cls, count, datagrams, batch)
    firsts.sort()
    return {
        "per_socket": growth / count,
        "first_median_ns": statistics.median(firsts),
        "first_p90_ns": firsts[int(0.9 * (len(firsts) - 1))],
    }


def per_socket(backend: str, count: int, datagrams: int = 1, batch: bool = False) -> dict[str, float]:
    """``measure`` in a fresh interpreter running this install of udpio."""
    code = (
        "import json, sys; from udpio._bench.memory import measure; "
        "print(json.dumps(measure(*json.loads(sys.argv[1]))))"
    )
    args = [sys.executable, "-c", code, json.dumps([backend, count, datagrams, batch])]
    # Run from the folder that holds this very udpio, so that "-c" (which
    # puts the working directory first on sys.path) imports it and not a
    # source tree the benchmark happens to be started in.
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=here)
    if done.returncode != 0:
        raise RuntimeError(f"udpio: the P11 measurement failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def run_p11(config: Config, kinds: dict[str, type[_socket.Socket]], opened: Opened) -> list[Figure]:
    """P11: resident memory per Socket with many Sockets, and the first native recv."""
    del opened  # the measurement runs in its own process
    count = config.many_sockets
    figures = []
    for name in kinds:
        one = per_socket(name, count)
        batch = per_socket(name, max(count // 10, 10), 64, batch=True)
        kib = one["per_socket"] / 1024
        figures.append(
            _memory_figure(f"resident per Socket, {count:,} Sockets, one 64 B datagram each", name, kib, 80)
        )
        # "About 64 pages": a batch of 64 small datagrams, beside one read buffer.
        pages = 64 * os.sysconf("SC_PAGE_SIZE") / 1024
        what = "resident per Socket after a recv_batch of 64 datagrams of 64 B"
        figures.append(_memory_figure(what, name, batch["per_socket"] / 1024, 80 + pages))
        if name == "native":
            first = one["first_median_ns"]
            met = first <= FIRST_RECV_LIMIT_NS
            what = (
                f"first recv on each of {count:,} Sockets, median (p90 {one['first_p90_ns'] / 1000:.1f} µs)"
            )
            figures.append(Figure("P11", what, name, "ns", first, None, "-", "<= 50 µs", None, met))
    return figures


def _memory_figure(what: str, backend: str, kib: float, limit_kib: Optional[float]) -> Figure:
    met = None if limit_kib is None else round(kib, 2) <= limit_kib
    target = "-" if limit_kib is None else f"<= {limit_kib:.0f} KiB"
    return Figure("P11", what, backend, "KiB", kib, None, "-", target, None, met)
