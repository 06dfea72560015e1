"""``python -m udpio`` (also the ``udpio`` command): an echo daemon, a one-shot sender, the benchmark.

Event-loop-free like the library's users: the echo daemon is a reader
thread calling ``recv`` in a loop, and its signal handlers do nothing but
``close()`` the Socket, which wakes that thread.
"""

from __future__ import annotations

import argparse
import math
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import udpio
from udpio import _backend
from udpio._addresses import format_address, parse, resolve
from udpio._bench.figures import MEASURED
from udpio._daemon import run_group, run_until_signal

__all__ = ["EchoCounts", "echo_worker", "main", "run", "serve_echo"]

DEFAULT_ECHO_ADDR = "127.0.0.1:9999"


def _address(text: str) -> str:
    # Parse now so a malformed address is a usage error (exit 2), not a
    # traceback later; resolution errors are runtime errors (exit 1).
    try:
        parse(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _workers(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--workers must be a whole number of at least 1, not {text!r}")
    return int(text)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout must be a number of seconds, not {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"timeout must be a finite number >= 0, not {text!r}")
    return value


_DESCRIPTION = (
    "Blocking UDP datagram I/O for threaded daemons: a recv that close() wakes, over pooled read-only frames."
)


class _Version(argparse.Action):
    # argparse's own version action wraps the line at the terminal's width;
    # this one prints it whole (a path does not survive wrapping).
    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(_backend.version_line(udpio.__version__))
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="udpio", description=_DESCRIPTION)
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="show the version, the backend and where udpio is from"
    )
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
    echo.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="worker processes sharing the address (udpio.Group; default 1: one Socket in this process)",
    )

    send = commands.add_parser("send", help="send one datagram, optionally wait for a reply")
    send.add_argument("addr", type=_address, metavar="ADDR", help="destination host:port")
    send.add_argument("message", metavar="MESSAGE", help="sent as UTF-8")
    send.add_argument("--reply", action="store_true", help="wait for one datagram back and print it")
    send.add_argument(
        "--timeout",
        type=_timeout,
        default=5.0,
        metavar="S",
        help="seconds to wait for the reply (default 5; 0 polls once)",
    )

    bench = commands.add_parser(
        "bench",
        help=f"measure {', '.join(MEASURED)} (docs/reference.md) for each backend, beside the stdlib",
    )
    bench.add_argument(
        "--quick", action="store_true", help="fewer rounds: a few seconds (the full run takes about a minute)"
    )
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return parser


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass
class EchoCounts:
    """What the echo daemon did; ``summary()`` is its last line."""

    received: int = 0
    received_bytes: int = 0
    sent: int = 0
    sent_bytes: int = 0
    failed: int = 0
    kernel_drops: Optional[int] = None  # M3: the kernel's count, read as the daemon stops

    def summary(self) -> str:
        text = (
            f"received {_plural(self.received, 'datagram')} ({_plural(self.received_bytes, 'byte')}), "
            f"sent {_plural(self.sent, 'datagram')} ({_plural(self.sent_bytes, 'byte')})"
        )
        if self.failed:
            text += f", {_plural(self.failed, 'send')} failed"
        if self.kernel_drops is not None:
            text += f"; the kernel dropped {self.kernel_drops}"
        return text


def serve_echo(sock: udpio.Socket, counts: EchoCounts) -> None:
    """Send every datagram back to its source, from the address it was sent to, until close.

    Runs on the reader thread. Answers with ``reply`` (M2), so a client with
    a connected socket hears back also from a daemon bound to every address.
    """
    while True:
        try:
            datagram = sock.recv_datagram()
            frame, src = datagram.frame, datagram.src
        except udpio.ClosedError:
            return
        except OSError as exc:  # e.g. an ICMP error surfaced by the kernel: keep serving
            print(f"udpio echo: recv: {exc}", file=sys.stderr, flush=True)
            continue
        counts.received += 1
        counts.received_bytes += len(frame)
        try:
            counts.sent_bytes += sock.reply(frame, datagram)
            counts.sent += 1
        except udpio.ClosedError:
            counts.failed += 1
            return
        except OSError as exc:
            counts.failed += 1
            print(f"udpio echo: send to {format_address(src)}: {exc}", file=sys.stderr, flush=True)


def _echo(addr: str) -> int:
    sock = udpio.listen(addr)  # a port in use: its OSError names the address
    try:
        local = sock.local_addr()
        assert local is not None
        counts = EchoCounts()
        run_until_signal(
            lambda: serve_echo(sock, counts),
            sock.close,  # close() wakes the reader
            ready=lambda: print(f"listening on {format_address(local)}", flush=True),
        )
    finally:
        sock.close()
    counts.kernel_drops = sock.stats().kernel_drops  # the final count, kept at close
    print(counts.summary(), flush=True)
    return 0


def echo_worker(sock: udpio.Socket) -> None:
    """One worker of ``echo --workers N``: the echo loop on its own Socket (G5)."""
    serve_echo(sock, EchoCounts())


def _echo_group(addr: str, workers: int) -> int:
    group = udpio.Group(addr, echo_worker, workers=workers)

    def ready() -> None:
        local = group.local_addr()
        assert local is not None
        print(f"listening on {format_address(local)}", flush=True)

    status = run_group(group, ready=ready)
    total = group.stats()  # every worker's, the replaced ones included (G6)
    print(
        f"received {_plural(total.received, 'datagram')}, sent {_plural(total.sent, 'datagram')}; "
        f"the kernel dropped {total.kernel_drops} ({_plural(workers, 'worker')}, "
        f"{_plural(group.restarts, 'restart')})",
        flush=True,
    )
    return status


def _send(addr: str, message: str, want_reply: bool, timeout: float) -> int:
    family, dst = resolve(addr)[0]
    conn = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # Connected, so the kernel reports an ICMP "port unreachable" for
        # this destination as ECONNREFUSED on the next call, as socat does,
        # instead of the reply wait running out.
        conn.connect(dst)
    except BaseException:
        conn.close()
        raise
    with udpio.wrap_conn(conn) as sock:
        try:
            sock.send(message.encode("utf-8"), dst, timeout=timeout)
            if not want_reply:
                return 0
            frame, _ = sock.recv(timeout=timeout)
        except TimeoutError:
            print(f"udpio send: no reply from {addr} within {timeout:g} s", file=sys.stderr)
            return 1
        except ConnectionRefusedError as exc:
            print(f"udpio send: {addr}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(bytes(frame).decode("utf-8", errors="replace"), flush=True)
        return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (2 for bad arguments)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "echo":
            return _echo(args.addr) if args.workers == 1 else _echo_group(args.addr, args.workers)
        if args.command == "send":
            return _send(args.addr, args.message, args.reply, args.timeout)
        from udpio._bench import main as bench_main

        return bench_main(quick=args.quick, json_path=args.json)
    except OSError as exc:  # unresolvable host, port in use, ...: say so, no traceback
        print(f"udpio {args.command}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # an address only resolution finds bad (a host idna cannot encode)
        if not str(exc).startswith("udpio: invalid address"):
            raise
        print(f"udpio {args.command}: {exc}", file=sys.stderr)
        return 2


def run() -> None:
    """The ``udpio`` console script."""
    sys.exit(main())
