"""Pictures of a latent space. Every function returns a ``matplotlib.figure.Figure``.

Figures are built with ``matplotlib.figure.Figure`` (not pyplot), so a notebook shows a returned
figure exactly once and nothing is left open. One place sets the look (``IMAGE_STYLE``,
``DPI``, ``CELL_INCHES``, ``PAD``): digits are white on black, grey colormap, no smoothing,
and image grids carry no axis clutter beyond the labels that say what a row or column is.

Decoded images are always ``sigmoid(model.decode(z))`` (the Bernoulli means), computed under
``torch.no_grad()`` on ``model.device``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

from .checks import (
    check_choice,
    check_codes,
    check_images,
    check_int,
    check_model,
    check_number,
    describe,
)
from .models import AE

# ---------------------------------------------------------------------------------------------
# The look, in one place.

IMAGE_STYLE = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0, "interpolation": "nearest"}
DPI = 100
CELL_INCHES = 0.5      # inches per 28-pixel image in a grid
MAX_WIDTH = 11.0       # inches; wider grids are scaled down
PAD = 2                # pixels between images in a grid
PAD_VALUE = 0.3        # dark grey: separates white-on-black digits without shouting
AXIS_LABEL_SIZE = 12   # z₁, z₂ axis labels
ACCENT = "#ff7f0e"     # marks special cells (interpolation endpoints)
LABEL_CMAPS = {10: "tab10", 20: "tab20"}
GIF_SCALE = 8          # a 28-pixel digit becomes 224 pixels in a GIF

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def z_name(i: int) -> str:
    """``"z₁"`` for coordinate 0: latent coordinates are numbered from 1 in every label."""
    return "z" + str(i + 1).translate(_SUBSCRIPTS)


def fmt_value(v: float) -> str:
    """A latent value as a tick label: at most two decimals, at least one (2.25, 0.75, 1.5,
    3.0), a real minus sign, never ``-0.0``."""
    text = f"{round(float(v), 2) + 0.0:.2f}"
    return (text[:-1] if text.endswith("0") else text).replace("-", "−")


def new_figure(width: float, height: float) -> Figure:
    """A ``Figure`` with the house DPI and constrained layout (width, height in inches)."""
    width = check_number(width, "width", above=0.0)
    height = check_number(height, "height", above=0.0)
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _grid(images: torch.Tensor, nrow: int) -> np.ndarray:
    """``(N, 1, H, W)`` images → one ``(H', W')`` array, tiled by torchvision's make_grid."""
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, padding=PAD, pad_value=PAD_VALUE)
    return grid[0].numpy()


def _centers(n: int, size: int) -> list[float]:
    """Pixel centres (imshow coordinates) of n cells of ``size`` pixels in a make_grid image."""
    return [PAD + i * (size + PAD) + (size - 1) / 2 for i in range(n)]


def _grid_figsize(ncol: int, nrows: int, size: tuple[int, int], extra=(0.0, 0.0)):
    """Figure size in inches for an ncol × nrows grid of (h, w)-pixel images, plus margins."""
    h, w = size
    width = ncol * CELL_INCHES * w / 28
    height = nrows * CELL_INCHES * h / 28
    shrink = min(1.0, MAX_WIDTH / width)
    return max(width * shrink + extra[0], 2.5), max(height * shrink + extra[1], 1.0)


def _show(ax, grid: np.ndarray) -> None:
    """Draw a grid image with the house style and no ticks or frame."""
    ax.imshow(grid, **IMAGE_STYLE)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _every(n: int) -> int:
    """Label every k-th cell so tick labels never crowd."""
    return 1 if n <= 11 else math.ceil(n / 10)


# ---------------------------------------------------------------------------------------------
# Codes and decoding.


@torch.no_grad()
def decode_images(model, z) -> torch.Tensor:
    """Codes ``(N, L)`` → images ``(N, 1, H, W)`` in [0, 1] on the CPU: sigmoid(decode(z))."""
    check_model(model)
    z = check_codes(z, model.latent_dim)
    return torch.sigmoid(model.decode(z.to(model.device))).cpu()


def as_code(model, x, name: str = "start") -> torch.Tensor:
    """One latent code ``(L,)`` on the CPU from a code (``(L,)`` or ``(1, L)``) or from one image
    ``(1, 1, 28, 28)`` (its posterior mean; the AE's code)."""
    check_model(model)
    if not isinstance(x, torch.Tensor):
        x = check_codes(x, model.latent_dim, name=name)  # lists and arrays are codes
    x = x.detach().float()
    shape = tuple(model.image_shape)
    if x.dim() == 4 or tuple(x.shape) == shape:
        x = x.reshape(-1, *shape) if x.dim() == 3 else x
        if len(x) != 1:
            raise ValueError(f"{name} must be ONE image (1, {', '.join(map(str, shape))}); got "
                             f"{len(x)} images — pick one with x[i:i+1]")
        check_images(x)
        return model.encode_means(x)[0].float()
    L = model.latent_dim
    if x.numel() != L or (x.dim() == 2 and x.shape[0] != 1) or x.dim() > 2:
        raise ValueError(f"{name} must be a code of shape ({L},) or (1, {L}) or one image "
                         f"(1, {', '.join(map(str, shape))}); got shape {tuple(x.shape)} "
                         f"(this model has latent_dim={L})")
    return check_codes(x.reshape(1, L).cpu(), L, name=name)[0].clone()


def _base_code(model, base) -> torch.Tensor:
    return torch.zeros(model.latent_dim) if base is None else as_code(model, base, "base")


