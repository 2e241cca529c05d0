"""The β sweep: one cached model per (β, seed), a cached table, and its two plots."""

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from vaelab import metrics, train_or_load, viz
from vaelab.models import VAE
from vaelab.shapes import load_shapes
from vaelab.sweep import SweepResult, beta_sweep


@pytest.fixture(scope="module")
def shapes():
    return load_shapes("tiny", verbose=False)


def make():
    return VAE(latent_dim=3, hidden=(16,), image_size=16)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("sweep")


@pytest.fixture(scope="module")
def result(shapes, folder):
    return beta_sweep(shapes, [0.5, 4], [0, 1], make, epochs=2, factors=shapes.factors,
                      name="t", folder=folder, batch_size=64, verbose=False)


def test_table_has_one_row_per_model(result):
    assert isinstance(result, SweepResult)
    t = result.table
    assert isinstance(t, pd.DataFrame) and len(t) == 4
    assert sorted(zip(t["beta"], t["seed"], strict=True)) == [(0.5, 0), (0.5, 1), (4, 0), (4, 1)]
    for col in ("rate", "distortion", "elbo", "active_units", "mig", "mig_shape", "mig_scale",
                "mig_orientation", "mig_x", "mig_y", "train_seconds"):
        assert col in t, col
    pd.testing.assert_series_equal(t["elbo"], -(t["rate"] + t["distortion"]), check_names=False)
    assert result.factor_names == ("shape", "scale", "orientation", "x", "y")


def test_table_values_are_the_metrics_of_the_models(result, shapes):
    row = result.table.iloc[0]
    model = result.models[row["beta"], row["seed"]]
    rd = metrics.rate_distortion(model, shapes)
    assert row["rate"] == pytest.approx(rd.rate) and row["distortion"] == pytest.approx(
        rd.distortion)
    codes = model.encode_means(shapes.images)
    assert row["mig"] == pytest.approx(metrics.mutual_info_gap(codes, shapes.factors).mig)
    assert row["active_units"] == metrics.active_units(codes).count
    assert result.model(4, 1) is result.models[4.0, 1]


def test_models_differ_by_beta_and_seed(result):
    w = {k: next(m.parameters()).detach().clone() for k, m in result.models.items()}
    assert not torch.equal(w[0.5, 0], w[0.5, 1]) and not torch.equal(w[0.5, 0], w[4.0, 0])
    assert len(result.histories[4.0, 0]) == 2


def test_second_run_loads_models_and_table(result, shapes, folder, capsys):
    again = beta_sweep(shapes, [0.5, 4], [0, 1], make, epochs=2, factors=shapes.factors,
                       name="t", folder=folder, batch_size=64)
    said = capsys.readouterr().out
    assert "0 trained, 4 loaded" in said and "table loaded" in said
    pd.testing.assert_frame_equal(again.table, result.table)
    for key, model in result.models.items():
        torch.testing.assert_close(again.models[key].state_dict(), model.state_dict())
    assert len(list(folder.glob("t-beta*-seed*-*.pt"))) == 4


def test_other_settings_are_not_mixed_up(result, shapes, folder):
    other = beta_sweep(shapes, [4], [0], make, epochs=1, factors=shapes.factors, name="t",
                       folder=folder, batch_size=64, verbose=False)
    assert len(other.histories[4.0, 0]) == 1
    assert not torch.equal(next(other.models[4.0, 0].parameters()),
                           next(result.models[4.0, 0].parameters()))


def test_without_factors_and_with_test_data(shapes, tmp_path):
    train, test = shapes.images[::2], shapes.images[1::2]
    r = beta_sweep(train, [1], [0], make, epochs=1, test_data=test, folder=tmp_path,
                   verbose=False)
    assert "mig" not in r.table and r.factor_names == ()
    rd = metrics.rate_distortion(r.models[1.0, 0], test)
    assert r.table["distortion"].iloc[0] == pytest.approx(rd.distortion)
    assert isinstance(viz.plot_rate_distortion(r), Figure)
    with pytest.raises(ValueError, match="factors"):
        viz.plot_mig(r)


