"""V1, V2: the interpreters the suite runs on, as tox, CI, the package and the README declare them.

What runs where is configuration (tox.ini, .ci/run, tools/sid_root.sh,
pyproject.toml); these read it, so dropping a release from the matrix, or
letting a missing interpreter pass, fails a test rather than going
unnoticed until a user on that release meets a bug.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Every CPython release not past its end of life (3.10's ended in October 2026).
SUPPORTED = ("3.11", "3.12", "3.13", "3.14", "3.15")
#: Those pyenv has on this project's machines; the rest come from Debian's root (V2).
IN_PYENV = ("3.11", "3.12", "3.13")


def _text(name: str) -> str:
    path = ROOT / name
    if not path.exists():
        pytest.skip(f"{name} is not beside the tests (installed copy)")
    return path.read_text(encoding="utf-8")


def _tox() -> configparser.ConfigParser:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read_string(_text("tox.ini"))
    return tox


def _names(value: str) -> list[str]:
    return [name.strip() for name in re.split(r"[,\s]+", value) if name.strip()]


def _label(tox: configparser.ConfigParser, name: str) -> list[str]:
    for line in tox["tox"]["labels"].splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return _names(value)
    raise AssertionError(f"tox.ini has no label {name!r}")


def test_v1_every_supported_release_is_in_the_matrix_and_a_missing_one_fails_the_run() -> None:
    tox = _tox()
    envs = {f"py{v.replace('.', '')}" for v in SUPPORTED}
    assert envs <= set(_names(tox["tox"]["env_list"]))
    assert tox["tox"]["skip_missing_interpreters"].strip() == "false"
    ci = _label(tox, "ci")
    assert {f"py{v.replace('.', '')}" for v in IN_PYENV} <= set(ci) and "sid" in ci
    in_root = re.search(r"sid_root\.sh tox -e ([\w,]+)", tox["testenv:sid"]["commands"])
    assert in_root is not None and set(in_root.group(1).split(",")) == envs - set(ci)
    assert "tox run -m ci" in _text(".ci/run")


def test_v1_the_package_and_the_readme_say_exactly_what_is_tested() -> None:
    project = tomllib.loads(_text("pyproject.toml"))["project"]
    assert project["requires-python"] == f">={SUPPORTED[0]}"
    stated = {c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if re.search(r"Python :: 3\.\d+$", c)}
    assert stated == set(SUPPORTED)
    readme = _text("README.md")
    assert f"CPython {SUPPORTED[0]} to {SUPPORTED[-1]}" in readme
    assert re.search(r"on CPython 3\.11,\s+3\.12, 3\.13, 3\.14 and 3\.15", readme)


def test_v2_releases_pyenv_lacks_come_from_a_debian_root_the_run_makes_and_reuses() -> None:
    recipe = _text("tools/sid_root.sh")
    packages = re.search(r'packages="([^"]+)"', recipe, re.S)
    assert packages is not None
    wanted = set(packages.group(1).split())
    for version in sorted(set(SUPPORTED) - set(IN_PYENV)):
        assert {f"python{version}", f"python{version}-dev", f"python{version}-venv"} <= wanted
    # The test hosts run inside the root too (M5, E7): their tools are in it.
    assert {"iproute2", "nftables", "ethtool", "procps"} <= wanted
    assert re.search(r"\b(mmdebstrap|debootstrap)\b.*\bsid\b", recipe, re.S)
    # Made once and reused: a marker written last, holding the package list.
    assert ".udpio-root-ready" in recipe and '[ -f "$ready" ]' in recipe
    sid = _tox()["testenv:sid"]
    assert "UDPIO_TEST_REQUIRE_TOOLS" in sid["pass_env"]  # the namespace tests must run there