def interpolation_path(codes: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[int]]:
    """Straight lines through ``codes`` ``(K, L)``, ``steps`` points per segment (both ends
    included, shared ends counted once): ``((K-1)*(steps-1)+1, L)`` codes and the row index of
    each of the K given codes."""
    steps = check_int(steps, "steps (points per segment)", minimum=2)
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a tensor (K, L); got {describe(codes)}")
    if codes.dim() != 2 or len(codes) < 2:
        raise ValueError(f"need at least 2 codes (K, L) to walk through; got {tuple(codes.shape)}")
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    parts = [codes[:1]]
    for a, b in zip(codes[:-1], codes[1:], strict=True):
        parts.append(((1 - t) * a + t * b)[1:])
    return torch.cat(parts), [k * (steps - 1) for k in range(len(codes))]


def _tensor_of(value, name: str) -> torch.Tensor:
    """``value`` as a tensor (a tensor, numpy array or nested list of numbers), else a TypeError."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, str) or not (isinstance(value, list | tuple)
                                      or hasattr(value, "__array__")):
        raise TypeError(f"{name} must be a torch.Tensor; got {describe(value)}")
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be numbers (a tensor); got {describe(value)}") from err


def _as_images(images, name: str = "images") -> torch.Tensor:
    x = _tensor_of(images, name).detach().float().cpu()
    if x.dim() == 2:
        x = x[None, None]
    elif x.dim() == 3:
        x = x.unsqueeze(1)
    try:
        check_images(x)
    except (TypeError, ValueError) as err:
        if name == "images":
            raise
        raise type(err)(f"{name}: {err}") from None
    return x


# ---------------------------------------------------------------------------------------------
# Image grids.


def show_images(images, nrow: int = 10, title: str | None = None) -> Figure:
    """Any batch of images ``(N, 1, H, W)`` (or ``(N, H, W)``) in [0, 1] as one grid."""
    x = _as_images(images)
    nrow = check_int(nrow, "nrow (images per row)")
    ncol = min(nrow, len(x))
    rows = math.ceil(len(x) / nrow)
    fig = new_figure(*_grid_figsize(ncol, rows, x.shape[2:], (0.1, 0.4 if title else 0.1)))
    ax = fig.add_subplot()
    _show(ax, _grid(x, nrow))
    if title:
        ax.set_title(title)
    return fig


def prior_samples(model, n: int = 64, seed: int = 0, nrow: int | None = None,
                  title: str | None = None) -> Figure:
    """``n`` images decoded from z ~ N(0, I) (seeded), shown as their Bernoulli means.
    ``title`` replaces the default (an autoencoder has no prior: its title says so)."""
    check_model(model)
    n = check_int(n, "n")
    seed = check_int(seed, "seed", minimum=0)
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    nrow = nrow or math.ceil(math.sqrt(n))
    if title is None:
        title = (f"{n} random codes z ~ N(0, I), decoded" if isinstance(model, AE)
                 else f"{n} samples from the prior: decode z ~ N(0, I)")
    return show_images(decode_images(model, z), nrow=nrow, title=title)


def reconstructions(model, images, n: int = 10, sample: bool = False, seed: int = 0,
                    title: str | None = None) -> Figure:
    """Inputs (top row) over their reconstructions (bottom row) for the first ``n`` images.

    ``sample=False`` decodes the mean of q(z|x) (an autoencoder's code); ``sample=True`` one
    z ~ q(z|x) (seeded). ``title`` replaces the default.
    """
    check_model(model)
    x = _as_images(images)[:check_int(n, "n")]
    seed = check_int(seed, "seed", minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = model.reconstruct(x.to(model.device), sample=sample).cpu()
    fig = new_figure(*_grid_figsize(len(x), 2, x.shape[2:], (1.2, 0.5)))
    ax = fig.add_subplot()
    _show(ax, _grid(torch.cat([x, out]), nrow=len(x)))
    ax.set_yticks(_centers(2, x.shape[2]), ["input", "output"])
    ax.tick_params(length=0)
    how = ("the code z = f(x)" if isinstance(model, AE) else
           "one z drawn from q(z|x)" if sample else "z = mean of q(z|x)")
    ax.set_title(title or f"Reconstructions ({how})")
    return fig


def latent_grid(model, n: int = 15, lim=3.0, dims=(0, 1), base=None) -> Figure:
    """Decode a regular ``n × n`` grid of two latent coordinates over [-lim, lim]², or over
    ``lim = ((lo_x, hi_x), (lo_y, hi_y))`` for any rectangle (e.g. the range of the codes).

    ``dims`` picks the two coordinates (x axis, y axis); the others stay at ``base`` (a code or
    one image; default zeros). Tick labels are the z values; the vertical one grows upward.
    The picture is one ``make_grid`` image of ``n*28 + (n+1)*PAD`` pixels a side.
    """
    check_model(model)
    L = model.latent_dim
    if L < 2:
        raise ValueError("latent_grid needs latent_dim >= 2; for one coordinate use "
                         "traversal_grid(model)")
    n = check_int(n, "n (images per side)", minimum=2)
    (x_lo, x_hi), (y_lo, y_hi) = _grid_ranges(lim)
    dx, dy = _check_dims(dims, L, want=2)
    values, y_values = torch.linspace(x_lo, x_hi, n), torch.linspace(y_lo, y_hi, n)
    z = _base_code(model, base).repeat(n * n, 1)
    rows, cols = torch.meshgrid(y_values.flip(0), values, indexing="ij")  # top row: largest z
    z[:, dx], z[:, dy] = cols.reshape(-1), rows.reshape(-1)
    images = decode_images(model, z)
    size = images.shape[2]
    fig = new_figure(*_grid_figsize(n, n, images.shape[2:], (0.9, 0.9)))
    ax = fig.add_subplot()
    _show(ax, _grid(images, nrow=n))
    centers = _centers(n, size)
    step = _every(n)
    keep = range((n // 2) % step if n % 2 else 0, n, step)  # odd n: the middle value labelled
    ax.set_xticks([centers[i] for i in keep], [fmt_value(values[i]) for i in keep])
    ax.set_yticks([centers[i] for i in keep], [fmt_value(y_values.flip(0)[i]) for i in keep])
    ax.set_xlabel(z_name(dx), fontsize=AXIS_LABEL_SIZE)
    ax.set_ylabel(z_name(dy), fontsize=AXIS_LABEL_SIZE)
    others = "" if L == 2 else (" (others at 0)" if base is None else " (others at the base code)")
    if (x_lo, x_hi) == (y_lo, y_hi):
        span = f"{z_name(dx)}, {z_name(dy)} ∈ [{fmt_value(x_lo)}, {fmt_value(x_hi)}]"
    else:
        span = (f"{z_name(dx)} ∈ [{fmt_value(x_lo)}, {fmt_value(x_hi)}], "
                f"{z_name(dy)} ∈ [{fmt_value(y_lo)}, {fmt_value(y_hi)}]")
    ax.set_title(f"Decoded grid over {span}{others}")
    return fig


def _grid_ranges(lim) -> tuple[tuple[float, float], tuple[float, float]]:
    """``lim`` as ((lo_x, hi_x), (lo_y, hi_y)): a number means [-lim, lim] on both axes."""
    if isinstance(lim, (int, float)) or (torch.is_tensor(lim) and lim.dim() == 0):
        if not float(lim) > 0:
            raise ValueError(f"lim must be positive; got {lim!r}")
        return (-float(lim), float(lim)), (-float(lim), float(lim))
    try:
        (x_lo, x_hi), (y_lo, y_hi) = [(float(a), float(b)) for a, b in lim]
    except (TypeError, ValueError) as err:
        raise ValueError("lim must be a positive number or ((lo_x, hi_x), (lo_y, hi_y)); "
                         f"got {lim!r}") from err
    if not (x_lo < x_hi and y_lo < y_hi):
        raise ValueError(f"each range in lim must have lo < hi; got {lim!r}")
    return (x_lo, x_hi), (y_lo, y_hi)


def _check_dims(dims, L: int, want: int | None = None) -> list[int]:
    dims = list(range(L)) if dims is None else [int(d) for d in dims]
    if want is not None and len(dims) != want:
        raise ValueError(f"dims must name {want} latent coordinates; got {dims}")
    if len(set(dims)) != len(dims) or not dims or not all(0 <= d < L for d in dims):
        raise ValueError(f"dims must be distinct coordinates in 0..{L - 1} (0 is z₁); got {dims}")
    return dims


def traversal_grid(model, base=None, lim: float = 3.0, steps: int = 9, dims=None,
                   title: str | None = None) -> Figure:
    """One row per latent coordinate: that coordinate runs over [-lim, lim] in ``steps`` values,
    the others stay at ``base`` (a code or one image; default zeros). ``dims`` picks the rows
    (default all). Rows are labelled z₁ … z_L, columns with the values; ``title`` replaces the
    default title (say which model it is)."""
    check_model(model)
    steps = check_int(steps, "steps", minimum=2)
    lim = check_number(lim, "lim", above=0.0)
    dims = _check_dims(dims, model.latent_dim)
    values = torch.linspace(-lim, lim, steps)
    base_code = _base_code(model, base)
    z = base_code.repeat(len(dims), steps, 1)
    for r, d in enumerate(dims):
        z[r, :, d] = values
    images = decode_images(model, z.reshape(-1, model.latent_dim))
    size = images.shape[2]
    fig = new_figure(*_grid_figsize(steps, len(dims), images.shape[2:], (0.8, 1.0)))
    ax = fig.add_subplot()
    _show(ax, _grid(images, nrow=steps))
    keep = range(0, steps, _every(steps))
    ax.set_xticks([_centers(steps, size)[i] for i in keep], [fmt_value(values[i]) for i in keep])
    ax.set_yticks(_centers(len(dims), size), [z_name(d) for d in dims],
                  fontsize=AXIS_LABEL_SIZE)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("value of the coordinate in that row")
    held = "0" if base is None else "the base code"
    ax.set_title(title or f"Traversals: one coordinate per row, the others at {held}")
    return fig


# ---------------------------------------------------------------------------------------------
# Interpolation.


def _walk(model, images, steps: int):
    check_model(model)
    x = _as_images(images)
    if len(x) < 2:
        raise ValueError(f"give at least 2 images to walk between; got {len(x)}")
    codes = model.encode_means(x).float()
    path, anchors = interpolation_path(codes, steps)
    return decode_images(model, path), anchors


def interpolation_row(model, images, steps: int = 8, names=None) -> Figure:
    """Decode a straight walk in z through the codes (posterior means) of 2+ images.

    ``steps`` images per segment, both ends included. The cells decoded from the images' own
    codes are framed and named (``names``, e.g. the digits ``[4, 7, 9]``; default x₁, x₂, …).
    """
    frames, anchors = _walk(model, images, steps)
    names = [f"x{str(k + 1).translate(_SUBSCRIPTS)}" for k in range(len(anchors))] \
        if names is None else [str(v) for v in names]
    if len(names) != len(anchors):
        raise ValueError(f"names must have one entry per image ({len(anchors)}); got {names}")
    size = frames.shape[2]
    fig = new_figure(*_grid_figsize(len(frames), 1, frames.shape[2:], (0.2, 0.9)))
    ax = fig.add_subplot()
    _show(ax, _grid(frames, nrow=len(frames)))
    centers = _centers(len(frames), size)
    for a in anchors:
        ax.add_patch(Rectangle((centers[a] - size / 2, PAD - 0.5), size, size, fill=False,
                               edgecolor=ACCENT, linewidth=2))
    ax.set_xticks([centers[a] for a in anchors], names)
    ax.tick_params(length=0)
    ax.set_title(f"Straight walk in z through the codes of {' → '.join(names)} "
                 "(framed: each image's own code)")
    return fig


def interpolation_gif(model, images, path, steps: int = 24, scale: int = GIF_SCALE,
                      ms_per_frame: int = 60, hold_ms: int = 600) -> Path:
    """Write an animated, looping GIF of the walk through the codes of 2+ images.

    ``steps`` frames per segment (both ends included); frames at the images' own codes stay up
    for ``hold_ms``. Pixels are upscaled ``scale`` times with nearest neighbour. Returns the path.
    """
    from PIL import Image

    from .files import atomic_write

    frames, anchors = _walk(model, images, steps)
    if not (isinstance(scale, int) and scale >= 1):
        raise ValueError(f"scale must be a positive integer; got {scale!r}")
    pixels = frames[:, 0].mul(255).round().to(torch.uint8).numpy()
    size = (pixels.shape[2] * scale, pixels.shape[1] * scale)
    pictures = [Image.fromarray(p, mode="L").resize(size, Image.NEAREST) for p in pixels]
    durations = [hold_ms if i in anchors else ms_per_frame for i in range(len(pictures))]
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:  # a full disk keeps any previous GIF
        pictures[0].save(fh, format="GIF", save_all=True, append_images=pictures[1:],
                         duration=durations, loop=0, optimize=False)
    return path


def gif_html(path, alt: str = "animated walk in latent space"):
    """The GIF at ``path`` as an ``IPython.display.HTML`` ``<img src="data:image/gif;...">``.

    Show it as a cell's last line: JupyterLab animates it, and HTML exporters (nbconvert,
    nbviewer, GitHub) keep it, where a plain ``Image(filename=...)`` becomes text.
    """
    import base64
    import html

    from IPython.display import HTML

    data = Path(path).read_bytes()
    if not data.startswith(b"GIF8"):
        raise ValueError(f"path must be a GIF file (as written by interpolation_gif); got "
                         f"{str(path)!r}, which starts with {data[:6]!r}")
    encoded = base64.b64encode(data).decode("ascii")
    return HTML(f'<img class="vaelab-gif" alt="{html.escape(alt)}" '
                f'src="data:image/gif;base64,{encoded}">')


# ---------------------------------------------------------------------------------------------
# Scatter of codes.


def _labels_cmap(labels: np.ndarray):
    """A discrete colormap and norm for integer labels 0..k-1 (tab10, or tab20 up to 20)."""
    if labels.min() < 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be integers 0, 1, 2, … (e.g. the digit of each image)")
    k = max(int(labels.max()) + 1, 10)
    name = next((LABEL_CMAPS[m] for m in sorted(LABEL_CMAPS) if k <= m), None)
    if name is None:
        raise ValueError(f"at most 20 label values can be coloured; got labels up to {k - 1}")
    from matplotlib import colormaps

    colors = colormaps[name].colors[:k]
    return ListedColormap(colors), BoundaryNorm(np.arange(k + 1) - 0.5, k), k


def project(codes: torch.Tensor, method: str = "auto", seed: int = 0):
    """2-D positions for codes ``(N, L)``: ``(xy (N, 2), axis names, description, projector)``.

    ``method="auto"``: the codes themselves for L = 2 (and z₁ against nothing for L = 1), PCA for
    L > 2 (fast, linear, exact about what it keeps). ``"pca"`` forces PCA, ``"umap"`` uses UMAP
    (umap-learn, ``random_state=seed``; slower, keeps neighbourhoods, distorts distances).
    ``projector`` maps new codes to the same plane (None for UMAP).
    """
    check_choice(method, "method", ("auto", "pca", "umap"))
    if not isinstance(codes, torch.Tensor) or codes.dim() != 2 or len(codes) < 2:
        raise ValueError(f"codes must be a tensor (N, L) with N ≥ 2; got {describe(codes)}")
    z = codes.detach().double().cpu().numpy()
    n, L = z.shape
    if method == "auto" and L <= 2:
        names = [z_name(i) for i in range(L)]
        return z, names, f"{L}-D codes", lambda c: np.asarray(c, dtype=float).reshape(-1, L)
    if L < 2:
        raise ValueError(f"method={method!r} needs at least 2 latent coordinates; got L={L}")
    if method == "umap":
        import warnings

        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xy = umap.UMAP(n_components=2, random_state=seed).fit_transform(z)
        return xy, ["UMAP 1", "UMAP 2"], f"UMAP of the {L}-D codes", None
    mean = z.mean(0)
    _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
    axes = vt[:2] * np.sign(vt[:2, np.argmax(np.abs(vt[:2]), axis=1)].diagonal())[:, None]
    share = s**2 / max(float((s**2).sum()), 1e-300)
    names = [f"PC {i + 1} ({100 * share[i]:.0f}% of variance)" for i in range(2)]

    def projector(c):
        return (np.asarray(c, dtype=float).reshape(-1, L) - mean) @ axes.T

    return projector(z), names, f"PCA of the {L}-D codes", projector


def draw_scatter(fig: Figure, ax, xy: np.ndarray, labels, names, label_name: str = "digit",
                 equal: bool = False, size: float = 5.0):
    """Points ``xy (N, 2)`` coloured by integer ``labels`` (or one colour if None), with a
    colorbar whose ticks are the label values; ``equal`` keeps the axes' aspect ratio 1."""
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.7, linewidths=0, rasterized=True)
    else:
        cmap, norm, k = _labels_cmap(labels)
        points = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap=cmap, norm=norm, s=size,
                            alpha=0.8, linewidths=0, rasterized=True)
        bar = fig.colorbar(points, ax=ax, ticks=range(k), pad=0.01)
        bar.set_label(label_name)
        bar.solids.set_alpha(1.0)
    font = AXIS_LABEL_SIZE if names[0].startswith("z") else None
    ax.set_xlabel(names[0], fontsize=font)
    ax.set_ylabel(names[1], fontsize=font)
    if equal:
        ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.25, linewidth=0.5)


