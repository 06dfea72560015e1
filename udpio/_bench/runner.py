"""The run: every family of figures in turn, the table, the JSON; ``udpio bench`` calls ``main``."""

from __future__ import annotations

import json
import platform
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Optional

import udpio
from udpio import _socket
from udpio._bench import latency, memory, options, receive, reports, send, throughput
from udpio._bench.common import Opened, backends
from udpio._bench.figures import Config, Figure, format_time

__all__ = ["environment", "format_table", "main", "run"]

#: One family of figures: measures every backend in ``kinds`` and returns
#: its rows; a socket it keeps open goes into ``opened``, which the run closes.
Family = Callable[[Config, dict[str, type[_socket.Socket]], Opened], list[Figure]]

#: Every figure, in the order of the table. A new figure is a new function here.
FAMILIES: tuple[Family, ...] = (
    receive.run_p1,
    send.run_p2_p7,
    latency.run_p3,
    latency.run_p4,
    receive.run_p5,
    receive.run_p6,
    throughput.run_p8,
    options.run_p10,
    memory.run_p11,
    reports.run_p13,
)


def run(config: Config, kinds: Optional[dict[str, type[_socket.Socket]]] = None) -> list[Figure]:
    """Measure every figure for every backend (default: all this install has)."""
    kinds = kinds if kinds is not None else backends()
    opened = Opened()
    figures: list[Figure] = []
    try:
        for family in FAMILIES:
            figures += family(config, kinds, opened)
    finally:
        opened.close()
    return figures


def _value(figure: Figure) -> str:
    if figure.unit == "ns":
        return format_time(figure.udpio)
    if figure.unit == "datagrams/s":
        return f"{figure.udpio:,.0f}/s"
    return f"{figure.udpio:.2f} {figure.unit}"


def _baseline(figure: Figure) -> str:
    if figure.baseline is None:
        return "-"
    if figure.unit == "datagrams/s":
        return f"{figure.baseline:,.0f}/s"
    return format_time(figure.baseline)


#: The table fits a terminal of this many columns; what does not (each
#: figure's whole description) is wrapped onto its group's heading lines,
#: and every field is in --json as well.
WIDTH = 79


def format_table(figures: list[Figure]) -> str:
    """The figures as a text table no wider than ``WIDTH`` columns.

    Rows that measure the same thing against the same baseline form a group
    under a heading (the rule, what it measures, the baseline); each row
    is then one backend: its figure, the baseline's, the ratio, the target,
    whether it is met.
    """
    header = ("backend", "udpio", "baseline", "ratio", "target", "met")
    rows: list[tuple[str, ...]] = []
    headings: dict[int, str] = {}
    last: tuple[str, str, str] | None = None
    for f in figures:
        group = (f.rule, f.what, f.baseline_name)
        if group != last:
            against = f" (baseline: {f.baseline_name})" if f.baseline_name else ""
            headings[len(rows)] = f"{f.rule}  {f.what}{against}"
            last = group
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        met = "-" if f.met is None else "yes" if f.met else "NO"
        rows.append((f.backend, _value(f), _baseline(f), ratio, f.target, met))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(w) if 1 <= i <= 3 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    lines = [line(header), "-" * min(WIDTH, len(line(header)))]
    for index, row in enumerate(rows):
        if index in headings:
            lines += textwrap.wrap(headings[index], WIDTH, subsequent_indent="     ")
        lines.append(line(row))
    return "\n".join(lines)


def environment() -> dict[str, str]:
    """What the figures were measured on."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "backends": ", ".join(backends()),
    }


def main(quick: bool = False, json_path: Optional[str] = None) -> int:
    """Run the benchmark, print the table, optionally write JSON; returns 0.

    A ``json_path`` that cannot be written raises ``OSError`` before anything
    is measured.
    """
    out = open(json_path, "w", encoding="utf-8") if json_path else None  # noqa: SIM115  # fail first
    try:
        config = Config.quick() if quick else Config.full()
        started = time.monotonic()
        figures = run(config)
        env = environment()
        print(
            f"udpio {udpio.__version__} benchmark ({'quick' if quick else 'full'}), Python {env['python']} "
            f"on {env['platform']}; backends: {env['backends']}; medians over {config.rounds} "
            "interleaved rounds"
        )
        print(format_table(figures))
        print(f"({time.monotonic() - started:.1f} s)")
        if out is not None:
            document = {
                "environment": env,
                "config": asdict(config),
                "figures": [dict(asdict(f), ratio=f.ratio) for f in figures],
            }
            json.dump(document, out, indent=2)
            out.write("\n")
    finally:
        if out is not None:
            out.close()
    return 0
