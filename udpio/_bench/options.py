"""P10: what M4's options cost (each datagram's destination and TOS), natively, on against off.

The same measurements as P1, P2 and P8, with the options on (as every
Socket has them) and off (turned off on the receiving Socket), interleaved
in one run; each row's baseline is the "off" side.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable

from udpio import _socket
from udpio._bench.common import RCVBUF, Opened, interleaved, listen, plain_receiver, set_options
from udpio._bench.figures import LIMITS, Config, Figure, ratio_figure
from udpio._bench.receive import p1_udpio
from udpio._bench.send import p2_udpio
from udpio._bench.throughput import p8_rate

__all__ = ["run_p10"]


def run_p10(config: Config, kinds: dict[str, type[_socket.Socket]], opened: Opened) -> list[Figure]:
    """P10: P1, P2 and P8 natively with M4's options on, against the same with them off."""
    if "native" not in kinds:
        return []
    cls = kinds["native"]
    limit = LIMITS["P10"]["native"]
    sender = opened.add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sink = opened.add(plain_receiver())
    rx_on, rx_off = (opened.add(listen(cls, rcvbuf=RCVBUF)) for _ in range(2))
    tx_on, tx_off = (opened.add(listen(cls)) for _ in range(2))
    set_options(rx_off, False)
    set_options(tx_off, False)
    for rx in (rx_on, rx_off):
        p1_udpio(sender, rx, config.batch)  # warm-up
    recv = interleaved(
        config.rounds,
        [
            functools.partial(p1_udpio, sender, rx_off, config.batch),
            functools.partial(p1_udpio, sender, rx_on, config.batch),
        ],
    )
    send = interleaved(
        config.rounds,
        [
            functools.partial(p2_udpio, tx_off, sink, config.batch),
            functools.partial(p2_udpio, tx_on, sink, config.batch),
        ],
    )
    count = config.batch * 10
    rates_sides: list[Callable[[], float]] = [
        functools.partial(p8_rate, "native", count, True, False),
        functools.partial(p8_rate, "native", count, True, True),
    ]
    rates = interleaved(max(3, config.rounds // 5), rates_sides)
    figures = [
        ratio_figure(
            "P10", "P1 recv, 64 B queued, options on", "native", recv[1], recv[0], "options off", limit
        ),
        ratio_figure("P10", "P2 send, 64 B, options on", "native", send[1], send[0], "options off", limit),
    ]
    floor = LIMITS["P10 throughput"]["native"]
    ratio = round(rates[1] / rates[0], 2) if rates[0] else 0.0
    what = f"P8 datagrams/s, options on ({count:,} per round)"
    figures.append(
        Figure(
            "P10",
            what,
            "native",
            "datagrams/s",
            rates[1],
            rates[0],
            "options off",
            f">= {floor:.2f}x",
            floor,
            ratio >= floor,
        )
    )
    return figures
