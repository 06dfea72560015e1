"""P9: one DNS-style responder on five receive/answer loops, driven by dnsperf.

    apt-get install dnsperf        # DNS-OARC's load generator (Debian, Ubuntu)
    pip install -e . && python benchmarks/dns_server.py [--seconds 5] [--rounds 3] [--json FILE]

Every loop answers every query with the same code (``answer``: one A
record, 127.0.0.1, for whatever name was asked):

* ``plain``: a blocking ``recvfrom_into`` + ``sendto`` loop, the baseline;
* ``asyncio`` and ``uvloop`` (where installed): a ``DatagramProtocol``;
* ``udpio reply``: ``recv_datagram`` + ``reply``, one query at a time;
* ``udpio batch``: ``recv_batch`` + ``send_many``, every answer from the
  address its query was sent to.

Each responder runs alone in its own process, one thread; dnsperf runs at
full speed (no rate limit) with 4 client sockets and 2,000 queries
outstanding for ``--seconds``, and the loops take turns round after round,
so a busy moment of this shared machine falls on all of them. The table
gives the median over the rounds of queries per second, the queries lost
(all rounds), the average latency and the responder's CPU time (user +
system) per answered query, each beside the plain loop's. Queries/s tells
which side is the limit here; CPU per query is the responder's own cost,
the figure a loaded machine or a slow client does not distort. Where
dnsperf is missing it says how to install it and exits 0 having measured
nothing (``udpio bench`` needs nothing installed; this does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any, Optional

#: The answer's fixed part after the question: a pointer to the question's
#: name, type A, class IN, TTL 60, 4 bytes of address, 127.0.0.1.
_ANSWER_RR = bytes.fromhex("c00c000100010000003c0004") + socket.inet_aton("127.0.0.1")
LOOPS = ("plain", "asyncio", "uvloop", "udpio reply", "udpio batch")


def answer(query: Any) -> bytes:
    """The response to one DNS query: its ID and question, one A record (RFC 1035 4.1).

    Shared by every loop, so they differ only in how they receive and send.
    A query this cannot read is answered with its header alone, flagged as a
    format error: the loops never drop a datagram for its content.
    """
    data = bytes(query)
    end = 12
    try:
        while data[end]:
            end += 1 + data[end]
        end += 5  # the root label, QTYPE, QCLASS
    except IndexError:
        return data[:2] + b"\x81\x81" + b"\0" * 8
    if end > len(data):
        return data[:2] + b"\x81\x81" + b"\0" * 8
    # ID, flags (response, recursion desired and available), one question, one answer.
    return data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + data[12:end] + _ANSWER_RR


# -- the responders (each runs in its own process: --serve LOOP) ----------------


def _serve_plain(sock: socket.socket) -> None:
    buf = bytearray(65536)
    view = memoryview(buf)
    recvfrom_into, sendto = sock.recvfrom_into, sock.sendto
    while True:
        nbytes, addr = recvfrom_into(buf)
        sendto(answer(view[:nbytes]), addr)


class _Protocol(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(answer(data), addr)


def _serve_asyncio(sock: socket.socket, new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    loop = new_loop()
    loop.run_until_complete(loop.create_datagram_endpoint(_Protocol, sock=sock))
    loop.run_forever()


def _serve_udpio(sock: socket.socket, batched: bool) -> None:
    import udpio

    server = udpio.wrap_conn(sock)
    # SIGTERM: close() wakes the reader, which then ends (a handler only closes).
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    try:
        if batched:
            recv_batch, send_many = server.recv_batch, server.send_many
            while True:
                send_many([(answer(d.frame), d.src, d.dst) for d in recv_batch()])
        else:
            recv_datagram, reply = server.recv_datagram, server.reply
            while True:
                query = recv_datagram()
                reply(answer(query.frame), query)
    except udpio.ClosedError:
        pass


def serve(loop: str) -> None:
    """Bind 127.0.0.1:0, print the port, answer queries until killed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    if loop == "plain":
        _serve_plain(sock)
    elif loop == "asyncio":
        _serve_asyncio(sock, asyncio.new_event_loop)
    elif loop == "uvloop":
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # optional: P9 shows it where installed

        _serve_asyncio(sock, uvloop.new_event_loop)
    else:
        _serve_udpio(sock, batched=loop == "udpio batch")


# -- the driver -------------------------------------------------------------------

