"""Sending: P2 (one datagram per call) and P7 (send_batch), each against a sendto loop."""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable

import udpio
from udpio import _socket
from udpio._bench.common import PAYLOAD, RCVBUF, Opened, interleaved, listen, per_item_ns, plain_receiver
from udpio._bench.figures import LIMITS, Config, Figure, ratio_figure
from udpio._gro import set_gro

__all__ = ["p2_udpio", "run_p2_p7"]

# -- P2: send -----------------------------------------------------------------------------------


def _drain(sink: socket.socket, expected: int) -> None:
    buf = bytearray(2048)
    got = 0
    while got < expected:
        sink.recv_into(buf)  # SO_RCVTIMEO bounds a lost datagram
        got += 1


def _p2_plain(tx: socket.socket, sink: socket.socket, batch: int) -> float:
    dst = sink.getsockname()
    sendto = tx.sendto
    start = time.perf_counter()
    for _ in range(batch):
        sendto(PAYLOAD, dst)
    elapsed = time.perf_counter() - start
    _drain(sink, batch)
    return per_item_ns(elapsed, batch)


def p2_udpio(tx: udpio.Socket, sink: socket.socket, batch: int) -> float:
    dst = sink.getsockname()
    send = tx.send
    start = time.perf_counter()
    for _ in range(batch):
        send(PAYLOAD, dst)
    elapsed = time.perf_counter() - start
    _drain(sink, batch)
    return per_item_ns(elapsed, batch)


# -- P3: ping-pong ------------------------------------------------------------------------------

# -- P7: send_batch -----------------------------------------------------------------------------


def p7_udpio(tx: udpio.Socket, sink: socket.socket, batch: int) -> float:
    dst = sink.getsockname()
    frames = [PAYLOAD] * batch
    start = time.perf_counter()
    sent = tx.send_batch(frames, dst)
    elapsed = time.perf_counter() - start
    _drain(sink, sent)
    return per_item_ns(elapsed, batch)


#: 63, 64, 63, 64, ...: a GSO run needs every datagram but the last as long
#: as the first, and each sendmmsg call takes 64 (an even number), so every
#: call starts at a 63 followed by a longer one: no run, the sendmmsg path.
_NO_RUN = [PAYLOAD[:63], PAYLOAD]


def _sendto_each(tx: socket.socket) -> Callable[[list[bytes], tuple[str, int]], object]:
    """The baseline's send: a plain ``sendto`` loop."""
    sendto = tx.sendto

    def send_all(frames: list[bytes], dst: tuple[str, int]) -> None:
        for frame in frames:
            sendto(frame, dst)

    return send_all


def _p7_to_udpio(
    send_all: Callable[[list[bytes], tuple[str, int]], object], rx: udpio.Socket, frames: list[bytes]
) -> float:
    """Time ``send_all`` of ``frames`` to a udpio receiver, which then reads them all."""
    dst = rx.local_addr()
    assert dst is not None
    start = time.perf_counter()
    send_all(frames, dst[:2])
    elapsed = time.perf_counter() - start
    for _ in frames:
        rx.recv(timeout=5.0)  # a lost datagram is a TimeoutError, not a hang
    return per_item_ns(elapsed, len(frames))


def _run_p7_native(
    config: Config, cls: type[_socket.Socket], plain_tx: socket.socket, opened: Opened
) -> list[Figure]:
    """P7's two other native paths, each against a sendto loop to the same receiver.

    sendmmsg: sizes that never form a GSO run, to a receiver with GRO off (a
    plain socket's receive path). GSO to a GRO receiver: 64 B datagrams to a
    native udpio Socket, which takes each run whole instead of having the
    kernel cut it up on the sender's time, as a remote host would.
    """
    tx = opened.add(listen(cls))
    plain_rx = opened.add(listen(cls, rcvbuf=RCVBUF))
    plain_rx._gro = set_gro(plain_rx.conn(), False)
    gro_rx = opened.add(listen(cls, rcvbuf=RCVBUF))
    mixed = (_NO_RUN * config.batch)[: config.batch]
    same = [PAYLOAD] * config.batch
    loop, batch = _sendto_each(plain_tx), tx.send_batch
    sides: list[Callable[[], float]] = [
        functools.partial(_p7_to_udpio, loop, plain_rx, mixed),
        functools.partial(_p7_to_udpio, batch, plain_rx, mixed),
        functools.partial(_p7_to_udpio, loop, gro_rx, same),
        functools.partial(_p7_to_udpio, batch, gro_rx, same),
    ]
    medians = interleaved(config.rounds, sides)
    return [
        ratio_figure(
            "P7",
            "send_batch, 63/64 B, no GSO run (sendmmsg)",
            "native",
            medians[1],
            medians[0],
            "sendto loop",
            LIMITS["P7"]["native"],
        ),
        ratio_figure(
            "P7",
            "send_batch, 64 B, to a udpio receiver (GRO)",
            "native",
            medians[3],
            medians[2],
            "sendto loop to it",
            None,
        ),
    ]


def run_p2_p7(config: Config, kinds: dict[str, type[_socket.Socket]], opened: Opened) -> list[Figure]:
    """P2 (send) and P7 (send_batch) of 64-byte datagrams, each against a sendto loop."""
    sink = opened.add(plain_receiver())
    plain_tx = opened.add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    txs = {name: opened.add(listen(cls)) for name, cls in kinds.items()}
    names = list(kinds)
    send_sides: list[Callable[[], float]] = [lambda: _p2_plain(plain_tx, sink, config.batch)]
    send_sides += [functools.partial(p2_udpio, txs[n], sink, config.batch) for n in names]
    send = interleaved(config.rounds, send_sides)
    figures = [
        ratio_figure("P2", "send, 64 B", n, send[i], send[0], "sendto loop", LIMITS["P2"][n])
        for i, n in enumerate(names, 1)
    ]
    batch_sides: list[Callable[[], float]] = [lambda: _p2_plain(plain_tx, sink, config.batch)]
    batch_sides += [functools.partial(p7_udpio, txs[n], sink, config.batch) for n in names]
    batch = interleaved(config.rounds, batch_sides)
    for i, n in enumerate(names, 1):
        # 64 B datagrams of one size: UDP GSO natively, unless the kernel refused it.
        gso = n == "native" and not getattr(txs[n], "_gso_off", True)
        limit = LIMITS["P7 GSO"][n] if gso else LIMITS["P7"].get(n)
        what = "send_batch, 64 B, per datagram" + (" (GSO)" if gso else "")
        figures.append(ratio_figure("P7", what, n, batch[i], batch[0], "sendto loop", limit))
    if "native" in kinds:
        figures += _run_p7_native(config, kinds["native"], plain_tx, opened)
    return figures
