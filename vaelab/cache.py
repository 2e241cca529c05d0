"""The model cache: ``train_or_load`` trains a model once and reuses it from disk afterwards."""

from __future__ import annotations

import hashlib
import json
import os

import torch

from .checks import images_of
from .data import cache_dir, shown_path
from .models import LatentModel
from .train import History, fit


def train_or_load(name: str, make_model, train_data, *, retrain: bool = False, folder=None,
                  **fit_kwargs) -> tuple[LatentModel, History]:
    """A trained model from the cache, or train one with ``fit`` and cache it.

    ``make_model()`` builds a fresh model. The cache file ``<folder>/<name>-<hash>.pt`` (default
    folder: ``<cache>/models``) is keyed by the model settings, a fingerprint of the training
    images and ``fit_kwargs``, so other settings or data never overwrite or reuse it;
    ``retrain=True`` trains anew.
    """
    from .checkpoints import CheckpointError, load, save

    model = make_model()
    settings = {"model": type(model).__name__, "config": model.config,
                "data": fingerprint(images_of(train_data)),
                **{k: v for k, v in fit_kwargs.items() if k not in ("test_data", "progress")}}
    settings = plain(settings)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    folder = cache_dir() / "models" if folder is None else folder
    path = os.path.join(folder, f"{name}-{key[:10]}.pt")
    if not retrain and os.path.exists(path):
        try:
            cached = load(path)
        except CheckpointError:
            cached = None
        if cached is not None and cached.metadata.get("settings") == settings:
            print(f"Loaded the trained {settings['model']} from {shown_path(path)} "
                  "(retrain=True trains anew).")
            history = History.from_dict(cached.metadata["history"])
            history.loaded = True
            return cached, history
    torch.manual_seed(fit_kwargs.get("seed", 0))
    model = make_model()
    history = fit(model, train_data, **fit_kwargs)
    if history.stopped is None:
        save(model, path, settings=settings, history=history.as_dict())
    return model, history


def fingerprint(x: torch.Tensor | None) -> list | None:
    """A cheap summary of a tensor for cache keys: its shape and position-weighted sums over
    rows and columns (so other, reordered or mirrored images give another key), rounded."""
    if x is None:
        return None
    rows = x.detach().reshape(len(x), -1).cpu()
    per_row = rows.sum(1, dtype=torch.float64)
    per_col = rows.sum(0, dtype=torch.float64)

    def weights(n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float64).remainder_(1009).div_(1009)

    sums = (per_row.sum(), per_row @ weights(len(per_row)), per_col @ weights(len(per_col)))
    return [list(x.shape), *(round(float(v), 4) for v in sums)]


def plain(value):
    """Settings as plain Python values, so they compare equal after a checkpoint round trip."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, torch.device):
        return str(value)
    return value
