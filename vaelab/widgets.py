"""Interactive latent-space explorers built from ipywidgets.

The work happens in plain functions that tests call directly: ``decode_to_png`` (one code →
PNG bytes of its decoded image), ``code_from_sliders`` (slider values → a code),
``interpolate_codes`` and ``ScatterMarker.render`` (a pre-rendered scatter with a marker at z).
The explorers only wire them to sliders: moving a slider decodes ONE image and replaces the
bytes of one ``ipywidgets.Image``; nothing is re-plotted.

A displayed explorer also carries an in-page copy of itself (``text/html``, built by
``vaelab.web``): the decoder's weights (base64) and a small JavaScript module, so an exported
page (nbconvert, the site) or a reopened notebook gets sliders and a picture decoded in the
browser, with no Python behind them. Where scripts do not run (GitHub, an untrusted notebook)
it shows a static picture of the explorer with a note to run the cell.

    from vaelab.widgets import latent_explorer
    latent_explorer(model, start=x_test[:1], scatter=(x_test, y_test))   # shows the widget
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math

import ipywidgets as w
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image, ImageDraw

from . import viz, web
from .checks import check_codes, check_model, check_number

SCALE = 8            # a 28-pixel digit is shown 224 pixels wide (nearest neighbour)
MAX_SLIDERS = 10
SLIDER_WIDTH = "300px"  # sliders | image | scatter fit a 1,400-px window with the file browser
COLUMN_WIDTH = "304px"  # the sliders plus their 2-px margins: no sideways scrollbar
SLIDER_STYLE = {"description_width": "32px"}  # room for "z₁₀"; the rest goes to the track
BUTTON_LAYOUT = {"width": "90px", "min_width": "90px", "flex": "0 0 auto"}
PNG_COMPRESSION = 1  # fast zlib level: encoding must not slow a slider down
STEP = 0.05          # one arrow-key press; PageUp/PageDown move 5 steps (noUiSlider's default)
VALUES_PER_LINE = 5  # the readout breaks a long code into lines of 5 values
STATIC_NOTE = "Static picture: run this cell to make the explorer live."
WEB_NOTE = "Live in this page: the decoder runs in your browser, no Python behind it."
LIVE_NOTE = "Not connected to Python: run this cell to make the explorer live again."
# The note is shown only when no kernel is behind the widget: ipywidgets marks a view
# "jupyter-widgets-disconnected" when it is drawn from saved widget state or the kernel
# restarts, but not when the kernel is shut down; then JupyterLab's kernel-status indicator in
# the notebook's toolbar says "unknown" (shut down), "dead", "terminating" or "disconnected".
# In an explorer the note replaces ipywidgets' broken-link icon on every part.
NO_KERNEL = ",".join(f'[data-status="{s}"]'
                     for s in ("unknown", "dead", "terminating", "disconnected"))
NOTE_CSS = ("<style>.vaelab-live-note{display:none}"
            ".jupyter-widgets-disconnected .vaelab-live-note,"
            f".jp-NotebookPanel:has(.jp-Notebook-ExecutionIndicator:is({NO_KERNEL}))"
            " .vaelab-live-note{display:block}"
            ".vaelab-explorer.jupyter-widgets-disconnected::before,"
            ".vaelab-explorer .jupyter-widgets-disconnected::before{display:none}</style>")


# ---------------------------------------------------------------------------------------------
# The callbacks: plain functions.


def to_png(pixels: np.ndarray, scale: int = SCALE) -> bytes:
    """PNG bytes of a ``(H, W)`` uint8 grey image (or ``(H, W, 3)`` RGB), each pixel drawn as a
    ``scale × scale`` block."""
    picture = Image.fromarray(pixels)
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=PNG_COMPRESSION)
    return buffer.getvalue()


def image_pixels(images: torch.Tensor) -> np.ndarray:
    """One image ``(1, 1, H, W)`` (or ``(1, H, W)``/``(H, W)``) in [0, 1] → ``(H, W)`` uint8."""
    x = images.detach().cpu().reshape(images.shape[-2:])
    return x.mul(255).round().clamp(0, 255).to(torch.uint8).numpy()


@contextlib.contextmanager
def one_thread():
    """Run torch on one CPU thread inside the block. Decoding ONE image is too small to share
    out: thread hand-offs cost more than they save, and on a busy CPU they can cost tens of ms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def decode_to_png(model, z, scale: int = SCALE) -> bytes:
    """PNG bytes of ``sigmoid(model.decode(z))`` for one code ``z`` ``(L,)`` or ``(1, L)``."""
    z = viz.as_code(model, z, "z")
    with one_thread() if model.device.type == "cpu" else contextlib.nullcontext():
        images = viz.decode_images(model, z[None])
    return to_png(image_pixels(images), scale)


