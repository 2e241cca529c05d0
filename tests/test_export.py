"""What a reader who has not run a notebook sees (nbconvert HTML, as nbviewer and GitHub do).

A small notebook with two explorers, an interpolation GIF and a progress bar is executed in a
real kernel (nbclient), scrubbed by ``tools/clean_notebooks.py`` as ``make notebooks`` does, and
exported to HTML: each explorer must leave a picture and the GIF an ``<img src="data:image/gif">``.

The same notebook as JupyterLab's save hook (``vaelab.jupyter.pre_save_hook``) writes it keeps
the in-page explorers and the bar's final line; with a cell of math it is exported by the one
command the README gives (``jupyter nbconvert --to vaelab.jupyter.OfflineHTMLExporter``) and
opened in headless Chromium with every non-local request aborted: the math is typeset, the
explorers are live (a dragged slider changes the picture), no console error, nothing blocked.

``pictures_in_html`` also works on a stored notebook:
``python tests/test_export.py notebooks/02_variational_autoencoder.ipynb`` prints its counts.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
import clean_notebooks  # noqa: E402

from vaelab import jupyter  # noqa: E402

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CELLS = [
    "from pathlib import Path\n\nimport torch\nfrom tqdm.auto import tqdm\n\n"
    "import vaelab\nfrom vaelab import viz, widgets\n\ntorch.manual_seed(0)\n"
    "model = vaelab.VAE(latent_dim=2, hidden=(32,)).eval()\n"
    "x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10\n"
    "for _ in tqdm(range(5)):\n    pass",
    "widgets.latent_explorer(model, start=x[:1], scatter=(x, y))",
    "widgets.interpolation_explorer(model, x[:1], x[1:2])",
    "gif = viz.interpolation_gif(model, x[:2], Path('walk.gif'), steps=4, scale=2)\n"
    "viz.gif_html(gif)",
]


def pictures_in_html(html: str) -> tuple[int, int]:
    """``(explorer pictures, GIFs)`` in exported HTML: inline PNGs that are an explorer's
    static picture (class ``vaelab-static-picture``), and inline ``data:image/gif`` images."""
    tags = re.findall(r"<img\b[^>]*>", html)
    explorers = sum('class="vaelab-static-picture"' in t and 'src="data:image/png;base64,' in t
                    for t in tags)
    gifs = sum('src="data:image/gif;base64,' in t for t in tags)
    return explorers, gifs


def to_html(nb) -> str:
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_notebook_node(nbformat.reads(json.dumps(nb), as_version=4))
    return html


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook of CELLS run in a fresh kernel (as ``jupyter nbconvert --execute``)."""
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("export")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = dict(clean_notebooks.KERNELSPEC)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    return json.loads(nbformat.writes(nb))


def test_scrubbed_notebook_exports_a_picture_per_explorer_and_the_gif(executed):
    scrubbed = clean_notebooks.clean(json.loads(json.dumps(executed)))
    html = to_html(scrubbed)
    assert pictures_in_html(html) == (2, 1)
    assert "Static picture: run this cell to make the explorer live." in html
    assert "IPython.core.display.Image object" not in html


def test_scrubbing_keeps_pictures_drops_widget_views_and_bars_and_keeps_language_info(executed):
    assert "widgets" in executed["metadata"]  # nbclient stored the widget state
    kinds = [[sorted(o.get("data", {})) for o in c["outputs"]] for c in executed["cells"]]
    assert all(WIDGET_VIEW in k[0] for k in kinds[:3]), kinds  # bar, explorer, explorer
    scrubbed = clean_notebooks.clean(json.loads(json.dumps(executed)))
    assert "widgets" not in scrubbed["metadata"]
    bar, explorer, interpolation, gif = (c["outputs"] for c in scrubbed["cells"])
    assert [o["output_type"] for o in bar] == ["stream"] or bar == []  # only stderr text
    for outputs in (explorer, interpolation):
        assert [sorted(o["data"]) for o in outputs] == [["text/html", "text/plain"]]
    assert "data:image/gif;base64," in "".join(gif[0]["data"]["text/html"])
    info = scrubbed["metadata"]["language_info"]
    assert info == executed["metadata"]["language_info"]  # as the kernel wrote it
    assert {"codemirror_mode", "file_extension", "mimetype", "name", "nbconvert_exporter",
            "pygments_lexer", "version"} <= set(info)


