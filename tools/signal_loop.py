"""Start a daemon, echo one datagram, signal it; repeat, and count the runs that hang.

The hang this hunts: a process-directed SIGTERM taken by the reader thread
while the main thread sleeps in ``join()`` (about 1 run in 400 before the
fix). The suite checks the cause deterministically (the reader's signal
mask); this is the long loop, to run by hand:

    python tools/signal_loop.py --runs 2000                 # python -m udpio echo
    python tools/signal_loop.py --runs 2000 --readme        # the README's example
    python tools/signal_loop.py --runs 2000 --signal INT

Run it from the repository root (it imports the udpio found there).
Exits 1 if any run hung.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_program() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text.split("## A daemon's reader loop", 1)[1], re.S)
    assert match, "the README lost its example"
    code = match.group(1).replace('udpio.listen("127.0.0.1:9999")', 'udpio.listen("127.0.0.1:0")')
    code = code.replace(
        "\ndef reader",
        '\nprint("listening on 127.0.0.1:%d" % sock.local_addr()[1], flush=True)\n\ndef reader',
        1,
    )
    return [sys.executable, "-c", code]


def one_run(program: list[str], sig: signal.Signals, peer: socket.socket, limit: float) -> bool:
    """Returns whether the daemon exited within ``limit`` seconds of the signal."""
    proc = subprocess.Popen(program, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        peer.sendto(b"ping", ("127.0.0.1", port))
        peer.recvfrom(16)
        proc.send_signal(sig)
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            return False
        return True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--readme", action="store_true", help="loop the README's example, not the CLI")
    parser.add_argument("--signal", choices=["TERM", "INT"], default="TERM")
    parser.add_argument("--limit", type=float, default=5.0, help="seconds before a run counts as hung")
    args = parser.parse_args()
    program = _readme_program() if args.readme else [sys.executable, "-m", "udpio", "echo", "127.0.0.1:0"]
    sig = signal.Signals[f"SIG{args.signal}"]
    hung = 0
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(10)
        for run in range(1, args.runs + 1):
            if not one_run(program, sig, peer, args.limit):
                hung += 1
                print(f"run {run}: no exit within {args.limit} s of SIG{args.signal}", flush=True)
    print(f"{args.runs} runs, {hung} hung, {time.monotonic() - started:.0f} s (pid {os.getpid()})")
    return 1 if hung else 0


if __name__ == "__main__":
    sys.exit(main())