def _subsample(n: int, max_points: int | None, seed: int) -> torch.Tensor:
    if max_points is not None:
        check_int(max_points, "max_points")
    if max_points is None or n <= max_points:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points].sort()[0]


def codes_and_labels(model, images, labels=None, max_points: int | None = 5000, seed: int = 0):
    """Encoded means ``(M, L)`` and labels ``(M,)`` (or None) of at most ``max_points`` images,
    a seeded subsample. ``images`` may also be codes ``(N, L)`` already."""
    check_model(model)
    x = _tensor_of(images, "images")
    if labels is not None:
        labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if len(labels) != len(x):
            raise ValueError(f"one label per image: got {len(x)} images, {len(labels)} labels")
    idx = _subsample(len(x), max_points, seed)
    if x.dim() == 2:
        if x.shape[1] != model.latent_dim:
            raise ValueError(f"codes must have shape (N, {model.latent_dim}) for this model "
                             f"(latent_dim={model.latent_dim}); got {tuple(x.shape)}")
        codes = x[idx].detach().float().cpu()
    else:
        x = _as_images(x[idx])
        codes = model.encode_means(x).float()
    return codes, None if labels is None else labels[idx.numpy()]


def latent_scatter(model, images, labels=None, method: str = "auto",
                   max_points: int | None = 5000, seed: int = 0,
                   label_name: str = "digit") -> Figure:
    """The encoded means of ``images`` ``(N, 1, 28, 28)``, coloured by ``labels`` ``(N,)``.

    For L = 2 the axes are z₁, z₂ (equal scale). For L > 2 the codes are projected to 2-D:
    ``method="auto"``/``"pca"`` uses PCA (fast; the axis labels give the variance kept),
    ``"umap"`` uses UMAP with ``random_state=seed``. The title says which. At most
    ``max_points`` images are drawn (a seeded subsample, the same every call).
    """
    codes, labels = codes_and_labels(model, images, labels, max_points, seed)
    L = codes.shape[1]
    xy, names, what, _ = project(codes, method, seed)
    if L == 1:
        jitter = np.random.default_rng(seed).uniform(-0.3, 0.3, len(xy))
        xy = np.stack([xy[:, 0], (0 if labels is None else labels) + jitter], 1)
        names = [z_name(0), f"{label_name} (jittered)" if labels is not None else "(jitter)"]
    fig = new_figure(6.4, 5.2)
    ax = fig.add_subplot()
    draw_scatter(fig, ax, xy, labels, names, label_name, equal=(L == 2 and method == "auto"))
    kind = "codes" if isinstance(model, AE) else "encoded means"
    where = "" if L <= 2 and method == "auto" else f" — {what}"
    ax.set_title(f"{kind.capitalize()} of {len(xy):,} images{where}")
    return fig


