"""Throughput: P8, datagrams per second from a sender process to a verifying receiver."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from udpio import _socket
from udpio._bench.common import (
    RCVBUF,
    Opened,
    backends,
    interleaved,
    listen,
    package_root,
    plain_receiver,
    set_options,
)
from udpio._bench.figures import LIMITS, Config, Figure
from udpio._gro import set_gro

__all__ = ["p8_rate", "run_p8"]

# -- P8: datagrams per second, sender to a verifying receiver ---------------------------------------
#
# The sender runs in a child process (threads in one process would measure
# the GIL); the receiver checks that sequence numbers only go up and counts
# what arrives. Loopback drops what the receiver cannot take in time, so the
# figure is datagrams delivered per second.

_P8_SENDER = """
import struct, sys
from udpio import _socket
from udpio._bench.common import backends
kind, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
frames = [struct.pack("!I", i) + b"s" * 60 for i in range(count)]
dst = ("127.0.0.1", port)
if kind == "plain":
    import socket
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sendto = tx.sendto
    for frame in frames:
        sendto(frame, dst)
else:
    tx = _socket.listen_with(backends()[kind], "127.0.0.1:0")
    for i in range(0, count, 64):
        tx.send_batch(frames[i : i + 64], dst)
tx.close()
"""


def p8_rate(kind: str, count: int, gro: bool = True, options: bool = True) -> float:
    """Datagrams per second delivered from a ``kind`` sender to a ``kind`` receiver.

    ``gro=False`` turns UDP GRO off on a native receiver, to show what it
    adds; ``options=False`` turns M4's options off on it (P10).
    """
    import struct

    unpack = struct.Struct("!I").unpack_from
    if kind == "plain":
        rx: Any = plain_receiver()
        port = rx.getsockname()[1]
    else:
        rx = listen(backends()[kind], rcvbuf=RCVBUF)
        port = rx.local_addr()[1]
        if not gro:
            rx._gro = set_gro(rx.conn(), False)
        if not options:
            set_options(rx, False)
    root = package_root()
    env = dict(os.environ, PYTHONPATH=root)
    child = subprocess.Popen(
        [sys.executable, "-c", _P8_SENDER, kind, str(port), str(count)], env=env, cwd=root
    )
    received, last, first_at, last_at = 0, -1, 0.0, 0.0
    try:
        buf = bytearray(2048)
        while last < count - 1:
            try:
                if kind == "plain":
                    rx.settimeout(1.0)
                    rx.recvfrom_into(buf)
                    seq = unpack(buf)[0]
                else:
                    frame, _ = rx.recv(timeout=1.0)
                    seq = unpack(frame)[0]
            except TimeoutError:
                break  # the rest was dropped
            if seq <= last:
                raise RuntimeError(f"bench: P8 {kind}: sequence went from {last} to {seq}")
            if received == 0:
                first_at = time.perf_counter()
            last_at = time.perf_counter()
            received += 1
            last = seq
    finally:
        child.wait(30)
        rx.close()
    return received / (last_at - first_at) if received > 1 and last_at > first_at else 0.0


# -- the run ----------------------------------------------------------------------------------


def run_p8(config: Config, kinds: dict[str, type[_socket.Socket]], opened: Opened) -> list[Figure]:
    """P8: datagrams/s from a sender process to a verifying receiver, against a plain pair."""
    del opened  # each round opens and closes its own receiver
    count = config.batch * 10
    rounds = max(3, config.rounds // 5)
    # (backend shown, backend, GRO on the receiver): the native backend also
    # without GRO, to show what joining the sender's GSO runs adds (no target).
    cases = [(name, name, True) for name in kinds]
    if "native" in kinds:
        cases.append(("native, GRO off", "native", False))
    sides: list[Callable[[], float]] = [functools.partial(p8_rate, "plain", count)]
    sides += [functools.partial(p8_rate, kind, count, gro) for _, kind, gro in cases]
    rates = interleaved(rounds, sides)
    figures = []
    what = f"datagrams/s, sender process to verifying receiver ({count:,} per round)"
    for i, (shown, kind, gro) in enumerate(cases, 1):
        limit = LIMITS["P8"].get(kind) if gro else None
        ratio = round(rates[i] / rates[0], 2) if rates[0] else 0.0
        target, met = ("-", None) if limit is None else (f">= {limit:.2f}x", ratio >= limit)
        figures.append(
            Figure("P8", what, shown, "datagrams/s", rates[i], rates[0], "plain pair", target, limit, met)
        )
    return figures