def code_from_sliders(values, base: torch.Tensor) -> torch.Tensor:
    """The code ``(L,)``: ``base`` with its first ``len(values)`` coordinates replaced."""
    if len(values) > len(base):
        raise ValueError(f"{len(values)} slider values for a code of length {len(base)}")
    z = base.detach().clone().float()
    z[: len(values)] = torch.tensor([float(v) for v in values], dtype=torch.float32)
    return z


def interpolate_codes(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """``(1 - t) a + t b``: the point a fraction t of the way along the line from a to b."""
    if not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"t must be in [0, 1]; got {t!r}")
    return (1 - float(t)) * a + float(t) * b


def slider_range(value: float, lim: float, step: float,
                 span: tuple[float, float] | None = None) -> tuple[float, float]:
    """``(min, max)`` of a slider that covers ``[-lim, lim]`` (or ``span``) and ``value``, with
    ``value`` on its step grid (``min + k·step``): the browser snaps a slider to that grid, so
    the explorer then starts at exactly the start code."""
    low, high = span if span is not None else (-lim, lim)
    below = max(0, math.ceil((value - low) / step - 1e-6))
    above = max(0, math.ceil((high - value) / step - 1e-6))
    return value - below * step, value + above * step


def code_ranges(codes: torch.Tensor | None, lim: float) -> list[tuple[float, float]]:
    """Per coordinate, the span a slider must cover: the prior's ``[-lim, lim]`` and every
    encoded code in ``codes`` ``(N, L)`` (None: the prior alone, for ``L`` = 0 coordinates)."""
    if codes is None:
        return []
    low = codes.min(0).values.clamp(max=-lim)
    high = codes.max(0).values.clamp(min=lim)
    return [(float(a), float(b)) for a, b in zip(low, high, strict=True)]


def describe_code(z: torch.Tensor, per_line: int | None = None) -> str:
    """``"z = (0.35, −1.20)"``, as the explorers' readout shows it; with ``per_line``, a new
    line after every ``per_line`` values."""
    values = [f"{float(v):.2f}".replace("-", "−") for v in z]
    per_line = per_line or len(values) or 1
    lines = [", ".join(values[i:i + per_line]) for i in range(0, len(values), per_line)]
    return "z = (" + ",\n     ".join(lines) + ")"


def readout_html(text: str) -> str:
    """The readout's HTML: ``text`` in a code font, its line breaks kept."""
    return f'<code style="white-space:pre">{html.escape(text)}</code>'