# ---------------------------------------------------------------------------------------------
# Training curves.

_TERM_TITLES = {
    "total": "total loss = reconstruction + β·KL",
    "reconstruction": "reconstruction −log p(x|z)",
    "kl": "KL(q(z|x) ‖ p(z))",
}


def training_curves(history, title: str | None = None, terms=None) -> Figure:
    """Train (solid) and test (dashed) loss terms per epoch from a ``History`` (or its
    ``as_dict()``): total, reconstruction and KL in three panels, in nats per image;
    ``terms`` picks panels (e.g. ``["reconstruction"]`` for an autoencoder, which has no KL).

    A train point is the mean over its epoch (the model improves during it); a test point is
    measured after the epoch, so early on test can sit below train.
    """
    train = getattr(history, "train", None)
    test = getattr(history, "test", None)
    if isinstance(history, dict):
        train, test = history.get("train"), history.get("test")
    if train is None:
        raise TypeError(f"history must be a vaelab History (from fit) or its as_dict(); "
                        f"got {type(history).__name__}")
    if len(train) == 0:
        raise ValueError("history has no epochs yet — train with fit(..., epochs=1) or more")
    terms = list(_TERM_TITLES) if terms is None else [
        check_choice(t, "terms", tuple(_TERM_TITLES)) for t in ([terms] if isinstance(terms, str)
                                                               else terms)]
    fig = new_figure(0.8 + 3.4 * len(terms), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(terms), sharex=True))
    epochs = np.arange(1, len(train) + 1)
    for ax, term in zip(axes, terms, strict=True):
        ax.plot(epochs, [row[term] for row in train], "-o", ms=3, label="train", color="C0")
        if test:
            ax.plot(np.arange(1, len(test) + 1), [row[term] for row in test], "--s", ms=3,
                    label="test", color="C1")
        ax.set_title(_TERM_TITLES[term])
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per image")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)  # in every panel: a reader need not carry the styles across
    stopped = getattr(history, "stopped", None) or (history.get("stopped")
                                                     if isinstance(history, dict) else None)
    if title or stopped:
        fig.suptitle((title or "") + (f" (stopped early: {stopped})" if stopped else ""))
    return fig


