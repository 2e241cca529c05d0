"""Checkpoints: one file with the model class, its constructor arguments, weights and metadata.

Files are written atomically (a temporary file beside the target, then a rename), so an error
or a crash never leaves half a checkpoint in place of a good one. They are read with
``torch.load(weights_only=True)``: loading a checkpoint can never run code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from .models import MODELS, LatentModel

FORMAT = "vaelab-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable, matching vaelab checkpoint."""


def _class_name(model: LatentModel) -> str:
    for key, cls in MODELS.items():
        if type(model) is cls:
            return key
    names = ", ".join(c.__name__ for c in MODELS.values())
    raise TypeError(f"save() takes a vaelab model ({names}); got {type(model).__name__}")


def save(model: LatentModel, path: str | os.PathLike, **metadata) -> Path:
    """Write ``model`` and ``metadata`` (training settings, history, ...) to ``path`` atomically.

    Metadata must be plain Python data (dicts, lists, str, numbers, bool, None) or tensors.
    """
    kind = _class_name(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": kind,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items()},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LatentModel:
    """Rebuild the saved model; its metadata is on ``model.metadata`` (a dict). Eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint at {path}. Train one with `python -m vaelab train --out {path}` "
            "or save a model with vaelab.save(model, path).")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"{path} could not be read as a checkpoint (truncated, corrupt, or not written by "
            f"vaelab.save; it may also hold objects that weights_only loading refuses): {err}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vaelab checkpoint (no '{FORMAT}' marker); "
                              "for a bare state_dict, build the model and call load_state_dict.")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload['version']}; this vaelab "
                              f"reads up to {VERSION} — upgrade vaelab.")
    if payload["model"] not in MODELS:
        raise CheckpointError(f"{path} holds an unknown model {payload['model']!r}; "
                              f"known: {sorted(MODELS)}")
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in payload["config"].items()}
    model = MODELS[payload["model"]](**config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the weights do not match {payload['model']}({config}): "
                              f"{err}") from err
    model.metadata = payload["metadata"]
    return model.to(map_location).eval()
