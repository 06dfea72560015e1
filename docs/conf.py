"""Sphinx configuration: the API from the docstrings, the rest from the Markdown pages here."""

from __future__ import annotations

import udpio

project = "udpio"
author = "The udpio authors"
copyright = "2026, The udpio authors"
release = udpio.__version__
version = release

extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Only parameters a docstring documents: not the private constructor's (conn, _pool).
autodoc_typehints_description_target = "documented_params"

html_theme = "alabaster"
html_title = f"udpio {release}"
