"""Property-based tests (hypothesis) of vaelab.metrics and vaelab.anchor.donutness.

For any input — random shapes and dtypes, NaN and inf, empty arrays, constant columns, things
that are not arrays at all — a function either returns a finite result in its known range or
raises a TypeError or ValueError of vaelab's own (whose message names the argument), never a
torch or numpy internal. Known answers hold for every generated case: a code equal to the
factors has MIG 1, a code holding every factor twice has MIG 0.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vaelab
from vaelab import metrics
from vaelab.anchor import donutness
from vaelab.models import VAE

# derandomize: the same examples on every run (a failure reproduces); database=None: no
# .hypothesis folder written into the repository
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VAELAB = str(Path(vaelab.__file__).parent)

torch.manual_seed(0)
MODEL = VAE(2, hidden=(8,)).eval()  # tiny and untrained: the checks, not the model, are tested


def refused_clearly(err: Exception) -> bool:
    """A TypeError/ValueError from a ``raise`` statement in vaelab's own code (not from inside
    torch, numpy or sklearn, nor a C function that vaelab called)."""
    frame = traceback.extract_tb(err.__traceback__)[-1]
    return (isinstance(err, TypeError | ValueError) and frame.filename.startswith(VAELAB)
            and frame.line.lstrip().startswith("raise") and bool(str(err)))


DTYPES = st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.bool_, np.complex64])


@st.composite
def arrays(draw, max_dims: int = 3, max_side: int = 6):
    """numpy arrays of any small shape and dtype, with NaN, inf, huge and constant values."""
    dtype = draw(DTYPES)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    elements = None
    if np.issubdtype(dtype, np.floating):
        elements = st.floats(width=32, allow_nan=True, allow_infinity=True)
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    if array.ndim == 2 and array.shape[1] and draw(st.booleans()):
        array[:, 0] = array.flat[0] if array.size else 0  # a constant column
    return array


ANYTHING = st.one_of(arrays(), st.none(), st.text(max_size=3), st.integers(),
                     st.lists(st.lists(st.floats(), max_size=3), max_size=3))


def as_input(array, draw_tensor: bool):
    return torch.from_numpy(array) if draw_tensor and array.dtype != np.bool_ else array


# ---------------------------------------------------------------------------------------------
# Codes and factors


@SETTINGS
@given(codes=ANYTHING, n_bins=st.one_of(st.integers(-1, 25), st.floats(0, 5), st.none()))
def test_discretize_gives_bins_in_range_or_a_clear_error(codes, n_bins):
    try:
        z = metrics.discretize(codes, n_bins)
    except Exception as err:  # noqa: BLE001 — the property is about which errors escape
        assert refused_clearly(err), repr(err)
        return
    shape = np.shape(codes)
    assert z.shape == shape and z.dtype == np.int64
    assert z.min() >= 0 and z.max() <= n_bins - 1
    constant = np.ptp(np.asarray(codes, dtype=np.float64), axis=0) == 0
    assert (z[:, constant] == z[:1, constant]).all()  # a constant column: one bin


@SETTINGS
@given(codes=arrays(max_dims=2), factors=arrays(max_dims=2), tensor=st.booleans())
def test_mig_is_in_zero_one_or_a_clear_error(codes, factors, tensor):
    try:
        result = metrics.mutual_info_gap(as_input(codes, tensor), as_input(factors, tensor))
    except Exception as err:  # noqa: BLE001
        assert refused_clearly(err), repr(err)
        return
    k = factors.shape[1]
    assert 0.0 <= result.mig <= 1.0 and np.isfinite(result.mig)
    assert result.per_factor.shape == (k,) and result.mi.shape == (codes.shape[1], k)
    assert (result.entropy > 0).all() and (result.mi >= 0).all()


@st.composite
def factor_tables(draw):
    """Independent integer factors (N, K): every combination of K factors with 2–4 values each
    once (as in dSprites), in a random order of rows."""
    sizes = draw(st.lists(st.integers(2, 4), min_size=1, max_size=3))
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1)
    factors = grid.reshape(-1, len(sizes))
    return factors[draw(st.permutations(range(len(factors))))]


@SETTINGS
@given(factors=factor_tables(), scale=st.floats(0.01, 100), shift=st.floats(-100, 100))
def test_mig_known_answers_hold_for_any_factors(factors, scale, shift):
    # each factor in a latent of its own (plus a silent one, so that L ≥ 2): MIG = 1
    own = np.concatenate([factors * scale + shift, np.zeros((len(factors), 1))], axis=1)
    assert metrics.mutual_info_gap(own, factors).mig == pytest.approx(1.0)
    # every factor copied into two latents: each factor's gap is 0
    twice = np.concatenate([factors, factors], axis=1).astype(float)
    np.testing.assert_allclose(metrics.mutual_info_gap(twice, factors).per_factor, 0.0,
                               atol=1e-12)
    # a constant code carries nothing
    assert metrics.mutual_info_gap(np.ones((len(factors), 2)), factors).mig == 0.0


@SETTINGS
@given(means=ANYTHING, threshold=st.one_of(st.floats(allow_nan=True), st.integers(-1, 2)))
def test_active_units_counts_within_the_latents_or_a_clear_error(means, threshold):
    try:
        au = metrics.active_units(means, threshold=threshold)
    except Exception as err:  # noqa: BLE001
        assert refused_clearly(err), repr(err)
        return
    width = np.shape(means)[1]
    assert au.mask.shape == (width,) and au.count == int(au.mask.sum())
    assert torch.isfinite(au.variance).all() and (au.variance >= 0).all()
    assert torch.equal(au.mask, au.variance > threshold)


# ---------------------------------------------------------------------------------------------
# Images through a tiny model


@st.composite
def images(draw):
    """Mostly (N, 1, 28, 28) float32 in [0, 1]; sometimes another shape, dtype or range."""
    n = draw(st.integers(0, 3))
    shape = draw(st.sampled_from([(n, 1, 28, 28)] * 4 + [(n, 28, 28), (n, 2, 28, 28),
                                                          (n, 1, 27, 28), (28,)]))
    dtype = draw(st.sampled_from([torch.float32] * 4 + [torch.float64, torch.uint8]))
    x = torch.rand(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 9))))
    x = x.to(dtype) if dtype != torch.uint8 else (x * 255).to(dtype)
    bad = draw(st.sampled_from([None] * 4 + [float("nan"), float("inf"), -0.5, 3.0]))
    if bad is not None and x.numel() and x.is_floating_point():
        x.view(-1)[0] = bad
    return draw(st.sampled_from([x, x, x, x.numpy(), x.tolist()]))


LIKELIHOOD = st.sampled_from(["bernoulli", "gaussian", "bernoulli", "poisson", 3])


@SETTINGS
@given(x=images(), likelihood=LIKELIHOOD, seed=st.integers(-1, 3))
def test_rate_distortion_is_finite_and_non_negative_or_a_clear_error(x, likelihood, seed):
    try:
        rd = metrics.rate_distortion(MODEL, x, likelihood=likelihood, seed=seed)
    except Exception as err:  # noqa: BLE001
        assert refused_clearly(err), repr(err)
        return
    assert np.isfinite([rd.rate, rd.distortion]).all()
    assert rd.rate >= 0 and rd.distortion >= 0  # a KL and a cross-entropy / squared error
    assert rd.elbo == pytest.approx(-(rd.rate + rd.distortion))


@SETTINGS
@given(x=images(), likelihood=LIKELIHOOD, samples=st.integers(-1, 3), k=st.integers(-1, 4))
def test_elbo_and_iwae_are_finite_per_image_or_a_clear_error(x, likelihood, samples, k):
    try:
        e = metrics.elbo(MODEL, x, likelihood=likelihood, samples=samples)
        iw = metrics.importance_weighted_log_likelihood(MODEL, x, k=k, likelihood=likelihood)
    except Exception as err:  # noqa: BLE001
        assert refused_clearly(err), repr(err)
        return
    assert e.shape == iw.shape == (len(x),)
    assert torch.isfinite(e).all() and torch.isfinite(iw).all()
    if likelihood == "bernoulli":
        assert (e <= 0).all() and (iw <= 1e-4).all()  # log-probabilities of a [0, 1] image


# ---------------------------------------------------------------------------------------------
# Donutness


@SETTINGS
@given(x=st.one_of(images(), arrays(max_dims=5)))
def test_donutness_lies_in_minus_one_one_or_a_clear_error(x):
    try:
        d = donutness(x)
    except Exception as err:  # noqa: BLE001
        assert refused_clearly(err), repr(err)
        return
    assert d.shape == (len(x),) and torch.isfinite(d).all()
    assert (d >= -1 - 1e-6).all() and (d <= 1 + 1e-6).all()
