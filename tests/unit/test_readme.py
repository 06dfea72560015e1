"""The README's daemon example really runs, echoes, and shuts down on SIGTERM or Ctrl-C (C3)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import (
    HANG,
    PACKAGE_ROOT,
    blocked_signals,
    child_env,
    in_sigwait,
    plain_peer,
    readline_within,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## A daemon's reader loop", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README lost its example"
    return match.group(1)


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_c3_readme_daemon_example_echoes_and_stops_on_signal(sig: signal.Signals) -> None:
    code = _example()
    assert len(code.strip().splitlines()) <= 22
    listen = 'udpio.listen("127.0.0.1:9999")'
    assert listen in code
    # Port 0 instead of 9999 (no clash with anything), and say which port we got.
    code = code.replace(listen, 'udpio.listen("127.0.0.1:0")')
    code = code.replace("\ndef reader", "\nprint(sock.local_addr()[1], flush=True)\n\ndef reader", 1)
    assert "signal.sigwait(stop)" in code
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=PACKAGE_ROOT,
    )
    try:
        port = int(readline_within(proc, HANG))
        with plain_peer() as peer:
            peer.sendto(b"from the README", ("127.0.0.1", port))
            assert peer.recvfrom(100)[0] == b"from the README"
        if os.path.isdir(f"/proc/{proc.pid}/task"):
            # Every other thread blocks them; the main one takes them in sigwait
            # (see test_cli's twin of this check).
            assert in_sigwait(proc.pid, proc.pid)
            for tid in (int(t) for t in os.listdir(f"/proc/{proc.pid}/task")):
                if tid != proc.pid:
                    assert {signal.SIGINT, signal.SIGTERM} <= blocked_signals(proc.pid, tid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=HANG)
        assert proc.returncode == 0, err
        assert err == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=HANG)


def _examples() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: (\w+) -->\n```python\n(.*?)```", text, re.S)
    return dict(found)


#: What each README example prints (the client's replies come in any order).
EXPECTED = {
    "client": sorted(f"b'n={n}'" for n in range(8)),
    "retain": ["[b'head0', b'head1', b'head2']"],
    "refused": ["connected: Connection refused", "unconnected: silence"],
    "batch": ["True"],
}


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_d1_readme_pattern_examples_run_as_they_stand(name: str) -> None:
    examples = _examples()
    assert set(examples) == set(EXPECTED) | {"every_address", "many_peers"}, (
        "a README example has no test, or lost it"
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", examples[name]],
        capture_output=True,
        text=True,
        timeout=HANG * 3,
        env=child_env(),
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert sorted(result.stdout.splitlines()) == EXPECTED[name]


def dig(*args: str, runner: tuple[str, ...] = ()) -> str:
    """``dig +short`` of an A query, in ``runner`` (e.g. ``ip netns exec NS``); its answer."""
    result = subprocess.run(
        [*runner, "dig", *args, "x.example.", "A", "+short", "+tries=1", "+time=3"],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    return result.stdout.strip() or f"(no answer: exit {result.returncode}: {result.stdout}{result.stderr})"


def need_dig() -> None:
    if shutil.which("dig") is None:
        if os.environ.get("UDPIO_TEST_REQUIRE_TOOLS"):
            pytest.fail("dig must be installed here (Debian: dnsutils)")
        pytest.skip("needs dig (Debian: dnsutils)")


def every_address_example(bind: str) -> str:
    """The README's wildcard responder, bound to ``bind`` (port 0: it prints the real one)."""
    code = _examples()["every_address"]
    assert 'udpio.listen("0.0.0.0:5353")' in code
    return code.replace('udpio.listen("0.0.0.0:5353")', f'udpio.listen("{bind}")')


@contextmanager
def responder(code: str, runner: tuple[str, ...] = ()) -> Iterator[int]:
    """Run the responder; yield its port; stop it."""
    proc = subprocess.Popen(
        [*runner, sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=PACKAGE_ROOT,
    )
    try:
        line = readline_within(proc, HANG)
        match = re.search(r", (\d+)", line)
        assert match, f"no port in {line!r}"
        yield int(match.group(1))
    finally:
        proc.kill()
        proc.communicate(timeout=HANG)


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
def test_m2_readme_wildcard_responder_answers_dig_on_every_loopback_address() -> None:
    # The bug this pins: dig @127.0.0.2 timed out three times against a
    # responder bound to 0.0.0.0, which answered from 127.0.0.1.
    need_dig()
    with responder(every_address_example("0.0.0.0:0")) as port:
        for asked in ("127.0.0.1", "127.0.0.2", "127.1.2.3"):
            assert dig(f"@{asked}", "-p", str(port)) == "127.0.0.1", asked


def need_dnsperf() -> None:
    if shutil.which("dnsperf") is None:
        if os.environ.get("UDPIO_TEST_REQUIRE_TOOLS"):
            pytest.fail("dnsperf must be installed here (Debian: dnsperf)")
        pytest.skip("needs dnsperf (Debian: dnsperf)")


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
def test_k1_k2_readme_many_peers_responder_answers_dig_and_dnsperf(tmp_path: Path) -> None:
    # The batched responder answers every client from the address it asked
    # (dig's connected socket hears nothing else), and under a real load
    # generator loses nothing: every query dnsperf sent was answered.
    need_dig()
    code = _examples()["many_peers"]
    bind = 'udpio.listen("0.0.0.0:5353", rcvbuf=4 << 20)'
    assert bind in code
    with responder(code.replace(bind, 'udpio.listen("0.0.0.0:0", rcvbuf=4 << 20)')) as port:
        for asked in ("127.0.0.1", "127.0.0.2", "127.1.2.3"):
            assert dig(f"@{asked}", "-p", str(port)) == "127.0.0.1", asked
        need_dnsperf()
        queries = tmp_path / "queries.txt"
        queries.write_text("".join(f"host{i}.example. A\n" for i in range(50)))
        command = ["dnsperf", "-s", "127.0.0.2", "-p", str(port), "-d", str(queries), "-l", "1"]
        result = subprocess.run(
            [*command, "-c", "4", "-q", "100", "-t", "2"], capture_output=True, text=True, timeout=HANG
        )
        assert result.returncode == 0, result.stderr
        completed = re.search(r"Queries completed:\s+(\d+)", result.stdout)
        lost = re.search(r"Queries lost:\s+(\d+)", result.stdout)
        assert completed and lost, result.stdout
        assert int(completed.group(1)) > 100 and int(lost.group(1)) == 0, result.stdout
