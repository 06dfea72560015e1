"""D1: the API page built from the docstrings has every public name, under its public name."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import udpio
from tests.unit.test_api import METHODS

#: Set by the docs environment (tox -e docs) to the HTML it just built.
HTML = os.environ.get("UDPIO_DOCS_HTML")


@pytest.mark.skipif(not HTML, reason="needs the built docs: tox -e docs builds them and runs this")
def test_d1_the_api_page_has_every_public_name_and_method_as_users_call_them() -> None:
    # The bug this pins: the page showed udpio._socket.Socket(conn, *,
    # _pool=None) with five of its methods, and no udpio.Socket at all.
    assert HTML is not None
    page = (Path(HTML) / "api.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(udpio\.[\w.]+)"', page))
    missing = {f"udpio.{name}" for name in udpio.__all__} - anchors
    assert not missing, f"public names missing from the API page: {sorted(missing)}"
    methods = {f"udpio.Socket.{name}" for name in METHODS} - anchors
    assert not methods, f"Socket methods missing from the API page: {sorted(methods)}"
    assert "udpio._" not in page, "a private module's name is on the page"
    assert "_pool" not in page, "the private constructor's signature is on the page"
