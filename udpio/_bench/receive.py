"""Receiving: P1 (recv of queued datagrams), P5 (no allocation per receive), P6 (against asyncio)."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import socket
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict

import udpio
from udpio import _socket
from udpio._bench.common import (
    LOOPBACK,
    RCVBUF,
    Opened,
    check_marker,
    fill,
    interleaved,
    listen,
    package_root,
    per_item_ns,
    plain_receiver,
)
from udpio._bench.figures import LIMITS, Config, Figure, ratio_figure

__all__ = ["p1_udpio", "run_p1", "run_p5", "run_p6", "run_p6_here"]

# -- P1: recv of queued datagrams ----------------------------------------------------------


def _p1_plain(sender: socket.socket, rx: socket.socket, batch: int) -> float:
    buf = bytearray(65536)
    fill(sender, rx.getsockname(), batch)
    recv_into = rx.recvfrom_into
    start = time.perf_counter()
    for _ in range(batch):
        recv_into(buf)
    elapsed = time.perf_counter() - start
    nbytes, _ = recv_into(buf)
    check_marker(bytes(buf[:nbytes]), "P1 baseline")
    return per_item_ns(elapsed, batch)


def p1_udpio(sender: socket.socket, rx: udpio.Socket, batch: int) -> float:
    dst = rx.local_addr()
    assert dst is not None
    fill(sender, dst[:2], batch)
    recv = rx.recv
    start = time.perf_counter()
    for _ in range(batch):
        recv()
    elapsed = time.perf_counter() - start
    frame, _ = rx.recv(timeout=5.0)
    check_marker(bytes(frame), "P1 udpio")
    return per_item_ns(elapsed, batch)


# -- P5: allocation per receive -----------------------------------------------------------------


def _p5_allocation(cls: type[_socket.Socket], receives: int) -> dict[str, float]:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = listen(cls, rcvbuf=RCVBUF)
    plain = plain_receiver()
    chunk = 1000
    try:
        dst = rx.local_addr()
        assert dst is not None
        buffers: set[int] = set()
        plain_objects: set[int] = set()
        for _ in range(2):  # warm-up: pool, selector, interned addresses
            fill(sender, dst[:2], chunk)
            for _ in range(chunk + 1):
                rx.recv()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        done = 0
        while done < receives:
            fill(sender, dst[:2], chunk)
            for _ in range(chunk + 1):
                frame, _ = rx.recv()
                buffers.add(id(frame.obj))
            done += chunk
        del frame
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        # The baseline: recvfrom() makes a new bytes object for every datagram.
        kept = []
        for _ in range(3):
            fill(sender, plain.getsockname(), 200)
            for _ in range(201):
                data, _ = plain.recvfrom(65536)
                kept.append(data)
                plain_objects.add(id(data))
        return {
            "growth_bytes": float(growth),
            "receives": float(done),
            "distinct_buffers": float(len(buffers)),
            "plain_distinct_objects_per_receive": len(plain_objects) / len(kept),
        }
    finally:
        sender.close()
        rx.close()
        plain.close()


# -- P6: asyncio DatagramProtocol --------------------------------------------------------------------


class _Counter(asyncio.DatagramProtocol):
    def __init__(self, target: int, done: asyncio.Future[None]) -> None:
        self.count = 0
        self.target = target
        self.done = done

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.count += 1
        if self.count == self.target and not self.done.done():
            self.done.set_result(None)


def _p6_asyncio(loop: asyncio.AbstractEventLoop, sender: socket.socket, batch: int) -> float:
    async def one_round() -> float:
        done: asyncio.Future[None] = loop.create_future()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((LOOPBACK, 0))
        fill(sender, sock.getsockname(), batch - 1)  # batch datagrams including the marker
        transport, _ = await loop.create_datagram_endpoint(lambda: _Counter(batch, done), sock=sock)
        start = time.perf_counter()
        try:
            await asyncio.wait_for(done, 10)
        finally:
            elapsed = time.perf_counter() - start
            transport.close()
        return per_item_ns(elapsed, batch)

    return loop.run_until_complete(one_round())


def _p6_udpio(sender: socket.socket, rx: udpio.Socket, batch: int) -> float:
    # The same receive work as the asyncio side: every datagram, marker included.
    dst = rx.local_addr()
    assert dst is not None
    fill(sender, dst[:2], batch - 1)
    recv = rx.recv
    start = time.perf_counter()
    for _ in range(batch):
        recv()
    return per_item_ns(time.perf_counter() - start, batch)


def run_p1(config: Config, kinds: dict[str, type[_socket.Socket]], opened: Opened) -> list[Figure]:
    """P1: recv of queued 64-byte datagrams, each backend against a recvfrom_into loop."""
    sender = opened.add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    plain_rx = opened.add(plain_receiver())
    rxs = {name: opened.add(listen(cls, rcvbuf=RCVBUF)) for name, cls in kinds.items()}
    names = list(kinds)
    _p1_plain(sender, plain_rx, config.batch)  # warm-up: caches, the pool, the allocator
    for rx in rxs.values():
        p1_udpio(sender, rx, config.batch)
    sides: list[Callable[[], float]] = [lambda: _p1_plain(sender, plain_rx, config.batch)]
    sides += [functools.partial(p1_udpio, sender, rxs[name], config.batch) for name in names]
    recv = interleaved(config.rounds, sides)
    return [
        ratio_figure("P1", "recv, 64 B queued", n, recv[i], recv[0], "recvfrom_into loop", LIMITS["P1"][n])
        for i, n in enumerate(names, 1)
    ]


#: Read buffers a Socket reads into, reused: one (pure), the batch's slots
#: (native: at most 64, udpio/_c/udpio.h's RECV_MANY).
READ_SLOTS = {"python": 1, "native": 64}


def run_p5(config: Config, kinds: dict[str, type[_socket.Socket]], opened: Opened) -> list[Figure]:
    """P5: traced memory growth and the read buffers used over many receives."""
    del opened  # the measurement opens and closes its own sockets
    figures = []
    for name, cls in kinds.items():
        alloc = _p5_allocation(cls, config.alloc_receives)
        receives = alloc["receives"]
        per_receive = alloc["growth_bytes"] / receives
        buffers = int(alloc["distinct_buffers"])
        what = f"traced memory growth over {int(receives):,} receives; read buffers used: {buffers}"
        # Reused buffers, not one per datagram: the pure Socket reads into
        # one, the native one into its batch's slots.
        met = per_receive < 1.0 and buffers <= READ_SLOTS[name]
        figures.append(
            Figure(
                "P5",
                what,
                name,
                "B/receive",
                per_receive,
                None,
                "",
                f"flat, <= {READ_SLOTS[name]} buffers",
                None,
                met,
            )
        )
    return figures


def run_p6_here(config: Config, kinds: dict[str, type[_socket.Socket]]) -> list[float]:
    """asyncio's median, then each backend's, measured in this process after a warm-up."""
    opened = Opened()
    loop = asyncio.new_event_loop()
    try:
        sender = opened.add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        rxs = {name: opened.add(listen(cls, rcvbuf=RCVBUF)) for name, cls in kinds.items()}
        _p6_asyncio(loop, sender, config.batch)  # warm-up, on every side
        for rx in rxs.values():
            _p6_udpio(sender, rx, config.batch)
        sides: list[Callable[[], float]] = [lambda: _p6_asyncio(loop, sender, config.batch)]
        sides += [functools.partial(_p6_udpio, sender, rx, config.batch) for rx in rxs.values()]
        return interleaved(config.rounds, sides)
    finally:
        loop.close()
        opened.close()


_P6_CHILD = """
import json, sys
from udpio._bench import common, figures, receive
config = figures.Config(**json.loads(sys.argv[1]))
kinds = {name: cls for name, cls in common.backends().items() if name in sys.argv[2:]}
print(json.dumps(receive.run_p6_here(config, kinds)))
"""

#: The C allocator's state decides what asyncio's fresh 256 KiB buffer per
#: datagram costs: by default glibc may map and unmap it, or trim the heap,
#: each time; with both thresholds raised it comes from the heap, which is
#: asyncio at its best (a long-lived process can drift into either state).
#: Each state is measured in a fresh child process, so the figure does not
#: depend on what ran before it.
_P6_STATES = {
    "default malloc": {},
    "256 KiB from the heap": {
        "MALLOC_MMAP_THRESHOLD_": str(1 << 20),
        "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
    },
}


def run_p6(config: Config, kinds: dict[str, type[_socket.Socket]], opened: Opened) -> list[Figure]:
    """P6: recv against asyncio's DatagramProtocol, in a fresh child per allocator state."""
    import subprocess

    del opened  # the children open their own sockets
    root = package_root()
    names = list(kinds)
    figures = []
    for state, extra in _P6_STATES.items():
        env = dict(os.environ, PYTHONPATH=root, **extra)
        child = subprocess.run(
            [sys.executable, "-c", _P6_CHILD, json.dumps(asdict(config)), *names],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if child.returncode != 0:
            raise RuntimeError(f"bench: P6 ({state}) failed in its child process:\n{child.stderr}")
        results = json.loads(child.stdout)
        what = f"recv vs asyncio DatagramProtocol, warm, {state} (0.33x = 3x fewer ns)"
        figures += [
            ratio_figure("P6", what, n, results[i], results[0], "asyncio, default loop", LIMITS["P6"][n])
            for i, n in enumerate(names, 1)
        ]
    return figures