_FIGURES = {
    "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "latency": re.compile(r"Average Latency \(s\):\s+([\d.]+)"),
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, in seconds (Linux: /proc/PID/stat).

    The figure a busy machine or a slow client does not distort: queries/s
    measures whichever side is the limit, CPU per answered query measures
    the responder.
    """
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # the stat fields 14 and 15
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _buffer_kib() -> int:
    try:
        with open("/proc/sys/net/core/rmem_max") as limit:
            return max(int(limit.read()) // 1024, 64)
    except OSError:
        return 1024


def _run_one(loop: str, queries: str, seconds: float, clients: int, outstanding: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", loop],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        if not port:
            raise RuntimeError(f"the {loop} responder did not start")
        command = ["dnsperf", "-s", "127.0.0.1", "-p", port, "-d", queries, "-l", str(seconds)]
        # -b: dnsperf's socket buffers as large as the system allows: a
        # burst of answers must not overflow the load generator's own
        # sockets, or "lost" would measure dnsperf, not the responder.
        command += ["-c", str(clients), "-q", str(outstanding), "-t", "1", "-b", str(_buffer_kib())]
        cpu_before = cpu_seconds(server.pid)
        out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    figures = {}
    for name, pattern in _FIGURES.items():
        found = pattern.search(out)
        if found is None:
            raise RuntimeError(f"dnsperf printed no {name} figure:\n{out}")
        figures[name] = float(found.group(1))
    answered = figures["sent"] - figures["lost"]
    figures["cpu"] = cpu / answered if answered else float("nan")
    return figures


def measure(
    seconds: float, rounds: int, clients: int = 4, outstanding: int = 2000
) -> dict[str, dict[str, float]]:
    """Every loop this install has, ``rounds`` times in turn; medians and totals per loop."""
    loops = [loop for loop in LOOPS if loop != "uvloop" or _has("uvloop")]
    runs: dict[str, list[dict[str, float]]] = {loop: [] for loop in loops}
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as queries:
        queries.write("".join(f"host{i}.example. A\n" for i in range(100)))
        queries.flush()
        for _ in range(rounds):
            for loop in loops:
                runs[loop].append(_run_one(loop, queries.name, seconds, clients, outstanding))
    return {
        loop: {
            "qps": statistics.median(r["qps"] for r in got),
            "lost": sum(r["lost"] for r in got),
            "sent": sum(r["sent"] for r in got),
            "latency": statistics.median(r["latency"] for r in got),
            "cpu": statistics.median(r["cpu"] for r in got),
        }
        for loop, got in runs.items()
    }


def format_table(results: dict[str, dict[str, float]]) -> str:
    """The table, each loop beside the plain loop: queries/s and its ratio, lost, latency."""
    plain = results["plain"]
    lines = [
        "| responder loop | queries/s | vs plain | queries lost | avg latency | vs plain "
        "| CPU per answered query | vs plain |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for loop, r in results.items():
        lines.append(
            f"| {loop} | {r['qps']:,.0f} | {r['qps'] / plain['qps']:.2f}x "
            f"| {r['lost']:,.0f} of {r['sent']:,.0f} "
            f"| {r['latency'] * 1e6:,.0f} µs | {r['latency'] / plain['latency']:.2f}x "
            f"| {r['cpu'] * 1e6:.2f} µs | {r['cpu'] / plain['cpu']:.2f}x |"
        )
    return "\n".join(lines)


def verdicts(results: dict[str, dict[str, float]]) -> dict[str, Optional[bool]]:
    """P9's targets, read off the printed ratios: batch >= 1.3x, reply >= 1.0x, lost <= plain's."""
    plain = results["plain"]

    def ratio(loop: str) -> float:
        return round(results[loop]["qps"] / plain["qps"], 2)

    return {
        "udpio batch >= 1.30x": ratio("udpio batch") >= 1.3,
        "udpio reply >= 1.00x": ratio("udpio reply") >= 1.0,
        "lost no more than plain's": all(
            results[loop]["lost"] <= plain["lost"] for loop in ("udpio batch", "udpio reply")
        ),
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each dnsperf run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each loop once per round (default 3)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--serve", choices=LOOPS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if shutil.which("dnsperf") is None:
        print("P9 skipped: dnsperf is not installed (Debian/Ubuntu: apt-get install dnsperf)")
        return 0
    import udpio

    results = measure(args.seconds, args.rounds)
    print(
        f"P9: dnsperf, 4 clients, 2,000 outstanding, {args.seconds:g} s x {args.rounds} rounds; "
        f"udpio {udpio.BACKEND}"
    )
    print(format_table(results))
    for target, met in verdicts(results).items():
        print(f"{target}: {'yes' if met else 'NO'}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {"backend": udpio.BACKEND, "loops": results, "verdicts": verdicts(results)}, out, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
