"""vaelab.viz: every plot is a Figure that shows what its labels say (tiny untrained models)."""

from __future__ import annotations

import sys
import types

import matplotlib
import numpy as np
import pytest
import torch
from helpers import tiny
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from vaelab import AE, VAE, History, viz

CELL = 28 + viz.PAD  # one image plus its padding in a make_grid picture


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    """Every function builds a bare Figure: none may appear in pyplot's list."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before



@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(60, 1, 28, 28, generator=g), torch.arange(60) % 10


def only_image(fig: Figure) -> np.ndarray:
    (ax,) = fig.axes
    (im,) = ax.get_images()
    assert im.get_cmap().name == "gray" and im.get_interpolation() == "nearest"
    assert im.get_clim() == (0.0, 1.0)
    return np.asarray(im.get_array())


def cell(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 28×28 image in a make_grid picture at (row, col)."""
    top, left = viz.PAD + row * CELL, viz.PAD + col * CELL
    return grid[top:top + 28, left:left + 28]


def decoded(model, z) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(model.decode(torch.tensor([z], dtype=torch.float32)))[0, 0].numpy()


def tick_texts(labels) -> list[str]:
    return [t.get_text() for t in labels]


def test_style_is_set_in_one_place():
    assert viz.IMAGE_STYLE == {"cmap": "gray", "vmin": 0.0, "vmax": 1.0,
                               "interpolation": "nearest"}
    assert [viz.z_name(i) for i in (0, 1, 9)] == ["z₁", "z₂", "z₁₀"]
    assert [viz.fmt_value(v) for v in (-3, -0.04, -0.001, 0.0, 2.25, 0.75)] == [
        "−3.0", "−0.04", "0.0", "0.0", "2.25", "0.75"]  # a traversal's ±2.25 is not "2.2"


def test_show_images_tiles_with_make_grid(data):
    x, _ = data
    fig = viz.show_images(x[:25], nrow=10, title="twenty-five")
    assert isinstance(fig, Figure)
    grid = only_image(fig)
    assert grid.shape == (3 * CELL + viz.PAD, 10 * CELL + viz.PAD)
    np.testing.assert_allclose(cell(grid, 2, 4), x[24, 0].numpy(), atol=1e-6)
    assert fig.axes[0].get_title() == "twenty-five"
    assert not fig.axes[0].get_xticks().size and not fig.axes[0].get_yticks().size
    assert only_image(viz.show_images(x[:3, 0])).shape == (CELL + viz.PAD, 3 * CELL + viz.PAD)


def test_show_images_says_what_is_wrong(data):
    x, _ = data
    with pytest.raises(ValueError, match="divide by 255"):
        viz.show_images(x * 255)
    with pytest.raises(ValueError, match="nrow"):
        viz.show_images(x, nrow=0)


def test_latent_scatter_two_dims(data):
    x, y = data
    fig = viz.latent_scatter(tiny(2), x, y)
    ax, bar = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z₁", "z₂")
    assert bar.get_ylabel() == "digit"
    assert list(bar.get_yticks()) == list(range(10))
    (points,) = ax.collections
    np.testing.assert_allclose(points.get_offsets(), tiny(2).encode_means(x).numpy(), atol=1e-6)
    np.testing.assert_array_equal(points.get_array(), y.numpy())
    assert "60 images" in ax.get_title()


def test_latent_scatter_subsamples_deterministically(data):
    x, y = data
    first, second = (viz.latent_scatter(tiny(2), x, y, max_points=25) for _ in range(2))
    a, b = (f.axes[0].collections[0].get_offsets() for f in (first, second))
    assert len(a) == 25
    np.testing.assert_array_equal(a, b)
    assert "25 images" in first.axes[0].get_title()