def img_tag(png: bytes, alt: str, css: str = "") -> str:
    """An HTML ``<img>`` carrying ``png`` inline (a ``data:`` URL), as exporters keep it."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{css}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


class ScatterMarker:
    """A latent scatter rendered ONCE; ``render(z)`` draws a marker at z on a copy (Pillow) and
    returns PNG bytes, so moving the marker costs milliseconds. The background is kept as a
    palette image (``"P"``, ≤ 256 colours): its PNG encodes about 10× faster than RGB.

    ``codes`` ``(N, L)`` and integer ``labels`` ``(N,)`` (or None). L = 2 shows z₁, z₂ as they
    are; L > 2 shows the PCA plane and places z by the same projection (exact: it is linear).
    """

    def __init__(self, codes: torch.Tensor, labels=None, *, label_name: str = "digit",
                 bounds=None, size=(3.9, 3.3)):
        L = codes.shape[1]
        if L < 2:
            raise ValueError("the scatter needs latent_dim >= 2")
        xy, names, what, self._project = viz.project(codes, "auto")
        fig = viz.new_figure(*size)
        ax = fig.add_subplot()
        viz.draw_scatter(fig, ax, xy, labels, names, label_name, equal=(L == 2), size=4.0)
        if bounds is not None and L == 2:  # the sliders' whole range stays in view
            (x0, x1), (y0, y1) = bounds[:2]
            ax.update_datalim([(x0, y0), (x1, y1)])
            ax.autoscale_view()
        title = "z (ringed) among the encoded means" if L == 2 else f"z (ringed) in the {what}"
        ax.set_title(title, fontsize=10)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())
        self.background = rgb.quantize(colors=248, method=Image.Quantize.MEDIANCUT,
                                       dither=Image.Dither.NONE)
        self._ink = {name: self.background.palette.getcolor(color, self.background)
                     for name, color in (("black", (0, 0, 0)), ("white", (255, 255, 255)),
                                         ("grey", (160, 160, 160)))}
        self._to_pixels = ax.transData.frozen()
        x0, y0, x1, y1 = ax.bbox.extents
        height = self.background.height
        self._box = (x0, height - y1, x1, height - y0)  # Pillow: y grows downward
        self._latent_dim = L

    def placement(self) -> dict:
        """What the in-page explorer needs to place its ring: the background (PNG data URL)
        and its size, the axes' box ``[left, top, right, bottom]`` and ``matrix``, the affine
        map (2 × (L + 1)) from a code to its pixel: ``pixel = matrix · [z, 1]``. The projection
        is linear (z itself, or PCA), so the map is exact."""
        L = self._latent_dim
        origin = self._project(np.zeros(L))[0]
        plane = np.stack([self._project(np.eye(L)[i])[0] - origin for i in range(L)], axis=1)
        m = self._to_pixels.get_matrix()  # display pixels (y up) from plot coordinates
        flip = np.array([[1.0, 0.0], [0.0, -1.0]])
        linear = flip @ m[:2, :2] @ plane
        shift = flip @ (m[:2, :2] @ origin + m[:2, 2]) + [0.0, self.background.height]
        buffer = io.BytesIO()
        self.background.save(buffer, format="PNG")
        src = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        return {"src": src, "width": self.background.width, "height": self.background.height,
                "box": [float(v) for v in self._box],
                "matrix": np.concatenate([linear, shift[:, None]], axis=1).tolist()}

    def position(self, z) -> tuple[float, float, bool]:
        """Pixel position of code ``z`` on the background, and whether it lies inside the axes
        (outside, the marker is pinned to the edge)."""
        x, y = self._to_pixels.transform(self._project(np.asarray(z, dtype=float))[0])
        y = self.background.height - y
        left, top, right, bottom = self._box
        inside = left <= x <= right and top <= y <= bottom
        return min(max(x, left), right), min(max(y, top), bottom), inside

    def render(self, z) -> bytes:
        """PNG bytes of the scatter with a ring at code ``z``."""
        x, y, inside = self.position(z)
        picture = self.background.copy()
        draw = ImageDraw.Draw(picture)
        r = 7
        ink = self._ink
        draw.ellipse((x - r - 2, y - r - 2, x + r + 2, y + r + 2), outline=ink["black"], width=2)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=ink["white"], width=3)
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=ink["black" if inside else "grey"])
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", compress_level=PNG_COMPRESSION)
        return buffer.getvalue()


def scatter_codes(model, scatter, max_points: int = 2000):
    """``(codes, labels)`` from ``scatter``: ``(images, labels)``, ``(codes, labels)``, an
    ``ImageData``, or images / codes alone."""
    if hasattr(scatter, "images") and hasattr(scatter, "labels"):
        data, labels = scatter.images, scatter.labels
    elif isinstance(scatter, (tuple, list)) and len(scatter) == 2:
        data, labels = scatter
    elif isinstance(scatter, torch.Tensor):
        data, labels = scatter, None
    else:
        raise TypeError("scatter must be (images, labels), (codes, labels), an ImageData from "
                        f"load_mnist, or a tensor of images or codes; got {type(scatter).__name__}")
    return viz.codes_and_labels(model, data, labels, max_points=max_points)


# ---------------------------------------------------------------------------------------------
# The widgets: they only wire the functions above.


def z_slider(i: int, value: float, span: tuple[float, float], step: float) -> w.FloatSlider:
    """The slider for coordinate ``i``: covers ``span`` and starts at ``value`` (on its grid)."""
    low, high = slider_range(value, 0.0, step, span)
    slider = w.FloatSlider(value=value, min=low, max=high, step=step,
                           description=viz.z_name(i), readout_format=".2f",
                           continuous_update=True, style=SLIDER_STYLE,
                           layout=w.Layout(width=SLIDER_WIDTH))
    slider.add_class("vaelab-z-slider")
    return slider


def slider_spec(slider: w.FloatSlider, start: float) -> dict:
    """An ipywidgets slider as the in-page explorer builds it (``<input type=range>``)."""
    return {"label": slider.description, "min": slider.min, "max": slider.max,
            "step": slider.step, "value": start}


def _live_note() -> w.HTML:
    """The note a disconnected explorer shows (hidden while Python is behind it)."""
    note = w.HTML(f"{NOTE_CSS}<i>{LIVE_NOTE}</i>")
    note.add_class("vaelab-live-note")
    return note


def _image_widget(png: bytes, shape, scale: int, css: str) -> w.Image:
    """An Image widget showing ``png``, an image of ``shape[-2:]`` pixels upscaled ``scale``×."""
    height, width = shape[-2:]
    image = w.Image(value=png, format="png", width=width * scale, height=height * scale)
    image.add_class(css)
    return image


class _Explorer:
    """Shared wiring: ``sliders``, ``image``, ``readout``, ``reset_button``, ``widget``."""

    model: torch.nn.Module
    sliders: list[w.FloatSlider]
    image: w.Image
    readout: w.HTML
    reset_button: w.Button
    widget: w.Widget
    scale: int

    def _wire(self) -> None:
        self._holding = False
        for slider in self.sliders:
            slider.observe(self.update, names="value")
        self.reset_button.on_click(self.reset)

    def code(self) -> torch.Tensor:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def _start_values(self) -> list[float]:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def update(self, change=None) -> None:
        """Decode the current code and show it (the slider callback). A slider value that is
        not a finite number is refused: the last good picture stays and the readout says so."""
        if self._holding:
            return
        bad = [s.description for s in self.sliders if not math.isfinite(s.value)]
        if bad:
            self.readout.value = readout_html(f"{', '.join(bad)} is not a finite number: "
                                              "showing the last good picture")
            return
        z = self.code()
        self.image.value = decode_to_png(self.model, z, self.scale)
        self._after_update(z)

    def _after_update(self, z: torch.Tensor) -> None:
        self.readout.value = readout_html(describe_code(z, VALUES_PER_LINE))

    def _pictures(self) -> list[tuple[bytes, str]]:  # pragma: no cover - by subclasses
        raise NotImplementedError

    def reset(self, button=None) -> None:
        """Put every slider back at its start value and redraw once."""
        self._holding = True
        try:
            for slider, value in zip(self.sliders, self._start_values(), strict=True):
                slider.value = value
        finally:
            self._holding = False
        self.update()

    def static_html(self, note: str = STATIC_NOTE) -> str:
        """HTML of the explorer as it is now: its pictures (inline PNG), each captioned with
        what it shows, the readout and ``note``. The first picture, the decoded image, has class
        ``vaelab-static-picture``."""
        pictures = [f'<figure style="margin:0">'
                    f'{img_tag(png, alt, "vaelab-static-picture" if i == 0 else "")}'
                    f'<figcaption style="font-size:12px">{html.escape(alt)}</figcaption></figure>'
                    for i, (png, alt) in enumerate(self._pictures())]
        return ('<div class="vaelab-static">'
                '<div style="display:flex;flex-wrap:wrap;align-items:center;gap:12px">'
                f'{"".join(pictures)}</div><div>{self.readout.value}</div>'
                f"<p><i>{html.escape(note)}</i></p></div>")

    def web_config(self) -> dict:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def web_html(self) -> str:
        """The in-page explorer (``vaelab.web.explorer_html``): live in any page that runs its
        script, with the decoder's weights inline; this explorer's static picture elsewhere."""
        config = {"scale": self.scale, "note": WEB_NOTE, **self.web_config()}
        return web.explorer_html(config["kind"], config, web.export_decoder(self.model),
                                 self.static_html())

    def _repr_mimebundle_(self, **kwargs):
        """The live widget, plus the in-page explorer for whatever cannot show it (exporters,
        a reopened notebook) and a one-line text/plain."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/html"] = self.web_html()
        bundle["text/plain"] = (f"{type(self).__name__} at {describe_code(self.code())}: "
                                "run this cell in Jupyter to use its sliders")
        return bundle


