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

Rate, distortion and active units are those of ``vaelab.metrics`` (its "Definitions used in
every notebook"). A training budget is ``epochs=`` or ``images_seen=`` (whole epochs from
``vaelab.train.epochs_for``); the epochs used are part of every cache key.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import batched, metrics
from .cache import cache_entry, cache_key, check_cache_writable, store, train_or_load
from .checks import (
    check_choice,
    check_int,
    check_model,
    check_number,
    describe,
    images_of,
)
from .data import cache_dir, shown_path
from .losses import LIKELIHOODS
from .train import History, epochs_for


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
    lists = []
    for what, value in (("betas", betas), ("seeds", seeds)):
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            raise TypeError(f"{what} must be a list, e.g. [0.5, 1, 4] for betas and [0, 1] for "
                            f"seeds; got {value!r}")
        lists.append(list(value))
        if not lists[-1]:
            raise ValueError(f"{what} must be a non-empty list; got {value!r}")
    betas, seeds = lists
    betas = [check_number(b, "each of betas", minimum=0.0) for b in betas]
    seeds = [check_int(s, "each of seeds", minimum=0) for s in seeds]
    if len(set(betas)) < len(betas) or len(set(seeds)) < len(seeds):
        raise ValueError(f"betas and seeds must not repeat; got betas {betas}, seeds {seeds}")
    return betas, seeds


def _budget(epochs, images_seen, n_images: int) -> int:
    """Epochs per model from exactly one of ``epochs`` and ``images_seen``."""
    if (epochs is None) == (images_seen is None):
        raise TypeError("give the training budget as exactly one of epochs=... or "
                        f"images_seen=...; got epochs={epochs!r}, images_seen={images_seen!r}")
    if epochs is not None:
        return check_int(epochs, "epochs")
    return epochs_for(images_seen, n_images)


def _check_factors(factors, factor_names, train_data, n_images: int):
    """``(factors (N, K) int64 or None, factor names)``, checked against the N training images."""
    if factors is None:
        return None, ()
    try:
        factors = torch.as_tensor(factors)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"factors must be integer indices (N, K); got {describe(factors)}") from err
    if factors.dim() != 2 or len(factors) != n_images or factors.is_floating_point():
        raise ValueError(f"factors must be integer indices (N, K) for the N = {n_images} "
                         f"training images; got {factors.dtype} {tuple(factors.shape)} — pass "
                         "data.factors")
    if factor_names is None:
        factor_names = getattr(train_data, "names", None) or [
            f"f{k}" for k in range(factors.shape[1])]
    factor_names = tuple(str(f) for f in factor_names)
    if len(factor_names) != factors.shape[1]:
        raise ValueError(f"factor_names has {len(factor_names)} names for "
                         f"{factors.shape[1]} factor columns")
    return factors, factor_names


def _images(data, name: str, model) -> torch.Tensor:
    """The images of ``data`` (a tensor, ``ImageData`` or ``ShapesData``), checked for ``model``."""
    return model.check_images(images_of(data, name), name=name)


def _check_name(name) -> str:
    if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
        raise ValueError(f"name must be a non-empty string without slashes (it starts every "
                         f"cache file's name); got {name!r}")
    return name


