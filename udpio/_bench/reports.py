"""P13: what ``peer_errors=True`` costs: nothing while no report comes, and little while they flood in.

P1, P2 and P7 with the option on and off, interleaved in one run (each
row's baseline the "off" side); then P1 on a Socket whose own datagrams to
a dead port come back as reports while it receives (the reports are made
by a helper process sending on the Socket's very descriptor, so they are
about this Socket's datagrams and cost the measured thread no CPU of
their own), against the same Socket with no reports coming. Outside a
test namespace the kernel lets about 1,000 such reports a second through
(``net.ipv4.icmp_msgs_per_sec``); the row says how many came.
"""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from udpio import _socket
from udpio._bench.common import LOOPBACK, RCVBUF, Opened, interleaved, plain_receiver
from udpio._bench.figures import LIMITS, Config, Figure, ratio_figure
from udpio._bench.receive import p1_udpio
from udpio._bench.send import p2_udpio, p7_udpio

__all__ = ["run_p13"]

#: Sends on the Socket's descriptor to a port nothing listens on, at most
#: argv[3] datagrams a second (0: as fast as it can), until its stdin
#: closes. (The open file is shared: its blocking mode is the Socket's, so a
#: full buffer is skipped, not waited for.)
_FLOOD = r"""
import socket, sys, threading, time
sock = socket.socket(fileno=int(sys.argv[1]))
dead = ("127.0.0.1", int(sys.argv[2]))
rate = int(sys.argv[3])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print("flooding", flush=True)
start, sent = time.monotonic(), 0
while not done.is_set():
    for _ in range(100):
        try:
            sock.sendto(b"?", dead)
        except OSError:
            pass
    sent += 100
    if rate:
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)  # pacing the flood to its rate
"""

#: The flood P13 holds to 1.5x: 20 times what the kernel lets through by
#: default (net.ipv4.icmp_msgs_per_sec, 1,000 a second per host).
FLOOD_RATE = 20_000


def _dead_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind((LOOPBACK, 0))
        port: int = gone.getsockname()[1]
    return port


def _side_by_side(config: Config, cls: type[_socket.Socket], opened: Opened) -> list[Figure]:
    # P1, P2, P7: the option off, then on, interleaved.
    sender = opened.add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sink = opened.add(plain_receiver())
    rx = [
        opened.add(_socket.listen_with(cls, f"{LOOPBACK}:0", rcvbuf=RCVBUF, peer_errors=on))
        for on in (False, True)
    ]
    tx = [opened.add(_socket.listen_with(cls, f"{LOOPBACK}:0", peer_errors=on)) for on in (False, True)]
    for side in rx:
        p1_udpio(sender, side, config.batch)  # warm-up
    rows: tuple[tuple[str, list[Callable[[], float]]], ...] = (
        (
            "P1 recv, 64 B queued, peer_errors on",
            [functools.partial(p1_udpio, sender, s, config.batch) for s in rx],
        ),
        ("P2 send, 64 B, peer_errors on", [functools.partial(p2_udpio, s, sink, config.batch) for s in tx]),
        (
            "P7 send_batch, 64 B, peer_errors on",
            [functools.partial(p7_udpio, s, sink, config.batch) for s in tx],
        ),
    )
    backend = "python" if cls is _socket.Socket else "native"
    limit = LIMITS["P13"][backend]
    figures = []
    for what, sides in rows:
        off, on = interleaved(config.rounds, sides)
        figures.append(ratio_figure("P13", what, backend, on, off, "peer_errors off", limit))
    return figures


def _under_flood(config: Config, cls: type[_socket.Socket], opened: Opened, rate: int) -> Figure:
    # P1 on one Socket with reports coming in, against the same Socket quiet.
    backend = "python" if cls is _socket.Socket else "native"
    sender = opened.add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    rx = opened.add(_socket.listen_with(cls, f"{LOOPBACK}:0", rcvbuf=RCVBUF, peer_errors=True))
    p1_udpio(sender, rx, config.batch)  # warm-up
    quiet = interleaved(config.rounds, [functools.partial(p1_udpio, sender, rx, config.batch)])[0]
    fd = rx.conn().fileno()
    flood = subprocess.Popen(
        [sys.executable, "-c", _FLOOD, str(fd), str(_dead_port()), str(rate)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(fd,),
    )
    try:
        assert flood.stdout is not None and flood.stdout.readline() == "flooding\n"
        rx.peer_errors()
        start = time.perf_counter()
        loud = interleaved(config.rounds, [functools.partial(p1_udpio, sender, rx, config.batch)])[0]
        seconds = time.perf_counter() - start
        errors = rx.peer_errors()
    finally:
        flood.communicate(timeout=10)  # closes its stdin: it stops
    per_second = (len(errors) + errors.dropped) / seconds
    if rate:
        what = f"P1 recv while {rate:,} reports/s flood in (came: {per_second:,.0f}/s)"
        return ratio_figure("P13", what, backend, loud, quiet, "P1, no reports", LIMITS["P13 flood"][backend])
    what = f"P1 recv while reports come as fast as loopback makes them ({per_second:,.0f}/s)"
    return ratio_figure("P13", what, backend, loud, quiet, "P1, no reports", None)


def run_p13(config: Config, kinds: dict[str, type[_socket.Socket]], opened: Opened) -> list[Figure]:
    """P13 for every backend: the option's cost while quiet, and P1 under a flood of reports."""
    if not sys.platform.startswith("linux"):
        return []
    figures: list[Figure] = []
    for cls in kinds.values():
        figures += _side_by_side(config, cls, opened)
        figures.append(_under_flood(config, cls, opened, FLOOD_RATE))
        figures.append(_under_flood(config, cls, opened, 0))
    return figures
