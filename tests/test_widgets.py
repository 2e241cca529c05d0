"""vaelab.widgets: drive the explorers from Python by setting slider values."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import pytest
import torch
from helpers import tiny
from PIL import Image

from vaelab import VAE, viz, widgets


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    return torch.rand(40, 1, 28, 28, generator=g), torch.arange(40) % 10


def pixels(png: bytes, scale: int = widgets.SCALE, size: int = 28) -> np.ndarray:
    """The size×size grey image inside an explorer's PNG (each pixel a scale×scale block)."""
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    assert picture.shape == (size * scale, size * scale)
    blocks = picture.reshape(size, scale, size, scale)
    assert (blocks == blocks[:, :1, :, :1]).all(), "pixels must be upscaled by nearest neighbour"
    return blocks[:, 0, :, 0]


def text(readout) -> str:
    """What a readout widget shows, without its HTML tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", readout.value))


def inline_pngs(markup: str) -> list[bytes]:
    """The PNG bytes of every ``<img src="data:image/png;base64,...">`` in ``markup``."""
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', markup)]


def expected(model, z) -> np.ndarray:
    """sigmoid(decode(z)) as 0..255, computed here without the widgets module."""
    with torch.no_grad():
        image = torch.sigmoid(model.decode(torch.as_tensor(z, dtype=torch.float32)[None]))
    return (image[0, 0] * 255).round().numpy()


def test_decode_to_png_is_the_decoded_image():
    model = tiny(2)
    z = torch.tensor([0.7, -1.3])
    png = widgets.decode_to_png(model, z)
    assert png.startswith(b"\x89PNG")
    np.testing.assert_array_equal(pixels(png), expected(model, z))
    assert widgets.decode_to_png(model, z[None]) == png
    with pytest.raises(ValueError, match="latent_dim=2"):
        widgets.decode_to_png(model, torch.zeros(3))


def test_one_thread_restores_the_thread_count():
    before = torch.get_num_threads()
    with widgets.one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_code_from_sliders_and_interpolate():
    base = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(widgets.code_from_sliders([0.5, -0.5], base),
                               torch.tensor([0.5, -0.5, 3.0]))
    torch.testing.assert_close(base, torch.tensor([1.0, 2.0, 3.0]))  # not modified
    with pytest.raises(ValueError, match="4 slider values"):
        widgets.code_from_sliders([0.0] * 4, base)
    a, b = torch.zeros(2), torch.tensor([2.0, 4.0])
    torch.testing.assert_close(widgets.interpolate_codes(a, b, 0.25), torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"t must be in \[0, 1\]"):
        widgets.interpolate_codes(a, b, 1.5)


def test_explorer_sliders_drive_the_image():
    model = tiny(2)
    ex = widgets.latent_explorer(model)
    assert [s.description for s in ex.sliders] == ["z₁", "z₂"]
    assert [s.value for s in ex.sliders] == [0.0, 0.0]
    first = ex.image.value
    np.testing.assert_array_equal(pixels(first), expected(model, [0.0, 0.0]))

    ex.sliders[0].value = 1.5
    ex.sliders[1].value = -2.0
    assert ex.image.value != first
    torch.testing.assert_close(ex.code(), torch.tensor([1.5, -2.0]))
    np.testing.assert_array_equal(pixels(ex.image.value), expected(model, [1.5, -2.0]))
    assert ex.image.value == widgets.decode_to_png(model, torch.tensor([1.5, -2.0]))
    assert text(ex.readout) == "z = (1.50, −2.00)"

    ex.reset_button.click()
    assert [s.value for s in ex.sliders] == [0.0, 0.0]
    assert ex.image.value == first


def test_explorer_starts_at_an_images_posterior_mean(data):
    x, _ = data
    model = tiny(2)
    ex = widgets.latent_explorer(model, start=x[3:4])
    mu = model.encode_means(x[3:4])[0]
    torch.testing.assert_close(ex.start, mu)
    assert [s.value for s in ex.sliders] == pytest.approx(mu.tolist())
    np.testing.assert_array_equal(pixels(ex.image.value), expected(model, mu))
    ex.sliders[0].value = 2.0
    ex.reset()
    assert ex.image.value == widgets.decode_to_png(model, mu)


def test_explorer_slider_range_covers_the_start_on_the_step_grid():
    ex = widgets.latent_explorer(tiny(2), start=torch.tensor([4.2, -0.31]))
    assert (ex.sliders[0].min, ex.sliders[0].max) == pytest.approx((-3.0, 4.2))
    assert (ex.sliders[1].min, ex.sliders[1].max) == pytest.approx((-3.01, 3.04))
    assert ex.sliders[0].value == pytest.approx(4.2)
    for slider in ex.sliders:  # the browser snaps to min + k·step: the start is on that grid
        k = (slider.value - slider.min) / slider.step
        assert k == pytest.approx(round(k), abs=1e-6)
    assert widgets.slider_range(0.0, 3.0, 0.05) == pytest.approx((-3.0, 3.0))


def test_explorer_many_dims_shows_the_first_ten():
    model = tiny(12)
    start = torch.linspace(-1, 1, 12)
    ex = widgets.latent_explorer(model, start=start)
    assert len(ex.sliders) == 10
    assert ex.sliders[-1].description == "z₁₀"
    ex.sliders[9].value = 2.5
    z = ex.code()
    assert z[9] == 2.5
    torch.testing.assert_close(z[10:], start[10:])  # no slider: held at the start code
    np.testing.assert_array_equal(pixels(ex.image.value), expected(model, z))
    notes = [c.value for box in ex.widget.children for c in getattr(box, "children", ())
             if hasattr(c, "value") and "others stay" in str(c.value)]
    assert notes and "12 coordinates" in notes[0]


def test_explorer_scatter_marker_follows_z(data):
    x, y = data
    model = tiny(2)
    ex = widgets.latent_explorer(model, scatter=(x, y))
    assert ex.scatter_image is not None
    first = ex.scatter_image.value
    x0, y0, _ = ex.scatter.position(ex.code())
    ex.sliders[0].value = 0.4
    assert ex.scatter_image.value != first
    x1, y1, _ = ex.scatter.position(ex.code())
    assert x1 > x0 and y1 == pytest.approx(y0)  # z₁ up: the marker moves right only
    ex.sliders[1].value = 0.4
    x2, y2, _ = ex.scatter.position(ex.code())
    assert y2 < y1  # z₂ up: the marker moves up (pixel rows count downward)

    # The marker's centre dot is black; the background there was not drawn on.
    shown = np.asarray(Image.open(io.BytesIO(ex.scatter_image.value)).convert("RGB"))
    assert (shown[round(y2), round(x2)] == 0).all()
    assert shown.shape[:2] == (ex.scatter.background.height, ex.scatter.background.width)
    for slider in ex.sliders:  # the plot covers the sliders' range
        slider.value = slider.max
    assert ex.scatter.position(ex.code())[2]


def test_marker_is_pinned_to_the_edge_outside_the_plot(data):
    x, y = data
    marker = widgets.ScatterMarker(tiny(2).encode_means(x), y.numpy())
    _, _, inside = marker.position(torch.tensor([0.0, 0.0]))
    assert inside
    px, py, inside = marker.position(torch.tensor([1e3, 0.0]))
    assert not inside and px == pytest.approx(marker._box[2])


def test_explorer_scatter_accepts_codes_and_more_dims(data):
    x, y = data
    model = tiny(2)
    codes = model.encode_means(x)
    ex = widgets.latent_explorer(model, scatter=(codes, y))
    assert ex.scatter_image.value
    ex5 = widgets.latent_explorer(tiny(5), scatter=(x, y))  # PCA plane for L > 2
    before = ex5.scatter_image.value
    ex5.sliders[0].value = 2.0
    assert ex5.scatter_image.value != before


def test_interpolation_explorer_walks_from_a_to_b(data):
    x, _ = data
    model = tiny(2)
    ie = widgets.interpolation_explorer(model, x[:1], x[1:2])
    a, b = model.encode_means(x[:2])
    assert ie.slider.description == "t" and ie.sliders == [ie.slider]
    torch.testing.assert_close(ie.code(), a)
    np.testing.assert_array_equal(pixels(ie.image.value), expected(model, a))
    start = ie.image.value
    ie.slider.value = 1.0
    torch.testing.assert_close(ie.code(), b)
    ie.slider.value = 0.25
    mid = 0.75 * a + 0.25 * b
    assert ie.image.value == widgets.decode_to_png(model, mid)
    assert text(ie.readout).startswith("t = 0.25: z = (")
    ie.reset_button.click()
    assert ie.slider.value == 0.0 and ie.image.value == start


def test_interpolation_explorer_accepts_codes():
    model = tiny(3)
    ie = widgets.interpolation_explorer(model, torch.zeros(3), torch.ones(3))
    ie.slider.value = 0.5
    torch.testing.assert_close(ie.code(), torch.full((3,), 0.5))


def test_explorers_display_as_their_widget_with_a_static_picture_beside(data):
    x, y = data
    ex = widgets.latent_explorer(tiny(2), scatter=(x, y))
    ex.sliders[0].value = 1.0
    bundle = ex._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget.model_id
    assert "vaelab-explorer" in ex.widget._dom_classes
    # The fallback: the pictures as they are now, the readout, and the note to run the cell.
    static = bundle["text/html"]
    assert inline_pngs(static) == [ex.image.value, ex.scatter_image.value]
    assert 'class="vaelab-static-picture"' in static and widgets.STATIC_NOTE in static
    assert "z = (1.00, 0.00)" in static
    assert bundle["text/plain"].startswith("LatentExplorer at z = (1.00, 0.00)")
    ie = widgets.interpolation_explorer(tiny(2), x[:1], x[1:2])
    assert len(inline_pngs(ie._repr_mimebundle_()["text/html"])) == 3  # at t, x_a and x_b


def test_a_disconnected_explorer_says_to_run_its_cell():
    """The note is in the widget but hidden by CSS unless ipywidgets marks the view
    disconnected or JupyterLab's kernel status says the kernel is gone (shut down, dead)."""
    for ex in (widgets.latent_explorer(tiny(2)),
               widgets.interpolation_explorer(tiny(2), torch.zeros(2), torch.ones(2))):
        notes = [c for c in ex.widget.children + ex.widget.children[0].children
                 if "vaelab-live-note" in getattr(c, "_dom_classes", ())]
        assert len(notes) == 1 and widgets.LIVE_NOTE in notes[0].value
        css = notes[0].value
        assert ".vaelab-live-note{display:none}" in css
        assert ".jupyter-widgets-disconnected .vaelab-live-note," in css
        shown = re.search(r"\.jp-NotebookPanel:has\((.*?)\) \.vaelab-live-note\{display:block\}",
                          css)
        assert shown, css
        for status in ("unknown", "dead"):  # shut down (tests/test_browser.py), died
            assert f'[data-status="{status}"]' in shown.group(1)
        assert '"idle"' not in shown.group(1) and '"busy"' not in shown.group(1)