def test_missing_language_info_is_filled_as_jupyterlab_would_write_it():
    import platform

    nb = clean_notebooks.clean({"metadata": {"language_info": {"name": "python"}}, "cells": []})
    assert nb["metadata"]["language_info"] == {
        "codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
        "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3", "version": platform.python_version()}


def test_gif_html_inlines_the_gif_and_refuses_other_files(tmp_path):
    import base64

    import torch

    from vaelab import VAE, viz

    torch.manual_seed(0)
    model = VAE(latent_dim=2, hidden=(16,)).eval()
    gif = viz.interpolation_gif(model, torch.rand(2, 1, 28, 28), tmp_path / "w.gif", steps=3)
    html = viz.gif_html(gif).data
    assert pictures_in_html(html) == (0, 1)
    encoded = re.search(r'src="data:image/gif;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(encoded) == gif.read_bytes()
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match="path must be a GIF"):
        viz.gif_html(tmp_path / "x.png")


# ---------------------------------------------------------------------------------------------
# The save hook, and the offline HTML export.

BAR = re.compile(r"^100%\|█{10}\| 5/5 \[")  # tqdm(range(5)) as a line of text
MATH = (r"The bound: $\log p(x) \ge \mathbb{E}_{q(z \mid x)}[\log p(x \mid z)]"
        r" - \mathrm{KL}(q \,\|\, p)$, with" "\n\n"
        r"$$\mathrm{KL} = \frac{1}{2} \sum_{j=1}^{L} \left(\mu_j^2 + \sigma_j^2 - 1"
        r" - \log \sigma_j^2\right).$$")


def saved(executed) -> dict:
    """``executed`` as JupyterLab's server writes it with vaelab's save hook."""
    model = {"type": "notebook", "content": copy.deepcopy(executed)}
    jupyter.pre_save_hook(model=model, path="demo.ipynb", contents_manager=None)
    return model["content"]


def test_save_hook_keeps_in_page_explorers_and_the_bars_last_line(executed):
    nb = saved(executed)
    assert "widgets" not in nb["metadata"]  # no state left that could go stale on reopening
    bar, explorer, interpolation, gif = (c["outputs"] for c in nb["cells"])
    assert [sorted(o["data"]) for o in bar if "data" in o] == [["text/plain"]]
    assert BAR.match(next(o["data"]["text/plain"] for o in bar if "data" in o))
    for outputs in (explorer, interpolation):
        assert [sorted(o["data"]) for o in outputs] == [["text/html", "text/plain"]]
        assert jupyter.EXPLORER_MARK in jupyter.joined(outputs[0]["data"]["text/html"])
    assert gif == executed["cells"][3]["outputs"]  # other outputs as they were
    text = {"type": "file", "content": "x"}
    jupyter.pre_save_hook(model=text, path="a.txt")
    assert text == {"type": "file", "content": "x"}


def test_save_hook_leaves_unknown_widgets_and_drops_hidden_bars(executed):
    nb = copy.deepcopy(executed)
    state = jupyter.widget_state(nb)
    bar_id = nb["cells"][0]["outputs"][0]["data"][jupyter.WIDGET_VIEW]["model_id"]
    layout = state[bar_id]["state"]["layout"].removeprefix("IPY_MODEL_")
    state[layout]["state"]["visibility"] = "hidden"  # tqdm(leave=False) hides its bar
    slider, slider_layout, orphan = "a" * 32, "b" * 32, "c" * 32
    state[slider] = {"model_name": "IntSliderModel",
                     "state": {"layout": f"IPY_MODEL_{slider_layout}"}}
    state[slider_layout] = {"model_name": "LayoutModel", "state": {}}
    state[orphan] = {"model_name": "IntSliderModel", "state": {}}
    view = {"output_type": "display_data", "metadata": {},
            "data": {"text/plain": "IntSlider(value=0)",
                     jupyter.WIDGET_VIEW: {"version_major": 2, "version_minor": 0,
                                           "model_id": slider}}}
    nb["cells"][3]["outputs"].append(copy.deepcopy(view))
    jupyter.strip_widgets(nb)
    assert [o for o in nb["cells"][0]["outputs"] if "data" in o] == []  # the hidden bar: gone
    assert nb["cells"][3]["outputs"][-1] == view  # a widget vaelab does not know: kept
    assert set(jupyter.widget_state(nb)) == {slider, slider_layout}  # and the state it needs


