"""Type-check every Python example in README.md with mypy --strict (the typecheck environment runs it).

The README's examples are what users copy; they must pass the checker the
project itself is held to. Each ```python block becomes a module in a
temporary folder, checked against this checkout's udpio and its stubs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    if not blocks:
        print("check_readme_types: the README has no Python example", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index, block in enumerate(blocks):
            path = Path(folder) / f"readme_example_{index}.py"
            path.write_text(block, encoding="utf-8")
            paths.append(str(path))
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *paths],
            env={"MYPYPATH": f"{ROOT / 'typings'}:{ROOT}", "PATH": ""},
            capture_output=True,
            text=True,
        )
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    print(f"check_readme_types: {len(blocks)} README examples")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