def test_arrow_keys_move_a_useful_step_and_long_codes_fit_two_lines():
    ex = widgets.latent_explorer(tiny(10))
    assert {s.step for s in ex.sliders} == {0.05}  # 120 presses across ±3, PageUp 5 steps
    assert [len(line) for line in text(ex.readout).splitlines()] == [len(
        "z = (0.00, 0.00, 0.00, 0.00, 0.00,")] * 2
    assert widgets.describe_code(torch.tensor([1.0, -2.0])) == "z = (1.00, −2.00)"


def test_a_nan_start_code_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="start contain NaN"):
        widgets.latent_explorer(tiny(2), start=torch.tensor([float("nan"), 0.0]))
    with pytest.raises(ValueError, match="x_b contain NaN"):
        widgets.interpolation_explorer(tiny(2), torch.zeros(2), torch.tensor([0.0, float("inf")]))
    with pytest.raises(ValueError, match="lim must be a finite number"):
        widgets.latent_explorer(tiny(2), lim=float("nan"))


def test_a_nan_slider_value_keeps_the_last_good_picture_and_says_so():
    model = tiny(2)
    ex = widgets.latent_explorer(model)
    ex.sliders[0].value = 1.0
    good = ex.image.value
    ex.sliders[1].value = float("nan")
    assert ex.image.value == good
    assert text(ex.readout) == "z₂ is not a finite number: showing the last good picture"
    ex.sliders[1].value = 0.5
    assert ex.image.value == widgets.decode_to_png(model, torch.tensor([1.0, 0.5]))
    ie = widgets.interpolation_explorer(model, torch.zeros(2), torch.ones(2))
    before = ie.image.value
    ie.slider.value = float("nan")
    assert ie.image.value == before and "t is not a finite number" in text(ie.readout)