def test_latent_scatter_projects_with_pca_beyond_two_dims(data):
    x, y = data
    fig = viz.latent_scatter(tiny(5), x, y)
    ax = fig.axes[0]
    assert "PCA" in ax.get_title() and "5-D" in ax.get_title()
    assert ax.get_xlabel().startswith("PC 1 (") and "variance" in ax.get_xlabel()
    xy = ax.collections[0].get_offsets()
    codes = tiny(5).encode_means(x).double().numpy()
    centred = codes - codes.mean(0)
    # The first axis is the direction of largest variance: no unit vector beats it.
    var_pc1 = np.var(np.asarray(xy)[:, 0])
    assert var_pc1 >= np.var(centred @ np.linalg.svd(centred)[2][1]) - 1e-9
    np.testing.assert_allclose(var_pc1, np.var(centred @ np.linalg.svd(centred)[2][0]),
                               rtol=1e-5)


def test_latent_scatter_umap_is_seeded(data, monkeypatch):
    """UMAP itself is slow to compile; a stand-in checks the wiring (random_state, 2 dims)."""
    seen = {}

    class FakeUMAP:
        def __init__(self, n_components, random_state):
            seen.update(n_components=n_components, random_state=random_state)

        def fit_transform(self, z):
            return z[:, :2] * 2

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    x, y = data
    fig = viz.latent_scatter(tiny(4), x, y, method="umap", seed=7)
    assert seen == {"n_components": 2, "random_state": 7}
    assert "UMAP" in fig.axes[0].get_title() and fig.axes[0].get_xlabel() == "UMAP 1"


def test_latent_scatter_errors(data):
    x, y = data
    with pytest.raises(ValueError, match="one label per image"):
        viz.latent_scatter(tiny(2), x, y[:5])
    with pytest.raises(ValueError, match="method"):
        viz.latent_scatter(tiny(2), x, y, method="tsne")
    with pytest.raises(ValueError, match=r"shape \(N, 1, H, W\)"):
        viz.latent_scatter(tiny(2), x.expand(-1, 3, -1, -1), y)
    with pytest.raises(ValueError, match=r"codes must have shape \(N, 2\)"):
        viz.latent_scatter(tiny(2), torch.zeros(60, 3), y)
    fig = viz.latent_scatter(tiny(2), torch.ones(60, 2), y)  # codes work too
    np.testing.assert_array_equal(fig.axes[0].collections[0].get_offsets(), np.ones((60, 2)))


def test_latent_grid_layout_ticks_and_orientation():
    model, n, lim = tiny(2), 7, 2.0
    fig = viz.latent_grid(model, n=n, lim=lim)
    grid = only_image(fig)
    assert grid.shape == (n * 28 + (n + 1) * viz.PAD,) * 2
    ax = fig.axes[0]
    values = np.linspace(-lim, lim, n)
    assert tick_texts(ax.get_xticklabels()) == [viz.fmt_value(v) for v in values]
    assert tick_texts(ax.get_yticklabels()) == [viz.fmt_value(v) for v in values[::-1]]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z₁", "z₂")
    # Top-left cell: smallest z₁, LARGEST z₂ (z₂ grows upward); bottom-right the opposite.
    np.testing.assert_allclose(cell(grid, 0, 0), decoded(model, [-lim, lim]), atol=1e-5)
    np.testing.assert_allclose(cell(grid, n - 1, n - 1), decoded(model, [lim, -lim]), atol=1e-5)
    np.testing.assert_allclose(cell(grid, n - 1, 0), decoded(model, [-lim, -lim]), atol=1e-5)


def test_latent_grid_other_dims_and_base():
    model = tiny(3)
    base = torch.tensor([0.5, -1.0, 0.25])
    fig = viz.latent_grid(model, n=3, lim=1.0, dims=(2, 0), base=base)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z₃", "z₁")
    assert "base code" in ax.get_title()
    # Row 0 is z₁ = +1, column 0 is z₃ = -1; z₂ stays at the base value.
    np.testing.assert_allclose(cell(only_image(fig), 0, 0), decoded(model, [1.0, -1.0, -1.0]),
                               atol=1e-5)
    labels = [t.get_text() for t in viz.latent_grid(model, n=15).axes[0].get_xticklabels()]
    assert len(labels) == 7 and labels[3] == "0.0"  # thinned, the middle value (0) labelled


