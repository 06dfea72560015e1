"""P9: the server benchmark runs every responder loop under dnsperf and judges its figures as it prints them.

No test asserts a speed: these pin that every loop answers correctly
(dig), that the benchmark measures every loop it names against the plain
one, and that it says how to install dnsperf where it is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HANG, PACKAGE_ROOT, child_env, dig, need_dig, need_dnsperf, readline_within

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "dns_server.py"
GROUP_SCRIPT = SCRIPT.with_name("group_dns.py")
LOOPS = ["plain", "asyncio", "udpio reply", "udpio batch"]

pytestmark = pytest.mark.skipif(
    not SCRIPT.exists(), reason="benchmarks/ is not beside the tests (installed copy)"
)


@pytest.mark.parametrize("loop", [*LOOPS, "uvloop"])
def test_p9_every_responder_loop_answers_a_query_with_its_a_record(loop: str) -> None:
    need_dig()
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is optional: the benchmark shows it where installed")
    command = [sys.executable, str(SCRIPT), "--serve", loop]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=child_env(), cwd=PACKAGE_ROOT
    ) as server:
        try:
            port = readline_within(server, HANG).strip()
            for _ in range(3):  # three queries: the loops answer query after query
                assert dig("@127.0.0.1", "-p", port) == "127.0.0.1"
        finally:
            server.kill()


def _run_briefly(script: Path, out: Path, timeout: float) -> tuple[str, Any]:
    # One short round of a benchmark script: its table (stdout) and the
    # figures it wrote as JSON.
    result = subprocess.run(
        [sys.executable, str(script), "--seconds", "0.3", "--rounds", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(out.read_text())


def test_p9_the_benchmark_measures_every_loop_against_the_plain_one(tmp_path: Path) -> None:
    need_dnsperf()
    table, figures = _run_briefly(SCRIPT, tmp_path / "p9.json", timeout=120)
    loops = figures["loops"]
    assert set(LOOPS) <= set(loops) <= {*LOOPS, "uvloop"}
    for name, loop in loops.items():
        assert loop["qps"] > 0 and loop["sent"] > 0 and 0 <= loop["lost"] <= loop["sent"], name
        ratio = round(loop["qps"] / loops["plain"]["qps"], 2)
        assert f"| {name} | {loop['qps']:,.0f} | {ratio:.2f}x |" in table
        # The responder's CPU per answered query, beside queries/s: a few
        # microseconds, not nothing and not the whole run.
        assert 0 < loop["cpu"] < 0.01, name
        cpu_ratio = loop["cpu"] / loops["plain"]["cpu"]
        assert f"| {loop['cpu'] * 1e6:.2f} µs | {cpu_ratio:.2f}x |" in table
    batch = round(loops["udpio batch"]["qps"] / loops["plain"]["qps"], 2)
    reply = round(loops["udpio reply"]["qps"] / loops["plain"]["qps"], 2)
    lost = max(loops["udpio batch"]["lost"], loops["udpio reply"]["lost"]) <= loops["plain"]["lost"]
    assert figures["verdicts"] == {
        "udpio batch >= 1.30x": batch >= 1.3,
        "udpio reply >= 1.00x": reply >= 1.0,
        "lost no more than plain's": lost,
    }


def test_p9_without_dnsperf_it_says_how_to_install_it_and_measures_nothing() -> None:
    env = dict(child_env(), PATH=os.path.dirname(sys.executable))  # python, and no dnsperf
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=HANG, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "P9 skipped: dnsperf is not installed (Debian/Ubuntu: apt-get install dnsperf)\n"


def test_p12_the_group_benchmark_measures_one_and_two_workers_side_by_side(
    tmp_path: Path, backend: str
) -> None:
    if backend != "native":
        pytest.skip("the benchmark runs the installed udpio's own backend: once, in the native run")
    need_dnsperf()
    table, figures = _run_briefly(GROUP_SCRIPT, tmp_path / "p12.json", timeout=300)
    results = figures["results"]
    assert set(results) == {
        "1 work",
        "2 work",
        "1 no work",
        "2 no work",
        "2 work, one client, random",
        "2 work, one client, hash",
    }
    for name, r in results.items():
        assert r["qps"] > 0 and r["cpu"] > 0, name
        assert len(r["shares"]) == int(name[0]) and abs(sum(r["shares"]) - 1) < 1e-9, name
        assert f"| {name} | {r['qps']:,.0f} |" in table
    assert results["2 work, one client, hash"]["shares"] in ([0.0, 1.0], [1.0, 0.0])  # one client, one worker
    assert set(figures["verdicts"]) == {
        "2 workers >= 1.30x the queries/s of 1 (with work)",
        "each of 2 workers 35%-65% of the queries",
        "CPU per query, 2 workers <= 1.15x 1's",
        "random, one client: each worker 30%-70%",
    }
