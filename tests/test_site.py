"""The course website (``make site``, site/build.py): built from the stored notebooks without
running them, served on 127.0.0.1 and read in headless Chromium with every other request
blocked. Math is rendered, every image loads, nothing fails in the console, and the in-page
explorers are live: dragging a slider changes the picture, which matches the PyTorch decode of
the page's own decoder within 2/255.

Set ``VAELAB_SITE_NOTEBOOKS`` to build from another folder of notebooks (a rerun copy)."""

from __future__ import annotations

import base64
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_web import TOLERANCE, _skip_reason, grey, open_page, serve

from vaelab import web
from vaelab.widgets import STATIC_NOTE

REPO = Path(__file__).resolve().parent.parent
PAGES = ["index", "api"] + [f"notebooks/{p.stem}" for p in
                             sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
EXPLORER_NOTEBOOKS = ["02_variational_autoencoder", "04_beta_vae", "05_conv_vae"]


def site_module():
    spec = importlib.util.spec_from_file_location("site_build", REPO / "site" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- cleaning, without a browser -------------------------------------------------------------


def test_cleaning_drops_progress_bars_widgets_ansi_and_the_gif_path():
    clean = site_module().clean_notebook
    widget = "application/vnd.jupyter.widget-view+json"
    nb = {"metadata": {"widgets": {"state": {}}}, "cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stderr",
         "text": " 10%|█         | 1/10 [00:01<00:09]\r100%|██████████| 10/10 [00:10<00:00]\n"},
        {"output_type": "stream", "name": "stdout",
         "text": "\x1b[32mtrained\x1b[0m\nruns/vae_1_to_0.gif: 38 KiB\nstep 1\rstep 2\n"},
        {"output_type": "display_data", "data": {widget: {}, "text/plain": "HBox(children=())"}},
        {"output_type": "display_data", "data": {widget: {}, "text/plain": "x",
                                                 "text/html": f"<i>{STATIC_NOTE}</i>"}},
    ]}]}
    outputs = clean(nb)["cells"][0]["outputs"]
    assert "widgets" not in clean(nb)["metadata"] and "widgets" in nb["metadata"]  # a copy
    assert [o["output_type"] for o in outputs] == ["stream", "display_data"]
    assert outputs[0]["text"] == "trained\nstep 2\n"
    assert set(outputs[1]["data"]) == {"text/plain", "text/html"}
    assert STATIC_NOTE not in outputs[1]["data"]["text/html"]


def test_build_refuses_a_file_as_the_output_folder(tmp_path):
    (tmp_path / "site").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="pass a folder"):
        site_module().build(tmp_path / "site")


# --- the built site in Chromium --------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``(folder, url)`` of the site built once from the stored notebooks and served."""
    out = tmp_path_factory.mktemp("site") / "site"
    notebooks = Path(os.environ.get("VAELAB_SITE_NOTEBOOKS", REPO / "notebooks"))
    assert site_module().build(out, notebooks=notebooks) == 0, "sphinx-build failed"
    server, url = serve(out)
    yield out, url
    server.shutdown()


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def test_site_has_no_copied_sources_and_fits_the_budget(site):
    folder, _ = site
    assert not list(folder.glob("_sources/**/*.ipynb")), "html_copy_source must stay off"
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 40e6, f"site is {size / 1e6:.1f} MB"
    for page in PAGES:
        assert (folder / f"{page}.html").is_file(), f"{page}.html missing"


PAGE_STATE = """() => {
    const prose = document.querySelector('article') || document.body;
    const copy = prose.cloneNode(true);
    copy.querySelectorAll('pre, code, script, style, mjx-container').forEach(n => n.remove());
    return {
        math: document.querySelectorAll('.math').length,
        rendered: document.querySelectorAll('mjx-container').length,
        rawTex: ['$$', '\\\\(', '\\\\[', '\\\\begin{'].filter(s => copy.textContent.includes(s)),
        badImages: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)
            .map(i => i.src.slice(0, 80)),
        images: document.images.length,
        explorers: document.querySelectorAll('div.vaelab-web-explorer').length,
    };
}"""
MATH_DONE = ("() => !document.querySelector('.math') || (window.MathJax && MathJax.startup"
             " && MathJax.startup.promise && document.querySelector('mjx-container'))")