# ---------------------------------------------------------------------------------------------
# Disentanglement: mutual information between latents and known factors (vaelab.metrics).


def plot_mutual_information(result, factor_names=None, latent_names=None,
                            title: str | None = None) -> Figure:
    """A ``Figure``: the normalised mutual information I(z_j; v_k) / H(v_k) of every latent
    (rows) with every factor (columns) from a ``metrics.MIG`` (``metrics.mutual_info_gap``), the
    top latent of each factor outlined, and each factor's MIG (its top-two gap) under its name."""
    from .metrics import MIG

    if not isinstance(result, MIG):
        raise TypeError(f"result must be a vaelab.metrics.MIG (from metrics.mutual_info_gap); "
                        f"got {describe(result)}")
    norm = result.mi / result.entropy
    n_lat, n_fac = norm.shape
    factor_names = _names(factor_names, "factor_names", [f"v{k + 1}" for k in range(n_fac)])
    latent_names = _names(latent_names, "latent_names", [z_name(j) for j in range(n_lat)])
    fig = new_figure(1.0 + 0.9 * n_fac, 0.9 + 0.36 * n_lat)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for j in range(n_lat):
        for k in range(n_fac):
            ax.text(k, j, f"{norm[j, k]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[j, k] > 0.6 else "black")
    for k, j in enumerate(result.top):
        ax.add_patch(Rectangle((k - 0.5, j - 0.5), 1, 1, fill=False, lw=2, color=ACCENT))
    ax.set_xticks(range(n_fac), [f"{n}\ngap {g:.2f}" for n, g in
                                 zip(factor_names, result.per_factor, strict=True)], fontsize=9)
    ax.set_yticks(range(n_lat), latent_names, fontsize=10)
    ax.set_xlabel("factor (with its gap between the two most informative latents)")
    ax.set_ylabel("latent")
    fig.colorbar(im, ax=ax, label="I(z; v) / H(v)")
    ax.set_title(title or f"Mutual information latent × factor; MIG = {result.mig:.3f}",
                 fontsize=10)
    return fig


def _names(names, what: str, default: list[str]) -> list[str]:
    """``names`` as a list of strings with one entry per row/column, or ``default``."""
    if names is None:
        return default
    if isinstance(names, str) or len(list(names)) != len(default):
        raise ValueError(f"{what} must list {len(default)} names; got {names!r}")
    return [str(n) for n in names]


# ---------------------------------------------------------------------------------------------
# The β sweep: rate against distortion, MIG against β (tables from vaelab.sweep).


def _sweep_table(result, needs: tuple[str, ...]):
    """The results table of a ``SweepResult``, with the columns ``needs`` and at least one row."""
    table = getattr(result, "table", None)
    if not hasattr(table, "groupby"):
        raise TypeError(f"result must be a SweepResult from vaelab.sweep.beta_sweep; got "
                        f"{describe(result)}")
    missing = [c for c in needs if c not in table]
    if missing or len(table) == 0:
        raise ValueError(f"the sweep's table needs rows with columns {list(needs)}; it has "
                         f"{len(table)} rows and lacks {missing}")
    return table


def _beta_colours(betas) -> dict:
    """A colour per β, in order of β on a log scale, from dark purple through red to yellow
    (plasma, minus its palest yellows so every point shows on white): neighbouring βs differ in
    hue, not only in lightness; β = 0 sits one step below the smallest β > 0."""
    betas = sorted({float(b) for b in betas})
    logs = [math.log(b) if b > 0 else math.log(min([c for c in betas if c > 0], default=1)) - 1
            for b in betas]
    lo, hi = min(logs), max(logs)
    cmap = colormaps["plasma"]
    return {b: cmap(0.85 * (v - lo) / (hi - lo) if hi > lo else 0.4)
            for b, v in zip(betas, logs, strict=True)}


def _nice_step(span: float) -> float:
    """A round step (1, 2, 2.5 or 5 × 10^k) that cuts ``span`` into about five parts."""
    raw = span / 5
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _label_spot(c: float, r_start: float, r_end: float, xlim, ylim,
                points: np.ndarray) -> float | None:
    """The rate at which to label the line rate + distortion = ``c``: the first of a few places
    from its upper-left end that is at least 4 % of the frame inside every edge and 7 % away
    from every point (``points`` in frame fractions); failing that, the place farthest from the
    points at least 2.5 % inside the frame; None if the line has no such place."""
    width, height = xlim[1] - xlim[0], ylim[1] - ylim[0]
    fallback, farthest = None, -1.0
    for f in np.linspace(0.1, 0.9, 17):
        r = r_start + f * (r_end - r_start)
        x, y = (r - xlim[0]) / width, (c - r - ylim[0]) / height
        clear = np.hypot(*(points - [x, y]).T).min() if len(points) else 1.0
        if 0.04 <= x <= 0.96 and 0.04 <= y <= 0.96 and clear >= 0.07:
            return r
        if 0.025 <= x <= 0.975 and 0.025 <= y <= 0.975 and clear > farthest:
            fallback, farthest = r, clear
    return fallback


def _equal_elbo_lines(ax, rate: np.ndarray, distortion: np.ndarray) -> None:
    """Dashed lines rate + distortion = c for round c across the frame, each labelled with c
    (= −ELBO, as the legend entry says) on the line itself, near its upper-left end but clear
    of the frame and the points (turned along the line, on a white patch); sets the axis
    limits to the points plus a margin."""
    pad_r, pad_d = 0.1 * (np.ptp(rate) or 1.0), 0.1 * (np.ptp(distortion) or 1.0)
    xlim = (max(0.0, rate.min() - pad_r), rate.max() + pad_r)
    ylim = (max(0.0, distortion.min() - pad_d), distortion.max() + pad_d)
    step = _nice_step(max(np.ptp(rate + distortion), 1.0))
    first = math.ceil((xlim[0] + ylim[0]) / step) * step
    seen = []  # (c, the rate at each end of the line's part inside the frame)
    for c in np.arange(first, xlim[1] + ylim[1], step):
        ax.plot(xlim, [c - xlim[0], c - xlim[1]], ls="--", lw=0.8, color="grey", zorder=1)
        r_start, r_end = max(xlim[0], c - ylim[1]), min(xlim[1], c - ylim[0])
        if r_end - r_start >= 0.05 * (xlim[1] - xlim[0]):  # else only a corner: no room
            seen.append((c, r_start, r_end))
    # the numbers are −ELBO, as the legend entry below says; on the lines they read as no ticks
    width, height = xlim[1] - xlim[0], ylim[1] - ylim[0]
    points = np.stack([(rate - xlim[0]) / width, (distortion - ylim[0]) / height], 1)
    for c, r_start, r_end in seen:
        spot = _label_spot(c, r_start, r_end, xlim, ylim, points)
        if spot is None:
            continue  # no place on this line clear of the frame and the points
        ax.text(spot, c - spot, f"{c:g}", fontsize=8, color="0.25", ha="center", va="center",
                rotation=-45, transform_rotates_text=True, rotation_mode="anchor", zorder=2,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5})
    ax.plot([], [], ls="--", lw=0.8, color="grey", label="equal ELBO;\nlabels: −ELBO")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)


