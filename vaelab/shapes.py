"""Shapes: a procedural dSprites-like dataset whose generative factors are known.

White shapes on black, rendered in code. Five factors, each on a regular grid:

* ``shape``: square, ellipse, heart (values 0, 1, 2);
* ``scale``: ``n_scale`` values from 0.5 to 1 (1 = the shape fills its circle of radius R);
* ``orientation``: ``n_orientation`` angles 2πk/n in [0, 2π) radians, counter-clockwise
  (2π itself is left out: it is the same picture as 0);
* ``x``, ``y``: ``n_position`` positions each, ``position_step`` whole pixels apart, given as
  values in [0, 1] (0 = left / top), as in dSprites.

Every combination appears exactly once, so the factors are independent and uniform.

Symmetric shapes repeat under rotation, so some orientations are the *same picture*:
the square repeats every 90° (four-fold symmetry), the ellipse every 180°, the heart never.
With 10 orientations (36° apart) the square shows 5 distinct pictures (0° and 180° coincide)
and the ellipse 5; with dSprites' 40 (9° apart) the square shows 10 and the ellipse 20. No
encoder can tell those apart, which caps what any metric can find for ``orientation``.

How it is drawn: each (shape, scale, orientation) sprite is rendered once on a small canvas
with ``supersample`` × ``supersample`` points per pixel (the share of points inside the shape
is the pixel's grey level, so only edge pixels are grey), and positions are whole-pixel shifts
of that canvas.
So rendering is vectorised, exact and deterministic, and two adjacent positions always differ.

Grids (``GRIDS``):

* ``"small"`` (the default): 32×32 pixels, 3 × 5 × 10 × 8 × 8 = **9,600 images** (2-pixel
  position steps); 39 MB as float32; trains on 2 CPU cores in minutes.
* ``"dsprites"``: the full dSprites grid, 64×64, 3 × 6 × 40 × 32 × 32 = **737,280 images**
  (1-pixel steps): 12.1 GB as float32 or 3.0 GB as uint8. Render a random subset
  (``load_shapes("dsprites", n=...)``), use ``dtype=torch.uint8``, or iterate
  ``ShapesGrid.chunks()``.
* ``"tiny"``: 16×16, 3 × 2 × 5 × 3 × 3 = 270 images, for tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .checks import check_choice, check_int, check_number, describe

FACTORS = ("shape", "scale", "orientation", "x", "y")
SHAPES = ("square", "ellipse", "heart")

_ELLIPSE_MINOR = 0.5  # semi-minor axis of the ellipse; its semi-major axis is 1
# The heart (x² + y² − 1)³ − x² y³ ≤ 0 spans y in [−1, 1.236]; its area centroid is at
# y = 0.2935 and its farthest point (the bottom tip) 1.2935 from there. Shift and shrink so it
# turns about its centroid and fits the unit circle like the other shapes.
_HEART_CENTRE = 0.2935
_HEART_RADIUS = 1.2935


@dataclass(frozen=True)
class ShapesGrid:
    """The factor grid and the image size of a shapes dataset; ``len(grid)`` images.

    The sprite canvas is ``size − (n_position − 1) × position_step`` pixels a side; a shape of
    scale 1 fills a circle of radius (canvas / 2 − 0.5) pixels, at any orientation, so no shape
    is ever cut off by the frame.
    """

    size: int = 32
    n_scale: int = 5
    n_orientation: int = 10
    n_position: int = 8
    position_step: int = 2
    supersample: int = 4

    def __post_init__(self):
        for name in ("size", "n_scale", "n_orientation", "n_position", "position_step",
                     "supersample"):
            check_int(getattr(self, name), name)
        if self.n_orientation in (2, 4):
            raise ValueError(
                f"n_orientation={self.n_orientation} puts adjacent orientations a multiple of "
                "90° apart, where the square looks the same; use 1 (no rotation) or 3, 5, 6, ...")
        if self.canvas < 6:
            raise ValueError(
                f"a {self.size}-pixel image leaves a sprite canvas of {self.canvas} pixels with "
                f"{self.n_position} positions {self.position_step} px apart; the canvas needs at "
                "least 6 — use fewer positions, a smaller position_step or a larger size")

    @property
    def canvas(self) -> int:
        """Side of the sprite canvas in pixels."""
        return self.size - (self.n_position - 1) * self.position_step

    @property
    def counts(self) -> tuple[int, int, int, int, int]:
        """Number of values of each factor, in the order of ``FACTORS``."""
        return (len(SHAPES), self.n_scale, self.n_orientation, self.n_position, self.n_position)

    def __len__(self) -> int:
        return math.prod(self.counts)

    def values(self) -> dict[str, np.ndarray]:
        """The real value of every grid point of each factor (shape: 0, 1, 2 for SHAPES)."""
        n = self.n_position
        return {
            "shape": np.arange(len(SHAPES), dtype=np.float64),
            "scale": np.linspace(0.5, 1.0, self.n_scale) if self.n_scale > 1 else np.ones(1),
            "orientation": 2 * np.pi * np.arange(self.n_orientation) / self.n_orientation,
            "x": np.linspace(0.0, 1.0, n) if n > 1 else np.full(1, 0.5),
            "y": np.linspace(0.0, 1.0, n) if n > 1 else np.full(1, 0.5),
        }

    def factors_of(self, index) -> torch.Tensor:
        """Flat image indices ``(N,)`` → factor indices ``(N, 5)`` int64 (``y`` varies fastest)."""
        index = _indices(index, "index").reshape(-1)
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise ValueError(f"indices must be in [0, {len(self)}); got {int(index.min())} to "
                             f"{int(index.max())}")
        out = torch.empty(len(index), 5, dtype=torch.int64)
        for j in range(4, -1, -1):
            out[:, j] = index % self.counts[j]
            index = index // self.counts[j]
        return out

    def index_of(self, factors) -> torch.Tensor:
        """Factor indices ``(N, 5)`` → flat image indices ``(N,)`` (inverse of ``factors_of``)."""
        factors = self.check_factors(factors)
        index = torch.zeros(len(factors), dtype=torch.int64)
        for j in range(5):
            index = index * self.counts[j] + factors[:, j]
        return index

    def factor_values(self, factors) -> torch.Tensor:
        """Factor indices ``(N, 5)`` → real values ``(N, 5)`` float32 (see ``values``)."""
        factors = self.check_factors(factors)
        table = self.values()
        cols = [torch.as_tensor(table[name], dtype=torch.float32)[factors[:, j]]
                for j, name in enumerate(FACTORS)]
        return torch.stack(cols, dim=1)

    def check_factors(self, factors) -> torch.Tensor:
        """Factor indices of this grid as an int64 tensor ``(N, 5)`` (one row ``(5,)`` becomes
        ``(1, 5)``), or a ValueError naming the factor whose index is out of range."""
        factors = _indices(factors, "factors")
        if factors.dim() == 1:
            factors = factors.unsqueeze(0)
        if factors.dim() != 2 or factors.shape[1] != 5:
            raise ValueError(f"factor indices must have shape (N, 5) for {FACTORS}; "
                             f"got {tuple(factors.shape)}")
        for j, name in enumerate(FACTORS):
            col = factors[:, j]
            if len(col) and (int(col.min()) < 0 or int(col.max()) >= self.counts[j]):
                raise ValueError(f"factor {name!r} takes indices 0..{self.counts[j] - 1}; "
                                 f"got {int(col.min())}..{int(col.max())}")
        return factors

    def sprites(self) -> torch.Tensor:
        """Every (shape, scale, orientation) sprite, ``(3, n_scale, n_orientation, W, W)``
        float32 in [0, 1], W = ``canvas``. Cached: computed once per grid."""
        return _sprites(self)

    def render(self, factors) -> torch.Tensor:
        """Images ``(N, 1, size, size)`` float32 in [0, 1] for factor indices ``(N, 5)``."""
        factors = self.check_factors(factors)
        sprites = self.sprites().flatten(0, 2)
        which = (factors[:, 0] * self.n_scale + factors[:, 1]) * self.n_orientation + factors[:, 2]
        # pixel (i, j) of an image's sprite lands at flat pixel (y0 + i) * size + (x0 + j)
        w, size, step = self.canvas, self.size, self.position_step
        local = (torch.arange(w)[:, None] * size + torch.arange(w)[None, :]).reshape(1, -1)
        corner = (factors[:, 4] * size + factors[:, 3]) * step
        out = torch.zeros(len(factors), size * size)
        for start in range(0, len(factors), 4096):
            part = slice(start, start + 4096)
            out[part].scatter_(1, corner[part, None] + local, sprites[which[part]].flatten(1))
        return out.view(-1, 1, size, size)

    def chunks(self, chunk_size: int = 16384) -> Iterator[ShapesData]:
        """The whole grid in order, ``chunk_size`` images at a time (for grids too big to hold)."""
        chunk_size = check_int(chunk_size, "chunk_size")
        for start in range(0, len(self), chunk_size):
            index = torch.arange(start, min(start + chunk_size, len(self)))
            factors = self.factors_of(index)
            yield ShapesData(self.render(factors), factors, self.factor_values(factors), self)


GRIDS = {
    "small": ShapesGrid(),
    "dsprites": ShapesGrid(size=64, n_scale=6, n_orientation=40, n_position=32,
                           position_step=1),
    "tiny": ShapesGrid(size=16, n_scale=2, n_orientation=5, n_position=3, position_step=2),
}


class ShapesData(NamedTuple):
    """Images ``(N, 1, S, S) float32 in [0, 1]``, factor indices ``(N, 5) int64``, factor values
    ``(N, 5) float32`` (columns ``FACTORS``) and the grid they come from.

    ``images`` comes first, so ``fit(model, data)`` and ``data[0]`` work as for ``ImageData``.
    """

    images: torch.Tensor
    factors: torch.Tensor
    values: torch.Tensor
    grid: ShapesGrid

    @property
    def names(self) -> tuple[str, ...]:
        return FACTORS


def _indices(value, name: str) -> torch.Tensor:
    """``value`` (tensor, array or list of whole numbers) as an int64 tensor; floats refused."""
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be integer indices; got {describe(value)}") from err
    if t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        raise TypeError(f"{name} must be integer indices (data.factors, not data.values); got "
                        f"{t.dtype}")
    return t.to(torch.int64)


def _inside(shape: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Whether points (x right, y up; the shape's circumradius is 1) lie inside ``shape``."""
    if shape == "square":
        half = 1 / math.sqrt(2)
        return (x.abs() <= half) & (y.abs() <= half)
    if shape == "ellipse":
        return x.square() + (y / _ELLIPSE_MINOR).square() <= 1
    if shape == "heart":
        x, y = x * _HEART_RADIUS, y * _HEART_RADIUS + _HEART_CENTRE
        return (x.square() + y.square() - 1) ** 3 - x.square() * y**3 <= 0
    raise ValueError(f"shape must be one of {SHAPES}; got {shape!r}")


