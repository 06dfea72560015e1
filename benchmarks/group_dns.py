"""P12: a Group of 1 and of 2 process workers, each the batched P9 responder, under dnsperf.

    apt-get install dnsperf
    pip install -e . && python benchmarks/group_dns.py [--seconds 5] [--rounds 3] [--json FILE]

Each worker runs ``recv_batch`` + ``send_many`` (the batched loop of P9,
the same ``answer``) and, with ``work``, a fixed application cost per
query: ``WORK_ROUNDS`` rounds of SHA-256 over the query (``--work-rounds``),
about 20-30 µs of CPU here. Why both: on a 2-core machine a responder that does no work is
limited by the load generator (dnsperf shares the cores), not by itself;
with work, the workers are the limit, as they are on a host with more
cores than workers.

dnsperf runs with 32 client sockets (so the kernel's hash has flows to
spread) and 2,000 queries outstanding; the configurations take turns,
round after round. Each group runs in its own owner process, so the
workers' CPU time (user + system, of the reaped workers: the owner's
``RUSAGE_CHILDREN``) is theirs alone. The table: queries/s and its ratio to
the group of 1, each worker's share of the queries, and the workers' CPU
time per answered query and its ratio to the group of 1. Then, with one
client socket, ``balance="random"`` against ``"hash"``: the shares.

Where dnsperf is missing it says how to install it and measures nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dns_server import _FIGURES, _buffer_kib, answer

import udpio

#: The application's work per query: the contract's example, 70 rounds of
#: SHA-256 over the query, about 26 µs of CPU here (50 rounds: about 17 µs;
#: docs/benchmarks.md has the figures at both).
WORK_ROUNDS = 70

#: (workers, work): the configurations of the main table.
CONFIGS = [(1, True), (2, True), (1, False), (2, False)]


def _work_rounds() -> int:
    return int(os.environ.get("UDPIO_P12_WORK_ROUNDS", WORK_ROUNDS))


def _respond(sock: udpio.Socket, rounds: int) -> None:
    while True:
        try:
            batch = sock.recv_batch()
        except udpio.ClosedError:
            return
        answers = []
        for query in batch:
            data = bytes(query.frame)
            digest = data
            for _ in range(rounds):  # the application's work, the same in every run
                digest = hashlib.sha256(digest).digest()
            answers.append((answer(data), query.src, query.dst))
        sock.send_many(answers)


def respond_with_work(sock: udpio.Socket) -> None:
    """The batched P9 responder plus WORK_ROUNDS of SHA-256 per query (or UDPIO_P12_WORK_ROUNDS)."""
    _respond(sock, _work_rounds())


def respond(sock: udpio.Socket) -> None:
    """The batched P9 responder, no work."""
    _respond(sock, 0)


def own_group(workers: int, work: bool, balance: str) -> None:
    """The owner process: run the group until SIGTERM; print its port, then its figures as JSON."""
    handler = respond_with_work if work else respond
    group = udpio.Group(
        "127.0.0.1:0", handler, workers=workers, balance=balance, rcvbuf=4 << 20, sndbuf=4 << 20
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    group.start()
    print(group.local_addr()[1], flush=True)  # type: ignore[index]
    stop.wait()
    shares = [s.received for s in group.worker_stats()]
    group.stop()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)  # the reaped workers'
    total = group.stats()
    print(json.dumps({"shares": shares, "cpu": used.ru_utime + used.ru_stime, "answered": total.sent}))


def _run_one(
    workers: int, work: bool, balance: str, clients: int, queries: str, seconds: float
) -> dict[str, Any]:
    owner = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--own", str(workers), str(int(work)), balance],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        port = owner.stdout.readline().strip()
        if not port:
            raise RuntimeError("the group did not start")
        command = ["dnsperf", "-s", "127.0.0.1", "-p", port, "-d", queries, "-l", str(seconds)]
        command += ["-c", str(clients), "-q", "2000", "-t", "1", "-b", str(_buffer_kib())]
        out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
        owner.send_signal(signal.SIGTERM)
        report = json.loads(owner.stdout.readline())
    finally:
        if owner.poll() is None:
            owner.send_signal(signal.SIGTERM)
        owner.wait(30)
        if owner.stdout is not None:
            owner.stdout.close()
    figures: dict[str, Any] = {name: float(p.search(out).group(1)) for name, p in _FIGURES.items()}  # type: ignore[union-attr]
    figures["shares"] = report["shares"]
    figures["cpu"] = report["cpu"] / report["answered"] if report["answered"] else float("nan")
    return figures


def measure(seconds: float, rounds: int) -> dict[str, Any]:
    """Every configuration ``rounds`` times in turn; medians per configuration."""
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as queries:
        queries.write("".join(f"host{i}.example. A\n" for i in range(100)))
        queries.flush()
        for _ in range(rounds):
            for workers, work in CONFIGS:
                key = f"{workers} {'work' if work else 'no work'}"
                runs.setdefault(key, []).append(_run_one(workers, work, "hash", 32, queries.name, seconds))
            for balance in ("random", "hash"):
                key = f"2 work, one client, {balance}"
                runs.setdefault(key, []).append(_run_one(2, True, balance, 1, queries.name, seconds))
    result: dict[str, Any] = {}
    for key, got in runs.items():
        # Each round's shares, largest first (a new group each round: which
        # worker the hash picks changes), then the median of each place.
        rounds_shares = [sorted((n / sum(r["shares"]) for n in r["shares"]), reverse=True) for r in got]
        result[key] = {
            "qps": statistics.median(r["qps"] for r in got),
            "cpu": statistics.median(r["cpu"] for r in got),
            "lost": sum(r["lost"] for r in got),
            "sent": sum(r["sent"] for r in got),
            "shares": [statistics.median(place) for place in zip(*rounds_shares, strict=True)],
        }
    return result


def format_table(results: dict[str, Any]) -> str:
    lines = [
        "| group | queries/s | vs 1 worker | each worker's share | CPU per answered query | vs 1 worker |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for key, r in results.items():
        base = results.get(f"1 {'work' if 'no work' not in key else 'no work'}", r)
        shares = " / ".join(f"{s:.0%}" for s in r["shares"])
        lines.append(
            f"| {key} | {r['qps']:,.0f} | {r['qps'] / base['qps']:.2f}x | {shares} "
            f"| {r['cpu'] * 1e6:.1f} µs | {r['cpu'] / base['cpu']:.2f}x |"
        )
    return "\n".join(lines)


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    """P12's targets, read off the printed figures."""
    one, two = results["1 work"], results["2 work"]
    rand = results["2 work, one client, random"]["shares"]
    return {
        "2 workers >= 1.30x the queries/s of 1 (with work)": round(two["qps"] / one["qps"], 2) >= 1.3,
        "each of 2 workers 35%-65% of the queries": all(0.35 <= s <= 0.65 for s in two["shares"]),
        "CPU per query, 2 workers <= 1.15x 1's": round(two["cpu"] / one["cpu"], 2) <= 1.15,
        "random, one client: each worker 30%-70%": len(rand) == 2 and all(0.3 <= s <= 0.7 for s in rand),
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--work-rounds", type=int, help=f"SHA-256 rounds of work per query (default {WORK_ROUNDS})"
    )
    parser.add_argument("--own", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.work_rounds is not None:
        os.environ["UDPIO_P12_WORK_ROUNDS"] = str(args.work_rounds)  # the owners and workers read it
    if args.own:
        own_group(int(args.own[0]), bool(int(args.own[1])), args.own[2])
        return 0
    if shutil.which("dnsperf") is None:
        print("P12 skipped: dnsperf is not installed (Debian/Ubuntu: apt-get install dnsperf)")
        return 0
    results = measure(args.seconds, args.rounds)
    print(
        f"P12: udpio {udpio.__version__} ({udpio.BACKEND}), {os.cpu_count()} cores, "
        f"{args.rounds} rounds of {args.seconds:g} s, {_work_rounds()} rounds of SHA-256 as the work"
    )
    print(format_table(results))
    checks = verdicts(results)
    for target, met in checks.items():
        print(f"{target}: {'yes' if met else 'NO'}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"results": results, "verdicts": checks}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
