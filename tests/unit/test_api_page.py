"""D1: the API page built from the docstrings has every public name, under its public name."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.helpers import public_names

#: Set by the docs environment (tox -e docs) to the HTML it just built.
HTML = os.environ.get("UDPIO_DOCS_HTML")


@pytest.mark.skipif(not HTML, reason="needs the built docs: tox -e docs builds them and runs this")
def test_d1_the_api_page_has_every_public_name_and_method_as_users_call_them() -> None:
    # The bug this pins: the page showed udpio._socket.Socket(conn, *,
    # _pool=None) with five of its methods, and no udpio.Socket at all.
    assert HTML is not None
    page = (Path(HTML) / "api.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(udpio\.[\w.]+)"', page))
    # Every name from the package itself (the bug this pins too: a hand-kept
    # list of methods went stale with the page, and recv_batch and
    # send_many were on neither).
    names = public_names()
    missing = set(names) - anchors
    assert not missing, f"public names missing from the API page: {sorted(missing)}"
    members = {f"{owner}.{member}" for owner, found in names.items() for member in found} - anchors
    assert not members, f"public members missing from the API page: {sorted(members)}"
    assert "udpio.__version__" in anchors
    assert not re.search(r"udpio\._[a-z]", page), "a private module's name is on the page"
    assert "_pool" not in page, "the private constructor's signature is on the page"