def plot_rate_distortion(result, title: str | None = None) -> Figure:
    """Rate (mean KL) against distortion (mean reconstruction term) of a ``SweepResult``, one
    point per model, coloured by β; dashed lines join the points of equal ELBO (rate +
    distortion = constant), each labelled with −ELBO in nats; the legend sits below the axes."""
    t = _sweep_table(result, ("beta", "rate", "distortion"))
    colours = _beta_colours(t["beta"])
    fig = new_figure(7, 5)
    ax = fig.add_subplot()
    for beta, group in t.groupby("beta"):
        ax.scatter(group["rate"], group["distortion"], color=colours[beta], s=50,
                   edgecolor="black", linewidth=0.5, label=f"{beta:g}", zorder=3)
    _equal_elbo_lines(ax, t["rate"].to_numpy(float), t["distortion"].to_numpy(float))
    ax.set_xlabel("rate: mean KL(q(z|x) ‖ p(z))  [nats per image]")
    ax.set_ylabel("distortion: mean −log p(x|z)  [nats per image]")
    ax.legend(title="β", fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncol=min(8, t["beta"].nunique() + 1))  # below the axes: no line runs through it
    name = getattr(result, "name", "sweep")
    ax.set_title(title or f"{name}: rate against distortion, one point per model", pad=16)
    ax.grid(alpha=0.2)
    return fig