class LatentExplorer(_Explorer):
    """One slider per latent coordinate (at most ``max_sliders``), a Reset button, the decoded
    image and, with ``scatter``, the latent scatter with a ring where z is.

    Attributes tests and notebooks can drive: ``sliders``, ``image`` (PNG bytes in
    ``image.value``), ``scatter_image``, ``readout``, ``reset_button``, ``start`` (the start
    code), ``code()``, ``widget``.
    """

    def __init__(self, model, start=None, scatter=None, *, lim: float = 3.0, step: float = STEP,
                 scale: int = SCALE, max_sliders: int = MAX_SLIDERS, label_name: str = "digit"):
        check_model(model)
        lim = check_number(lim, "lim", above=0)
        step = check_number(step, "step", above=0)
        if not (isinstance(max_sliders, int) and max_sliders >= 1):
            raise ValueError(f"max_sliders must be a positive integer; got {max_sliders!r}")
        self.model, self.scale = model, scale
        L = model.latent_dim
        start = torch.zeros(L) if start is None else viz.as_code(model, start, "start")
        self.start = check_codes(start, L, name="start")[0]
        n = min(L, max_sliders)
        self.scatter = None
        self.scatter_image = None
        spans = [(-lim, lim)] * L
        if scatter is not None:
            codes, labels = scatter_codes(model, scatter)
            spans = code_ranges(codes, lim)  # every encoded code is within reach
            self.scatter = ScatterMarker(codes, labels, label_name=label_name, bounds=[
                slider_range(float(self.start[i]), lim, step, spans[i]) for i in range(min(L, 2))])
            self.scatter_image = w.Image(format="png")
            self.scatter_image.add_class("vaelab-scatter-image")
        self.sliders = [z_slider(i, float(self.start[i]), spans[i], step) for i in range(n)]
        self.reset_button = w.Button(description="Reset", icon="undo",
                                     tooltip="back to the start code",
                                     layout=BUTTON_LAYOUT)
        self.readout = w.HTML()
        self.readout.add_class("vaelab-readout")
        self.image = _image_widget(b"", model.image_shape, scale, "vaelab-explorer-image")
        controls = [*self.sliders]
        if L > n:
            controls.append(w.HTML(f"<i>Sliders for {viz.z_name(0)}…{viz.z_name(n - 1)} of "
                                   f"{L} coordinates; the others stay at the start code.</i>"))
        controls.append(w.HBox([self.reset_button, self.readout],
                               layout=w.Layout(align_items="center", grid_gap="8px",
                                               flex_flow="row wrap")))
        controls.append(_live_note())
        caption = w.HTML("<b>decoded image</b> sigmoid(decode(z))")
        panels = [w.VBox(controls, layout=w.Layout(width=COLUMN_WIDTH)),
                  w.VBox([caption, self.image])]
        if self.scatter_image is not None:
            panels.append(self.scatter_image)
        self.widget = w.HBox(panels, layout=w.Layout(flex_flow="row wrap", align_items="center",
                                                     grid_gap="12px"))
        self.widget.add_class("vaelab-explorer")
        self._wire()
        self.update()

    def web_config(self) -> dict:
        """Sliders, start code and scatter placement for the in-page explorer."""
        L, n = self.model.latent_dim, len(self.sliders)
        extra = (f"<i>Sliders for {viz.z_name(0)}…{viz.z_name(n - 1)} of {L} coordinates; "
                 "the others stay at the start code.</i>") if L > n else ""
        return {"kind": "latent", "start": self.start.tolist(), "extra": extra,
                "caption": "<b>decoded image</b> sigmoid(decode(z))",
                "sliders": [slider_spec(s, float(v)) for s, v in
                            zip(self.sliders, self._start_values(), strict=True)],
                "scatter": self.scatter.placement() if self.scatter is not None else None}

    def code(self) -> torch.Tensor:
        """The current code ``(L,)``: slider values, the start code for coordinates without one."""
        return code_from_sliders([s.value for s in self.sliders], self.start)

    def _start_values(self) -> list[float]:
        return [float(v) for v in self.start[: len(self.sliders)]]

    def _pictures(self) -> list[tuple[bytes, str]]:
        pictures = [(self.image.value, "decoded image")]
        if self.scatter_image is not None:
            pictures.append((self.scatter_image.value, "latent scatter, z ringed"))
        return pictures

    def _after_update(self, z: torch.Tensor) -> None:
        if self.scatter is not None:
            self.scatter_image.value = self.scatter.render(z)
        super()._after_update(z)


