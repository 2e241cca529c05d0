"""Checks on what users pass in: every public entry point validates its arguments here.

Each rule is written once, and its message names the argument, says what was given and what
to do — so a wrong call meets ``ValueError: images must be in [0, 1]; got max 255 — divide by
255`` rather than a torch internal or a NaN three epochs later. Errors are plain ``TypeError``
(wrong kind of thing) and ``ValueError`` (right kind, wrong value).
"""

from __future__ import annotations

import math
import numbers
import os

import torch


def describe(value) -> str:
    """A short description of ``value`` for an error message: its type, and shape for arrays."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    text = repr(value)
    return f"{text[:60]}…" if len(text) > 60 else text


def check_int(value, name: str, *, minimum: int = 1) -> int:
    """``value`` as a Python int ≥ ``minimum`` (numpy integers accepted; bools and floats not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            hint = f" — pass {int(value)}"
        else:
            hint = ""
        raise TypeError(f"{name} must be an integer ≥ {minimum}; got {describe(value)}{hint}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}; got {int(value)}")
    return int(value)


def check_number(value, name: str, *, minimum: float | None = None,
                 above: float | None = None) -> float:
    """``value`` as a finite Python float (numpy scalars accepted; strings and bools not).

    ``minimum`` allows equality, ``above`` does not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = " — pass a number, e.g. 1.0, not a string" if isinstance(value, str) else ""
        raise TypeError(f"{name} must be a number; got {describe(value)}{hint}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum:g}; got {value:g}")
    if above is not None and value <= above:
        raise ValueError(f"{name} must be > {above:g}; got {value:g}")
    return value


def check_choice(value, name: str, choices) -> str:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


class VaelabModel:
    """The mark of a vaelab model: ``models.LatentModel`` derives from it, so ``check_model``
    knows a model without importing ``models`` (the layers point one way: checks ← models)."""


def check_model(model) -> None:
    """A TypeError unless ``model`` is a vaelab model (``AE``, ``VAE``, ``ConvVAE``)."""
    if not isinstance(model, VaelabModel):
        raise TypeError(f"model must be a vaelab model (AE, VAE, ConvVAE); got "
                        f"{type(model).__name__} — build one with vaelab.VAE(...) or load one "
                        "with vaelab.load(path)")


def check_images(x, *, channels: int = 1, name: str = "images",
                 shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """``x`` if it is a float32 tensor ``(N, channels, H, W)`` with N ≥ 1 and values in [0, 1].

    ``shape`` (e.g. ``(1, 28, 28)``) also fixes the size of one image. Otherwise a TypeError or
    ValueError that says what to do.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {describe(x)} — convert with "
                        "torch.as_tensor(...)")
    want = shape or (channels, "H", "W")
    if x.dim() != 4 or x.shape[1] != want[0] or (shape and tuple(x.shape[1:]) != tuple(shape)):
        hint = (" — add the channel axis with x.unsqueeze(1)"
                if x.dim() == 3 and (shape is None or tuple(x.shape[1:]) == tuple(shape[1:]))
                else "")
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, want))}); "
                         f"got {tuple(x.shape)}{hint}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one image")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"{name} must be float32 grey levels in [0, 1]; got {x.dtype}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be float32 in [0, 1]; got {x.dtype} — for 0–255 "
                         "pixels use x.float() / 255")
    if x.dtype != torch.float32:
        raise ValueError(f"{name} must be float32, as the model's weights are; got {x.dtype} "
                         "— use x.float()")
    lo, hi = float(x.min()), float(x.max())  # NaN anywhere makes min or max NaN
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} contain NaN or infinite values; clean or drop those images")
    if lo < 0.0 or hi > 1.0:
        hint = " — divide by 255" if 1.0 < hi <= 255.0 and lo >= 0.0 else ""
        raise ValueError(f"{name} must be in [0, 1]; got min {lo:g}, max {hi:g}{hint}")
    return x


def check_codes(z, latent_dim: int, *, name: str = "codes") -> torch.Tensor:
    """Latent codes as a float32 tensor ``(N, latent_dim)``; ``(latent_dim,)`` becomes one row.

    Accepts tensors, numpy arrays and lists of numbers; refuses NaN/inf and wrong shapes.
    """
    if isinstance(z, str) or not isinstance(z, torch.Tensor | list | tuple) and not hasattr(
            z, "__array__"):
        raise TypeError(f"{name} must be a tensor of shape (N, {latent_dim}); got {describe(z)}")
    try:
        z = torch.as_tensor(z)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be numbers of shape (N, {latent_dim}); got "
                        f"{describe(z)}") from err
    if z.dtype == torch.bool or z.is_complex():
        raise TypeError(f"{name} must be real numbers; got {z.dtype}")
    z = z.to(torch.float32)
    if z.dim() == 1:
        z = z.unsqueeze(0)
    if z.dim() != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"this model has latent_dim={latent_dim}; got {name} of shape "
                         f"{tuple(z.shape)} — pass (N, {latent_dim})")
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} contain NaN or infinite values; every coordinate must be a "
                         "finite number")
    return z