def test_summary_has_mean_and_std_per_beta(result):
    s = result.summary()
    assert list(s.index) == [0.5, 4.0]
    assert ("mig", "mean") in s.columns and ("rate", "std") in s.columns


def test_images_seen_gives_whole_epochs_and_shares_the_cache_with_those_epochs(shapes, tmp_path,
                                                                              capsys):
    # 270 training images: 400 images seen round up to 2 epochs
    r = beta_sweep(shapes, [1], [0], make, images_seen=400, folder=tmp_path, batch_size=64)
    said = capsys.readouterr().out
    assert len(r.histories[1.0, 0]) == 2
    assert "2 epochs each (derived from images_seen=400 on 270 training images)" in said
    again = beta_sweep(shapes, [1], [0], make, epochs=2, folder=tmp_path, batch_size=64)
    said = capsys.readouterr().out
    assert "0 trained, 1 loaded" in said and "table loaded" in said
    pd.testing.assert_frame_equal(again.table, r.table)


def test_two_swapped_training_images_are_other_data(shapes, tmp_path):
    first = beta_sweep(shapes.images, [1], [0], make, epochs=1, folder=tmp_path, verbose=False)
    swapped = shapes.images.clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    second = beta_sweep(swapped, [1], [0], make, epochs=1, folder=tmp_path, verbose=False)
    assert not first.histories[1.0, 0].loaded and not second.histories[1.0, 0].loaded
    assert len(list(tmp_path.glob("sweep-*.csv"))) == 2


def test_a_model_from_train_or_load_with_the_same_settings_is_reused(shapes, tmp_path):
    # notebook 04 trains "vae-L10-beta1-seed0" itself and lets the sweep pick it up
    test = shapes.images[:50]
    _, first = train_or_load("t-beta2-seed0", make, shapes, folder=tmp_path, epochs=1, beta=2.0,
                             seed=0, test_data=test, progress=False)
    r = beta_sweep(shapes, [2], [0], make, epochs=1, test_data=test, name="t", folder=tmp_path,
                   verbose=False)
    assert not first.loaded and r.histories[2.0, 0].loaded


def test_budget_is_exactly_one_of_epochs_and_images_seen(shapes, tmp_path):
    for budget in ({}, {"epochs": 1, "images_seen": 270}):
        with pytest.raises(TypeError, match="exactly one of epochs=... or images_seen="):
            beta_sweep(shapes, [1], [0], make, folder=tmp_path, **budget)
    with pytest.raises(ValueError, match="images_seen must be an integer ≥ 1"):
        beta_sweep(shapes, [1], [0], make, images_seen=0, folder=tmp_path)


def test_clear_errors(shapes, tmp_path):
    with pytest.raises(ValueError, match="factors must be"):
        beta_sweep(shapes, [1], [0], make, epochs=1, factors=shapes.factors[:10],
                   folder=tmp_path)
    with pytest.raises(ValueError, match="must not repeat"):
        beta_sweep(shapes, [1, 1], [0], make, epochs=1, folder=tmp_path)
    with pytest.raises(ValueError, match="seeds"):
        beta_sweep(shapes, [1], [], make, epochs=1, folder=tmp_path)
    with pytest.raises(ValueError, match="betas"):
        beta_sweep(shapes, [-1], [0], make, epochs=1, folder=tmp_path)
    with pytest.raises(TypeError, match="sets \\['beta'\\] itself"):
        beta_sweep(shapes, [1], [0], make, epochs=1, folder=tmp_path, beta=2.0)
    with pytest.raises(ValueError, match="without slashes"):
        beta_sweep(shapes, [1], [0], make, epochs=1, folder=tmp_path, name="a/b")
    with pytest.raises(ValueError, match=r"train_data must have shape \(N, 1, 16, 16\)"):
        beta_sweep(torch.rand(4, 1, 28, 28), [1], [0], make, epochs=1, folder=tmp_path)
    with pytest.raises(TypeError, match="make_model must be a function"):
        beta_sweep(shapes, [1], [0], make(), epochs=1, folder=tmp_path)
    with pytest.raises(ValueError, match="integer indices"):
        beta_sweep(shapes, [1], [0], make, epochs=1, factors=shapes.values, folder=tmp_path)
    with pytest.raises(TypeError, match="integer indices"):
        beta_sweep(shapes, [1], [0], make, epochs=1, factors=[["a"]], folder=tmp_path)