def plot_mig(result, title: str | None = None) -> Figure:
    """MIG against β of a ``SweepResult``: one small point per seed and the mean ± standard
    deviation over seeds (the bar cut at 0); the β values are evenly spaced and labelled."""
    if "mig" not in getattr(getattr(result, "table", None), "columns", ()):
        _sweep_table(result, ())
        raise ValueError("this sweep has no MIG: run beta_sweep(..., factors=data.factors) on "
                         "data with known factors (vaelab.shapes)")
    t = _sweep_table(result, ("beta", "mig"))
    colours = _beta_colours(t["beta"])
    betas = sorted(t["beta"].unique())
    pos = {b: i for i, b in enumerate(betas)}
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    for beta, group in t.groupby("beta"):
        jitter = rng.uniform(-0.08, 0.08, len(group))
        ax.scatter(pos[beta] + jitter, group["mig"], s=20, color=colours[beta], alpha=0.8,
                   edgecolor="0.2", linewidths=0.5, zorder=2)  # the edge shows pale colours
    stats = t.groupby("beta")["mig"].agg(["mean", "std"]).fillna(0.0)
    ax.errorbar([pos[b] for b in stats.index], stats["mean"],
                yerr=_clipped_at_zero(stats["mean"].to_numpy(), stats["std"].to_numpy()), fmt="o-",
                color="black", capsize=4, lw=1, ms=5, label="mean ± std over seeds", zorder=3)
    ax.scatter([], [], s=20, color="0.5", edgecolor="0.2", linewidths=0.5,
               label="one seed (its colour: its β, as on the x axis)")
    ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set_xlabel("β")
    ax.set_ylabel("MIG (mean gap over the factors, 0 to 1)")
    ax.set_ylim(0, max(0.1, float(t["mig"].max()) * 1.2))
    ax.legend(fontsize=8)
    n_seeds = t.groupby("beta").size().max()
    name = getattr(result, "name", "sweep")
    ax.set_title(title or f"{name}: MIG against β ({n_seeds} seeds)")
    ax.grid(alpha=0.2)
    return fig