def load(chromium, url: str, shot: Path | None = None):
    """Open ``url``, wait for MathJax; ``(state, problems, page, browser)``."""
    browser, page, problems = open_page(chromium, url)
    page.wait_for_load_state("load")
    page.wait_for_function(MATH_DONE, timeout=20_000)
    page.evaluate("() => window.MathJax ? MathJax.startup.promise : null")
    state = page.evaluate(PAGE_STATE)
    if shot is not None:
        page.screenshot(path=shot, full_page=False)
    return state, problems, page, browser


@pytest.mark.browser
@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
@pytest.mark.parametrize("name", PAGES)
def test_page_renders_offline_with_math_images_and_no_errors(site, chromium, name,
                                                             tmp_path_factory):
    folder, url = site
    shot = tmp_path_factory.getbasetemp() / f"site-{name.replace('/', '-')}.png"
    state, problems, page, browser = load(chromium, f"{url}/{name}.html", shot)
    browser.close()
    print(f"\n{name}: {state}; screenshot {shot}")
    assert problems == [], problems  # console errors, page errors, blocked requests
    if state["math"]:
        assert state["rendered"] >= state["math"], state
    assert state["rawTex"] == [], f"raw TeX on the page: {state['rawTex']}"
    assert state["badImages"] == [], state["badImages"]


EXPLORER_STATE = """(index) => {
    const root = document.querySelectorAll('div.vaelab-web-explorer')[index];
    const visible = (n) => !!n && n.offsetParent !== null;
    return {ready: root.dataset.ready, code: Array.from(root.vaelab.code()),
            pixels: Array.from(root.vaelab.pixels()),
            staticVisible: visible(root.querySelector('.vaelab-web-static')),
            decoder: (root.dataset.decoder ? document.getElementById(root.dataset.decoder)
                      : root.querySelector('script.vaelab-web-decoder')).textContent};
}"""


def drag_first_slider(page, index: int) -> None:
    """Drag the first slider of explorer ``index`` with the mouse, from 25 % to 80 %."""
    slider = page.locator("div.vaelab-web-explorer").nth(index).locator("input[type=range]")
    slider.first.scroll_into_view_if_needed()
    box = slider.first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 0.25 * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.8 * box["width"], y, steps=8)
    page.mouse.up()


def check_explorer(page, index: int) -> None:
    before = page.evaluate(EXPLORER_STATE, index)
    assert before["ready"] == "1" and not before["staticVisible"]
    drag_first_slider(page, index)
    after = page.evaluate(EXPLORER_STATE, index)
    assert after["code"] != before["code"], "dragging the slider did not move z"
    assert after["pixels"] != before["pixels"], "dragging the slider did not change the picture"
    decoder = web.load_decoder(base64.b64decode(after["decoder"]))
    want = grey(decoder.decode(torch.tensor([after["code"]])))[0, 0].ravel()
    diff = np.abs(np.array(after["pixels"]) - want).max()
    assert diff <= TOLERANCE, f"explorer {index}: {diff}/255 from the PyTorch decode"


@pytest.mark.browser
@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
@pytest.mark.parametrize("name", [p for p in PAGES if p.startswith("notebooks/")])
def test_explorers_on_the_page_are_live_and_match_pytorch(site, chromium, name,
                                                          tmp_path_factory):
    folder, url = site
    if "vaelab-web-explorer" not in (folder / f"{name}.html").read_text(encoding="utf-8"):
        pytest.skip(f"{name} holds no in-page explorer")
    browser, page, problems = open_page(chromium, f"{url}/{name}.html")
    try:
        page.wait_for_function("() => Array.from(document.querySelectorAll("
                               "'div.vaelab-web-explorer')).every(r => r.dataset.ready === '1')",
                               timeout=20_000)
        count = page.locator("div.vaelab-web-explorer").count()
        for index in range(count):
            check_explorer(page, index)
        assert STATIC_NOTE not in page.locator("article").inner_text()
        shot = tmp_path_factory.getbasetemp() / f"explorer-{name.split('/')[-1]}.png"
        page.locator("div.vaelab-web-explorer").first.screenshot(path=shot)
        print(f"\n{name}: {count} live explorers; screenshot {shot}")
    finally:
        browser.close()
    assert problems == [], problems


@pytest.mark.parametrize("name", EXPLORER_NOTEBOOKS)
def test_notebooks_02_04_05_carry_in_page_explorers_on_the_site(site, name):
    folder, _ = site
    html = (folder / "notebooks" / f"{name}.html").read_text(encoding="utf-8")
    assert 'class="vaelab-web-explorer"' in html, f"{name}: no in-page explorer on its page"
