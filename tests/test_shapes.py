"""The shapes dataset: shapes, ranges, factor bookkeeping, and that every factor step shows."""

import math

import numpy as np
import pytest
import torch

from vaelab.shapes import FACTORS, GRIDS, SHAPES, ShapesData, ShapesGrid, as_grid, load_shapes

TINY = GRIDS["tiny"]


@pytest.fixture(scope="module")
def tiny():
    return load_shapes("tiny", verbose=False)


def by_factor(grid: ShapesGrid, images: torch.Tensor) -> torch.Tensor:
    """All images of a grid, in grid order, as (3, n_scale, n_orientation, n_x, n_y, S, S)."""
    return images.view(*grid.counts, grid.size, grid.size)


def test_shapes_dtypes_and_ranges(tiny):
    assert isinstance(tiny, ShapesData)
    assert tiny.names == FACTORS == ("shape", "scale", "orientation", "x", "y")
    assert tiny.images.shape == (len(TINY), 1, 16, 16) == (270, 1, 16, 16)
    assert tiny.images.dtype == torch.float32
    assert float(tiny.images.min()) == 0.0 and float(tiny.images.max()) == 1.0
    assert tiny.factors.shape == (270, 5) and tiny.factors.dtype == torch.int64
    assert tiny.values.shape == (270, 5) and tiny.values.dtype == torch.float32
    assert tiny[0] is tiny.images  # fit(model, data) and data[0] take the images


def test_grid_sizes_stated_in_the_docs():
    assert len(GRIDS["small"]) == 3 * 5 * 10 * 8 * 8 == 9_600
    assert GRIDS["small"].size == 32
    assert len(GRIDS["dsprites"]) == 3 * 6 * 40 * 32 * 32 == 737_280
    assert GRIDS["dsprites"].size == 64