class InterpolationExplorer(_Explorer):
    """One slider t ∈ [0, 1] walking the straight line from x_a's code to x_b's code, with the
    two ends shown beside the decoded image. Attributes: ``slider`` (also ``sliders[0]``),
    ``image``, ``readout``, ``reset_button``, ``a``/``b`` (the end codes), ``code()``, ``widget``.
    """

    def __init__(self, model, x_a, x_b, *, step: float = 0.02, scale: int = SCALE):
        check_model(model)
        if not 0 < check_number(step, "step") <= 1:
            raise ValueError(f"step must be in (0, 1]; got {step!r}")
        self.model, self.scale = model, scale
        L = model.latent_dim
        self.a = check_codes(viz.as_code(model, x_a, "x_a"), L, name="x_a")[0]
        self.b = check_codes(viz.as_code(model, x_b, "x_b"), L, name="x_b")[0]
        self._end_pngs: list[tuple[bytes, str]] = []
        self.slider = w.FloatSlider(value=0.0, min=0.0, max=1.0, step=step, description="t",
                                    readout_format=".2f", continuous_update=True,
                                    style=SLIDER_STYLE, layout=w.Layout(width=SLIDER_WIDTH))
        self.slider.add_class("vaelab-t-slider")
        self.sliders = [self.slider]
        self.reset_button = w.Button(description="Reset", icon="undo", tooltip="back to t = 0",
                                     layout=BUTTON_LAYOUT)
        self.readout = w.HTML()
        self.readout.add_class("vaelab-readout")
        self.image = _image_widget(b"", model.image_shape, scale, "vaelab-explorer-image")
        ends = [self._end(x, code, name) for x, code, name in
                ((x_a, self.a, "x_a (t = 0)"), (x_b, self.b, "x_b (t = 1)"))]
        middle = w.VBox([w.HTML("<b>decoded image</b> at t"), self.image])
        self.widget = w.VBox([
            w.HBox([self.slider, self.reset_button, self.readout],
                   layout=w.Layout(align_items="center", flex_flow="row wrap")),
            w.HBox([ends[0], middle, ends[1]], layout=w.Layout(align_items="flex-end",
                                                               grid_gap="12px")),
            _live_note(),
        ])
        self.widget.add_class("vaelab-explorer")
        self._wire()
        self.update()

    def _end(self, x, code: torch.Tensor, name: str) -> w.VBox:
        x = torch.as_tensor(x)
        if x.numel() == code.numel():  # a code: show what it decodes to
            pixels = image_pixels(viz.decode_images(self.model, code[None]))
        else:
            pixels = image_pixels(x)
        small = max(1, self.scale // 2)
        png = to_png(pixels, small)
        self._end_pngs.append((png, name))
        return w.VBox([w.HTML(name), _image_widget(png, pixels.shape, small, "vaelab-end-image")])

    def web_config(self) -> dict:
        """The t slider, both end codes and end pictures for the in-page explorer."""
        ends = [{"src": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
                 "name": name} for png, name in self._end_pngs]
        return {"kind": "interpolation", "start": self.a.tolist(), "a": self.a.tolist(),
                "b": self.b.tolist(), "ends": ends, "caption": "<b>decoded image</b> at t",
                "sliders": [slider_spec(self.slider, 0.0)]}

    def code(self) -> torch.Tensor:
        """The code ``(1 - t) a + t b`` at the slider's t."""
        return interpolate_codes(self.a, self.b, self.slider.value)

    def _start_values(self) -> list[float]:
        return [0.0]

    def _after_update(self, z: torch.Tensor) -> None:
        text = f"t = {self.slider.value:.2f}: {describe_code(z, VALUES_PER_LINE)}"
        self.readout.value = readout_html(text)

    def _pictures(self) -> list[tuple[bytes, str]]:
        (a, name_a), (b, name_b) = self._end_pngs
        return [(self.image.value, "decoded image at t"), (a, name_a), (b, name_b)]


def latent_explorer(model, start=None, scatter=None, **options) -> LatentExplorer:
    """Sliders for the latent coordinates of ``model`` and the image they decode to.

    ``start``: one image ``(1, 1, 28, 28)`` (its posterior mean is the start code) or a code
    ``(L,)``; default zeros. ``scatter``: ``(images, labels)`` or ``(codes, labels)`` to show
    where z sits among encoded data (L = 2 as is; L > 2 in the PCA plane). Options: ``lim``
    (slider range, default 3), ``step``, ``scale`` (pixels per image pixel), ``max_sliders``.
    Display the returned object (last line of a cell) to show it.
    """
    return LatentExplorer(model, start, scatter, **options)


def interpolation_explorer(model, x_a, x_b, **options) -> InterpolationExplorer:
    """A slider t ∈ [0, 1] that walks from the code of ``x_a`` to the code of ``x_b`` (each one
    image ``(1, 1, 28, 28)`` — its posterior mean — or a code ``(L,)``)."""
    return InterpolationExplorer(model, x_a, x_b, **options)