# --- the batched pass (vaelab.batched) ------------------------------------------------------


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def twins(seeds):
    """Models built as train_or_load builds them (``make`` after ``torch.manual_seed``), and an
    identical copy of each for one ``fit``."""
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(make())
    singles = [VAE(**m.config) for m in models]
    for single, model in zip(singles, models, strict=True):
        single.load_state_dict(model.state_dict())
    return models, singles


@pytest.mark.parametrize("test_data, anchor, likelihood", [
    (False, False, "bernoulli"), (True, False, "bernoulli"),
    (True, True, "gaussian")])  # notebook 06's anchor sweep: Gaussian likelihood, anchor loss
def test_fit_many_computes_what_one_fit_each_computes(shapes, test_data, anchor, likelihood):
    from vaelab import batched, fit

    x = shapes.images[:300]
    betas, seeds = [0.5, 4.0, 1.0], [0, 1, 2]
    rates = [2.0, 0.0, 3.5] if anchor else [0.0] * 3  # the anchor loss, one rate per model
    models, singles = twins(seeds)
    kw = {"test_data": x[:64]} if test_data else {}
    histories = batched.fit_many(models, x, betas, seeds, epochs=2, batch_size=64,
                                 anchor_rates=rates if anchor else None, likelihood=likelihood,
                                 progress=False,
                                 test_data=x[:64] if test_data else None)
    for single, model, beta, seed, rate, history in zip(singles, models, betas, seeds, rates,
                                                        histories, strict=True):
        expected = fit(single, x, epochs=2, batch_size=64, beta=beta, seed=seed,
                       anchor_rate=rate, likelihood=likelihood, progress=False, **kw)
        assert torch.allclose(weights(model), weights(single), atol=1e-4, rtol=1e-3)
        for got, want in zip(history.train, expected.train, strict=True):
            assert got == pytest.approx(want, rel=1e-4)
        for got, want in zip(history.test, expected.test, strict=True):
            assert got == pytest.approx(want, rel=1e-3)  # float rounding, grown over 2 epochs


def test_sweep_trains_missing_models_together_and_caches_them_for_train_or_load(
        shapes, tmp_path, capsys):
    result = beta_sweep(shapes, [1, 2], [0, 1], make, epochs=1, name="b", folder=tmp_path,
                        batch_size=64)
    out = capsys.readouterr().out
    assert "trained 4 models together in one batched pass" in out and "4 trained" in out
    model, history = train_or_load("b-beta2-seed1", make, shapes, epochs=1, beta=2.0, seed=1,
                                   batch_size=64, progress=False, folder=tmp_path)
    assert history.loaded and torch.equal(weights(model), weights(result.model(2, 1)))


def test_train_many_trains_the_missing_runs_together_and_shares_train_or_loads_cache(
        shapes, tmp_path, capsys):
    from vaelab.sweep import train_many

    common = dict(epochs=1, batch_size=64, likelihood="gaussian", folder=tmp_path,
                  progress=False)
    first, _ = train_or_load("a", make, shapes, anchor_rate=2.0, seed=0, **common)
    runs = [dict(name="a", anchor_rate=a, seed=s) for a in (2.0, 3.0) for s in (0, 1)]
    trained = train_many(runs, make, shapes, label="anchors", **common)
    out = capsys.readouterr().out
    assert "anchors: trained 3 models together in one batched pass" in out
    assert [h.loaded for _, h in trained] == [True, False, False, False]
    assert torch.equal(weights(trained[0][0]), weights(first))
    again, history = train_or_load("a", make, shapes, anchor_rate=3.0, seed=1, **common)
    assert history.loaded and torch.equal(weights(again), weights(trained[3][0]))
    assert history.test == trained[3][1].test  # the anchored model's own test loss, stored
    assert all(h.loaded for _, h in train_many(runs, make, shapes, **common))