def test_latent_grid_errors():
    with pytest.raises(ValueError, match="traversal_grid"):
        viz.latent_grid(tiny(1))
    with pytest.raises(ValueError, match="distinct coordinates"):
        viz.latent_grid(tiny(3), dims=(1, 1))
    with pytest.raises(ValueError, match="0..2"):
        viz.latent_grid(tiny(3), dims=(0, 3))
    with pytest.raises(ValueError, match="latent_dim=2"):
        viz.latent_grid(tiny(2), base=torch.zeros(3))


def test_traversal_grid_rows_are_coordinates():
    model, steps, lim = tiny(3), 5, 2.0
    fig = viz.traversal_grid(model, lim=lim, steps=steps)
    grid = only_image(fig)
    assert grid.shape == (3 * CELL + viz.PAD, steps * CELL + viz.PAD)
    ax = fig.axes[0]
    assert tick_texts(ax.get_yticklabels()) == ["z₁", "z₂", "z₃"]
    assert tick_texts(ax.get_xticklabels()) == ["−2.0", "−1.0", "0.0", "1.0", "2.0"]
    np.testing.assert_allclose(cell(grid, 1, 0), decoded(model, [0, -lim, 0]), atol=1e-5)
    np.testing.assert_allclose(cell(grid, 2, 4), decoded(model, [0, 0, lim]), atol=1e-5)


def test_traversal_grid_base_from_an_image_and_chosen_dims(data):
    x, _ = data
    model = tiny(3)
    fig = viz.traversal_grid(model, base=x[:1], steps=3, dims=[2])
    grid = only_image(fig)
    assert tick_texts(fig.axes[0].get_yticklabels()) == ["z₃"]
    mu = model.encode_means(x[:1])[0].tolist()
    np.testing.assert_allclose(cell(grid, 0, 1), decoded(model, [mu[0], mu[1], 0.0]), atol=1e-5)
    with pytest.raises(ValueError, match="ONE image"):
        viz.traversal_grid(model, base=x[:2])


def test_prior_samples_are_seeded():
    model = tiny(2)
    a, b, c = (only_image(viz.prior_samples(model, n=16, seed=s)) for s in (0, 0, 1))
    assert a.shape == (4 * CELL + viz.PAD,) * 2
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(cell(a, 0, 1), decoded(model, z[1].tolist()), atol=1e-5)


def test_reconstructions_inputs_over_outputs(data):
    x, _ = data
    model = tiny(2)
    fig = viz.reconstructions(model, x, n=6)
    grid = only_image(fig)
    assert grid.shape == (2 * CELL + viz.PAD, 6 * CELL + viz.PAD)
    assert tick_texts(fig.axes[0].get_yticklabels()) == ["input", "output"]
    np.testing.assert_allclose(cell(grid, 0, 3), x[3, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(cell(grid, 1, 3), model.reconstruct(x[3:4])[0, 0].numpy(),
                               atol=1e-5)
    assert "mean" in fig.axes[0].get_title()
    sampled = [only_image(viz.reconstructions(model, x, n=6, sample=True)) for _ in range(2)]
    np.testing.assert_array_equal(*sampled)  # seeded
    assert only_image(viz.reconstructions(tiny(2, AE), x, n=4)).shape[1] == 4 * CELL + viz.PAD


def test_interpolation_path():
    codes = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 2.0]])
    path, anchors = viz.interpolation_path(codes, steps=5)
    assert path.shape == (9, 2) and anchors == [0, 4, 8]
    torch.testing.assert_close(path[anchors], codes)
    torch.testing.assert_close(path[2], torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="steps"):
        viz.interpolation_path(codes, steps=1)


def test_interpolation_row_marks_the_endpoints(data):
    x, _ = data
    model = tiny(2)
    fig = viz.interpolation_row(model, x[:3], steps=4, names=[4, 7, 9])
    grid = only_image(fig)
    assert grid.shape == (CELL + viz.PAD, 7 * CELL + viz.PAD)
    ax = fig.axes[0]
    assert tick_texts(ax.get_xticklabels()) == ["4", "7", "9"]
    frames = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(frames) == 3
    assert "4 → 7 → 9" in ax.get_title()
    mu = model.encode_means(x[1:2])[0].tolist()
    np.testing.assert_allclose(cell(grid, 0, 3), decoded(model, mu), atol=1e-5)
    with pytest.raises(ValueError, match="at least 2 images"):
        viz.interpolation_row(model, x[:1])
    with pytest.raises(ValueError, match="one entry per image"):
        viz.interpolation_row(model, x[:3], names=["a"])


