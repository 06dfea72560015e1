"""``python -m udpio``: an echo daemon, a one-shot sender, and the benchmark.

Event-loop-free like the library's users: the echo daemon is a reader
thread calling ``recv`` in a loop, and its signal handlers do nothing but
``close()`` the Socket, which wakes that thread.
"""

from __future__ import annotations

import argparse
import math
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Optional

import udpio
from udpio._addresses import format_address, parse, resolve

__all__ = ["main"]

DEFAULT_ECHO_ADDR = "127.0.0.1:9999"


def _address(text: str) -> str:
    # Parse now so a malformed address is a usage error (exit 2), not a
    # traceback later; resolution errors are runtime errors (exit 1).
    try:
        parse(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout must be a number of seconds, not {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"timeout must be a finite number >= 0, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m udpio", description=udpio.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    echo = commands.add_parser("echo", help="run an echo daemon until SIGINT/SIGTERM")
    echo.add_argument(
        "addr",
        nargs="?",
        default=DEFAULT_ECHO_ADDR,
        type=_address,
        metavar="ADDR",
        help=f"where to listen (default {DEFAULT_ECHO_ADDR}; port 0 picks one)",
    )

    send = commands.add_parser("send", help="send one datagram, optionally wait for a reply")
    send.add_argument("addr", type=_address, metavar="ADDR", help="destination host:port")
    send.add_argument("message", metavar="MESSAGE", help="sent as UTF-8")
    send.add_argument("--reply", action="store_true", help="wait for one datagram back and print it")
    send.add_argument(
        "--timeout", type=_timeout, default=5.0, metavar="S", help="seconds to wait for the reply (default 5)"
    )

    bench = commands.add_parser("bench", help="measure P1-P6 against the standard library")
    bench.add_argument("--quick", action="store_true", help="fewer rounds: under 30 s")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return parser


def _echo(addr: str) -> int:
    sock = udpio.listen(addr)
    local = sock.local_addr()
    assert local is not None
    print(f"listening on {format_address(local)}", flush=True)

    counts = {"received": 0, "received_bytes": 0, "sent": 0, "sent_bytes": 0}

    def reader() -> None:
        while True:
            try:
                frame, src = sock.recv()
            except udpio.ClosedError:
                return
            except OSError as exc:  # e.g. an ICMP error surfaced by the kernel: keep serving
                print(f"udpio echo: recv: {exc}", file=sys.stderr, flush=True)
                continue
            counts["received"] += 1
            counts["received_bytes"] += len(frame)
            try:
                counts["sent_bytes"] += sock.send(frame, src)
                counts["sent"] += 1
            except udpio.ClosedError:
                return
            except OSError as exc:
                print(f"udpio echo: send to {format_address(src)}: {exc}", file=sys.stderr, flush=True)

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        sock.close()  # all a handler does: the reader wakes with ClosedError

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        thread = threading.Thread(target=reader, name="udpio-echo-reader")
        thread.start()
        thread.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    print(
        f"received {counts['received']} datagrams ({counts['received_bytes']} bytes), "
        f"sent {counts['sent']} datagrams ({counts['sent_bytes']} bytes)",
        flush=True,
    )
    return 0


def _send(addr: str, message: str, want_reply: bool, timeout: float) -> int:
    family, dst = resolve(addr)[0]
    with udpio.wrap_conn(socket.socket(family, socket.SOCK_DGRAM)) as sock:
        sock.send(message.encode("utf-8"), dst, timeout=timeout)
        if not want_reply:
            return 0
        try:
            frame, _ = sock.recv(timeout=timeout)
        except TimeoutError:
            print(f"udpio send: no reply from {addr} within {timeout:g} s", file=sys.stderr)
            return 1
        print(bytes(frame).decode("utf-8", errors="replace"), flush=True)
        return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (2 for bad arguments)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "echo":
            return _echo(args.addr)
        if args.command == "send":
            return _send(args.addr, args.message, args.reply, args.timeout)
        from udpio._bench import main as bench_main

        return bench_main(quick=args.quick, json_path=args.json)
    except OSError as exc:  # unresolvable host, port in use, ...: say so, no traceback
        print(f"udpio {args.command}: {exc}", file=sys.stderr)
        return 1