def images_of(data, name: str = "data") -> torch.Tensor:
    """The images of ``data``: a tensor itself, or the first field of an ``ImageData`` /
    ``ShapesData`` / ``(images, labels)`` pair; a TypeError naming ``name`` otherwise."""
    if isinstance(data, torch.Tensor):
        return data
    try:
        return data[0]
    except (TypeError, IndexError, KeyError) as err:
        raise TypeError(f"{name} must be images (N, 1, H, W), an ImageData or an (images, "
                        f"labels) pair; got {describe(data)}") from err


def check_tensor(value, name: str, *, dim: int | None = None, min_dim: int = 0) -> torch.Tensor:
    """``value`` if it is a floating-point ``torch.Tensor`` with ``dim`` axes (or at least
    ``min_dim``); shape checks only, no pass over the data, so cheap enough for a training loop."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {describe(value)} — convert with "
                        "torch.as_tensor(...)")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got {value.dtype} — use "
                        f"{name}.float()")
    if (dim is not None and value.dim() != dim) or value.dim() < min_dim:
        want = f"{dim}" if dim is not None else f"at least {min_dim}"
        raise ValueError(f"{name} must have {want} axes; got shape {tuple(value.shape)}")
    return value


def check_sizes(value, name: str) -> tuple[int, ...]:
    """``value`` as a non-empty tuple of integers ≥ 1 (layer widths such as ``hidden=(400,)``)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        raise TypeError(f"{name} must be a tuple of layer sizes; got {value!r} — pass ({value},)")
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"{name} must be a tuple of layer sizes such as (400,); got "
                        f"{describe(value)}")
    if len(value) == 0:
        raise ValueError(f"{name} must list at least one layer size, e.g. (400,); got ()")
    return tuple(check_int(v, f"{name}[{i}]") for i, v in enumerate(value))


def check_device(value, name: str = "device") -> torch.device:
    """``value`` (``"cpu"``, ``"cuda"``, ``torch.device``, ...) as a ``torch.device`` this
    machine has."""
    if not isinstance(value, str | torch.device):
        raise TypeError(f"{name} must be a string such as 'cpu' or a torch.device; got "
                        f"{describe(value)}")
    try:
        device = torch.device(value)
    except RuntimeError as err:
        raise ValueError(f"{name} {value!r} is not a device torch knows; use 'cpu', 'cuda' or "
                         "'mps'") from err
    mps = getattr(torch.backends, "mps", None)
    present = {"cpu": True, "cuda": torch.cuda.is_available(),
               "mps": mps is not None and mps.is_available()}
    if not present.get(device.type, False):
        raise ValueError(f"{name} {value!r} is not available on this machine; use 'cpu' or "
                         "leave device=None for the best one available")
    return device


def are_images(x, shape: tuple[int, ...]) -> bool:
    """True when ``check_images(x, shape=shape)`` would pass, tested in one cheap look at the data
    (its min and max: NaN fails both comparisons, ±inf one), so a model can check every batch of
    a training loop; call ``check_images`` for the error message when this is False."""
    if not (isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.dim() == 4
            and tuple(x.shape[1:]) == tuple(shape) and len(x) > 0):
        return False
    lo, hi = torch.stack([x.min(), x.max()]).tolist()
    return 0.0 <= lo and hi <= 1.0


FLAG_WORDS = {"": False, "0": False, "false": False, "no": False, "off": False,
              "1": True, "true": True, "yes": True, "on": True}


def env_flag(name: str) -> bool:
    """The environment variable ``name`` as on/off: unset, ``""``, ``0``, ``false``, ``no``,
    ``off`` are off; ``1``, ``true``, ``yes``, ``on`` are on (any case); anything else is a
    ValueError saying so."""
    text = os.environ.get(name, "").strip().lower()
    if text not in FLAG_WORDS:
        raise ValueError(f"{name} must be 1/true/yes/on or 0/false/no/off (or empty); got "
                         f"{os.environ[name]!r} — set it to 1 or unset it")
    return FLAG_WORDS[text]


def check_name(name, what: str = "name") -> str:
    """``name`` if it is a plain file name (no folders): a non-empty string without ``/``,
    ``\\``, NUL, and not ``.`` or ``..``. Names are names, not paths."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string such as 'vae_L2'; got {describe(name)}")
    if name in ("", ".", "..") or any(c in name for c in ("/", "\\", "\0", os.sep)):
        raise ValueError(f"{what} must be a plain name such as 'vae_L2', without folders; got "
                         f"{name!r} — choose the folder with folder=...")
    return name