def _clipped_at_zero(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Error bars of ± ``std`` around ``mean`` as matplotlib's (2, n) ``yerr``, the lower arm
    cut at 0: a gap, and so the MIG, is never negative."""
    return np.stack([np.minimum(std, np.clip(mean, 0.0, None)), std])


def plot_mig_per_factor(result, title: str | None = None) -> Figure:
    """The gap of each factor (``mig_<factor>`` columns of a ``SweepResult``) against β: one
    line per factor, mean over seeds with ± one standard deviation as error bars (cut at 0,
    below which no gap lies; each line shifted a little sideways, so overlapping bars stay
    apart), the overall MIG as a thick black line; β values evenly spaced and labelled, as in
    ``plot_mig``."""
    t = _sweep_table(result, ("beta", "mig"))
    names = [f for f in getattr(result, "factor_names", ()) if f"mig_{f}" in t]
    if not names:
        raise ValueError("this sweep has no per-factor gaps (mig_<factor> columns): run "
                         "beta_sweep(..., factors=data.factors) on data with known factors")
    stats = t.groupby("beta").agg(["mean", "std"]).fillna(0.0)
    x = np.arange(len(stats))
    fig = new_figure(7, 4.2)
    ax = fig.add_subplot()
    colours = colormaps["tab10"]
    lines = [*names, None]
    for i, f in enumerate(lines):
        col = "mig" if f is None else f"mig_{f}"
        mean, std = stats[col]["mean"].to_numpy(), stats[col]["std"].to_numpy()
        style = ({"color": "black", "lw": 2.5, "label": "MIG (mean of the factors)"}
                 if f is None else {"color": colours(i), "lw": 1.2, "label": f})
        shift = 0.05 * (i - (len(lines) - 1) / 2)
        ax.errorbar(x + shift, mean, yerr=_clipped_at_zero(mean, std), fmt="o-", ms=4,
                    capsize=2, elinewidth=0.9, zorder=3, **style)
    ax.set_xticks(x, [f"{b:g}" for b in stats.index])
    ax.set_xlabel("β")
    ax.set_ylabel("gap of the factor, (I₁ − I₂) / H(v)")
    ax.set_ylim(-0.03, 1)  # a gap of 0 stays visible above the axis
    ax.legend(fontsize=8, loc="upper left")
    n_seeds = int(t.groupby("beta").size().max())
    name = getattr(result, "name", "sweep")
    ax.set_title(title or f"{name}: each factor's gap against β (mean ± std over {n_seeds} "
                 "seeds)")
    ax.grid(alpha=0.2)
    return fig


# ---------------------------------------------------------------------------------------------
# The shapes dataset: what each factor does (vaelab.shapes).


def _factor_label(name: str, value: float) -> str:
    """A factor value as a label: the shape's name, an angle in degrees, or three significant
    digits (0.625 stays 0.625, where two decimals would round it to 0.62)."""
    from .shapes import SHAPES

    if name == "shape":
        return SHAPES[int(value)]
    if name == "orientation":
        return f"{math.degrees(value):.0f}°"
    return f"{value:.3g}"


def plot_factors(grid="small", base=None, max_values: int = 10) -> Figure:
    """A ``Figure`` with one row per factor of a shapes grid (a ``ShapesGrid`` or a name in
    ``shapes.GRIDS``): that factor runs over its values (at most ``max_values``, evenly
    spread), the others stay at ``base`` (factor indices ``(5,)``; default: heart, largest
    scale, 0°, centre)."""
    from .shapes import FACTORS, as_grid

    grid = as_grid(grid)
    max_values = check_int(max_values, "max_values")
    counts = grid.counts
    if base is None:
        base = [2, counts[1] - 1, 0, counts[3] // 2, counts[4] // 2]
    base = grid.check_factors(base)
    if len(base) != 1:
        raise ValueError(f"base must be ONE row of factor indices (5,); got {len(base)} rows")
    values = grid.values()
    ncol = min(max_values, max(counts))
    fig = new_figure(1.0 * ncol + 0.9, 1.15 * len(FACTORS))
    axes = fig.subplots(len(FACTORS), ncol, squeeze=False)
    for row, name in enumerate(FACTORS):
        picks = np.unique(np.linspace(0, counts[row] - 1, min(ncol, counts[row])).round())
        factors = base.repeat(len(picks), 1)
        factors[:, row] = torch.as_tensor(picks, dtype=torch.int64)
        images = grid.render(factors)
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(picks):
                ax.set_axis_off()
                continue
            ax.imshow(images[col, 0].numpy(), **IMAGE_STYLE)
            ax.set_xlabel(_factor_label(name, values[name][int(picks[col])]), fontsize=8,
                          labelpad=2)
        axes[row, 0].set_ylabel(name, fontsize=10)
    fig.suptitle(f"One factor per row ({counts[0]} shapes, {counts[1]} scales, {counts[2]} "
                 f"orientations, {counts[3]} × {counts[4]} positions); the others fixed",
                 fontsize=10)
    return fig
