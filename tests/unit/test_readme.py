"""The README's daemon example really runs, echoes, and shuts down on SIGTERM or Ctrl-C (C3)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import HANG, plain_peer
from tests.unit.test_cli import PACKAGE_ROOT, _blocked_signals, _env, _in_sigwait, _readline_within

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
        env=_env(),
        cwd=PACKAGE_ROOT,
    )
    try:
        port = int(_readline_within(proc, HANG))
        with plain_peer() as peer:
            peer.sendto(b"from the README", ("127.0.0.1", port))
            assert peer.recvfrom(100)[0] == b"from the README"
        if os.path.isdir(f"/proc/{proc.pid}/task"):
            # Every other thread blocks them; the main one takes them in sigwait
            # (see test_cli's twin of this check).
            assert _in_sigwait(proc.pid, proc.pid)
            for tid in (int(t) for t in os.listdir(f"/proc/{proc.pid}/task")):
                if tid != proc.pid:
                    assert {signal.SIGINT, signal.SIGTERM} <= _blocked_signals(proc.pid, tid)
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
    assert set(examples) == set(EXPECTED), "a README example has no test, or a test lost its example"
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", examples[name]],
        capture_output=True,
        text=True,
        timeout=HANG * 3,
        env=_env(),
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert sorted(result.stdout.splitlines()) == EXPECTED[name]
