"""Sphinx configuration of the vaelab site (``make site``; see site/build.py and the README).

The site is built from the STORED notebooks (never executed here), fully offline: MathJax is
copied from the installed ``sphinx-mathjax-offline`` package, trimmed to the one component the
pages use (TeX in, CommonHTML out) with its fonts and TeX extensions; nothing is fetched from
a network, at build time or in the reader's browser.
"""

from __future__ import annotations

import shutil
from importlib.metadata import distribution
from pathlib import Path

project = "vaelab"
author = "the vaelab authors"
copyright = "2026, the vaelab authors"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# --- notebooks: shown as stored, never run -------------------------------------------------
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
nb_ipywidgets_js = {}  # no widget manager from a CDN: explorers run vaelab's own inline module
# myst-nb prefers a widget view; a widget without its kernel is a placeholder, so never show it
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]
nb_merge_streams = True

# --- math, offline ---------------------------------------------------------------------------
# the package installs as a folder named "sphinx-mathjax-offline" (not importable)
MATHJAX = Path(distribution("sphinx-mathjax-offline").locate_file(
    "sphinx-mathjax-offline/static/mathjax"))
MATHJAX_PARTS = ["tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions"]
mathjax_path = "mathjax/tex-chtml.js"  # relative to _static
mathjax3_config = {"loader": {"load": []}, "options": {"enableMenu": False}}

# --- HTML --------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "vaelab: from the autoencoder to the VAE"
html_static_path = ["_static"]
html_css_files = ["vaelab-site.css"]
html_copy_source = False  # the notebooks' sources would add 5 MB
html_show_sourcelink = False
html_theme_options = {
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "show_toc_level": 2,
}
# the theme reads the mode from this; left empty it logs "invalid theme mode" in the console
html_context = {"default_mode": "light"}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # torch.autograd.Function.forward's own text has dead links


def copy_mathjax(app, exc):
    """After a successful build: the trimmed MathJax into ``_static/mathjax``."""
    if exc is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    shutil.rmtree(target, ignore_errors=True)
    for part in MATHJAX_PARTS:
        source, dest = MATHJAX / part, target / part
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copy2(source, dest)


def setup(app):
    app.connect("build-finished", copy_mathjax)