def beta_sweep(train_data, betas, seeds, make_model, *, epochs: int | None = None,
               images_seen: int | None = None, test_data=None, factors=None,
               name: str = "sweep", factor_names=None, retrain: bool = False, folder=None,
               verbose: bool = True, **fit_kwargs) -> SweepResult:
    """Train ``make_model()`` once per (β, seed) with ``vaelab.train_or_load`` and measure it.

    ``train_data``: images ``(N, 1, H, W)`` float32 in [0, 1] or an ``ImageData`` /
    ``ShapesData``. The budget is ``epochs`` or ``images_seen`` (exactly one; epochs =
    ``train.epochs_for(images_seen, N)``). ``factors``: integer factor indices ``(N, K)`` of
    the training images (``ShapesData.factors``) for MIG; leave it out for data without known
    factors (MNIST). ``factor_names`` names the K columns (default: ``train_data.names`` if it
    has them, else ``f0, f1, ...``). ``fit_kwargs`` go to ``fit`` (``batch_size``, ``lr``,
    ``likelihood``, ...). Models are cached as ``<name>-beta<β>-seed<s>-<key>.pt``, the table
    as ``<cache>/sweeps/<name>-<key>.csv`` (``cache.cache_key`` over every setting and the
    data); ``retrain=True`` trains and measures everything anew. Returns a ``SweepResult``.
    """
    betas, seeds = _check_betas_seeds(betas, seeds)
    if isinstance(make_model, torch.nn.Module) or not callable(make_model):
        raise TypeError(f"make_model must be a function that builds a fresh model, e.g. "
                        f"lambda: VAE(latent_dim=10); got {type(make_model).__name__}")
    name = _check_name(name)
    clash = sorted(set(fit_kwargs) & {"beta", "seed", "epochs", "retrain", "folder"})
    if clash:
        raise TypeError(f"beta_sweep sets {clash} itself (β and seed from betas and seeds); "
                        "leave them out of the keyword arguments")
    model = make_model()
    check_model(model)
    x = _images(train_data, "train_data", model)
    x_eval = x if test_data is None else _images(test_data, "test_data", model)
    epochs = _budget(epochs, images_seen, len(x))
    factors, factor_names = _check_factors(factors, factor_names, train_data, len(x))
    check_choice(fit_kwargs.get("likelihood", "bernoulli"), "likelihood", LIKELIHOODS)
    settings = {"name": name, "betas": betas, "seeds": seeds, "epochs": epochs,
                "model": type(model).__name__, "config": model.config, "train": x,
                "eval": x_eval, "factors": factors, "factor_names": factor_names,
                **{k: v for k, v in fit_kwargs.items() if k not in ("progress", "test_data")}}
    folder = None if folder is None else Path(folder).expanduser()
    table_path = (cache_dir() / "sweeps" if folder is None else folder) / (
        f"{name}-{cache_key(settings)[:12]}.csv")
    fit_kwargs = {"progress": False, **fit_kwargs, "epochs": epochs}
    if test_data is not None:  # as a direct train_or_load call passes it, so models are shared
        fit_kwargs["test_data"] = test_data
    models, histories, trained = _train_all(name, make_model, train_data, betas, seeds,
                                            retrain, folder, verbose, fit_kwargs)
    table, loaded = _results_table(table_path, retrain or trained > 0, lambda: [
        _measure(models[b, s], histories[b, s], x, x_eval, factors, factor_names,
                 fit_kwargs.get("likelihood", "bernoulli"), b, s) for b in betas for s in seeds])
    if verbose:
        budget = "" if images_seen is None else (
            f" (derived from images_seen={images_seen:,} on {len(x):,} training images)")
        print(f"{name}: {len(models)} models (β in {betas}, seeds {seeds}), {epochs} epochs each"
              f"{budget}: {trained} trained, {len(models) - trained} loaded from the cache; "
              f"results table {'loaded from' if loaded else 'saved to'} {shown_path(table_path)}")
    return SweepResult(table, models, histories, factor_names, name)


def _train_all(name, make_model, train_data, betas, seeds, retrain, folder, verbose,
               fit_kwargs) -> tuple[dict, dict, int]:
    """Every (β, seed) model through ``train_many``: ``(models, histories, number trained)``."""
    keys = [(beta, seed) for beta in betas for seed in seeds]
    runs = [{"name": _model_name(name, beta, seed), "beta": beta, "seed": seed}
            for beta, seed in keys]
    trained = train_many(runs, make_model, train_data, retrain=retrain, folder=folder,
                         verbose=verbose, label=name, **fit_kwargs)
    models = {key: model for key, (model, _) in zip(keys, trained, strict=True)}
    histories = {key: history for key, (_, history) in zip(keys, trained, strict=True)}
    return models, histories, sum(not h.loaded for h in histories.values())


def _model_name(name: str, beta: float, seed: int) -> str:
    return f"{name}-beta{beta:g}-seed{seed}"


# what may differ between the runs of train_many
PER_RUN = ("beta", "seed", "anchor_rate", "kl_warmup_epochs", "free_bits")


