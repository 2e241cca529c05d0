"""vaelab.web: the exported decoder decodes as the model does, in PyTorch and in Chromium.

The browser half writes one page holding the in-page explorers (``text/html`` of a displayed
explorer), serves it on 127.0.0.1 with every other request blocked, moves sliders there and
compares the canvas with ``model.decode`` (within 2/255 per pixel).
"""

from __future__ import annotations

import base64
import functools
import http.server
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny

from vaelab import AE, VAE, ConvVAE, web, widgets

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
TOLERANCE = 2  # grey levels of 255


def codes(latent_dim: int, n: int = 16) -> torch.Tensor:
    """A fixed set of codes: the origin, and prior draws scaled up to ±3σ and beyond."""
    g = torch.Generator().manual_seed(7)
    z = torch.randn(n, latent_dim, generator=g) * torch.linspace(0, 3, n)[:, None]
    return z


def grey(logits: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(logits).mul(255).round().numpy()


def seeded(cls, **kw):
    torch.manual_seed(0)
    return cls(**kw).eval()


@pytest.mark.parametrize("cls, kw, dtype, size_mb", [
    (VAE, {"latent_dim": 2}, "float16", 0.63),
    (VAE, {"latent_dim": 20}, "float16", 0.65),
    (AE, {"latent_dim": 2}, "float16", 0.63),
    (ConvVAE, {"latent_dim": 10}, "int8", 5.42),
])
def test_export_decodes_within_two_grey_levels_of_model_decode(cls, kw, dtype, size_mb):
    model = seeded(cls, **kw)
    data = web.export_decoder(model)
    decoder = web.load_decoder(data)
    assert decoder.header["dtype"] == dtype  # "auto": float16 for MLPs, int8 for the ConvVAE
    assert len(data) / 1e6 == pytest.approx(size_mb, abs=0.01)
    z = codes(model.latent_dim)
    with torch.no_grad():
        diff = np.abs(grey(decoder.decode(z)) - grey(model.decode(z)))
    print(f"{cls.__name__} L={model.latent_dim}: {len(data) / 1e6:.2f} MB {dtype}, "
          f"max difference {diff.max():.0f}/255")
    assert diff.max() <= TOLERANCE


def test_int8_keeps_one_scale_per_output_channel():
    model = seeded(ConvVAE, latent_dim=10)
    header, _ = web.read_header(web.export_decoder(model, dtype="int8"))
    by_name = {t["name"]: t for t in header["tensors"]}
    big = by_name["decoder.0.weight"]  # (1024, 256, 4, 4): output channels on axis 1
    assert big["dtype"] == "int8" and len(big["scale"]) == 256
    assert by_name["decoder.4.weight"]["dtype"] == "float16"  # 4,608 values: kept float16
    assert [layer["op"] for layer in header["layers"]] == [
        "linear", "relu", "reshape", "conv_transpose2d", "relu", "conv_transpose2d", "relu",
        "conv_transpose2d"]


def test_quantise_int8_known_answer():
    q, scale = web.quantise_int8(np.array([[1.0, -0.5], [0.0, 0.0]], dtype=np.float32), 0)
    np.testing.assert_array_equal(q, [[127, -64], [0, 0]])
    np.testing.assert_allclose(scale, [1 / 127, 1.0])


def test_export_writes_the_file_and_refuses_bad_input(tmp_path):
    model = tiny(2)
    path = tmp_path / "decoder.bin"
    data = web.export_decoder(model, path, dtype="int8")
    assert path.read_bytes() == data and not list(tmp_path.glob(".*.tmp"))
    torch.testing.assert_close(web.load_decoder(path).decode(torch.ones(1, 2)),
                               web.load_decoder(data).decode(torch.ones(1, 2)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        web.export_decoder(model, tmp_path / "missing" / "decoder.bin")
    with pytest.raises(ValueError, match="dtype must be one of"):
        web.export_decoder(model, dtype="int4")
    with pytest.raises(TypeError, match="VAE, AE or ConvVAE"):
        web.export_decoder(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="not a vaelab-decoder file"):
        web.load_decoder(b"PK\x03\x04 not a decoder")
    with pytest.raises(ValueError, match="latent_dim=2"):
        web.load_decoder(data).decode(torch.zeros(1, 3))


def test_explorer_html_carries_the_contract():
    ex = widgets.latent_explorer(tiny(2))
    page = ex._repr_mimebundle_()["text/html"]
    assert page.startswith('<div class="vaelab-web-explorer" data-kind="latent">')
    payload = re.search(r'<script type="application/octet-stream" class="vaelab-web-decoder">'
                        r"([^<]+)</script>", page).group(1)
    torch.testing.assert_close(web.load_decoder(base64.b64decode(payload)).decode(ex.code()),
                               tiny(2).decode(ex.code()), atol=1e-2, rtol=0)
    assert 'class="vaelab-static-picture"' in page and widgets.STATIC_NOTE in page
    assert "</script" not in web.inline_module().lower()
    ie = widgets.interpolation_explorer(tiny(2), torch.zeros(2), torch.ones(2))
    assert 'data-kind="interpolation"' in ie._repr_mimebundle_()["text/html"]


def test_slider_ranges_reach_every_encoded_code():
    model = tiny(2)
    far = torch.tensor([[2.0, 8.0], [5.5, -0.2], [0.1, 0.3]])  # quick mode: z₁ ≈ 2–8
    ex = widgets.latent_explorer(model, start=far[0], scatter=(far, torch.arange(3)))
    assert (ex.sliders[0].min, ex.sliders[0].max) == pytest.approx((-3.0, 5.5))
    assert (ex.sliders[1].min, ex.sliders[1].max) == pytest.approx((-3.0, 8.0))
    assert widgets.code_ranges(far, 3.0) == [(-3.0, pytest.approx(5.5)), (-3.0, 8.0)]
    for slider in ex.sliders:
        slider.value = slider.max
    assert ex.scatter.position(ex.code())[2]  # the plot covers the sliders' range


def test_marker_placement_matches_the_python_marker():
    g = torch.Generator().manual_seed(3)
    for L in (2, 5):
        marker = widgets.ScatterMarker(torch.randn(50, L, generator=g), None)
        place = marker.placement()
        m = np.array(place["matrix"])
        for z in torch.randn(4, L, generator=g):
            x, y, _ = marker.position(z)
            if marker.position(z)[2]:
                np.testing.assert_allclose(m @ np.append(z.numpy(), 1.0), [x, y], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# In Chromium.


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"Chromium is not at {CHROMIUM}: install it to run the in-page explorer test"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install playwright (no browser download)"
    return None


def serve(folder: Path):
    """An HTTP server for ``folder`` on 127.0.0.1 (a thread); returns ``(server, url)``."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))

    class Quiet(handler.func):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def open_page(p, url: str):
    """A Chromium page at ``url`` with every non-local request blocked; ``(browser, page,
    problems)``: console errors, page errors and blocked requests land in ``problems``."""
    browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def route(r):
        if r.request.url.startswith(("http://127.0.0.1", "data:")):
            return r.continue_()
        problems.append(f"blocked: {r.request.url}")
        return r.abort()

    page.route("**/*", route)
    page.goto(url)
    return browser, page, problems


SET_SLIDER = """([index, i, value]) => {
    const root = document.querySelectorAll('div.vaelab-web-explorer')[index];
    const input = root.querySelectorAll('input[type=range]')[i];
    input.value = value;
    input.dispatchEvent(new Event('input', {bubbles: true}));
    return {code: Array.from(root.vaelab.code()), pixels: Array.from(root.vaelab.pixels())};
}"""


@pytest.mark.browser
@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
def test_in_page_explorers_match_pytorch_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    x = torch.rand(60, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    digits = torch.arange(60) % 10
    models = [seeded(VAE, latent_dim=2), seeded(ConvVAE, latent_dim=10)]
    explorers = [widgets.latent_explorer(models[0], start=x[:1], scatter=(x, digits)),
                 widgets.latent_explorer(models[1], start=x[:1], scatter=(x, digits)),
                 widgets.interpolation_explorer(models[0], x[:1], x[1:2])]
    body = "".join(f"<section>{e._repr_mimebundle_()['text/html']}</section>" for e in explorers)
    (tmp_path / "index.html").write_text(f"<!doctype html><meta charset=utf-8><body>{body}")
    server, url = serve(tmp_path)
    try:
        with sync_playwright() as p:
            browser, page, problems = open_page(p, f"{url}/index.html")
            try:
                page.wait_for_function("() => Array.from(document.querySelectorAll("
                                       "'div.vaelab-web-explorer')).every(r => r.dataset.ready"
                                       " === '1')", timeout=30_000)
                first = page.evaluate(SET_SLIDER, [0, 0, 0.0])  # z₁ = 0 exactly
                moves = [page.evaluate(SET_SLIDER, args) for args in
                         ([0, 0, 1.5], [0, 1, -2.0], [1, 3, 2.5], [2, 0, 0.5])]
                page.locator("div.vaelab-web-explorer").first.screenshot(
                    path=tmp_path / "latent.png")
                page.locator("div.vaelab-web-explorer").nth(1).screenshot(
                    path=tmp_path / "convvae.png")
            finally:
                browser.close()
    finally:
        server.shutdown()
    print(f"\nscreenshots: {tmp_path / 'latent.png'}, {tmp_path / 'convvae.png'}")
    assert problems == []
    assert moves[0]["pixels"] != first["pixels"], "moving z₁ did not change the picture"
    for move, model in zip(moves, [models[0], models[0], models[1], models[0]], strict=True):
        z = torch.tensor(move["code"])
        with torch.no_grad():
            want = grey(model.decode(z[None]))[0, 0].ravel()
        got = np.array(move["pixels"])
        assert np.abs(got - want).max() <= TOLERANCE, np.abs(got - want).max()
    # a range input snaps to its grid (min + k·step), as the ipywidgets slider does
    assert moves[1]["code"][:2] == pytest.approx([1.5, -2.0], abs=widgets.STEP / 2)
    assert moves[2]["code"][3] == pytest.approx(2.5, abs=widgets.STEP / 2)
