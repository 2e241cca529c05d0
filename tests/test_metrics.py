"""Metrics tested on cases whose answer is known (as disentanglement_lib tests MIG)."""

import math

import numpy as np
import pytest
import torch

from vaelab import metrics, reader
from vaelab.losses import kl_divergence
from vaelab.models import AE, VAE
from vaelab.shapes import load_shapes
from vaelab.train import evaluate, fit


@pytest.fixture(scope="module")
def shapes():
    return load_shapes("tiny", verbose=False)  # 270 images, 16×16, every factor ≤ 5 values


@pytest.fixture(scope="module")
def trained(shapes):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread
    try:
        torch.manual_seed(0)
        model = VAE(latent_dim=4, hidden=(64,), image_size=16)
        fit(model, shapes, epochs=20, batch_size=64, lr=3e-3, progress=False)
    finally:
        torch.set_num_threads(threads)
    return model


# ---------------------------------------------------------------------------------------------
# MIG


def test_mig_of_the_factors_themselves_is_one(shapes):
    result = metrics.mutual_info_gap(shapes.factors.float(), shapes.factors)
    assert result.mig == pytest.approx(1.0)
    np.testing.assert_allclose(result.per_factor, 1.0)
    assert result.mi.shape == (5, 5) and result.per_factor.shape == (5,)
    np.testing.assert_array_equal(result.top, np.arange(5))
    # the entropy of a uniform factor with n values is log n
    np.testing.assert_allclose(result.entropy, np.log([3, 2, 5, 3, 3]))


def test_mig_ignores_order_shift_and_scale_of_latents(shapes):
    f = shapes.factors.float()
    codes = torch.cat([f[:, [3, 0, 4, 2, 1]] * torch.tensor([2.0, -0.5, 7.0, 1.0, 0.1]) + 3.0,
                       torch.zeros(len(f), 2)], dim=1)
    result = metrics.mutual_info_gap(codes, shapes.factors)
    assert result.mig == pytest.approx(1.0)
    np.testing.assert_array_equal(result.top, [1, 4, 3, 0, 2])


def test_mig_of_a_constant_code_is_zero(shapes):
    result = metrics.mutual_info_gap(torch.ones(len(shapes.factors), 3), shapes.factors)
    assert result.mig == 0.0
    np.testing.assert_allclose(result.mi, 0.0, atol=1e-12)


def test_mig_of_a_code_with_every_factor_twice_is_zero(shapes):
    f = shapes.factors.float()
    result = metrics.mutual_info_gap(torch.cat([f, f], dim=1), shapes.factors)
    assert result.mig == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(result.mi[:5], result.mi[5:])


def test_mig_of_a_random_code_is_near_zero():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 6, size=(10_000, 4))
    codes = rng.normal(size=(10_000, 6))
    assert metrics.mutual_info_gap(codes, factors).mig < 0.02


def test_mig_with_one_factor_shared_between_two_latents():
    # latent 0 holds factor 0 exactly, latent 1 holds half of it (its parity): gap = 1 − 1/2 · ...
    rng = np.random.default_rng(1)
    v = rng.integers(0, 4, size=(20_000, 1))
    codes = np.stack([v[:, 0], v[:, 0] // 2, rng.normal(size=len(v))], axis=1)
    result = metrics.mutual_info_gap(codes, v)
    # I(z0; v) = H(v) = log 4, I(z1; v) = log 2 (knowing v // 2 halves the options)
    assert result.per_factor[0] == pytest.approx((math.log(4) - math.log(2)) / math.log(4),
                                                 abs=0.01)


def test_mig_matches_a_hand_computed_mutual_information():
    rng = np.random.default_rng(2)
    v = rng.integers(0, 3, size=(500, 2))
    codes = np.stack([v[:, 0] + rng.integers(0, 2, 500), rng.normal(size=500)], axis=1)
    z = metrics.discretize(codes, 20)
    joint = np.zeros((3, 20))
    np.add.at(joint, (v[:, 0], z[:, 0]), 1)
    p = joint / joint.sum()
    pv, pz = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / (pv @ pz)[nz])).sum())
    result = metrics.mutual_info_gap(codes, v)
    assert result.mi[0, 0] == pytest.approx(mi)
    gap = (np.sort(result.mi[:, 0])[-1] - np.sort(result.mi[:, 0])[-2]) / result.entropy[0]
    assert result.per_factor[0] == pytest.approx(gap)


def test_discretize_uses_equal_width_bins():
    # 20 bins of width 0.05 over [0, 1]; the top edge belongs to the last bin
    z = metrics.discretize(np.array([[0.0], [0.049], [0.051], [0.52], [0.999], [1.0]]), 20)
    assert z[:, 0].tolist() == [0, 0, 1, 10, 19, 19]
    assert len(np.unique(metrics.discretize(np.full((7, 1), 3.0)))) == 1  # a constant: one bin


