"""What the benchmark measures and how a figure is judged: the run's size, a row, the targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["LIMITS", "MEASURED", "Config", "Figure", "format_time", "ratio_figure"]

#: The P rules (docs/reference.md) the benchmark measures: `udpio --help`
#: says these, and a test holds a run's rows to them.
MEASURED = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P10", "P11", "P13")


@dataclass(frozen=True)
class Config:
    """How much to measure. ``quick`` finishes in seconds, ``full`` in about a minute."""

    rounds: int
    batch: int  # datagrams per round for P1, P2, P6
    round_trips: int  # per round for P3
    wake_trials: int  # P4
    alloc_receives: int  # P5
    many_sockets: int  # P11

    @classmethod
    def quick(cls) -> Config:
        return cls(
            rounds=7, batch=1000, round_trips=300, wake_trials=200, alloc_receives=20_000, many_sockets=200
        )

    @classmethod
    def full(cls) -> Config:
        return cls(
            rounds=51,
            batch=3000,
            round_trips=2000,
            wake_trials=1000,
            alloc_receives=100_000,
            many_sockets=1000,
        )


@dataclass
class Figure:
    """One row of the table: one backend's measurement, its baseline, and its target.

    ``unit`` is ``"ns"`` for times (printed in ns, µs or ms, whichever
    reads best) or a unit of its own. ``limit`` is the highest ratio the
    target allows, where the target is a ratio.
    """

    rule: str
    what: str
    backend: str
    unit: str
    udpio: float
    baseline: Optional[float]
    baseline_name: str
    target: str
    limit: Optional[float]
    met: Optional[bool]  # None: no target for this backend

    @property
    def ratio(self) -> Optional[float]:
        """udpio over the baseline, rounded to the two decimals the table prints."""
        if self.baseline is None or self.baseline == 0:
            return None
        return round(self.udpio / self.baseline, 2)


def ratio_figure(
    rule: str,
    what: str,
    backend: str,
    value: float,
    baseline: float,
    baseline_name: str,
    limit: Optional[float],
) -> Figure:
    # The verdict is read off the printed, rounded ratio: 1.1549 prints as
    # 1.15x, and 1.15x against "<= 1.15x" is met.
    if limit is None:
        return Figure(rule, what, backend, "ns", value, baseline, baseline_name, "-", None, None)
    met = round(value / baseline, 2) <= limit
    return Figure(rule, what, backend, "ns", value, baseline, baseline_name, f"<= {limit:.2f}x", limit, met)


#: The highest ratio each backend is held to (docs/reference.md, P1-P3 and P6).
LIMITS: dict[str, dict[str, float]] = {
    "P1": {"python": 1.8, "native": 0.7},
    "P2": {"python": 1.25, "native": 1.05},
    "P3": {"python": 1.35, "native": 1.1},
    "P6": {"python": 0.33, "native": 0.33},
    # P7 and P8 are targets for the native backend's batches; the pure twin
    # (a loop of sends, one datagram per recv) is shown beside it. P7 is 0.5x
    # with sendmmsg and 0.25x where the kernel takes UDP GSO.
    "P7": {"native": 0.5},
    "P7 GSO": {"native": 0.25},
    # P8 is a throughput: udpio's datagrams/s over the plain pair's, at least this.
    "P8": {"native": 2.0},
    # P10: M4's options on over off, natively; "within noise". P8's row is a
    # throughput (at least 0.9x), P1's and P2's times (at most 1.1x).
    "P10": {"native": 1.1},
    "P10 throughput": {"native": 0.9},
    # P13: peer_errors on over off, "within noise" while no report comes;
    # P1 while reports flood in, at most 1.5x of the same Socket's quiet P1.
    "P13": {"python": 1.1, "native": 1.1},
    "P13 flood": {"python": 1.5, "native": 1.5},
}


def format_time(ns: float) -> str:
    """A duration in the unit that reads best: ``812 ns``, ``1.46 µs``, ``21.6 µs``, ``4.08 ms``."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{_three_digits(ns / scale)} {unit}"
    return f"{ns:.0f} ns"


def _three_digits(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


# -- helpers -------------------------------------------------------------------------
