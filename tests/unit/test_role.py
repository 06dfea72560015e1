"""C1, C2, C3: the roles' wake-up, checked as a protocol and raced for real.

A role (a Socket's reader or writer) is taken by one compare-and-swap;
only a thread that has to wait sleeps, on a lock that each give may
release. CPython 3.15 aborts the interpreter when such a lock is released
while it is not held, which the code before this file did (two gives
before the sleeper woke, a give after a waiter that had given up, and the
dealloc). Two kinds of test:

- The protocol, model-checked: ``tools/role.pml`` is the wake-up as SPIN
  explores it, every interleaving of four threads; it must hold, and each
  of its mutants (the old code among them) must be caught.
- The real thing, raced: the scenarios of ``tests/role_stress.py``, each in
  a child process so that an abort fails one test with CPython's message,
  on the backend under test and on every interpreter of the matrix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import udpio
from tests.helpers import PACKAGE_ROOT, child_env

MODEL = Path(__file__).resolve().parents[2] / "tools" / "role.pml"
STRESS = Path(__file__).resolve().parents[1] / "role_stress.py"


def _need_spin() -> None:
    if udpio.BACKEND != "native":
        pytest.skip("the model is of the C code's protocol: checked once, in the native run")
    missing = [tool for tool in ("spin", "gcc") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("UDPIO_TEST_REQUIRE_TOOLS"):
            pytest.fail(
                f"the role model must be checked here: needs {', '.join(missing)} (Debian: spin, gcc)"
            )
        pytest.skip(f"needs {', '.join(missing)} (Debian: spin, gcc)")


def _check_model(folder: Path, *defines: str) -> str:
    """SPIN's verdict on the model: its output, the search complete."""
    flags = ["-DTHREADS=4", "-DROUNDS=2", *(f"-D{d}" for d in defines)]
    subprocess.run(
        ["spin", *flags, "-a", str(MODEL)], cwd=folder, check=True, capture_output=True, timeout=60
    )
    subprocess.run(
        ["gcc", "-O2", "-o", "pan", "pan.c"], cwd=folder, check=True, capture_output=True, timeout=120
    )
    result = subprocess.run(["./pan", "-m1000000"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert "max search depth too small" not in result.stdout, result.stdout
    return result.stdout


def test_c1_the_role_wakeup_protocol_holds_in_every_interleaving(tmp_path: Path) -> None:
    _need_spin()
    out = _check_model(tmp_path)
    assert "errors: 0" in out, out
    # Four threads, two rounds each: millions of states, not a trivial search.
    stored = int(out.split(" states, stored")[0].split()[-1])
    assert stored > 1_000_000, out


@pytest.mark.parametrize(
    ("mutant", "verdict"),
    [
        # The code before the fix: 3.15's "unlocking mutex that is not locked".
        ("MUTANT_RELEASE_EVERY_GIVE", "assertion violated wake_locked"),
        # A wake-up marked taken after the retry: a give in between is lost.
        ("MUTANT_CLEAR_AFTER_TRY", "invalid end state"),
        # Role_dealloc releasing `wake` whatever its state.
        ("MUTANT_DEALLOC_ALWAYS", "assertion violated wake_locked"),
    ],
)
def test_c1_the_role_model_catches_each_broken_wakeup(tmp_path: Path, mutant: str, verdict: str) -> None:
    _need_spin()
    out = _check_model(tmp_path, mutant)
    assert verdict in out and "errors: 0" not in out, out


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param("two_senders", id="c2_two_senders"),
        pytest.param("three_senders_racing_close", id="c2_three_senders_racing_close"),
        pytest.param("reader_and_closer", id="c3_reader_and_closer"),
        pytest.param("roles_with_timeouts", id="c1_roles_with_timeouts"),
    ],
)
def test_c2_racing_roles_never_aborts_the_interpreter(scenario: str) -> None:
    result = subprocess.run(
        [sys.executable, str(STRESS), scenario],
        capture_output=True,
        text=True,
        timeout=180,
        env=child_env(),
        cwd=PACKAGE_ROOT,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.stdout == f"ok {udpio.BACKEND}\n", result.stdout
