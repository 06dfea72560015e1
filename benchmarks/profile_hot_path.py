"""Where the pure recv's and send's time goes: each piece priced on the real objects, beside the plain loop.

    pip install -e . && python benchmarks/profile_hot_path.py [--rounds N]

Each piece of the pure ``recv`` and ``send`` (a role taken and given, the
nested-call check, the export probe, the read-only frame) is run by itself,
on the Socket's own objects, as many times as a round has datagrams; the
real ``recv``/``send`` and the plain standard-library loop are measured in
the same rounds, interleaved. Figures are medians in ns per datagram; a
piece's share is its cost over what udpio adds to the plain loop. (It
prices pieces; it does not edit or recompile the methods, so the copies
the pure twin inlines for speed stay its own text: test_inlined_copies.py
holds them to their helpers.) docs/benchmarks.md quotes a run of this.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from collections.abc import Callable

import udpio
from udpio._bench.common import PAYLOAD, RCVBUF, fill, plain_receiver

BATCH = 2000


def _timed(piece: Callable[[], object]) -> float:
    # ns per run of `piece`, BATCH runs.
    start = time.perf_counter()
    for _ in range(BATCH):
        piece()
    return (time.perf_counter() - start) / BATCH * 1e9


def _role_pair(role: object) -> Callable[[], object]:
    acquire, release = role.acquire, role.release  # type: ignore[attr-defined]

    def piece() -> None:
        acquire(False)
        release()

    return piece


def _export_probe(buf: bytearray) -> Callable[[], object]:
    def piece() -> None:  # R4's probe, as recv runs it
        try:
            buf.append(0)
        except BufferError:
            pass
        else:
            del buf[-1]

    return piece


def _frame(buf: bytearray) -> Callable[[], object]:
    def piece() -> None:  # R2/R3: the read-only view recv returns, released by the next one
        memoryview(buf).toreadonly()[:64].release()

    return piece


def _interleave(rounds: int, runs: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            results[name].append(run())
    return results


def _report(title: str, results: dict[str, list[float]]) -> None:
    base = statistics.median(results["plain"])
    current = statistics.median(results["udpio"])
    added = current - base
    print(f"\n{title}")
    print(f"{'':28s} {'ns/datagram':>11s} {'ratio':>6s} {'share of what udpio adds':>25s}")
    for name, values in results.items():
        median = statistics.median(values)
        if name in ("plain", "udpio"):
            print(f"{name:28s} {median:11.0f} {median / base:6.2f}")
        else:
            print(f"{name:28s} {median:11.0f} {'':6s} {median / added:25.0%}")


def profile_recv(rounds: int) -> None:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain = plain_receiver()
    sock = udpio.listen("127.0.0.1:0", rcvbuf=RCVBUF)
    dst = sock.local_addr()
    assert dst is not None
    buf = bytearray(65536)

    def run_plain() -> float:
        fill(sender, plain.getsockname(), BATCH)
        recv_into = plain.recvfrom_into
        elapsed = _timed(lambda: recv_into(buf))
        recv_into(buf)  # the marker
        return elapsed

    def run_udpio() -> float:
        fill(sender, (dst[0], dst[1]), BATCH)
        elapsed = _timed(sock.recv)
        sock.recv(timeout=5)  # the marker
        return elapsed

    runs = {
        "plain": run_plain,
        "udpio": run_udpio,
        "reader role taken and given": lambda: _timed(_role_pair(sock._reader)),
        "nested-call check": lambda: _timed(sock._reader_is_me),
        "export probe (R4)": lambda: _timed(_export_probe(bytearray(65536))),
        "read-only frame (R2/R3)": lambda: _timed(_frame(buf)),
    }
    results = _interleave(rounds, runs)
    for closable in (sender, plain, sock):
        closable.close()
    _report("recv of queued 64-byte datagrams (P1), pure backend", results)


def profile_send(rounds: int) -> None:
    sink = plain_receiver()
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock = udpio.listen("127.0.0.1:0")
    dst = sink.getsockname()
    buf = bytearray(2048)

    def drain() -> None:
        for _ in range(BATCH):
            sink.recv_into(buf)

    def run_plain() -> float:
        elapsed = _timed(lambda: plain.sendto(PAYLOAD, dst))
        drain()
        return elapsed

    def run_udpio() -> float:
        elapsed = _timed(lambda: sock.send(PAYLOAD, dst))
        drain()
        return elapsed

    runs = {
        "plain": run_plain,
        "udpio": run_udpio,
        "writer role taken and given": lambda: _timed(_role_pair(sock._writer)),
    }
    results = _interleave(rounds, runs)
    for closable in (sink, plain, sock):
        closable.close()
    _report("send of 64-byte datagrams (P2), pure backend", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    if udpio.BACKEND != "python":
        raise SystemExit("profile: the pure backend's profile: run with UDPIO_NO_EXTENSIONS=1")
    profile_recv(args.rounds)
    profile_send(args.rounds)


if __name__ == "__main__":
    main()