def _bar_state(left: str, value: float, high: float, right: str, style: str = "") -> dict:
    """Saved widget state of a tqdm bar (container "f" * 32) as tqdm.notebook leaves it."""
    ids = [c * 32 for c in "0123"]
    return {"f" * 32: {"model_name": "HBoxModel", "state": {
                "children": [f"IPY_MODEL_{i}" for i in ids[:3]], "layout": f"IPY_MODEL_{ids[3]}"}},
            ids[0]: {"model_name": "HTMLModel", "state": {"value": left}},
            ids[1]: {"model_name": "FloatProgressModel",
                     "state": {"value": value, "max": high, "bar_style": style}},
            ids[2]: {"model_name": "HTMLModel", "state": {"value": right}},
            ids[3]: {"model_name": "LayoutModel", "state": {}}}


@pytest.mark.parametrize(("state", "line"), [
    (_bar_state("fit:\u2007\u200750%", 20, 40, "\u200720/40\u2007[00:01&lt;00:01]"),
     "fit:  50%|█████     | 20/40 [00:01<00:01]"),
    (_bar_state("", 1, 1, "12it [00:00, 99.0it/s]", "info"), "12it [00:00, 99.0it/s]"),
    ({"f" * 32: {"model_name": "HBoxModel", "state": {"children": []}}}, None),
])
def test_tqdm_bars_are_written_as_tqdm_writes_them_in_a_terminal(state, line):
    assert jupyter.tqdm_line("f" * 32, state) == line


def test_a_bar_whose_state_was_not_saved_is_dropped(executed):
    nb = copy.deepcopy(executed)
    del nb["metadata"]["widgets"]  # the kernel restarted before the save: no live models
    jupyter.strip_widgets(nb)
    assert [o for o in nb["cells"][0]["outputs"] if "data" in o] == []
    assert [sorted(o["data"]) for o in nb["cells"][1]["outputs"]] == [["text/html", "text/plain"]]


def test_plain_html_export_of_a_saved_notebook_shows_the_in_page_explorers(executed):
    html = to_html(saved(executed))
    assert html.count('<div class="vaelab-web-explorer"') == 2
    assert WIDGET_VIEW not in html and "unpkg.com" not in html  # no widget-manager script


def test_offline_exporter_sets_widget_views_aside_itself(executed):
    """A notebook saved without the hook (nbclient's, with widget views and state)."""
    html, _ = jupyter.OfflineHTMLExporter().from_notebook_node(
        nbformat.reads(json.dumps(executed), as_version=4))
    assert html.count('<div class="vaelab-web-explorer"') == 2
    assert WIDGET_VIEW not in html and "unpkg.com" not in html and "require.min.js" not in html
    assert "100%|██████████| 5/5 [" in html  # the bar's final line


def _offline_html(executed, folder: Path) -> str:
    """The notebook of CELLS, saved by the hook, with a cell of math on top, exported by the
    README's command; the HTML."""
    nb = saved(executed)
    nb["cells"].insert(0, nbformat.v4.new_markdown_cell(MATH))
    (folder / "demo.ipynb").write_text(json.dumps(nb))
    jupyter_cli = Path(sys.executable).with_name("jupyter")
    subprocess.run([str(jupyter_cli), "nbconvert", "--to", "vaelab.jupyter.OfflineHTMLExporter",
                    "demo.ipynb"], cwd=folder, check=True, capture_output=True, timeout=300)
    return (folder / "demo.html").read_text(encoding="utf-8")