def test_mig_errors_say_what_to_do(shapes):
    with pytest.raises(ValueError, match="at least 2"):
        metrics.mutual_info_gap(torch.zeros(270, 1), shapes.factors)
    with pytest.raises(ValueError, match="integer indices"):
        metrics.mutual_info_gap(torch.zeros(270, 2), shapes.values)
    with pytest.raises(ValueError, match="same images"):
        metrics.mutual_info_gap(torch.zeros(10, 2), shapes.factors)
    with pytest.raises(ValueError, match="single value"):
        metrics.mutual_info_gap(torch.randn(270, 2), torch.zeros(270, 1, dtype=torch.int64))


def test_a_factor_copied_into_two_latents_has_gap_zero_and_the_others_keep_theirs(shapes):
    f = shapes.factors.float()
    codes = torch.cat([f, f[:, [2]]], dim=1)  # orientation in latents 2 and 5, the rest once
    result = metrics.mutual_info_gap(codes, shapes.factors)
    np.testing.assert_allclose(result.per_factor, [1, 1, 0, 1, 1], atol=1e-12)
    assert result.mig == pytest.approx(0.8)


def test_copying_a_trained_models_top_latent_closes_that_factors_gap(trained, shapes):
    codes = trained.encode_means(shapes.images)
    before = metrics.mutual_info_gap(codes, shapes.factors)
    k = int(np.argmax(before.per_factor))           # the factor the model captures best
    assert before.per_factor[k] > 0.05
    copied = torch.cat([codes, codes[:, [int(before.top[k])]]], dim=1)
    after = metrics.mutual_info_gap(copied, shapes.factors)
    assert after.per_factor[k] == pytest.approx(0.0, abs=1e-12)
    others = np.arange(5) != k
    assert (after.per_factor[others] <= before.per_factor[others] + 1e-12).all()


# ---------------------------------------------------------------------------------------------
# Active units, rate and distortion


def test_active_units_counts_latents_with_variance_above_threshold():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.0, 0.05, 0.2, 1.0])  # variances 0, 0.0025, 0.04, 1
    means = torch.randn(5000, 4, generator=g) * scales
    au = metrics.active_units(means)
    assert au.count == 2
    assert au.mask.tolist() == [False, False, True, True]
    torch.testing.assert_close(au.variance, scales.square(), atol=0.01, rtol=0.1)
    assert metrics.active_units(means, threshold=0.001).count == 3


def test_silencing_one_posterior_mean_removes_exactly_that_active_unit(trained, shapes):
    au = metrics.active_units(trained, shapes)       # ShapesData works as well as its images
    assert au.count >= 1 and au.mask.shape == (4,)
    j = int(au.variance.argmax())
    silenced = VAE(latent_dim=4, hidden=(64,), image_size=16)
    silenced.load_state_dict(trained.state_dict())
    with torch.no_grad():
        silenced.to_stats.weight[j] = 0.0           # mu_j no longer depends on x
    after = metrics.active_units(silenced, shapes.images)
    assert after.count == au.count - 1 and not after.mask[j]
    assert torch.equal(after.mask[torch.arange(4) != j], au.mask[torch.arange(4) != j])
    collapsed = VAE(latent_dim=3, hidden=(8,), image_size=16)
    torch.nn.init.zeros_(collapsed.to_stats.weight)
    assert metrics.active_units(collapsed, shapes.images).count == 0
    with pytest.raises(ValueError, match="pass the images"):
        metrics.active_units(trained)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.active_units(torch.zeros(1, 4))


def test_kl_per_unit_sums_to_the_rate_and_is_zero_for_a_collapsed_unit(trained, shapes):
    per_unit = metrics.kl_per_unit(trained, shapes, batch_size=100)
    assert per_unit.shape == (4,)
    assert float(per_unit.sum()) == pytest.approx(metrics.rate_distortion(trained, shapes).rate,
                                                  rel=1e-5)
    prior = z_blind()  # q(z|x) = N(0, I) for every x: every unit's KL is exactly 0
    torch.testing.assert_close(metrics.kl_per_unit(prior, shapes.images), torch.zeros(3))
    with pytest.raises(TypeError, match="need a VAE"):
        metrics.kl_per_unit(AE(latent_dim=2, hidden=(8,), image_size=16), shapes)


def test_rate_distortion_matches_evaluate(trained, shapes):
    rd = metrics.rate_distortion(trained, shapes)
    ev = evaluate(trained, shapes, beta=1.0)
    assert rd.rate == pytest.approx(ev["kl"], rel=1e-5)  # the KL is exact in both
    assert rd.distortion == pytest.approx(ev["reconstruction"], rel=0.02)  # one z each
    assert rd.elbo == pytest.approx(-(rd.rate + rd.distortion))
    assert metrics.rate_distortion(trained, shapes) == rd  # seeded


