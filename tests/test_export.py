"""What a reader who has not run a notebook sees (nbconvert HTML, as nbviewer and GitHub do).

A small notebook with two explorers, an interpolation GIF and a progress bar is executed in a
real kernel (nbclient), scrubbed by ``tools/clean_notebooks.py`` as ``make notebooks`` does, and
exported to HTML: each explorer must leave a picture and the GIF an ``<img src="data:image/gif">``.

``pictures_in_html`` also works on a stored notebook:
``python tests/test_export.py notebooks/02_variational_autoencoder.ipynb`` prints its counts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
import clean_notebooks  # noqa: E402

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