def test_train_many_says_what_may_differ_between_runs(shapes, tmp_path):
    from vaelab.sweep import train_many

    with pytest.raises(TypeError, match="runs must be a non-empty list of dicts"):
        train_many([], make, shapes, epochs=1, folder=tmp_path)
    with pytest.raises(TypeError, match=r"only beta, seed, anchor_rate, kl_warmup_epochs, "
                       r"free_bits may differ.*\['lr'\]"):
        train_many([dict(name="a", lr=0.1)], make, shapes, epochs=1, folder=tmp_path)
    with pytest.raises(TypeError, match=r"\['seed'\] set both for every run and per run"):
        train_many([dict(name="a", seed=1)], make, shapes, epochs=1, seed=3, folder=tmp_path)


def test_a_sweep_the_batched_pass_cannot_train_goes_one_model_at_a_time(shapes, tmp_path, capsys,
                                                                       monkeypatch):
    from vaelab import batched

    monkeypatch.setattr(batched, "supports", lambda model, settings: False)  # e.g. a GPU
    beta_sweep(shapes, [1, 2], [0], make, epochs=1, name="w", folder=tmp_path, batch_size=64,
               kl_warmup_epochs=1)
    out = capsys.readouterr().out
    assert "batched pass" not in out and out.count("trained β=") == 2


def test_fit_many_names_the_model_whose_loss_is_not_finite(shapes):
    from vaelab import batched
    from vaelab.train import NonFiniteLossError

    models = [make(), make()]
    with pytest.raises(NonFiniteLossError,
                       match=r"model [01] \(β=1, seed=[45]\) reached a loss of"):
        batched.fit_many(models, shapes.images[:128], [1.0, 1.0], [4, 5], epochs=1,
                         batch_size=64, lr=1e9, progress=False)


def test_fit_many_trains_kl_warmup_and_free_bits_as_fit_does(shapes):
    """Notebook 03's remedies, per model: KL warm-up over W epochs and free bits λ (a model
    with neither beside them), each as one ``fit``."""
    from vaelab import batched, fit

    x = shapes.images[:300]
    betas, seeds, warmups, floors = [8.0, 8.0, 1.0], [0, 1, 2], [2, 0, 0], [0.0, 0.5, 0.0]
    models, singles = twins(seeds)
    histories = batched.fit_many(models, x, betas, seeds, epochs=3, batch_size=64,
                                 kl_warmup_epochs=warmups, free_bits=floors, progress=False)
    for single, model, beta, seed, warmup, floor, history in zip(
            singles, models, betas, seeds, warmups, floors, histories, strict=True):
        expected = fit(single, x, epochs=3, batch_size=64, beta=beta, seed=seed,
                       kl_warmup_epochs=warmup, free_bits=floor, progress=False)
        assert torch.allclose(weights(model), weights(single), atol=1e-4, rtol=1e-3)
        for got, want in zip(history.train, expected.train, strict=True):
            assert got == pytest.approx(want, rel=1e-4)


def test_train_many_takes_warmup_and_free_bits_per_run_and_shares_the_cache(shapes, tmp_path):
    from vaelab import train_or_load
    from vaelab.sweep import train_many

    x = shapes.images[:256]
    runs = [{"name": "warm", "beta": 4.0, "kl_warmup_epochs": 2},
            {"name": "floor", "beta": 4.0, "free_bits": 0.25}]
    trained = train_many(runs, make, x, folder=tmp_path, epochs=2, batch_size=64,
                         verbose=False)
    assert [h.loaded for _, h in trained] == [False, False]
    model, history = train_or_load("floor", make, x, folder=tmp_path, epochs=2, batch_size=64,
                                   beta=4.0, free_bits=0.25)
    assert history.loaded and torch.equal(weights(model), weights(trained[1][0]))