def train_many(runs: list[dict], make_model, train_data, *, retrain: bool = False,
               folder=None, verbose: bool = True, label: str = "models",
               **fit_kwargs) -> list[tuple]:
    """``train_or_load`` for several runs of one model and one set of ``fit`` settings:
    ``[(model, history)]`` in the order of ``runs``.

    Each run is a dict with the cache ``name`` and any of ``beta``, ``seed``, ``anchor_rate``,
    ``kl_warmup_epochs`` and ``free_bits`` (what may differ between runs); ``fit_kwargs`` are the
    settings they share (one of these may be shared instead, not both).
    A model is cached exactly as ``train_or_load(name, make_model, train_data, beta=...,
    seed=..., **fit_kwargs)`` caches it, so the two find each other's models. The runs not
    cached yet (all of them with ``retrain``) are trained together in one batched pass
    (``vaelab.batched.fit_many``: the same arithmetic as one ``fit`` each; about 1.4× faster
    for the course's two sweeps in ``benchmarks/bench_series.py``) where ``batched.supports``
    the model and settings and at least two are missing; otherwise one ``fit`` after another.
    ``History.loaded`` tells a cached model from a trained one.
    """
    if not isinstance(runs, (list, tuple)) or not runs or not all(
            isinstance(r, dict) and "name" in r for r in runs):
        raise TypeError("runs must be a non-empty list of dicts, each with a cache 'name' (and "
                        "any of " + ", ".join(map(repr, PER_RUN)) + "); got " + describe(runs))
    odd = sorted({k for r in runs for k in r} - {"name", *PER_RUN})
    clash = sorted(set(fit_kwargs) & ({"name"} | {k for r in runs for k in r}))
    if odd or clash:
        what = f"runs hold {odd}" if odd else f"{clash} set both for every run and per run"
        raise TypeError(f"train_many: only {', '.join(PER_RUN)} may differ between runs; {what} "
                        "— pass shared settings as keyword arguments, and per-run ones in runs")
    together = _train_together(runs, make_model, train_data, retrain, folder, verbose, label,
                               fit_kwargs)
    out = []
    for i, run in enumerate(runs):
        settings = {k: v for k, v in run.items() if k != "name"}
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # silence the "Loaded ..." line
            model, history = train_or_load(run["name"], make_model, train_data,
                                           retrain=retrain and i not in together, folder=folder,
                                           **settings, **fit_kwargs)
        if i in together:
            history.loaded = False
        elif not history.loaded and verbose:
            shown = ", ".join(f"{'β' if k == 'beta' else k}={v:g}" for k, v in settings.items())
            print(f"{label}: trained {shown or run['name']} ({len(history)} epochs) in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        out.append((model, history))
    return out


def _train_together(runs, make_model, train_data, retrain, folder, verbose, label,
                    fit_kwargs) -> set:
    """Train the runs that are not cached yet (all of them with ``retrain``) in one batched
    pass and cache each as ``train_or_load`` would. Only where ``batched.supports`` the model
    and settings, and at least two runs are missing. Returns the indices of those runs."""
    settings = {k: v for k, v in fit_kwargs.items() if k != "progress"}
    if not batched.supports(make_model(), settings):
        return set()
    entries = [cache_entry(r["name"], make_model, train_data, folder=folder, **settings,
                           **{k: v for k, v in r.items() if k != "name"}) for r in runs]
    missing = [i for i, entry in enumerate(entries) if retrain or not entry.path.exists()]
    missing = [i for i in missing  # one run listed twice is trained once
               if all(entries[j].path != entries[i].path for j in missing if j < i)]
    if len(missing) < 2:
        return set()
    check_cache_writable(entries[missing[0]])
    plans, start, models = [entries[i].plan for i in missing], time.perf_counter(), []
    for plan in plans:
        torch.manual_seed(plan.seed)  # each model's initial weights, as train_or_load makes them
        models.append(make_model())
    first = plans[0]
    histories = batched.fit_many(
        models, first.x, [p.beta for p in plans], [p.seed for p in plans], epochs=first.epochs,
        batch_size=first.batch_size, lr=first.lr, likelihood=first.likelihood,
        anchor_rates=[p.anchor_rate for p in plans],
        kl_warmup_epochs=[p.kl_warmup_epochs for p in plans],
        free_bits=[p.free_bits for p in plans], test_data=first.test_x,
        progress=verbose and fit_kwargs.get("progress", True), label=label)
    for i, model, history in zip(missing, models, histories, strict=True):
        store(model, history, entries[i])
    if verbose:
        print(f"{label}: trained {len(missing)} models together in one batched pass "
              f"(vaelab.batched) in {time.perf_counter() - start:.0f} s", flush=True)
    return set(missing)


def _results_table(path: Path, stale: bool, measure) -> tuple[pd.DataFrame, bool]:
    """``(table, loaded)``: the cached table at ``path`` unless ``stale`` or unreadable, else
    ``pd.DataFrame(measure())`` saved there."""
    if not stale and path.exists():
        try:
            return pd.read_csv(path), True
        except (OSError, ValueError):  # unreadable or empty: measure again
            pass
    table = pd.DataFrame(measure())
    path.parent.mkdir(parents=True, exist_ok=True)
    from .files import atomic_write  # a full disk keeps the previous table

    with atomic_write(path, "w") as fh:
        table.to_csv(fh, index=False)
    return table, False


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