def test_interpolation_gif_frames_loop_and_size(data, tmp_path):
    x, _ = data
    model = tiny(2)
    with torch.no_grad():  # push the decoder's output around so every frame differs
        model.decoder[-1].weight.mul_(40)
    path = viz.interpolation_gif(model, x[:3], tmp_path / "sub" / "walk.gif", steps=6, scale=4)
    assert path == tmp_path / "sub" / "walk.gif"
    gif = Image.open(path)
    assert gif.n_frames == 11
    assert gif.info["loop"] == 0
    assert gif.size == (112, 112)
    durations = []
    for i in range(gif.n_frames):
        gif.seek(i)
        durations.append(gif.info["duration"])
    assert durations[0] == durations[5] == durations[10] == 600 and durations[1] == 60
    gif.seek(5)
    want = torch.sigmoid(model.decode(model.encode_means(x[1:2])))[0, 0]
    got = np.asarray(gif.convert("L"))[::4, ::4] / 255
    np.testing.assert_allclose(got, want.detach().numpy(), atol=1 / 255 + 1e-6)


def history(epochs: int = 3) -> History:
    row = lambda e, off: {"total": 200 - 10 * e + off, "reconstruction": 190 - 10 * e + off,  # noqa: E731
                          "kl": 10.0 + e}
    return History([row(e, 0) for e in range(epochs)], [row(e, 2) for e in range(epochs)],
                   [0.1] * epochs)


def test_training_curves_panels():
    fig = viz.training_curves(history())
    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert "total" in titles[0] and "reconstruction" in titles[1] and "KL" in titles[2]
    for ax, term in zip(fig.axes, ("total", "reconstruction", "kl"), strict=True):
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "nats per image"
        train, test = ax.get_lines()
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(train.get_ydata(), [r[term] for r in history().train])
        np.testing.assert_allclose(test.get_ydata(), [r[term] for r in history().test])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["train", "test"]


def test_training_curves_from_dict_and_without_test():
    h = history(2)
    h.test = []
    fig = viz.training_curves(h.as_dict())
    assert all(len(ax.get_lines()) == 1 for ax in fig.axes)
    stopped = history(1)
    stopped.stopped = "interrupted"
    assert "interrupted" in viz.training_curves(stopped)._suptitle.get_text()
    with pytest.raises(ValueError, match="no epochs"):
        viz.training_curves(History())
    with pytest.raises(TypeError, match="History"):
        viz.training_curves([1, 2])


def test_training_curves_draw_only_the_terms_asked_for():
    fig = viz.training_curves(history(), terms=["reconstruction"])
    assert len(fig.axes) == 1 and "reconstruction" in fig.axes[0].get_title()
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(),
                               [r["reconstruction"] for r in history().train])
    assert len(viz.training_curves(history(), terms="kl").axes) == 1
    with pytest.raises(ValueError, match="terms must be one of"):
        viz.training_curves(history(), terms=["elbo"])


def test_an_autoencoders_titles_speak_of_codes_not_of_a_prior_or_posterior(data):
    x, _ = data
    torch.manual_seed(0)
    ae, vae = AE(latent_dim=2, hidden=(16,)), tiny(2)
    assert viz.reconstructions(ae, x, n=3).axes[0].get_title() == \
        "Reconstructions (the code z = f(x))"
    assert "q(z|x)" in viz.reconstructions(vae, x, n=3).axes[0].get_title()
    assert "prior" not in viz.prior_samples(ae, n=4).axes[0].get_title()
    assert "prior" in viz.prior_samples(vae, n=4).axes[0].get_title()
    assert viz.prior_samples(vae, n=4, title="mine").axes[0].get_title() == "mine"
    assert viz.reconstructions(vae, x, n=3, title="mine").axes[0].get_title() == "mine"


