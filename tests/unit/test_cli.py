"""``python -m udpio``: the echo daemon, the send tool, the benchmark, and bad arguments.

The daemon tests drive a real child process: start it on port 0, talk to
it from a plain socket, signal it, read its exit status and summary.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import udpio
from tests.helpers import HANG, join, plain_peer
from udpio import _bench


def _env() -> dict[str, str]:
    # The child imports the udpio under test, wherever the suite runs from.
    package_root = str(Path(udpio.__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=package_root)


def _udpio(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "udpio", *args], capture_output=True, text=True, timeout=timeout, env=_env()
    )


@contextmanager
def echo_daemon(addr: str = "127.0.0.1:0") -> Iterator[tuple[subprocess.Popen[str], tuple[str, int]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "udpio", "echo", addr],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        line = _readline_within(proc, HANG)
        match = re.fullmatch(r"listening on (\S+):(\d+)\n", line)
        assert match, f"first line was {line!r}"
        yield proc, (match.group(1).strip("[]"), int(match.group(2)))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=HANG)


def _readline_within(proc: subprocess.Popen[str], timeout: float) -> str:
    # readline() could block forever on a silent child: read on a thread, join with a bound.
    assert proc.stdout is not None
    stdout = proc.stdout
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    reader.start()
    join(reader, timeout)
    return result[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_echo_serves_then_exits_cleanly_on_signal(sig: signal.Signals) -> None:
    with echo_daemon() as (proc, addr), plain_peer() as peer:
        messages = [b"one", b"", b"three!!"]
        for message in messages:
            peer.sendto(message, addr)
            data, src = peer.recvfrom(2048)
            assert data == message and src == addr
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=HANG)
        assert proc.returncode == 0, err
        total = sum(len(m) for m in messages)
        assert out.strip() == f"received 3 datagrams ({total} bytes), sent 3 datagrams ({total} bytes)"
        assert "Traceback" not in err


@pytest.mark.ipv6
def test_cli_echo_on_ipv6_prints_bracketed_address() -> None:
    with echo_daemon("[::1]:0") as (proc, addr), plain_peer(socket.AF_INET6) as peer:
        assert addr[0] == "::1"
        peer.sendto(b"v6", addr)
        assert peer.recvfrom(100)[0] == b"v6"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=HANG)
        assert proc.returncode == 0 and "received 1 datagrams (2 bytes)" in out


def test_cli_echo_port_in_use_is_a_clear_error() -> None:
    with plain_peer() as busy:
        host, port = busy.getsockname()
        result = _udpio("echo", f"{host}:{port}")
    assert result.returncode == 1
    assert "Address already in use" in result.stderr and "Traceback" not in result.stderr


def _echo_thread(sock: socket.socket) -> threading.Thread:
    def serve() -> None:
        data, src = sock.recvfrom(2048)
        sock.sendto(data, src)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_cli_send_reply_prints_the_answer() -> None:
    with plain_peer() as server:
        thread = _echo_thread(server)
        host, port = server.getsockname()
        result = _udpio("send", f"{host}:{port}", "héllo wörld", "--reply", "--timeout", str(HANG))
        join(thread)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "héllo wörld\n"


def test_cli_send_without_reply_just_sends() -> None:
    with plain_peer() as server:
        host, port = server.getsockname()
        result = _udpio("send", f"{host}:{port}", "fire and forget")
        assert result.returncode == 0 and result.stdout == ""
        assert server.recvfrom(100)[0] == b"fire and forget"


def test_cli_send_reply_timeout_exits_1_with_message() -> None:
    with plain_peer() as silent:
        host, port = silent.getsockname()
        result = _udpio("send", f"{host}:{port}", "anyone?", "--reply", "--timeout", "0.2")
        assert silent.recvfrom(100)[0] == b"anyone?"
    assert result.returncode == 1
    assert f"no reply from {host}:{port} within 0.2 s" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: COMMAND"),
        (["echo", "127.0.0.1"], "invalid address '127.0.0.1'"),
        (["echo", "127.0.0.1:99999"], "outside 0..65535"),
        (["send", "[::1:80", "hi"], "unbalanced"),
        (["send", "127.0.0.1:9", "hi", "--timeout", "-1"], "timeout must be a finite number >= 0"),
        (["send", "127.0.0.1:9", "hi", "--timeout", "soon"], "timeout must be a number of seconds"),
        (["send", "127.0.0.1:9"], "required: MESSAGE"),
        (["bench", "--fast"], "unrecognized arguments: --fast"),
    ],
)
def test_cli_bad_arguments_print_usage_and_one_error_exit_2(args: list[str], complaint: str) -> None:
    result = _udpio(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("usage: python -m udpio")
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and complaint in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_bench_help_names_its_options() -> None:
    result = _udpio("bench", "--help")
    assert result.returncode == 0
    assert "--quick" in result.stdout and "--json" in result.stdout


def test_cli_bench_measures_every_figure_with_consistent_verdicts(tmp_path: Path) -> None:
    tiny = _bench.Config(rounds=3, batch=200, round_trips=50, wake_trials=10, alloc_receives=2000)
    kinds = _bench.backends()
    figures = _bench.run(tiny, kinds)
    # Every rule, for every backend this install has, side by side.
    assert {(f.rule, f.backend) for f in figures} == {
        (rule, name) for rule in ("P1", "P2", "P3", "P4", "P5", "P6") for name in kinds
    }
    for figure in figures:
        assert figure.udpio >= 0
        if figure.limit is not None:
            assert figure.ratio is not None and figure.baseline is not None
            # The verdict is the printed (rounded) ratio against the limit.
            assert figure.ratio == round(figure.udpio / figure.baseline, 2)
            assert figure.met == (figure.ratio <= figure.limit)
            assert figure.target == f"<= {figure.limit:.2f}x"
    table = _bench.format_table(figures)
    assert table.count("\n") == len(figures) + 1
    for word in ("rule", "backend", "udpio", "baseline", "ratio", "target", "met"):
        assert word in table.splitlines()[0]
    assert not re.search(r"\d,\d{3}\.\d", table), "a time printed as 4,078,490.0 ns"
    assert all(f.ratio is None for f in figures if f.rule in ("P4", "P5")), "a ratio without a baseline"


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (812.4, "812 ns"),
        (1462.0, "1.46 µs"),
        (21_640.0, "21.6 µs"),
        (4_078_490.0, "4.08 ms"),
        (2.5e9, "2.50 s"),
    ],
)
def test_cli_bench_prints_times_in_the_unit_that_reads_best(ns: float, text: str) -> None:
    assert _bench.format_time(ns) == text


def test_cli_bench_verdict_follows_the_printed_ratio() -> None:
    # 1.1549 prints as 1.15x; against "<= 1.15x" that is met.
    figure = _bench._ratio_figure("P2", "send", "python", 1154.9, 1000.0, "sendto loop", 1.15)
    assert figure.ratio == 1.15 and figure.met
    assert not _bench._ratio_figure("P2", "send", "python", 1155.1, 1000.0, "sendto loop", 1.15).met


def test_cli_bench_bad_json_path_fails_before_the_run(tmp_path: Path) -> None:
    start = time.monotonic()
    result = _udpio("bench", "--json", str(tmp_path / "no" / "such" / "dir" / "out.json"))
    assert result.returncode == 1
    assert "No such file or directory" in result.stderr
    assert "P1" not in result.stdout  # nothing was measured
    assert time.monotonic() - start < 10


def test_cli_bench_quick_prints_table_and_writes_json(tmp_path: Path) -> None:
    import json

    out = tmp_path / "bench.json"
    result = _udpio("bench", "--quick", "--json", str(out), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ratio" in result.stdout and "P6" in result.stdout
    document = json.loads(out.read_text())
    assert document["environment"]["python"] == sys.version.split()[0]
    rules = [figure["rule"] for figure in document["figures"]]
    assert set(rules) == {"P1", "P2", "P3", "P4", "P5", "P6"}
    for figure in document["figures"]:
        if figure["baseline"]:
            assert figure["ratio"] == round(figure["udpio"] / figure["baseline"], 2)