def test_model_without_variance_is_refused(shapes):
    with pytest.raises(TypeError, match="need a VAE"):
        metrics.rate_distortion(AE(latent_dim=2, hidden=(8,), image_size=16), shapes)


def test_wrong_inputs_are_named_and_say_what_to_do(trained, shapes):
    with pytest.raises(TypeError, match="vaelab model"):
        metrics.rate_distortion(torch.nn.Linear(2, 2), shapes)
    with pytest.raises(ValueError, match="divide by 255"):
        metrics.elbo(trained, shapes.images * 255)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        metrics.rate_distortion(trained, shapes, likelihood="poisson")
    with pytest.raises(ValueError, match="seed must be an integer ≥ 0"):
        metrics.elbo(trained, shapes.images, seed=-1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        metrics.mutual_info_gap(np.array([[0.0, np.nan], [1.0, 2.0]]), [[0], [1]])
    with pytest.raises(ValueError, match="at least 1 row"):
        metrics.discretize(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="codes must be an array"):
        metrics.mutual_info_gap("codes", shapes.factors)
    with pytest.raises(ValueError, match="K ≥ 1"):
        metrics.mutual_info_gap(torch.zeros(270, 2), torch.zeros(270, 0, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------
# ELBO and the importance-weighted log-likelihood


def z_blind(likelihood_logits_bias: float = 0.3, prior_posterior: bool = True) -> VAE:
    """A VAE whose decoder ignores z (so p(x|z) = p(x)) and, with ``prior_posterior``, whose
    encoder outputs q(z|x) = N(0, I) = p(z): every importance weight then equals p(x)."""
    model = VAE(latent_dim=3, hidden=(8,), image_size=16)
    last = model.decoder[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, likelihood_logits_bias)
    if prior_posterior:
        torch.nn.init.zeros_(model.to_stats.weight)
        torch.nn.init.zeros_(model.to_stats.bias)
    return model.eval()


def test_iwae_is_exact_when_every_weight_is_p_x(shapes):
    x = shapes.images[:20]
    model = z_blind()
    log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
        torch.full_like(x, 0.3), x, reduction="none").flatten(1).sum(1)
    for k in (1, 7, 50):
        torch.testing.assert_close(metrics.importance_weighted_log_likelihood(model, x, k=k),
                                   log_px)
    torch.testing.assert_close(metrics.elbo(model, x), log_px)


def test_gaussian_likelihood_is_the_normal_density(shapes):
    x = shapes.images[:20]
    model = z_blind()
    mean = torch.sigmoid(torch.tensor(0.3))
    log_px = torch.distributions.Normal(mean, math.sqrt(0.5)).log_prob(x).flatten(1).sum(1)
    got = metrics.importance_weighted_log_likelihood(model, x, k=5, likelihood="gaussian")
    torch.testing.assert_close(got, log_px)
    torch.testing.assert_close(metrics.elbo(model, x, likelihood="gaussian"), log_px)


def test_elbo_is_log_px_minus_kl_when_the_decoder_ignores_z(shapes):
    x = shapes.images[:20]
    model = z_blind(prior_posterior=False)
    log_px = metrics.elbo(z_blind(), x)
    with torch.no_grad():
        mu, logvar = model.encode(x)
    torch.testing.assert_close(metrics.elbo(model, x),
                               log_px - kl_divergence(mu, logvar))
    # the IWAE closes most of that KL gap as k grows
    gap = (log_px - metrics.importance_weighted_log_likelihood(model, x, k=500)).mean()
    assert 0 <= float(gap) < 0.5 * float(kl_divergence(mu, logvar).mean())


def test_elbo_per_image_matches_the_loss(trained, shapes):
    x = shapes.images
    e = metrics.elbo(trained, x, samples=20)
    assert e.shape == (len(x),)
    ev = evaluate(trained, x, beta=1.0)
    assert float(e.mean()) == pytest.approx(-ev["total"], rel=0.01)


def test_iwae_with_k_1_is_the_elbo_in_expectation(trained, shapes):
    x = shapes.images
    iw1 = torch.stack([metrics.importance_weighted_log_likelihood(trained, x, k=1, seed=s)
                       for s in range(10)]).mean(0)
    e = metrics.elbo(trained, x, samples=10)
    diff = iw1 - e  # per image, both are means of 10 draws around the same ELBO
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(len(x)) + 0.05


def test_iwae_grows_with_k_and_bounds_the_elbo(trained, shapes):
    x = shapes.images
    means = {k: float(metrics.importance_weighted_log_likelihood(trained, x, k=k).mean())
             for k in (1, 10, 100)}
    e = float(metrics.elbo(trained, x, samples=10).mean())
    assert means[1] < means[10] < means[100]
    assert e < means[10]
    assert means[100] < 0  # log p(x) of a probability mass (binary-ish images) stays below 0


def test_iwae_is_seeded_and_batches_any_k(trained, shapes):
    x = shapes.images[:30]
    a = metrics.importance_weighted_log_likelihood(trained, x, k=40, max_rows=100)
    b = metrics.importance_weighted_log_likelihood(trained, x, k=40, max_rows=100)
    assert a.shape == (30,) and torch.equal(a, b)
    c = metrics.importance_weighted_log_likelihood(trained, x, k=40, max_rows=10_000)
    assert abs(float((a - c).mean())) < 0.5  # other batching, other draws, same estimate


def test_iwae_errors(trained, shapes):
    with pytest.raises(ValueError, match=r"k \(importance samples .*\) must be an integer ≥ 1"):
        metrics.importance_weighted_log_likelihood(trained, shapes.images, k=0)
    with pytest.raises(ValueError, match="likelihood"):
        metrics.importance_weighted_log_likelihood(trained, shapes.images, likelihood="poisson")
    with pytest.raises(ValueError, match="shape"):
        metrics.importance_weighted_log_likelihood(trained, torch.rand(3, 1, 28, 28))



# ---------------------------------------------------------------------------------------------
# Reading images as digits; gaps between codes


@pytest.fixture(scope="module")
def digit_reader(tmp_path_factory):
    from vaelab.data import load_embedded_mnist

    train, test = load_embedded_mnist(train=True), load_embedded_mnist(train=False)
    from vaelab.reader import DigitReader

    return DigitReader.train(train.images, train.labels, test=(test.images, test.labels),
                             folder=tmp_path_factory.mktemp("readers"))


def test_digit_reader_reads_held_out_test_digits(digit_reader):
    from vaelab.data import load_embedded_mnist

    test = load_embedded_mnist(train=False)
    digits, confidence = metrics.read_as(digit_reader, test.images)
    assert digit_reader.accuracy == pytest.approx((digits == test.labels.numpy()).mean())
    assert digit_reader.accuracy > 0.85 and "test images" in digit_reader.describe()
    wrong = (digits != test.labels.numpy()) & (digits != reader.CANT_READ)
    assert wrong.mean() < 0.05  # what it does read, it mostly reads right
    assert confidence.shape == (1000,) and ((confidence > 0) & (confidence <= 1)).all()


def test_digit_reader_cannot_read_junk(digit_reader):
    junk = reader.junk_images(torch.rand(50, 1, 28, 28), 60, torch.Generator().manual_seed(9))
    digits, _ = metrics.read_as(digit_reader, junk)
    assert (digits == reader.CANT_READ).mean() > 0.9


def test_digit_reader_is_cached_and_seeded(digit_reader, tmp_path):
    x, y = torch.rand(40, 1, 28, 28), torch.arange(40) % 10
    a = reader.DigitReader.train(x, y, folder=tmp_path)
    b = reader.DigitReader.train(x, y, folder=tmp_path)
    assert len(list(tmp_path.glob("digit-reader-*.pt"))) == 1
    assert np.array_equal(a.read(x)[1], b.read(x)[1])


def test_digit_reader_refuses_labels_that_do_not_match(tmp_path):
    x = torch.rand(4, 1, 28, 28)
    with pytest.raises(ValueError, match="same images"):
        reader.DigitReader.train(x, torch.tensor([0, 1, 2]), folder=tmp_path)
    with pytest.raises(TypeError, match="integer digits"):
        reader.DigitReader.train(x, torch.rand(4), folder=tmp_path)
    with pytest.raises(ValueError, match="digits 0–9"):
        reader.DigitReader.train(x, torch.tensor([0, 1, 2, 11]), folder=tmp_path)
    with pytest.raises(TypeError, match="digit_reader"):
        metrics.read_as("knn", x)


def test_in_gap_marks_points_farther_than_the_radius_from_every_code():
    codes = np.array([[0.0, 0.0], [2.0, 0.0]])
    points = np.array([[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [5.0, 5.0], [2.0, 0.9]])
    # nearest code distances: 0.5, 1.0, √2, √34, 0.9
    assert metrics.in_gap(codes, points, radius=1.0).tolist() == [False, False, True, True, False]
    assert metrics.in_gap(codes, points, radius=0.4).tolist() == [True, True, True, True, True]


def test_in_gap_refuses_points_of_another_dimension():
    with pytest.raises(ValueError, match="columns"):
        metrics.in_gap(np.zeros((3, 2)), np.zeros((1, 3)), radius=1.0)
    with pytest.raises(ValueError, match="radius"):
        metrics.in_gap(np.zeros((3, 2)), np.zeros((1, 2)), radius=-1.0)
