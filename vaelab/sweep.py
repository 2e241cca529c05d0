"""The β sweep: train one model per (β, seed) and measure each (``viz.plot_rate_distortion``
and ``viz.plot_mig`` draw what β trades).

``beta_sweep`` trains through ``train_or_load`` (each model cached on disk) and caches its
results table too, so a second run takes seconds. The table has one row per model:

* ``beta``, ``seed``;
* ``rate`` (mean KL), ``distortion`` (mean reconstruction term), ``elbo`` = −(rate +
  distortion), nats per image on the evaluation images (``test_data`` if given, else the
  training images), one seeded z per image;
* ``active_units`` (posterior-mean variance > 0.01 on the training images);
* with ``factors``: ``mig`` and ``mig_<factor>`` (Mutual Information Gap of the encoder means of
  the training images, 20 bins per latent);
* ``train_seconds``: training time (as recorded when the model was trained).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import metrics
from .cache import fingerprint, plain, train_or_load
from .checks import images_of
from .data import cache_dir
from .train import History


@dataclass
class SweepResult:
    """``table``: one row per model (see the module docs); ``models`` / ``histories``: keyed by
    ``(beta, seed)``; ``factor_names``: the MIG factors (empty without factors)."""

    table: pd.DataFrame
    models: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    factor_names: tuple[str, ...] = ()
    name: str = "sweep"

    def model(self, beta: float, seed: int | None = None):
        """The model trained with ``beta`` (and ``seed``; default: the first seed)."""
        keys = [k for k in self.models if k[0] == beta and (seed is None or k[1] == seed)]
        if not keys:
            raise KeyError(f"no model with beta={beta}, seed={seed}; have {sorted(self.models)}")
        return self.models[keys[0]]

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation over seeds of each measure, one row per β."""
        cols = [c for c in ("rate", "distortion", "elbo", "active_units", "mig",
                            *(f"mig_{f}" for f in self.factor_names)) if c in self.table]
        return self.table.groupby("beta")[cols].agg(["mean", "std"])


def _check_betas_seeds(betas, seeds) -> tuple[list[float], list[int]]:
    betas, seeds = [float(b) for b in betas], list(seeds)
    if not betas or any(not math.isfinite(b) or b < 0 for b in betas):
        raise ValueError(f"betas must be a non-empty list of numbers >= 0; got {betas}")
    if not seeds or any(not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers; got {seeds}")
    if len(set(betas)) < len(betas) or len(set(seeds)) < len(seeds):
        raise ValueError("betas and seeds must not repeat")
    return betas, seeds


def beta_sweep(train_data, betas, seeds, make_model, *, epochs: int, test_data=None,
               factors=None, name: str = "sweep", factor_names=None, retrain: bool = False,
               folder=None, verbose: bool = True, **fit_kwargs) -> SweepResult:
    """Train ``make_model()`` once per (β, seed) with ``vaelab.train_or_load`` and measure it.

    ``train_data``: images ``(N, 1, H, W)`` or an ``ImageData`` / ``ShapesData``. ``factors``:
    integer factor indices ``(N, K)`` of the training images (``ShapesData.factors``) for MIG;
    leave it out for data without known factors (MNIST). ``factor_names`` names the K columns
    (default: ``train_data.names`` if it has them, else ``f0, f1, ...``). ``fit_kwargs`` go to
    ``fit`` (``batch_size``, ``lr``, ``likelihood``, ...). Models are cached as
    ``<name>-beta<β>-seed<s>-<hash>.pt``, the table as ``<cache>/sweeps/<name>-<hash>.csv``;
    ``retrain=True`` trains and measures everything anew. Returns a ``SweepResult``.
    """
    betas, seeds = _check_betas_seeds(betas, seeds)
    x = images_of(train_data)
    if factors is not None:
        factors = torch.as_tensor(factors)
        if factors.dim() != 2 or len(factors) != len(x):
            raise ValueError(f"factors must be (N, K) for the N = {len(x)} training images; got "
                             f"{tuple(factors.shape)}")
        if factor_names is None:
            factor_names = getattr(train_data, "names", None) or [
                f"f{k}" for k in range(factors.shape[1])]
        factor_names = tuple(factor_names)
        if len(factor_names) != factors.shape[1]:
            raise ValueError(f"factor_names has {len(factor_names)} names for "
                             f"{factors.shape[1]} factor columns")
    else:
        factor_names = ()
    likelihood = fit_kwargs.get("likelihood", "bernoulli")
    x_eval = x if test_data is None else images_of(test_data)

    settings = plain({"name": name, "betas": betas, "seeds": seeds, "epochs": epochs,
                       "model": make_model().config, "train": fingerprint(x),
                       "eval": fingerprint(x_eval), "factors": fingerprint(factors),
                       "factor_names": factor_names,
                       **{k: v for k, v in fit_kwargs.items() if k != "progress"}})
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    table_path = Path(cache_dir() / "sweeps" if folder is None else folder) / (
        f"{name}-{key[:10]}.csv")
    cached = None if retrain or not table_path.exists() else pd.read_csv(table_path)

    fit_kwargs.setdefault("progress", False)
    models, histories, rows = {}, {}, []
    trained = 0
    for beta in betas:
        for seed in seeds:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                model, history = train_or_load(
                    f"{name}-beta{beta:g}-seed{seed}", make_model, train_data, retrain=retrain,
                    folder=folder, epochs=epochs, beta=beta, seed=seed, test_data=test_data,
                    **fit_kwargs)
            if not history.loaded:
                trained += 1
                if verbose:
                    print(f"{name}: trained β={beta:g}, seed={seed} ({epochs} epochs) in "
                          f"{time.perf_counter() - start:.0f} s", flush=True)
            models[beta, seed], histories[beta, seed] = model, history
            if cached is None:
                rows.append(_measure(model, history, x, x_eval, factors, factor_names,
                                     likelihood, beta, seed))
    table = cached if cached is not None and trained == 0 else None
    if table is None:
        if cached is not None:  # some models were retrained: measure them all again
            rows = [_measure(models[b, s], histories[b, s], x, x_eval, factors, factor_names,
                             likelihood, b, s) for b in betas for s in seeds]
        table = pd.DataFrame(rows)
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(table_path, index=False)
    if verbose:
        print(f"{name}: {len(models)} models (β in {betas}, seeds {seeds}): {trained} trained, "
              f"{len(models) - trained} loaded from the cache; results table "
              f"{'loaded from' if table is cached else 'saved to'} {table_path}")
    return SweepResult(table, models, histories, factor_names, name)


def _measure(model, history: History, x, x_eval, factors, factor_names, likelihood, beta, seed):
    rd = metrics.rate_distortion(model, x_eval, likelihood=likelihood)
    means = model.encode_means(x)
    row = {"beta": beta, "seed": seed, "rate": rd.rate, "distortion": rd.distortion,
           "elbo": rd.elbo, "active_units": metrics.active_units(means).count}
    if factors is not None:
        mig = metrics.mutual_info_gap(means, factors)
        row["mig"] = mig.mig
        row.update({f"mig_{f}": float(v) for f, v in zip(factor_names, mig.per_factor,
                                                           strict=True)})
    row["train_seconds"] = float(sum(history.seconds))
    return row