_SPRITE_CACHE: dict[ShapesGrid, torch.Tensor] = {}


def _sprites(grid: ShapesGrid) -> torch.Tensor:
    if grid in _SPRITE_CACHE:
        return _SPRITE_CACHE[grid]
    w, ss = grid.canvas, grid.supersample
    # supersample points at the centres of ss×ss sub-pixels, relative to the canvas centre
    t = (torch.arange(w * ss, dtype=torch.float64) + 0.5) / ss - w / 2
    v, u = torch.meshgrid(t, t, indexing="ij")  # v: down the rows, u: along the columns
    values = grid.values()
    # (n_scale,) pixels; shrunk by 1e-9 so that sample points exactly on an edge count as
    # outside whatever the rounding, and symmetric orientations give identical pictures
    radius = torch.as_tensor(values["scale"]) * (w / 2 - 0.5) * (1 - 1e-9)
    angle = torch.as_tensor(values["orientation"])  # (n_orientation,)
    # undo the rotation: a shape turned by +θ contains p iff R(−θ) p is in the upright shape
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    xr = cos * u + sin * -v  # (n_orientation, w·ss, w·ss), y up is −v
    yr = -sin * u + cos * -v
    out = torch.empty(len(SHAPES), grid.n_scale, grid.n_orientation, w, w)
    for i, shape in enumerate(SHAPES):
        for j, r in enumerate(radius.tolist()):
            hit = _inside(shape, xr / r, yr / r).to(torch.float32)
            out[i, j] = hit.view(-1, w, ss, w, ss).mean(dim=(2, 4))
    _SPRITE_CACHE[grid] = out
    return out


