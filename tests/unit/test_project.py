"""D1-D3: the users' documentation and the package's metadata say what the project does.

These read the repository's own files (docs/, README.md, tox.ini,
pyproject.toml, LICENSE), so they run from a checkout; where one is not
there (an installed copy of the tests), they skip saying so.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from udpio import _bench

ROOT = Path(__file__).resolve().parents[2]
RULE_ID = re.compile(r"\b([ABCDFGKLMNPRSVW][1-9][0-9]?)\b")
#: The same IDs as they stand in a test's name (test_c4_...).
RULE_IN_NAME = re.compile(r"[abcdfgklmnprsvw][1-9][0-9]?")
#: V1: every CPython release not past its end of life (3.10's ended in
#: October 2026).
TOX_PYTHONS = ["3.11", "3.12", "3.13", "3.14", "3.15"]
#: Where pyenv has them on this project's machines; the rest run in the sid root (V2).
PYENV_PYTHONS = ["3.11", "3.12", "3.13"]


def _read(relative: str) -> str:
    path = ROOT / relative
    if not path.is_file():
        pytest.skip(f"{relative} is not here: the tests run outside a checkout")
    return path.read_text(encoding="utf-8")


def _defined_ids() -> set[str]:
    return set(re.findall(r"\*\*([A-Z][0-9]+)\*\*", _read("docs/reference.md")))


def _ids_in_test_names() -> set[str]:
    found = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        for name in re.findall(r"def (test_\w+)", path.read_text(encoding="utf-8")):
            found |= {
                part.upper()
                for part in name.split("_")
                if re.fullmatch(r"[abcdfgklmnprsvw][1-9][0-9]?", part)
            }
    return found


def _help_texts() -> str:
    texts = []
    for args in (["--help"], ["echo", "--help"], ["send", "--help"], ["bench", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "udpio", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert result.returncode == 0, result.stderr
        texts.append(result.stdout)
    return "\n".join(texts)


def test_d1_every_rule_id_users_meet_is_defined_in_the_reference() -> None:
    defined = _defined_ids()
    docstrings = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "udpio").glob("*.py"))
    named = {
        "a test name": _ids_in_test_names(),
        "udpio's source and docstrings": set(RULE_ID.findall(docstrings)),
        "--help": set(RULE_ID.findall(_help_texts())),
        "the benchmark": {rule.split()[0] for rule in _bench.LIMITS} | {"P4", "P5"},
    }
    for where, ids in named.items():
        assert ids, f"found no rule ID in {where}: the pattern is wrong"
        assert ids <= defined, (
            f"{where} names {sorted(ids - defined)}, which docs/reference.md does not define"
        )


def test_d1_nothing_users_are_pointed_to_lies_outside_the_repository() -> None:
    pages = ["README.md", "CHANGELOG.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))]
    for page in pages:
        text = _read(page)
        assert "udpio-contract" not in text and "../shared" not in text, page
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL is not a file of ours
            resolved = (ROOT / page).parent.joinpath(target).resolve()
            assert resolved.is_relative_to(ROOT), f"{page} links outside the repository: {target}"
            assert resolved.exists(), f"{page} links to a missing file: {target}"


def test_d2_readme_says_what_happens_without_an_interpreter_and_how_to_find_each() -> None:
    tox = _read("tox.ini")
    readme = _read("README.md")
    # The README's promise (a missing interpreter fails the run) is tox.ini's setting.
    assert re.search(r"^skip_missing_interpreters = false$", tox, re.M)
    assert "could not find python interpreter" in readme and "**fails**" in readme
    # The way out it names exists: the `here` label, and each way to make one findable.
    assert re.search(r"^    here = py, ", tox, re.M) and "`tox -m here`" in readme
    assert "pyenv prefix" in readme and "tox --discover" in readme
    envs = re.search(r"^env_list = (.*)$", tox, re.M)
    assert envs is not None
    assert [e for e in envs.group(1).split(", ") if re.fullmatch(r"py3\d+", e)] == [
        "py" + v.replace(".", "") for v in TOX_PYTHONS
    ]


def test_d3_license_and_metadata_match_the_claims() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    project = tomllib.loads(_read("pyproject.toml"))["project"]
    assert _read("LICENSE").startswith("MIT License\n")
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert project["requires-python"] == f">={TOX_PYTHONS[0]}"
    classifiers = project["classifiers"]
    versions = [
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert versions == TOX_PYTHONS, "a classifier for each interpreter the matrix tests, no other"
    systems = [c for c in classifiers if c.startswith("Operating System ::")]
    assert systems == ["Operating System :: POSIX :: Linux"], "Linux is the one platform claimed"
    assert "Tested on Linux, the one platform claimed" in _read("README.md")
    assert project.get("dependencies", []) == [], "no runtime dependencies"


def test_d2_readme_pyenv_line_covers_every_interpreter_and_quotes_tox() -> None:
    # The bug this pins: the README's pyenv line added 3.10 and 3.12 only,
    # and quoted words tox does not print.
    readme = _read("README.md")
    line = next(line for line in readme.splitlines() if "pyenv prefix" in line)
    for version in PYENV_PYTHONS:
        assert version in line, f"the pyenv line leaves out {version}"
    assert "could not find python interpreter matching any of the specs" in readme


def test_d1_the_docs_use_no_term_they_do_not_define_and_point_the_right_way() -> None:
    # "moonshot" was used in docs/benchmarks.md and defined nowhere; the
    # README sent readers to a section "below" that is above.
    for name in ("README.md", "docs/benchmarks.md", "docs/design.md", "docs/reference.md"):
        assert "moonshot" not in _read(name).lower(), name
    readme = _read("README.md")
    headings = [m.start() for m in re.finditer(r"^#+ ", readme, re.M)]
    for match in re.finditer(r'"([^"\n]+)" (below|above)', readme):
        title, direction = match.group(1), match.group(2)
        where = readme.find(f" {title}\n")
        assert where >= 0 and where in [h + readme[h:].index(" ") for h in headings], f"no section {title!r}"
        assert (where > match.start()) == (direction == "below"), f"{title!r} is not {direction}"


def test_c3_readme_reader_loop_catches_closed_error_before_oserror() -> None:
    # ClosedError is an OSError: a loop that catches OSError first and
    # continues spins after close() (114,000 turns in 0.1 s, measured).
    readme = _read("README.md")
    loop = readme.split("## A daemon's reader loop", 1)[1].split("```", 2)[1]
    assert loop.index("except udpio.ClosedError") < loop.index("except Exception")
    assert "ClosedError" in _read("docs/reference.md").split("## Concurrency (C)")[0]


def test_d1_readme_and_changelog_quote_the_benchmarks_headline_figures() -> None:
    # The README said "1.3x" for the batched dnsperf responder where the
    # benchmarks page said 1.15x-1.36x, and "26 KiB" a Socket where it said 28.
    headline = _read("docs/benchmarks.md").split("## Which workload each headline figure is for")[1]
    headline = " ".join(headline.split("\n## ")[0].split())
    memory = re.search(r"Memory per Socket, (\d+) KiB", headline)
    p9 = re.search(r"Many peers, one small answer each, (\S+x) the queries per second", headline)
    reply = re.search(r"`recv_datagram` \+ `reply`: (\S+x)\)", headline)
    assert memory and p9 and reply, "the headline list lost a figure this test reads"
    readme = " ".join(_read("README.md").split())
    changelog = " ".join(_read("CHANGELOG.md").split())
    for page, text in (("README.md", readme), ("CHANGELOG.md", changelog)):
        quoted = set(re.findall(r"(\d+) KiB resident per Socket|holds about (\d+) KiB, and one whose", text))
        assert {kib for pair in quoted for kib in pair if kib} <= {memory.group(1)}, page
    assert f"holds about {memory.group(1)} KiB" in readme
    assert readme.count(f"answer {p9.group(1)} the queries per second") == 1
    assert readme.count(f"answered {p9.group(1)} the queries per second") == 1
    assert readme.count(f"`recv_datagram` + `reply` {reply.group(1)}") == 1
    assert readme.count(f"loop {reply.group(1)}") == 1
    assert "1.3x the queries" not in readme
    p12 = re.search(
        r"Many cores, (\S+x) the queries per second with 2 workers\*\* \(P12, at (\S+x) the CPU", headline
    )
    assert p12, "the headline list lost P12"
    assert (
        f"answers {p12.group(1)} the queries per second of a group of 1, at {p12.group(2)} the CPU" in readme
    )
