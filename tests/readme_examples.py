"""The README's examples, as the tests run them: found by their markers, rebound to port 0.

``<!-- example: NAME -->`` before a python block names it; ``examples()``
returns every named block. ``responder()`` runs one of the DNS examples in
a child process and yields the port it printed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import HANG, python_child, readline_within

README = Path(__file__).resolve().parents[1] / "README.md"


def examples() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: (\w+) -->\n```python\n(.*?)```", text, re.S)
    return dict(found)


def every_address_example(bind: str) -> str:
    """The README's wildcard responder, bound to ``bind`` (port 0: it prints the real one)."""
    code = examples()["every_address"]
    assert 'udpio.listen("0.0.0.0:5300")' in code
    return code.replace('udpio.listen("0.0.0.0:5300")', f'udpio.listen("{bind}")')


@contextmanager
def responder(code: str, runner: tuple[str, ...] = ()) -> Iterator[int]:
    """Run the responder; yield its port; stop it."""
    with python_child("-c", code, runner=runner) as proc:
        line = readline_within(proc, HANG)
        match = re.search(r":(\d+)$", line.strip())
        assert match, f"no port in {line!r}"
        yield int(match.group(1))