def as_grid(grid: str | ShapesGrid) -> ShapesGrid:
    """``grid`` itself if it is a ``ShapesGrid``, else the grid of that name in ``GRIDS``."""
    if isinstance(grid, ShapesGrid):
        return grid
    if not isinstance(grid, str) or grid not in GRIDS:
        raise ValueError(f"grid must be a ShapesGrid or one of {sorted(GRIDS)}; got {grid!r}")
    return GRIDS[grid]


def load_shapes(grid: str | ShapesGrid = "small", *, n: int | None = None, seed: int = 0,
                dtype: torch.dtype = torch.float32, max_gb: float = 4.0,
                verbose: bool = True) -> ShapesData:
    """Render a shapes dataset: every image of ``grid`` (in grid order), or ``n`` distinct ones
    drawn at random (seeded, sorted in grid order).

    ``grid`` is ``"small"`` (default, 32×32, 9,600 images), ``"dsprites"`` (64×64, 737,280),
    ``"tiny"`` (16×16, 270) or a ``ShapesGrid``. Returns ``ShapesData(images, factors, values,
    grid)``: images ``(N, 1, S, S)`` float32 in [0, 1] (``dtype=torch.uint8``: 0..255, a
    quarter of the memory), factor indices ``(N, 5)`` int64 and values ``(N, 5)`` float32 for
    ``FACTORS``. Refuses to allocate more than ``max_gb`` gigabytes of images.
    """
    grid = as_grid(grid)
    total = len(grid)
    if n is not None and check_int(n, "n") > total:
        raise ValueError(f"n must be an integer from 1 to {total:,} (the grid's size); got {n!r}")
    count = total if n is None else n
    seed = check_int(seed, "seed", minimum=0)
    max_gb = check_number(max_gb, "max_gb", above=0.0)
    check_choice(dtype, "dtype", (torch.float32, torch.uint8))
    gb = count * grid.size**2 * (4 if dtype == torch.float32 else 1) / 1e9
    if gb > max_gb:
        raise ValueError(
            f"{count:,} images of {grid.size}×{grid.size} as {dtype} need {gb:.1f} GB, more than "
            f"max_gb={max_gb:g}. Take a random subset with n=..., use dtype=torch.uint8, iterate "
            "ShapesGrid.chunks(), or raise max_gb if you have the memory.")
    if n is None:
        index = torch.arange(total)
    else:
        gen = torch.Generator().manual_seed(seed)
        index = torch.randperm(total, generator=gen)[:n].sort().values
    images = torch.empty(count, 1, grid.size, grid.size, dtype=dtype)
    for start in range(0, count, 16384):
        part = grid.render(grid.factors_of(index[start:start + 16384]))
        images[start:start + len(part)] = part if dtype == torch.float32 else (
            part.mul_(255).round_().to(torch.uint8))
    factors = grid.factors_of(index)
    if verbose:
        counts = " × ".join(map(str, grid.counts))
        print(f"shapes: {count:,} images of {grid.size}×{grid.size} ({counts} grid "
              f"{'' if n is None else f'of {total:,}, random subset '}for {', '.join(FACTORS)})")
    return ShapesData(images, factors, grid.factor_values(factors), grid)

