"""Latency: P3 (a ping-pong round trip) and P4 (close() waking a blocked recv)."""

from __future__ import annotations

import functools
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Optional

import udpio
from udpio import _socket
from udpio._bench.common import (
    LOOPBACK,
    PAYLOAD,
    Opened,
    interleaved,
    listen,
    package_root,
    percentile,
    plain_receiver,
)
from udpio._bench.figures import LIMITS, Config, Figure, format_time, ratio_figure

__all__ = ["run_p3", "run_p4"]

#
# The echo side runs in its own process, as a daemon's peer would: in one
# process the two ping-pong threads would mostly measure GIL hand-offs.

_PLAIN_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
buf = bytearray(2048)
while True:
    n, src = s.recvfrom_into(buf)
    if n == 0:
        break
    s.sendto(memoryview(buf)[:n], src)
"""

_UDPIO_ECHO = """
import sys
from udpio import _socket
from udpio._bench.common import backends
s = _socket.listen_with(backends()[sys.argv[1]], "127.0.0.1:0")
print(s.local_addr()[1], flush=True)
while True:
    frame, src = s.recv()
    if len(frame) == 0:
        break
    s.send(frame, src)
s.close()
"""


class _EchoProcess:
    """An echo server in a child process; an empty datagram stops it."""

    def __init__(self, program: str, cpu: Optional[int], *args: str) -> None:
        import subprocess

        root = package_root()
        env = dict(os.environ, PYTHONPATH=root)
        # cwd: "-c" puts the working directory first on sys.path, where a
        # source checkout would shadow the installed package.
        self.process = subprocess.Popen(
            [sys.executable, "-c", program, *args],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=root,
        )
        if cpu is not None:
            os.sched_setaffinity(self.process.pid, {cpu})
        assert self.process.stdout is not None
        self.addr = (LOOPBACK, int(self.process.stdout.readline()))

    def stop(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poke:
            poke.sendto(b"", self.addr)
        try:
            self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()


@contextmanager
def _pinned_apart() -> Iterator[Optional[int]]:
    """Pin this thread to one CPU and yield another for the echo child (Linux, 2+ CPUs).

    Unpinned, the same code measured anywhere from 1.0x to 1.5x run to run on
    a shared 2-core machine: which cores the scheduler picks dominates.
    Pinned, both sides run on the same topology and the spread narrows.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    original = os.sched_getaffinity(0)
    if len(original) < 2:
        yield None
        return
    mine, theirs = sorted(original)[:2]
    os.sched_setaffinity(0, {mine})
    try:
        yield theirs
    finally:
        os.sched_setaffinity(0, original)


def _median_round_trip_ns(ping: Callable[[], None], count: int) -> float:
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        ping()
        samples.append(clock() - start)
    return float(statistics.median(samples))


def _p3_plain(server: _EchoProcess, client: socket.socket, count: int) -> float:
    dst = server.addr
    buf = bytearray(2048)

    def ping() -> None:
        client.sendto(PAYLOAD, dst)
        client.recvfrom_into(buf)

    return _median_round_trip_ns(ping, count)


def _p3_udpio(server: _EchoProcess, client: udpio.Socket, count: int) -> float:
    dst = server.addr

    def ping() -> None:
        client.send(PAYLOAD, dst)
        client.recv()

    return _median_round_trip_ns(ping, count)


# -- P4: close -> ClosedError ---------------------------------------------------------------------


def _p4_wake_latencies_ns(cls: type[_socket.Socket], trials: int) -> list[float]:
    latencies = []
    for _ in range(trials):
        sock = listen(cls)
        woke: list[int] = []
        entered = threading.Event()

        def reader(
            sock: udpio.Socket = sock, woke: list[int] = woke, entered: threading.Event = entered
        ) -> None:
            entered.set()
            try:
                sock.recv()
            except udpio.ClosedError:
                woke.append(time.perf_counter_ns())

        thread = threading.Thread(target=reader)
        thread.start()
        entered.wait()
        _until_blocked(thread)
        closed_at = time.perf_counter_ns()
        sock.close()
        thread.join(10)
        if woke:
            latencies.append(float(woke[0] - closed_at))
    return latencies


def _until_blocked(thread: threading.Thread) -> None:
    # The reader is "blocked" once its stack shows udpio's selector wait.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident or -1)
        while frame is not None:
            if frame.f_code.co_name == "_wait":
                return
            frame = frame.f_back
        time.sleep(0.0002)


def run_p3(config: Config, kinds: dict[str, type[_socket.Socket]], opened: Opened) -> list[Figure]:
    """P3: the median ping-pong round trip of each backend and of two blocking sockets."""
    plain_client = opened.add(plain_receiver())
    clients = {name: opened.add(listen(cls)) for name, cls in kinds.items()}
    names = list(kinds)
    with _pinned_apart() as echo_cpu:
        plain_echo = _EchoProcess(_PLAIN_ECHO, echo_cpu)
        echoes = {name: _EchoProcess(_UDPIO_ECHO, echo_cpu, name) for name in names}
        try:
            _p3_plain(plain_echo, plain_client, config.round_trips)  # warm-up
            for name in names:
                _p3_udpio(echoes[name], clients[name], config.round_trips)
            sides: list[Callable[[], float]] = [
                lambda: _p3_plain(plain_echo, plain_client, config.round_trips)
            ]
            sides += [functools.partial(_p3_udpio, echoes[n], clients[n], config.round_trips) for n in names]
            trips = interleaved(config.rounds, sides)
        finally:
            plain_echo.stop()
            for echo in echoes.values():
                echo.stop()
    what = "ping-pong round trip, echo in a child process (median)"
    return [
        ratio_figure("P3", what, n, trips[i], trips[0], "two blocking sockets", LIMITS["P3"][n])
        for i, n in enumerate(names, 1)
    ]


def run_p4(config: Config, kinds: dict[str, type[_socket.Socket]], opened: Opened) -> list[Figure]:
    """P4: the p99 of close() waking a recv blocked on another thread."""
    del opened  # each trial opens and closes its own Socket
    figures = []
    for name, cls in kinds.items():
        latencies = _p4_wake_latencies_ns(cls, config.wake_trials)
        p99 = percentile(latencies, 0.99)
        what = (
            f"close -> ClosedError, p99 of {len(latencies)} wake-ups "
            f"(median {format_time(statistics.median(latencies))}, max {format_time(max(latencies))})"
        )
        figures.append(Figure("P4", what, name, "ns", p99, None, "", "p99 < 1 ms", None, p99 < 1e6))
    return figures
