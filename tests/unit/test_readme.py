"""The README's daemon example really runs, echoes, and shuts down on SIGTERM or Ctrl-C (C3)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    HANG,
    PACKAGE_ROOT,
    blocked_signals,
    child_env,
    dig,
    in_sigwait,
    need_dig,
    need_dnsperf,
    plain_peer,
    python_child,
    readline_within,
)
from tests.readme_examples import README, every_address_example, examples, responder


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
    assert len(code.strip().splitlines()) <= 24
    listen = 'udpio.listen("127.0.0.1:9999")'
    assert listen in code
    # Port 0 instead of 9999 (no clash with anything), and say which port we got.
    code = code.replace(listen, 'udpio.listen("127.0.0.1:0")')
    code = code.replace("\ndef reader", "\nprint(sock.local_addr()[1], flush=True)\n\ndef reader", 1)
    assert "signal.sigwait(stop)" in code
    with python_child("-c", code) as proc:
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


#: What each README example prints (the client's replies come in any order).
EXPECTED = {
    "client": sorted(f"b'n={n}'" for n in range(8)),
    "retain": ["[b'head0', b'head1', b'head2']"],
    "refused": ["connected: Connection refused", "unconnected: silence"],
    "peer_errors": ["3 refusals; ECONNREFUSED from ('127.0.0.1', 0)"],
    "batch": ["True"],
}


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_d1_readme_pattern_examples_run_as_they_stand(name: str) -> None:
    found = examples()
    assert set(found) == set(EXPECTED) | {"every_address", "many_peers", "every_core"}, (
        "a README example has no test, or lost it"
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", found[name]],
        capture_output=True,
        text=True,
        timeout=HANG * 3,
        env=child_env(),
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert sorted(result.stdout.splitlines()) == EXPECTED[name]


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
def test_m2_readme_wildcard_responder_answers_dig_on_every_loopback_address() -> None:
    # The bug this pins: dig @127.0.0.2 timed out three times against a
    # responder bound to 0.0.0.0, which answered from 127.0.0.1.
    need_dig()
    with responder(every_address_example("0.0.0.0:0")) as port:
        for asked in ("127.0.0.1", "127.0.0.2", "127.1.2.3"):
            assert dig(f"@{asked}", "-p", str(port)) == "127.0.0.1", asked


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
def test_k1_k2_readme_many_peers_responder_answers_dig_and_dnsperf(tmp_path: Path) -> None:
    # The batched responder answers every client from the address it asked
    # (dig's connected socket hears nothing else), and under a real load
    # generator loses nothing: every query dnsperf sent was answered.
    need_dig()
    code = examples()["many_peers"]
    bind = 'udpio.listen("0.0.0.0:5300", rcvbuf=4 << 20)'
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


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
@pytest.mark.parametrize("name", ["every_address", "many_peers"])
def test_d1_readme_dns_examples_say_where_they_listen_and_stop_quietly_on_ctrl_c(name: str) -> None:
    # They printed the address as a tuple, bound mDNS's port 5353 (taken on
    # many desktops) and ended Ctrl-C with a traceback.
    code = examples()[name]
    bind = re.search(r'udpio\.listen\("0\.0\.0\.0:(\d+)"', code)
    assert bind and bind.group(1) != "5353", "the example binds mDNS's port"
    code = code.replace(f"0.0.0.0:{bind.group(1)}", "0.0.0.0:0")
    with python_child("-c", code) as proc:
        line = readline_within(proc, HANG)
        assert re.fullmatch(r"listening on 0\.0\.0\.0:[1-9]\d*\n", line), line
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0 and err == "", err


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_g5_readme_every_core_example_answers_from_two_workers_and_stops(
    tmp_path: Path, sig: signal.Signals
) -> None:
    code = examples()["every_core"]
    assert 'udpio.serve("127.0.0.1:5300"' in code
    # Port 0, and a line that says which port the group got.
    code = code.replace('udpio.serve("127.0.0.1:5300", answer_each, workers=2)', "main()")
    code = code.replace(
        'if __name__ == "__main__":',
        "def main() -> int:\n"
        "    group = udpio.Group('127.0.0.1:0', answer_each, workers=2)\n"
        "    from udpio._daemon import run_group\n"
        "    return run_group(group, ready=lambda: print(group.local_addr()[1], flush=True))\n\n\n"
        'if __name__ == "__main__":',
    )
    script = tmp_path / "every_core.py"  # a file: the workers import it by path
    script.write_text(code)
    with python_child(str(script), cwd=str(tmp_path)) as proc:
        port = int(readline_within(proc, HANG))
        for i in range(20):
            with plain_peer() as peer:
                peer.sendto(b"query %d" % i, ("127.0.0.1", port))
                assert peer.recvfrom(100)[0] == b"QUERY %d" % i
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0 and err == "", err


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests (installed copy)")
def test_g4_readme_reader_loop_survives_a_datagram_its_handler_cannot_take() -> None:
    # One datagram that made the handler raise ended the reader thread, and
    # the daemon stayed alive answering nothing until a SIGTERM.
    code = _example()
    code = code.replace('udpio.listen("127.0.0.1:9999")', 'udpio.listen("127.0.0.1:0")')
    code = code.replace("\ndef handle", "\nprint(sock.local_addr()[1], flush=True)\n\ndef handle", 1)
    bug = "    if bytes(frame) == b'bug':\n        raise ValueError('a datagram this code cannot take')\n"
    code = code.replace("    sock.send(frame, src)", bug + "    sock.send(frame, src)", 1)
    with python_child("-c", code) as proc:
        port = int(readline_within(proc, HANG))
        with plain_peer() as peer:
            peer.sendto(b"bug", ("127.0.0.1", port))
            peer.sendto(b"after", ("127.0.0.1", port))
            assert peer.recvfrom(100)[0] == b"after"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, err
    assert "ValueError: a datagram this code cannot take" in err
