"""``python -m udpio bench``: the P rules in ``MEASURED`` (docs/reference.md), each beside its baseline.

Every figure is measured in this one run, on this machine, for every
backend this install has, with the baseline and the backends interleaved
round by round (the order rotates) so machine drift hits all sides alike.
A figure is the median over rounds; a ratio is udpio's median over the
baseline's, and the verdict is taken from the ratio as printed (two
decimals). Nothing here is imported by the library itself.

The modules, by job: ``figures`` (what a row is, the targets), ``common``
(payloads, sockets, interleaving), one module per family of figures
(``receive``: P1, P5, P6; ``send``: P2, P7; ``latency``: P3, P4;
``throughput``: P8; ``options``: P10; ``memory``: P11), and ``runner`` (the run, the table,
the JSON).
"""

from __future__ import annotations

from udpio._bench.common import backends
from udpio._bench.figures import LIMITS, MEASURED, Config, Figure, format_time
from udpio._bench.runner import format_table, main, run

__all__ = ["LIMITS", "MEASURED", "Config", "Figure", "backends", "format_table", "format_time", "main", "run"]
