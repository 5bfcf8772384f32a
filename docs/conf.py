"""Sphinx configuration: the guides are Markdown (MyST), the API reference comes from the docstrings (autodoc)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sb3_masked_attention  # noqa: E402

project = "sb3-masked-attention"
author = "The sb3-masked-attention authors"
copyright = "2026, " + author
release = version = sb3_masked_attention.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "sphinx.ext.intersphinx", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# The source folder is the repository (`sphinx-build -c docs . docs/_build/html`), so that the guides link the
# committed results (results/**/*.md become pages, their CSVs and pictures downloads) by the paths the README uses.
root_doc = "docs/index"
include_patterns = ["docs/**", "results/**", "CHANGELOG.md"]
exclude_patterns = ["docs/_build", "**/.ipynb_checkpoints"]
suppress_warnings = ["myst.header"]  # generated result pages start at any heading level
myst_heading_anchors = 3

autodoc_default_options = {"show-inheritance": True, "member-order": "bysource"}
autodoc_inherit_docstrings = False  # gymnasium's and SB3's docstrings are theirs (and not all reST)
autodoc_typehints = "description"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
# imported by the package but not needed to read its docstrings
nitpicky = False

intersphinx_mapping = {}  # no network at build time: links to SB3's docs are written out in the text

html_theme = "furo"
html_title = f"sb3-masked-attention {version}"
html_static_path: list[str] = []
