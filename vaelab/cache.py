"""The model cache: ``train_or_load`` trains a model once and reuses it from disk afterwards.

A cached model is found by ``cache_key(settings)``: a sha256 over every setting, in which each
tensor (the training images, the test images) counts by its exact bytes, shape and dtype — so
other settings or other data, even two swapped images, never reuse or overwrite a model.
``plain`` turns settings into the JSON-like values that the key is computed from and that the
checkpoint stores; ``vaelab.sweep.beta_sweep`` keys its results the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoints import CheckpointError, check_writable, load, save, scalar, tensor_sha256
from .checks import check_name, describe
from .data import cache_dir, shown_path
from .models import LatentModel
from .train import FitPlan, History, check_fit, fit_checked


def fingerprint(x: torch.Tensor | None) -> dict | None:
    """``{"shape", "dtype", "sha256"}`` of a tensor, the sha256 over its bytes: equal exactly
    when the values are (0.1 s for 60,000 MNIST images on one core). None for None."""
    if x is None:
        return None
    return {"shape": list(x.shape), "dtype": str(x.dtype), "sha256": tensor_sha256(x)}


def plain(value, name: str = "settings"):
    """``value`` as plain, JSON-like Python: dicts with string keys, lists, str, int, float,
    bool, None. numpy scalars and 0-d tensors become numbers, numpy arrays and tuples lists,
    devices, dtypes and paths strings, and other tensors their ``fingerprint``. Anything else
    (a function, a set, a model) raises a TypeError naming where it is, e.g.
    ``settings['loss']``, since its text would not identify it."""
    value = scalar(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return scalar(value.item()) if value.dim() == 0 else fingerprint(value)
    if isinstance(value, np.ndarray):
        return plain(value.tolist(), name)
    if isinstance(value, (torch.device, torch.dtype)):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(plain(k, f"a key of {name}")): plain(v, f"{name}[{k!r}]")
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{name}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{name} is {describe(value)} ({type(value).__name__}); settings must be "
                    "numbers, strings, bools, None, tensors, lists or dicts of them — pass a "
                    "name or number that identifies it instead")


def cache_key(settings: dict) -> str:
    """A 64-hex-digit sha256 of ``plain(settings)`` (keys sorted): the same exactly when every
    setting, and every tensor's bytes, are the same."""
    text = json.dumps(plain(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def train_or_load(name: str, make_model, train_data, *, retrain: bool = False, folder=None,
                  **fit_kwargs) -> tuple[LatentModel, History]:
    """A trained model from the cache, or train one with ``fit`` and cache it.

    ``make_model()`` builds a fresh model. The cache file ``<folder>/<name>-<key>.pt`` (default
    folder: ``<cache>/models``) is keyed by ``cache_key`` over the model's class and
    configuration, the training images, and every ``fit_kwargs`` setting (the test images
    included; ``progress`` excepted; ``images_seen`` counts as the epochs it gives), so other
    settings or data never overwrite or reuse it;
    ``retrain=True`` trains anew. ``name`` is a plain name, not a path (``check_name``). Every
    argument is checked once, here (``train.check_fit``), and the checked values go inward. An
    unwritable folder raises a ValueError before training; a cached file that does not load is
    reported in one line and trained anew. Ctrl-C or SIGTERM stops training as in ``fit``: the
    model and history of the finished epochs are returned, and not cached.
    """
    progress = fit_kwargs.pop("progress", True)
    entry = cache_entry(name, make_model, train_data, folder=folder, **fit_kwargs)
    if not retrain and entry.path.exists():
        cached = _load_cached(entry.path, entry.settings)
        if cached is not None:
            return cached
    check_cache_writable(entry)
    torch.manual_seed(entry.plan.seed)
    model = make_model()
    history = fit_checked(model, entry.plan, progress)
    if history.stopped is None:
        store(model, history, entry)
    return model, history


@dataclass(frozen=True)
class CacheEntry:
    """Where ``train_or_load`` keeps one model: its ``path``, the ``settings`` it is keyed by
    and the checked ``fit`` arguments (``plan``)."""

    path: Path
    settings: dict
    plan: FitPlan


def cache_entry(name: str, make_model, train_data, *, folder=None, **fit_kwargs) -> CacheEntry:
    """The cache entry of the model ``train_or_load`` would train with these arguments (all
    checked here, once)."""
    check_name(name, "name")
    model = make_model()
    plan = check_fit(model, train_data, **fit_kwargs)
    settings = _settings(model, plan, fit_kwargs)
    folder = cache_dir() / "models" if folder is None else Path(folder).expanduser()
    return CacheEntry(folder / f"{name}-{cache_key(settings)[:12]}.pt", settings, plan)


def check_cache_writable(entry: CacheEntry) -> None:
    """Before training for ``entry``: a ValueError saying what to do if its folder is not
    writable (a read-only cache still serves the models already in it)."""
    try:
        check_writable(entry.path)
    except ValueError as err:
        raise ValueError(f"{err}. The model cache needs a writable folder: set VAELAB_CACHE "
                         "or pass folder=<a writable folder>") from None


def store(model: LatentModel, history: History, entry: CacheEntry) -> None:
    """Save a model trained for ``entry`` to its cache file; a failure is said, not raised
    (the model is then trained again next time)."""
    try:
        save(model, entry.path, settings=entry.settings, history=history.as_dict())
    except (OSError, ValueError) as err:
        print(f"The trained model is not cached ({err}); it will be trained again next time.")


def _settings(model: LatentModel, plan: FitPlan, fit_kwargs: dict) -> dict:
    """What a cached model is keyed by, as ``plain`` values: model class and configuration,
    training and test images (checked, in ``plan``), and every setting of ``fit`` given in
    ``fit_kwargs`` (``progress`` taken out); ``images_seen`` counts as the epochs it gives."""
    settings = {"model": type(model).__name__, "config": model.config, "train_data": plan.x,
                **fit_kwargs}
    if plan.test_x is not None:
        settings["test_data"] = plan.test_x
    if fit_kwargs.get("images_seen") is not None and fit_kwargs.get("epochs") is None:
        del settings["images_seen"]  # key on the epochs that budget gives
        settings["epochs"] = plan.epochs
    return plain(settings)


def _load_cached(path: Path, settings: dict) -> tuple[LatentModel, History] | None:
    """The cached model and history at ``path``, or None (said in one line) if unusable."""
    try:
        cached = load(path)
        history = History.from_dict(cached.metadata["history"])
    except (CheckpointError, OSError, KeyError, TypeError) as err:
        print(f"Training anew: the cached model does not load ({err}).")
        return None
    if cached.metadata.get("settings") != settings:
        print(f"Training anew: {shown_path(path)} was trained with other settings.")
        return None
    print(f"Loaded the trained {settings['model']} from {shown_path(path)} "
          "(retrain=True trains anew).")
    history.loaded = True
    return cached, history