def test_every_combination_once_and_index_round_trip(tiny):
    f = tiny.factors
    assert len({tuple(r) for r in f.tolist()}) == len(TINY)
    assert torch.equal(TINY.index_of(f), torch.arange(len(TINY)))
    assert torch.equal(TINY.factors_of(torch.arange(len(TINY))), f)
    for j, n in enumerate(TINY.counts):  # independent, uniform factors
        assert torch.equal(torch.bincount(f[:, j]), torch.full((n,), len(TINY) // n))


def test_factor_values():
    g = GRIDS["dsprites"]
    v = g.values()
    assert v["scale"][0] == 0.5 and v["scale"][-1] == 1.0 and len(v["scale"]) == 6
    angles = v["orientation"]
    assert len(angles) == 40 and angles[0] == 0.0
    assert angles[-1] < 2 * math.pi - 1e-6  # 2π (the same picture as 0) is left out
    np.testing.assert_allclose(np.diff(angles), 2 * math.pi / 40)
    assert v["x"][0] == 0.0 and v["x"][-1] == 1.0 and len(v["x"]) == 32
    f = torch.tensor([[2, 5, 10, 31, 0]])
    np.testing.assert_allclose(g.factor_values(f)[0].numpy(),
                               [2.0, 1.0, math.pi / 2, 1.0, 0.0], rtol=1e-6)


def test_deterministic():
    a = load_shapes("tiny", verbose=False).images
    b = TINY.render(TINY.factors_of(torch.arange(len(TINY))))
    assert torch.equal(a, b)


@pytest.mark.parametrize("grid", ["tiny", "small"])
def test_every_adjacent_pair_of_factor_values_differs(grid):
    g = GRIDS[grid]
    x = by_factor(g, load_shapes(grid, verbose=False).images)
    for axis, name in enumerate(FACTORS):
        step = (x.narrow(axis, 1, x.shape[axis] - 1) - x.narrow(axis, 0, x.shape[axis] - 1))
        ink_moved = step.abs().flatten(5).sum(-1)  # total |Δpixel| for each adjacent pair
        assert float(ink_moved.min()) >= 1.0, f"{grid}: two adjacent {name} values look alike"
    # orientation is cyclic: the last angle and the first (2π) differ too
    wrap = (x[:, :, -1] - x[:, :, 0]).abs().flatten(4).sum(-1)
    assert float(wrap.min()) >= 1.0


def test_dsprites_grid_adjacent_orientations_scales_and_shapes_differ():
    s = GRIDS["dsprites"].sprites()  # (3, 6, 40, W, W); positions are whole-pixel shifts
    assert s.shape[:3] == (3, 6, 40)
    nxt = list(range(1, 40)) + [0]
    assert float((s - s[:, :, nxt]).abs().flatten(3).sum(-1).min()) >= 1.0
    assert float((s[:, 1:] - s[:, :-1]).abs().flatten(3).sum(-1).min()) >= 1.0
    assert float((s[1:] - s[:-1]).abs().flatten(3).sum(-1).min()) >= 1.0


def test_symmetric_orientations_are_the_same_picture():
    s = GRIDS["dsprites"].sprites()
    square, ellipse, heart = (s[SHAPES.index(n)] for n in ("square", "ellipse", "heart"))
    assert torch.equal(square[:, :30], square[:, 10:])  # 90° = 10 steps of 9°
    assert torch.equal(ellipse[:, :20], ellipse[:, 20:])  # 180°
    assert not torch.equal(ellipse[:, :30], ellipse[:, 10:])
    pairs = (heart[:, :, None] - heart[:, None, :]).abs().flatten(3).sum(-1)
    pairs += torch.eye(40) * 1e9
    assert float(pairs.min()) >= 1.0  # no two orientations of the heart alike


def test_positions_shift_the_ink_by_whole_steps(tiny):
    x = by_factor(TINY, tiny.images)
    rows = torch.arange(16.0)
    mass = x.sum((-1, -2))
    centre_x = (x.sum(-2) * rows).sum(-1) / mass  # column centroid
    centre_y = (x.sum(-1) * rows).sum(-1) / mass  # row centroid
    torch.testing.assert_close(centre_x[:, :, :, 1:] - centre_x[:, :, :, :-1],
                               torch.full_like(centre_x[:, :, :, 1:], 2.0))
    torch.testing.assert_close(centre_y[..., 1:] - centre_y[..., :-1],
                               torch.full_like(centre_y[..., 1:], 2.0))


def test_close_to_binary_and_never_cut_off():
    x = load_shapes("small", verbose=False).images
    grey = ((x > 0) & (x < 1)).float().mean()
    assert grey < 0.05  # only edge pixels are grey
    torch.testing.assert_close(x * 16, (x * 16).round())  # 4×4 supersampling: steps of 1/16
    g = GRIDS["small"]
    canvas = g.sprites()
    assert float(canvas[..., 0, :].max() + canvas[..., -1, :].max()) < 1.0  # ink stays inside


def test_random_subset_and_uint8():
    sub = load_shapes("tiny", n=50, seed=3, verbose=False)
    idx = TINY.index_of(sub.factors)
    assert len(idx.unique()) == 50 and torch.equal(idx, idx.sort().values)
    assert torch.equal(sub.images, TINY.render(sub.factors))
    assert torch.equal(load_shapes("tiny", n=50, seed=3, verbose=False).factors, sub.factors)
    u8 = load_shapes("tiny", dtype=torch.uint8, verbose=False).images
    assert u8.dtype == torch.uint8
    torch.testing.assert_close(u8.float() / 255, load_shapes("tiny", verbose=False).images,
                               atol=0.51 / 255, rtol=0)


def test_chunks_cover_the_grid(tiny):
    parts = list(TINY.chunks(chunk_size=100))
    assert [len(p.images) for p in parts] == [100, 100, 70]
    assert torch.equal(torch.cat([p.images for p in parts]), tiny.images)


def test_clear_errors():
    with pytest.raises(ValueError, match="max_gb"):
        load_shapes("dsprites", verbose=False)  # 12.1 GB as float32
    with pytest.raises(ValueError, match="one of"):
        load_shapes("huge")
    with pytest.raises(ValueError, match="n must be"):
        load_shapes("tiny", n=10_000)
    with pytest.raises(ValueError, match="square looks the same"):
        ShapesGrid(n_orientation=4)
    with pytest.raises(ValueError, match="canvas"):
        ShapesGrid(size=16, n_position=8, position_step=2)
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        TINY.render(torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="'scale' takes indices 0..1"):
        TINY.render(torch.tensor([[0, 2, 0, 0, 0]]))

    with pytest.raises(TypeError, match="integer indices"):
        TINY.render(torch.tensor([[0.0, 1.7, 0.0, 0.0, 0.0]]))  # never rounded quietly to 1
    with pytest.raises(TypeError, match="n must be an integer"):
        load_shapes("tiny", n=10.5)
    with pytest.raises(ValueError, match="max_gb must be > 0"):
        load_shapes("tiny", max_gb=0)
    with pytest.raises(TypeError, match="size must be an integer"):
        ShapesGrid(size=True)
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_shapes("tiny", dtype=torch.float64)


def test_as_grid_names_the_grids():
    assert as_grid("tiny") is GRIDS["tiny"] and as_grid(TINY) is TINY
    with pytest.raises(ValueError, match="'dsprites', 'small', 'tiny'|one of"):
        as_grid(16)


def test_check_factors_takes_one_row_or_many():
    assert TINY.check_factors([2, 1, 4, 2, 2]).tolist() == [[2, 1, 4, 2, 2]]
    assert TINY.check_factors(np.zeros((3, 5), dtype=np.int32)).dtype == torch.int64