def test_decoding_is_gradient_free_and_on_the_cpu():
    model, z = tiny(2), torch.tensor([[0.0, 0.0], [1.5, -2.0], [-3.0, 0.5]])
    images = viz.decode_images(model, z)
    assert images.shape == (3, 1, 28, 28) and not images.requires_grad
    assert images.device.type == "cpu"
    torch.testing.assert_close(images, torch.sigmoid(model.decode(z)).detach())
    with pytest.raises(ValueError, match="NaN"):
        viz.decode_images(model, torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(TypeError, match="vaelab model"):
        viz.decode_images(object(), torch.zeros(1, 2))


def test_backend_untouched():
    """Importing and using viz never switches the user's matplotlib backend."""
    backend = matplotlib.get_backend()
    viz.prior_samples(tiny(2), n=4)
    assert matplotlib.get_backend() == backend


def test_other_image_sizes():
    torch.manual_seed(0)
    model = VAE(latent_dim=2, hidden=(16,), image_size=16).eval()
    grid = only_image(viz.latent_grid(model, n=4))
    assert grid.shape == (4 * 16 + 5 * viz.PAD,) * 2
    assert only_image(viz.traversal_grid(model, steps=3)).shape == (2 * 18 + 2, 3 * 18 + 2)
    x = torch.rand(3, 1, 16, 16)
    assert only_image(viz.interpolation_row(model, x, steps=2)).shape == (18 + 2, 3 * 18 + 2)


def test_latent_grid_over_a_rectangle():
    torch.manual_seed(0)
    model = VAE(2)
    fig = viz.latent_grid(model, n=5, lim=((-1.0, 3.0), (0.0, 2.0)))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()][0] == viz.fmt_value(-1.0)
    assert [t.get_text() for t in ax.get_yticklabels()][0] == viz.fmt_value(2.0)  # top row
    assert "z₁ ∈ [" in ax.get_title() and "z₂ ∈ [" in ax.get_title()
    with pytest.raises(ValueError, match="lo < hi"):
        viz.latent_grid(model, lim=((1.0, 0.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="positive"):
        viz.latent_grid(model, lim=-2)


# --- disentanglement, the β sweep and the shapes factors --------------------------------------

def sweep_result(with_mig: bool = True):
    """A SweepResult with a hand-made table: 2 β × 2 seeds at known rates and distortions."""
    import pandas as pd

    from vaelab.sweep import SweepResult

    table = pd.DataFrame({"beta": [0.5, 0.5, 4.0, 4.0], "seed": [0, 1, 0, 1],
                          "rate": [20.0, 22.0, 5.0, 6.0],
                          "distortion": [100.0, 98.0, 130.0, 128.0]})
    if with_mig:
        table["mig"] = [0.1, 0.2, 0.4, 0.6]
    return SweepResult(table, name="hand")


def test_plot_mutual_information_outlines_each_factors_top_latent():
    from vaelab import metrics

    factors = torch.arange(60).reshape(-1, 1).remainder(torch.tensor([[3, 4]])).long()
    codes = torch.cat([factors[:, [1]].float(), torch.zeros(60, 1), factors[:, [0]].float()], 1)
    result = metrics.mutual_info_gap(codes, factors)  # factor 0 in z₃, factor 1 in z₁
    fig = viz.plot_mutual_information(result, ["colour", "size"])
    ax = fig.axes[0]
    assert tick_texts(ax.get_xticklabels()) == ["colour\ngap 1.00", "size\ngap 1.00"]
    assert tick_texts(ax.get_yticklabels()) == ["z₁", "z₂", "z₃"]
    assert [(p.get_x() + 0.5, p.get_y() + 0.5) for p in ax.patches] == [(0, 2), (1, 0)]
    assert "MIG = 1.000" in ax.get_title() and len(fig.axes) == 2  # heat map and colorbar
    with pytest.raises(ValueError, match="factor_names must list 2 names"):
        viz.plot_mutual_information(result, ["colour"])
    with pytest.raises(TypeError, match="metrics.MIG"):
        viz.plot_mutual_information(result.mi)


def test_plot_rate_distortion_puts_each_model_at_its_rate_and_distortion():
    fig = viz.plot_rate_distortion(sweep_result())
    ax = fig.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert sorted(map(tuple, points.tolist())) == [(5.0, 130.0), (6.0, 128.0), (20.0, 100.0),
                                                   (22.0, 98.0)]
    assert tick_texts(ax.get_legend().get_texts())[:2] == ["0.5", "4"]
    # −ELBO spans 120..135: dashed lines every 5 nats (a round step for a 15-nat span)
    texts = [t.get_text() for t in ax.texts]  # bare −ELBO values; the legend says what they are
    assert "labels: −ELBO" in " ".join(ax.get_legend_handles_labels()[1])
    labels = sorted(float(t) for t in texts)
    assert labels and all(v % 5 == 0 for v in labels)
    assert any(line.get_linestyle() == "--" for line in ax.lines)
    assert "rate" in ax.get_xlabel() and "distortion" in ax.get_ylabel()


def test_plot_mig_shows_mean_and_spread_over_seeds():
    fig = viz.plot_mig(sweep_result())
    ax = fig.axes[0]
    assert ax.get_xlabel() == "β" and tick_texts(ax.get_xticklabels()) == ["0.5", "4"]
    (bars,) = ax.containers  # mean ± std over seeds
    np.testing.assert_allclose(np.asarray(bars.lines[0].get_ydata(), float), [0.15, 0.5])
    with pytest.raises(ValueError, match="factors=data.factors"):
        viz.plot_mig(sweep_result(with_mig=False))
    with pytest.raises(TypeError, match="SweepResult"):
        viz.plot_mig({"mig": [0.1]})


def test_plot_mig_per_factor_draws_each_factors_mean_gap_against_beta():
    result = sweep_result()
    result.table["mig_x"] = [0.2, 0.4, 0.8, 0.6]
    result.table["mig_shape"] = [0.0, 0.0, 0.1, 0.3]
    result.factor_names = ("shape", "x")
    fig = viz.plot_mig_per_factor(result)
    ax = fig.axes[0]
    # one error-bar container per line: its data line holds the means over seeds
    lines = {c.get_label(): np.asarray(c.lines[0].get_ydata(), float) for c in ax.containers}
    assert list(lines) == ["shape", "x", "MIG (mean of the factors)"]
    np.testing.assert_allclose(lines["shape"], [0.0, 0.2])
    np.testing.assert_allclose(lines["x"], [0.3, 0.7])
    np.testing.assert_allclose(lines["MIG (mean of the factors)"], [0.15, 0.5])
    assert tick_texts(ax.get_xticklabels()) == ["0.5", "4"] and ax.get_xlabel() == "β"
    with pytest.raises(ValueError, match="no per-factor gaps"):
        viz.plot_mig_per_factor(sweep_result())
    with pytest.raises(TypeError, match="SweepResult"):
        viz.plot_mig_per_factor({"mig": [0.1]})


def test_plot_factors_shows_each_factor_in_a_row():
    from vaelab.shapes import FACTORS, SHAPES

    fig = viz.plot_factors("tiny")
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == list(FACTORS)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 3 + 2 + 5 + 3 + 3
    assert [ax.get_xlabel() for ax in shown[:3]] == list(SHAPES)
    assert [ax.get_xlabel() for ax in shown[5:10]] == ["0°", "72°", "144°", "216°", "288°"]
    with pytest.raises(ValueError, match="ONE row"):
        viz.plot_factors("tiny", base=torch.zeros(2, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="one of"):
        viz.plot_factors("huge")


def test_inputs_that_are_not_images_or_numbers_are_named():
    model = tiny(2)
    with pytest.raises(TypeError, match="images must be a torch.Tensor; got 'digits'"):
        viz.show_images("digits")
    with pytest.raises(TypeError, match="images must be numbers"):
        viz.latent_scatter(model, [["a", "b"]])
    with pytest.raises(TypeError, match="vaelab model"):
        viz.prior_samples(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="width must be > 0"):
        viz.new_figure(0, 3)
    with pytest.raises(TypeError, match="n must be an integer"):
        viz.prior_samples(model, n=4.5)
