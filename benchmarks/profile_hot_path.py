"""Where recv's and send's time goes: each piece removed in turn, measured against the plain loop.

    pip install -e . && python benchmarks/profile_hot_path.py [--rounds N]

Each variant is the real method's source with one piece cut out (so it is
no longer correct: this only prices the pieces). Variants and the plain
standard-library loop are interleaved round by round in one process;
figures are medians. The difference between "current" and a variant is
what that piece costs. docs/benchmarks.md quotes a run of this.
"""

from __future__ import annotations

import argparse
import inspect
import socket
import statistics
import textwrap
import time
from collections.abc import Callable
from typing import Any

import udpio
import udpio._socket as impl
from udpio._bench.common import PAYLOAD, RCVBUF, fill, plain_receiver

BATCH = 2000

RECV_CUTS = {
    "no nested-call check": [
        ("if self._reader_is_me() or not reader.acquire(False):", "if not reader.acquire(False):")
    ],
    "no reader role": [
        ("if self._reader_is_me() or not reader.acquire(False):", "if False:"),
        ("        reader.release()", "        pass"),
    ],
    "no export probe (R4)": [("            if buf is not None:\n", "            if False:\n")],
    "no frame (R2/R3)": [
        ("frame = self._frame = memoryview(buf).toreadonly()[:nbytes]", "frame = self._frame = None")
    ],
}
SEND_CUTS = {
    "no writer role": [
        ("        writer.acquire()\n", "        pass\n"),
        ("        writer.release()", "        pass"),
    ],
}


def _variants(
    method: Callable[..., Any], cuts: dict[str, list[tuple[str, str]]]
) -> dict[str, Callable[..., Any]]:
    source = textwrap.dedent(inspect.getsource(method))
    sources = {"current": source}
    for name, edits in cuts.items():
        text = source
        for old, new in edits:
            if old not in text:
                raise SystemExit(f"profile: {name!r} no longer matches the source; update the cut")
            text = text.replace(old, new)
        sources[name] = text
    compiled = {}
    for name, text in sources.items():
        namespace = dict(vars(impl), ReadableBuffer=object)
        exec(compile(text, f"<{name}>", "exec"), namespace)
        compiled[name] = namespace[method.__name__]
    return compiled


def _interleave(
    rounds: int,
    run_plain: Callable[[], float],
    run: Callable[[Callable[..., Any]], float],
    variants: dict[str, Callable[..., Any]],
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"plain": [], **{name: [] for name in variants}}
    for _ in range(rounds):
        results["plain"].append(run_plain())
        for name, fn in variants.items():
            results[name].append(run(fn))
    return results


def _report(title: str, results: dict[str, list[float]]) -> None:
    base = statistics.median(results["plain"])
    current = statistics.median(results["current"])
    print(f"\n{title}")
    print(f"{'variant':24s} {'ns/datagram':>11s} {'ratio':>6s} {'piece costs':>11s}")
    for name, values in results.items():
        median = statistics.median(values)
        cost = "" if name in ("plain", "current") else f"{current - median:+.0f} ns"
        print(f"{name:24s} {median:11.0f} {median / base:6.2f} {cost:>11s}")


def profile_recv(rounds: int) -> None:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain = plain_receiver()
    sock = udpio.listen("127.0.0.1:0", rcvbuf=RCVBUF)
    dst = sock.local_addr()
    assert dst is not None
    variants = _variants(udpio.Socket.recv, RECV_CUTS)
    buf = bytearray(65536)

    def run_plain() -> float:
        fill(sender, plain.getsockname(), BATCH)
        recv_into = plain.recvfrom_into
        start = time.perf_counter()
        for _ in range(BATCH):
            recv_into(buf)
        elapsed = time.perf_counter() - start
        recv_into(buf)  # the marker
        return elapsed / BATCH * 1e9

    def run(fn: Callable[..., Any]) -> float:
        fill(sender, (dst[0], dst[1]), BATCH)
        start = time.perf_counter()
        for _ in range(BATCH):
            fn(sock)
        elapsed = time.perf_counter() - start
        sock.recv(timeout=5)  # the marker
        return elapsed / BATCH * 1e9

    results = _interleave(rounds, run_plain, run, variants)
    for closable in (sender, plain, sock):
        closable.close()
    _report("recv of queued 64-byte datagrams (P1)", results)


def profile_send(rounds: int) -> None:
    sink = plain_receiver()
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock = udpio.listen("127.0.0.1:0")
    dst = sink.getsockname()
    variants = _variants(udpio.Socket.send, SEND_CUTS)
    buf = bytearray(2048)

    def drain() -> None:
        for _ in range(BATCH):
            sink.recv_into(buf)

    def run_plain() -> float:
        sendto = plain.sendto
        start = time.perf_counter()
        for _ in range(BATCH):
            sendto(PAYLOAD, dst)
        elapsed = time.perf_counter() - start
        drain()
        return elapsed / BATCH * 1e9

    def run(fn: Callable[..., Any]) -> float:
        start = time.perf_counter()
        for _ in range(BATCH):
            fn(sock, PAYLOAD, dst)
        elapsed = time.perf_counter() - start
        drain()
        return elapsed / BATCH * 1e9

    results = _interleave(rounds, run_plain, run, variants)
    for closable in (sink, plain, sock):
        closable.close()
    _report("send of 64-byte datagrams (P2)", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    profile_recv(args.rounds)
    profile_send(args.rounds)


if __name__ == "__main__":
    main()
