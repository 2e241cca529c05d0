"""vaelab's two hooks into Jupyter itself: what a saved notebook holds, and its HTML export.

**Saving** (``pre_save_hook``, which ``make lab`` gives JupyterLab's server with
``--ContentsManager.pre_save_hook=vaelab.jupyter.pre_save_hook``). Widgets live in the kernel;
a saved notebook only holds a *view* of each (``application/vnd.jupyter.widget-view+json``)
and, with JupyterLab's "save widget state", a copy of their state. That copy does not survive
reopening (ipywidgets #3888: the reopened notebook is marked modified as the kernel connects
and the next save writes no models, so the one after shows "Error displaying widget: model not
found"). So when a notebook is saved, the file on disk gets, for every output that

* carries a vaelab in-page explorer (``text/html`` holding ``vaelab-web-explorer``): that
  explorer alone, without the widget view. JupyterLab renders it on reopening (the server signs
  what the user ran, so its script runs): sliders that decode in the browser, no kernel needed;
* is a tqdm progress bar: the bar's final line as text (from the saved widget state, which
  ``make lab`` has JupyterLab write), or no output where the bar had hidden itself
  (``leave=False``) or its state was not saved (the kernel restarted since);

and the widget state keeps only the models other, unknown widgets still need (none left: no
``widgets`` metadata). Only the file changes: the open notebook and its live widgets go on as
they were. ``strip_widgets`` does the work; tools and tests call it directly.

**Export** (``OfflineHTMLExporter``)::

    jupyter nbconvert --to vaelab.jupyter.OfflineHTMLExporter NB.ipynb

writes ``NB.html``, nbconvert's ``lab`` page made self-contained: outputs as the save hook
leaves them (so every explorer is the live in-page one), MathJax inlined (its single-file SVG
build from the ``sphinx-mathjax-offline`` package: no fonts to fetch), no require.js and no
widget-manager script from unpkg. The page loads nothing from the network.
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from importlib import metadata
from pathlib import Path

from jinja2 import DictLoader
from markupsafe import Markup
from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import Preprocessor
from traitlets import default

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
EXPLORER_MARK = "vaelab-web-explorer"  # the class of vaelab.web.explorer_html's root
MODEL_REF = re.compile(r"IPY_MODEL_([0-9a-f]{32})|\"model_id\": ?\"([0-9a-f]{32})\"")
BAR_WIDTH = 10  # characters of a progress bar written as text
TQDM_TEXT = re.compile(r"^.*\d+%\|.*\|")  # "training:   0%|          | 0/40 [...]"


def joined(value) -> str:
    """A notebook's multi-line string (a str or a list of lines) as one str."""
    return "".join(value) if isinstance(value, list) else str(value or "")


def widget_state(nb: dict) -> dict:
    """``{model id: {"model_name": ..., "state": {...}}}`` saved in the notebook (or empty)."""
    saved = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {})
    return saved.get("state", {}) if isinstance(saved, dict) else {}


def referenced(model_ids, state: dict) -> set[str]:
    """``model_ids`` and every model they reach through the saved state (children, layout,
    style, an Output widget's outputs, ...)."""
    seen: set[str] = set()
    todo = [m for m in model_ids if m in state]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        text = json.dumps(state[model].get("state", {}))
        todo += [a or b for a, b in MODEL_REF.findall(text) if (a or b) in state]
    return seen


def tqdm_line(model_id: str, state: dict) -> str | None:
    """The final line of the tqdm bar whose container is ``model_id``, as tqdm writes it in a
    terminal (``"training: 100%|██████████| 40/40 [00:01<00:00, 30.0it/s]"``); ``""`` for a
    bar that hid itself (``leave=False``); None when ``model_id`` is no tqdm bar in ``state``."""
    box = state.get(model_id, {})
    children = box.get("state", {}).get("children", [])
    if box.get("model_name") != "HBoxModel" or len(children) != 3:
        return None
    parts = [state.get(str(c).removeprefix("IPY_MODEL_"), {}) for c in children]
    names = [p.get("model_name", "") for p in parts]
    if names[0] != "HTMLModel" or not names[1].endswith("ProgressModel") or names[2] != "HTMLModel":
        return None
    layout = state.get(str(box["state"].get("layout", "")).removeprefix("IPY_MODEL_"), {})
    if layout.get("state", {}).get("visibility") == "hidden":
        return ""
    left, bar, right = (p.get("state", {}) for p in parts)
    text = [html.unescape(str(s.get("value", ""))).replace("\u2007", " ") for s in (left, right)]
    if bar.get("bar_style") == "info":  # no total: tqdm draws no bar, only the count
        return "".join(text).strip()
    low, high = float(bar.get("min", 0)), float(bar.get("max", 100))
    done = (float(bar.get("value", low)) - low) / (high - low) if high > low else 1.0
    filled = round(BAR_WIDTH * min(max(done, 0.0), 1.0))
    return f"{text[0]}|{'█' * filled}{' ' * (BAR_WIDTH - filled)}|{text[1]}"