def _outside_urls(html: str) -> list[str]:
    """Addresses a page would load from another host: src/href of scripts, links, images."""
    return re.findall(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]*)"',
                      html)


MATH_DONE = """async () => {
    await window.MathJax.startup.promise;
    const prose = document.querySelector('.jp-MarkdownCell .jp-RenderedMarkdown').cloneNode(true);
    const typeset = prose.querySelectorAll('mjx-container').length;
    prose.querySelectorAll('mjx-container').forEach(e => e.remove());
    return {typeset, svg: document.querySelectorAll('mjx-container svg').length,
            left: prose.textContent};
}"""


def test_offline_html_export_has_live_explorers_and_typeset_math(executed, tmp_path):
    from test_web import _skip_reason, open_page, serve

    html = _offline_html(executed, tmp_path)
    assert _outside_urls(html) == [], _outside_urls(html)
    assert "require.min.js" not in html and WIDGET_VIEW not in html
    if _skip_reason():
        pytest.skip(_skip_reason())
    from playwright.sync_api import sync_playwright

    server, url = serve(tmp_path)
    try:
        with sync_playwright() as p:
            browser, page, problems = open_page(p, f"{url}/demo.html")
            try:
                math = page.evaluate(MATH_DONE)
                page.wait_for_function("() => Array.from(document.querySelectorAll("
                                       "'div.vaelab-web-explorer')).map(r => r.dataset.ready)"
                                       ".join() === '1,1'", timeout=30_000)
                before, after = drag_first_slider(page)
                page.wait_for_timeout(500)  # anything the page still logs
                shot = tmp_path / "export.png"
                page.screenshot(path=shot, full_page=True)
            finally:
                browser.close()
    finally:
        server.shutdown()
    print(f"\nscreenshot: {shot}")
    assert math["typeset"] == 2 and math["svg"] >= 2, math  # inline and display, drawn in SVG
    assert not re.search(r"[$]|\\[(\[a-zA-Z]", math["left"]), math["left"]  # no raw TeX left
    assert after["pixels"] != before["pixels"] and after["readout"] != before["readout"]
    assert problems == []


def drag_first_slider(page) -> tuple[dict, dict]:
    """Drag the first in-page explorer's first slider to 90 % with the mouse: its pixels and
    readout before and after."""
    state = """(move) => {
        const root = document.querySelector('div.vaelab-web-explorer');
        const input = root.querySelector('input[type=range]');
        input.scrollIntoView({block: 'center'});
        const box = input.getBoundingClientRect();
        const at = (input.value - input.min) / (input.max - input.min);
        return {x: box.left + 8 + at * (box.width - 16), y: box.top + box.height / 2,
                to: box.left + 0.9 * box.width, pixels: Array.from(root.vaelab.pixels()),
                readout: root.querySelector('.vaelab-web-readout').textContent};
    }"""
    before = page.evaluate(state, None)
    page.mouse.move(before["x"], before["y"])
    page.mouse.down()
    page.mouse.move(before["to"], before["y"], steps=8)
    page.mouse.up()
    return before, page.evaluate(state, None)


STORED = Path(__file__).parents[1] / "notebooks"


@pytest.mark.parametrize(("name", "expected"), [
    ("02_variational_autoencoder.ipynb", (2, 1)),  # latent + interpolation explorer, the GIF
    ("04_beta_vae.ipynb", (1, 0)),
    ("05_conv_vae.ipynb", (1, 0)),
])
def test_stored_notebook_exports_its_explorer_pictures_and_gif(name, expected):
    html = to_html(json.loads((STORED / name).read_text()))
    assert pictures_in_html(html) == expected
    assert "IPython.core.display.Image object" not in html


if __name__ == "__main__":
    for name in sys.argv[1:]:
        found = pictures_in_html(to_html(json.loads(Path(name).read_text())))
        print(f"{name}: {found[0]} explorer pictures, {found[1]} GIFs")
