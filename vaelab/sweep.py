"""The β sweep: train one model per (β, seed), measure each, and plot what β trades.

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

import matplotlib as mpl
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

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


# ---------------------------------------------------------------------------------------------
# Plots


def _beta_colours(betas) -> dict:
    """A colour per β, from dark to light in order of β on a log scale (viridis, minus its
    palest yellows so every point shows on white)."""
    betas = sorted(set(float(b) for b in betas))
    logs = [math.log(b) if b > 0 else math.log(min([c for c in betas if c > 0], default=1)) - 1
            for b in betas]
    lo, hi = min(logs), max(logs)
    cmap = mpl.colormaps["viridis"]
    return {b: cmap(0.85 * (v - lo) / (hi - lo) if hi > lo else 0.4)
            for b, v in zip(betas, logs, strict=True)}


def _nice_step(span: float) -> float:
    raw = span / 5
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def plot_rate_distortion(result: SweepResult, title: str | None = None) -> Figure:
    """Rate (mean KL) against distortion (mean reconstruction term), one point per model,
    coloured by β; dashed lines join the points of equal ELBO (rate + distortion = constant),
    labelled with −ELBO in nats on the frame."""
    t = result.table
    colours = _beta_colours(t["beta"])
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    for beta, group in t.groupby("beta"):
        ax.scatter(group["rate"], group["distortion"], color=colours[beta], s=50,
                   edgecolor="black", linewidth=0.5, label=f"{beta:g}", zorder=3)
    rx, dx = t["rate"].to_numpy(), t["distortion"].to_numpy()
    pad_r, pad_d = 0.1 * (np.ptp(rx) or 1.0), 0.1 * (np.ptp(dx) or 1.0)
    xlim = (max(0.0, rx.min() - pad_r), rx.max() + pad_r)
    ylim = (max(0.0, dx.min() - pad_d), dx.max() + pad_d)
    total = rx + dx
    step = _nice_step(max(np.ptp(total), 1.0))
    first = math.ceil((xlim[0] + ylim[0]) / step) * step
    for c in np.arange(first, xlim[1] + ylim[1], step):
        ax.plot(xlim, [c - xlim[0], c - xlim[1]], ls="--", lw=0.8, color="grey", zorder=1)
        if xlim[0] <= c - ylim[1] <= xlim[1]:  # leaves through the top: label above the frame
            ax.annotate(f"{c:g}", (c - ylim[1], ylim[1]), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=8,
                        color="grey", annotation_clip=False)
        elif ylim[0] <= c - xlim[1] <= ylim[1]:  # through the right side: label beside it
            ax.annotate(f"{c:g}", (xlim[1], c - xlim[1]), xytext=(3, 0),
                        textcoords="offset points", ha="left", va="center", fontsize=8,
                        color="grey", annotation_clip=False)
    ax.plot([], [], ls="--", lw=0.8, color="grey", label="equal ELBO;\nlabels: −ELBO")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("rate: mean KL(q(z|x) ‖ p(z))  [nats per image]")
    ax.set_ylabel("distortion: mean −log p(x|z)  [nats per image]")
    ax.legend(title="β", fontsize=8, loc="best")
    ax.set_title(title or f"{result.name}: rate against distortion, one point per model",
                 pad=16)
    ax.grid(alpha=0.2)
    return fig


def plot_mig(result: SweepResult, title: str | None = None) -> Figure:
    """MIG against β: one small point per seed and the mean ± standard deviation over seeds."""
    t = result.table
    if "mig" not in t:
        raise ValueError("this sweep has no MIG: run beta_sweep(..., factors=data.factors) on "
                         "data with known factors (vaelab.shapes)")
    colours = _beta_colours(t["beta"])
    betas = sorted(t["beta"].unique())
    pos = {b: i for i, b in enumerate(betas)}  # evenly spaced, labelled with β
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    for beta, group in t.groupby("beta"):
        jitter = rng.uniform(-0.08, 0.08, len(group))
        ax.scatter(pos[beta] + jitter, group["mig"], s=20, color=colours[beta], alpha=0.7,
                   edgecolor="none", zorder=2)
    stats = t.groupby("beta")["mig"].agg(["mean", "std"]).fillna(0.0)
    ax.errorbar([pos[b] for b in stats.index], stats["mean"], yerr=stats["std"], fmt="o-",
                color="black", capsize=4, lw=1, ms=5, label="mean ± std over seeds", zorder=3)
    ax.scatter([], [], s=20, color=colours[betas[-1]], label="one seed")
    ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set_xlabel("β")
    ax.set_ylabel("MIG (0 = entangled, 1 = disentangled)")
    ax.set_ylim(0, max(0.1, float(t["mig"].max()) * 1.2))
    ax.legend(fontsize=8)
    n_seeds = t.groupby("beta").size().max()
    ax.set_title(title or f"{result.name}: MIG against β ({n_seeds} seeds)")
    ax.grid(alpha=0.2)
    return fig
