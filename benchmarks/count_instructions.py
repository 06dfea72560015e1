"""User-space instructions per native ``recv`` and per ``send``, counted by callgrind.

    python benchmarks/count_instructions.py            # both operations
    python benchmarks/count_instructions.py --op recv  # one

``send_batch`` is one call of 16 equal 64-byte frames (one UDP GSO run
where the kernel has it): its figure is per call, not per datagram.

Wall time here moves 2-5x between hours; instruction counts do not. Each
operation runs twice under ``valgrind --tool=callgrind`` (2,000 and
6,000 operations on 64-byte datagrams); the difference divided by 4,000
is what one operation costs, start-up and warm-up cancelled out (for
``recv``, less the plain ``sendto`` that queued its datagram). Used to
show that a change to the C code (a split into files, a new option)
leaves the hot path where it was: compare the figures before and after.

Build both trees the same way, with setuptools' own flags: a ``CFLAGS``
in the environment replaces its ``-O2`` (``CFLAGS="-Wall -Wextra"`` alone
gives an unoptimised build, seen here as 2,941 instructions per ``recv``
for 1,811 optimised).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile

SMALL, LARGE = 2000, 6000
PAYLOAD = b"x" * 64


def _workload(op: str, count: int) -> None:
    import udpio

    if udpio.BACKEND != "native":
        raise SystemExit("count_instructions: the native backend is not built")
    with udpio.listen("127.0.0.1:0", rcvbuf=8 << 20) as rx:
        dst = rx.local_addr()
        assert dst is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
            if op in ("recv", "fill"):
                # Queue them all first (the receive buffer holds them), then
                # drain; "fill" only queues, and is subtracted from "recv".
                for _ in range(count):
                    plain.sendto(PAYLOAD, dst)
                for _ in range(count if op == "recv" else 0):
                    rx.recv(timeout=1.0)
            else:
                # To a port nothing listens on: an unconnected socket hears
                # no ICMP error, so nothing needs draining in the count.
                plain.bind(("127.0.0.1", 0))
                to = plain.getsockname()
                plain.close()
                if op == "send":
                    for _ in range(count):
                        rx.send(PAYLOAD, to)
                else:
                    batch = [PAYLOAD] * 16
                    for _ in range(count):
                        rx.send_batch(batch, to)


def _count(op: str, count: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--run",
                op,
                str(count),
            ],
            check=True,
            capture_output=True,
            # A fixed hash seed: dict and set layouts, and so the counts, repeat.
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        with open(out) as f:
            text = f.read()
    match = re.search(r"^summary:\s+(\d+)", text, re.MULTILINE) or re.search(
        r"^totals:\s+(\d+)", text, re.MULTILINE
    )
    if match is None:
        raise SystemExit("count_instructions: no total in callgrind's output")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--op", choices=["recv", "send", "send_batch"], action="append")
    parser.add_argument("--run", nargs=2, metavar=("OP", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        _workload(args.run[0], int(args.run[1]))
        return
    for op in args.op or ["recv", "send", "send_batch"]:
        per_op = _per_op(op)
        if op == "recv":
            per_op -= _per_op("fill")  # the plain sendto that queued each datagram
        print(f"{op}: {per_op:,.0f} instructions per operation")


def _per_op(op: str) -> float:
    return (_count(op, LARGE) - _count(op, SMALL)) / (LARGE - SMALL)


if __name__ == "__main__":
    main()