def test_bad_input_says_what_to_do(data):
    x, _ = data
    model = tiny(2)
    with pytest.raises(ValueError, match=r"latent_dim=2"):
        widgets.latent_explorer(model, start=torch.zeros(5))
    with pytest.raises(ValueError, match="ONE image"):
        widgets.latent_explorer(model, start=x[:2])
    with pytest.raises(ValueError, match="divide by 255"):
        widgets.latent_explorer(model, start=x[:1] * 255)
    with pytest.raises(TypeError, match="scatter must be"):
        widgets.latent_explorer(model, scatter="digits")
    with pytest.raises(ValueError, match="max_sliders"):
        widgets.latent_explorer(model, max_sliders=0)
    with pytest.raises(TypeError, match="vaelab model"):
        widgets.latent_explorer(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="x_b"):
        widgets.interpolation_explorer(model, x[:1], torch.zeros(7))


def test_callbacks_match_viz_decoding():
    """The explorer and the static plots decode the same way."""
    model = tiny(2)
    z = torch.tensor([[0.3, 0.9]])
    from_viz = (viz.decode_images(model, z)[0, 0] * 255).round().numpy()
    np.testing.assert_array_equal(pixels(widgets.decode_to_png(model, z[0])), from_viz)


def test_other_image_sizes():
    """Models for other square images (e.g. 16×16 shapes) get a matching, sharp picture."""
    torch.manual_seed(0)
    model = VAE(latent_dim=3, hidden=(16,), image_size=16).eval()
    ex = widgets.latent_explorer(model, start=torch.rand(1, 1, 16, 16), scale=5)
    assert (ex.image.width, ex.image.height) == ("80", "80")  # ipywidgets keeps strings
    ex.sliders[2].value = -1.0
    np.testing.assert_array_equal(pixels(ex.image.value, scale=5, size=16),
                                  expected(model, ex.code()))