def strip_output(out: dict, state: dict) -> tuple[dict | None, str | None]:
    """``(output to keep or None, model id whose view was taken out or None)``."""
    data = out.get("data", {})
    view = data.get(WIDGET_VIEW)
    if not isinstance(view, dict):
        return out, None
    model_id = str(view.get("model_id", ""))
    if EXPLORER_MARK in joined(data.get("text/html")):
        out["data"] = {k: v for k, v in data.items() if k != WIDGET_VIEW}
        return out, model_id
    line = tqdm_line(model_id, state)
    if line is None and model_id not in state and TQDM_TEXT.match(joined(data.get("text/plain"))):
        line = ""  # a bar whose state was not saved (saveState off, or the kernel restarted)
    if line is None:
        return out, None  # a widget vaelab does not know: left as it is
    if not line:
        return None, model_id
    out["data"] = {"text/plain": line}
    return out, model_id


def strip_widgets(nb: dict) -> dict:
    """``nb`` (nbformat JSON as a dict, changed in place) as ``pre_save_hook`` saves it: vaelab
    explorers without their widget view, tqdm bars as their final line, widget state only for
    the widgets left."""
    state = widget_state(nb)
    kept_views = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            out, taken = strip_output(out, state)
            if out is not None:
                outputs.append(out)
                view = out.get("data", {}).get(WIDGET_VIEW)
                if taken is None and isinstance(view, dict):
                    kept_views.append(str(view.get("model_id", "")))
        cell["outputs"] = outputs
    meta = nb.get("metadata", {})
    if "widgets" in meta:
        keep = referenced(kept_views, state)
        if keep:
            meta["widgets"][WIDGET_STATE]["state"] = {k: state[k] for k in state if k in keep}
        else:
            del meta["widgets"]
    return nb


def pre_save_hook(model: dict, path: str = "", contents_manager=None, **kwargs) -> None:
    """Jupyter server's ``ContentsManager.pre_save_hook``: a notebook is written to disk as
    ``strip_widgets`` leaves it (other files as they are)."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        strip_widgets(model["content"])


# ---------------------------------------------------------------------------------------------
# HTML export that needs no network.

MATHJAX_FILE = "tex-svg-full.js"  # one file: every TeX extension, SVG output (no font files)
MATHJAX_CONFIG = {
    "tex": {"inlineMath": [["$", "$"], ["\\(", "\\)"]],
            "displayMath": [["$$", "$$"], ["\\[", "\\]"]],
            "processEscapes": True, "processEnvironments": True, "tags": "ams"},
    "svg": {"fontCache": "global"},
    "options": {"enableMenu": False},  # the menu would load its extensions from a CDN
    "loader": {"load": []},
}
TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}
<script>window.MathJax = {{ resources.vaelab_mathjax_config }};</script>
<script>{{ resources.vaelab_mathjax }}</script>
{%- endblock html_head_js_mathjax -%}
"""


@cache
def mathjax_source() -> str:
    """MathJax's single-file TeX → SVG build, from the installed ``sphinx-mathjax-offline``."""
    try:
        dist = metadata.distribution("sphinx-mathjax-offline")
    except metadata.PackageNotFoundError:
        raise RuntimeError("the offline HTML export inlines MathJax from the "
                           "sphinx-mathjax-offline package: pip install sphinx-mathjax-offline "
                           "(make lab installs it)") from None
    path = Path(str(dist.locate_file(f"sphinx-mathjax-offline/static/mathjax/{MATHJAX_FILE}")))
    code = path.read_text(encoding="utf-8")
    if "</script" in code.lower():
        raise RuntimeError(f"{path} contains '</script': it cannot be inlined")
    return code


class WidgetViewsPreprocessor(Preprocessor):
    """``strip_widgets`` on the notebook being exported (one saved without the save hook)."""

    def preprocess(self, nb, resources):
        strip_widgets(nb)
        return nb, resources


class OfflineHTMLExporter(HTMLExporter):
    """nbconvert's HTML (``lab`` template) with explorers live, MathJax inline, no CDN."""

    export_from_notebook = "HTML, offline (vaelab)"

    @default("extra_loaders")
    def _extra_loaders_default(self):
        return [DictLoader({"vaelab_offline.html.j2": TEMPLATE})]

    @default("template_file")
    def _template_file_default(self):
        return "vaelab_offline.html.j2"

    @default("preprocessors")
    def _preprocessors_default(self):
        return [WidgetViewsPreprocessor]

    def _init_resources(self, resources):
        resources = super()._init_resources(resources)
        resources["vaelab_mathjax"] = Markup(mathjax_source())  # noqa: S704 - a trusted file
        resources["vaelab_mathjax_config"] = Markup(json.dumps(MATHJAX_CONFIG))  # noqa: S704
        return resources
