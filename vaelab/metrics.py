"""Metrics: how much a representation disentangles, how many latents it uses, what it costs.

* ``mutual_info_gap`` — the Mutual Information Gap (Chen et al. 2018) of codes against known
  factors; ``discretize`` — the binning it uses;
* ``active_units`` — how many latents the model uses; ``kl_per_unit`` — the rate of each latent;
* ``rate_distortion`` — a model's mean rate and mean distortion;
* ``elbo`` and ``importance_weighted_log_likelihood`` — per-image bounds on log p(x) (Burda et
  al. 2015);
* ``digit_reader`` and ``read_as`` — which digit an image (a reconstruction, a decoded grid
  point, a sample) is read as by a small CNN, or "can't read" (-1); ``in_gap`` — which points
  lie in the gaps between codes.

All values are in nats (natural logarithms), per image.

Definitions used in every notebook
----------------------------------
Each term below has this one definition; every notebook computes it with the function named.

* **rate**: the mean over images of KL(q(z|x) ‖ p(z)), the KL term of the loss, in closed form
  (``rate_distortion(...).rate``; per latent: ``kl_per_unit``).
* **distortion**: the mean over images of the reconstruction term −log p(x|z), with one seeded
  z ~ q(z|x) per image (``rate_distortion(...).distortion``); for the Gaussian likelihood the
  squared error that the loss uses.
* **ELBO**: −(rate + distortion) on average; per image: ``elbo``.
* **active unit**: latent j is active when Var_x[ E_q(z|x)[z_j] ] > 0.01, the variance over the
  data of its posterior mean (Burda et al. 2015, "Importance Weighted Autoencoders"); an
  inactive unit has collapsed to the prior (``active_units``).
* **in a gap**: a point z lies in a gap of a set of codes when it is farther than a stated
  radius r from every one of them (``in_gap``); the share in gaps depends on r.
* **MIG**: the mean over factors of the gap between the two latents with the most mutual
  information about the factor, divided by the factor's entropy (``mutual_info_gap``).

Inputs are checked by ``vaelab.checks``: a wrong type or value raises a TypeError or ValueError
that names the argument, never a torch or numpy internal.
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import numpy as np
import torch
from sklearn.metrics import mutual_info_score

from .checks import (
    check_choice,
    check_codes,
    check_int,
    check_model,
    check_number,
    describe,
    images_of,
)
from .losses import LIKELIHOODS, kl_divergence, reconstruction_per_image
from .models import reparameterize

LOG_2PI = math.log(2 * math.pi)
ACTIVE_THRESHOLD = 0.01  # Burda et al. 2015: a unit is active when Var_x(E_q[z_j]) > 0.01


# ---------------------------------------------------------------------------------------------
# Checked inputs: codes, factors and images as this module uses them


def _shape(a, name: str) -> tuple[int, ...]:
    """The shape of an array-like ``a``, or a TypeError/ValueError naming ``name``."""
    if isinstance(a, str) or not (isinstance(a, torch.Tensor | list | tuple)
                                  or hasattr(a, "__array__")):
        raise TypeError(f"{name} must be an array (N, columns) of numbers; got {describe(a)}")
    if hasattr(a, "shape"):
        return tuple(a.shape)
    try:
        return np.shape(a)
    except ValueError as err:
        raise ValueError(f"{name} must be a rectangular array (N, columns); its rows differ "
                         "in length") from err


def _codes(codes, name: str = "codes", min_rows: int = 1, min_cols: int = 0) -> np.ndarray:
    """``codes`` ``(N, L)`` as a float64 numpy array, checked by ``checks.check_codes``
    (finite real numbers) and for at least ``min_rows`` rows and ``min_cols`` columns."""
    shape = _shape(codes, name)
    if len(shape) != 2:
        raise ValueError(f"{name} must be a 2-D array (N, columns); got shape {shape}")
    if shape[0] < min_rows or shape[1] < min_cols:
        raise ValueError(f"{name} must have at least {min_rows} row(s) and {min_cols} "
                         f"column(s); got shape {shape}")
    return check_codes(codes, shape[1], name=name).double().numpy()


def _factors(factors, n: int) -> np.ndarray:
    """Factor indices ``(n, K)`` as an integer numpy array, K ≥ 1."""
    shape = _shape(factors, "factors")
    a = factors.detach().cpu().numpy() if isinstance(factors, torch.Tensor) else np.asarray(
        factors)
    if len(shape) != 2 or shape[1] < 1:
        raise ValueError(f"factors must be a 2-D array (N, K) with K ≥ 1; got shape {shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"factors must be integer indices (the discrete factor values); got "
                         f"{a.dtype} — pass data.factors, not data.values")
    if len(a) != n:
        raise ValueError(f"codes and factors must describe the same images; got {n} codes "
                         f"and {len(a)} factor rows")
    return a


def _images(model, data) -> torch.Tensor:
    """The images of ``data`` (a tensor, ``ImageData`` or ``ShapesData``) checked for ``model``:
    float32 ``(N, *model.image_shape)`` in [0, 1]."""
    check_model(model)
    return model.check_images(images_of(data))


# ---------------------------------------------------------------------------------------------
# Mutual Information Gap


class MIG(NamedTuple):
    """``mig``: the mean over factors of ``per_factor``; ``per_factor`` ``(K,)``: the gap between
    the two largest entries of each column of ``mi``, divided by ``entropy``; ``mi`` ``(L, K)``:
    mutual information in nats between each discretised latent and each factor;
    ``entropy`` ``(K,)``: each factor's entropy in nats; ``top`` ``(K,)``: the latent with the
    most information about each factor."""

    mig: float
    per_factor: np.ndarray
    mi: np.ndarray
    entropy: np.ndarray
    top: np.ndarray


def discretize(codes, n_bins: int = 20) -> np.ndarray:
    """Each column of ``codes`` ``(N, L)`` (finite numbers) cut into ``n_bins`` equal-width bins
    spanning its own range (as in disentanglement_lib); returns bin numbers ``(N, L)`` int64 in
    ``0 .. n_bins − 1``. A constant column falls into one bin."""
    codes = _codes(codes)
    n_bins = check_int(n_bins, "n_bins")
    out = np.zeros(codes.shape, dtype=np.int64)
    for j, column in enumerate(codes.T):
        lo, hi = column.min(), column.max()
        if lo < hi:  # the edges of np.histogram_bin_edges, without its error for tiny ranges
            out[:, j] = np.digitize(column, np.linspace(lo, hi, n_bins + 1)[1:-1])
    return out


def mutual_info_gap(codes, factors, n_bins: int = 20) -> MIG:
    """The Mutual Information Gap of ``codes`` ``(N, L)`` (use the encoder means) against
    ``factors`` ``(N, K)`` (integer indices of the true factors of the same N images).

    Each latent is discretised into ``n_bins`` equal-width bins; I(z_j; v_k) comes from
    ``sklearn.metrics.mutual_info_score`` and H(v_k) = I(v_k; v_k). For factor k,
    MIG_k = (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k), with z_(1), z_(2) the two latents with
    the most information about v_k. MIG is the mean of MIG_k over factors, in [0, 1]: 1 when
    each factor is captured whole by one latent and by no other, 0 when none is or when the
    two most informative latents hold the same amount of it.
    """
    z = discretize(codes, n_bins)
    v = _factors(factors, len(z))
    if z.shape[1] < 2:
        raise ValueError("MIG compares the two most informative latents; codes need at least 2 "
                         f"columns, got {z.shape[1]}")
    entropy = np.array([mutual_info_score(v[:, k], v[:, k]) for k in range(v.shape[1])])
    if (entropy <= 0).any():
        bad = np.flatnonzero(entropy <= 0).tolist()
        raise ValueError(f"factor column(s) {bad} take a single value here, so they carry no "
                         "information and MIG is undefined for them — drop those columns")
    mi = np.array([[mutual_info_score(v[:, k], z[:, j]) for k in range(v.shape[1])]
                   for j in range(z.shape[1])])
    ranked = np.sort(mi, axis=0)[::-1]
    # I(z; v) ≤ H(v) exactly; the clip only removes rounding in the last bits
    per_factor = np.clip((ranked[0] - ranked[1]) / entropy, 0.0, 1.0)
    return MIG(float(per_factor.mean()), per_factor, mi, entropy, mi.argmax(axis=0))


# ---------------------------------------------------------------------------------------------
# Active units and the rate of each latent


class ActiveUnits(NamedTuple):
    """``count`` latents whose posterior mean has variance above the threshold across the
    data; ``mask`` ``(L,)`` bool marks them; ``variance`` ``(L,)`` is that variance."""

    count: int
    mask: torch.Tensor
    variance: torch.Tensor


def active_units(model_or_means, images: torch.Tensor | None = None, *,
                 threshold: float = ACTIVE_THRESHOLD) -> ActiveUnits:
    """The active units (Burda et al. 2015): latent j is active when Var_x[ E_q(z|x)[z_j] ], the
    variance over the data of its posterior mean, exceeds ``threshold`` (0.01). This is the one
    definition of "active" in vaelab and its notebooks.

    Pass a model and images ``(N, 1, H, W)`` float32 in [0, 1] (or an ``ImageData`` /
    ``ShapesData``), or posterior means ``(N, L)``; N ≥ 2 either way.
    """
    threshold = check_number(threshold, "threshold", minimum=0.0)
    if isinstance(model_or_means, torch.nn.Module):
        if images is None:
            raise ValueError("active_units(model, images): pass the images to encode")
        x = _images(model_or_means, images)
        means = model_or_means.encode_means(x).double()
        if len(means) < 2:
            raise ValueError(f"the variance over the data needs at least 2 images; got {len(x)}")
    else:
        means = torch.from_numpy(_codes(model_or_means, "posterior means", min_rows=2, min_cols=1))
    variance = means.var(dim=0).float()
    mask = variance > threshold
    return ActiveUnits(int(mask.sum()), mask, variance)


@torch.no_grad()
def kl_per_unit(model, data, *, batch_size: int = 1000) -> torch.Tensor:
    """The rate of each latent: the mean over images of KL(q(z_j|x) ‖ N(0, 1)), ``(L,)`` float32
    nats per image; it sums to ``rate_distortion(...).rate``. A unit whose KL is near 0 carries
    no information about x (posterior collapse) — count such units with ``active_units``."""
    x = _images(model, data)
    batch_size = check_int(batch_size, "batch_size")
    total = torch.zeros(model.latent_dim, dtype=torch.float64)
    with _eval_mode(model):
        for xb in x.split(batch_size):
            mu, logvar = _stats(model, xb.to(model.device))
            total += kl_divergence(mu, logvar, per_dim=True).double().sum(0).cpu()
    return (total / len(x)).float()


# ---------------------------------------------------------------------------------------------
# Rate and distortion


class RateDistortion(NamedTuple):
    """Means over a dataset in nats per image: ``rate`` = KL(q(z|x) || p(z)) (exact),
    ``distortion`` = −log p(x|z) with one z ~ q(z|x) per image, ``elbo`` = −(rate + distortion)."""

    rate: float
    distortion: float
    elbo: float


@contextlib.contextmanager
def _eval_mode(model):
    """``with _eval_mode(model):`` — the model in eval mode inside, its old mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _stats(model, xb):
    mu, logvar = model.encode(xb)
    if logvar is None:
        raise TypeError(f"{type(model).__name__} has no posterior variance (a plain autoencoder): "
                        "rate, ELBO and log-likelihood estimates need a VAE")
    return mu, logvar


@torch.no_grad()
def rate_distortion(model, data, *, likelihood: str = "bernoulli", batch_size: int = 1000,
                    seed: int = 0) -> RateDistortion:
    """The **rate** (mean KL(q(z|x) ‖ p(z)), exact) and the **distortion** (mean reconstruction
    term −log p(x|z) of ``likelihood``, one seeded z ~ q(z|x) per image) of ``model`` on
    ``data`` (images ``(N, 1, H, W)`` float32 in [0, 1], or an ``ImageData`` / ``ShapesData``),
    in nats per image. These are the definitions every notebook uses."""
    x = _images(model, data)
    per_image = _per_image_terms(model, x, likelihood, batch_size, seed)
    rate, distortion = (float(t.double().mean()) for t in per_image)
    return RateDistortion(rate, distortion, -(rate + distortion))


def _per_image_terms(model, x, likelihood, batch_size, seed, samples: int = 1):
    """Per-image KL ``(N,)`` and reconstruction term ``(N,)`` averaged over ``samples`` z."""
    check_choice(likelihood, "likelihood", LIKELIHOODS)
    batch_size = check_int(batch_size, "batch_size")
    seed = check_int(seed, "seed", minimum=0)
    samples = check_int(samples, "samples")
    gen = torch.Generator().manual_seed(seed)
    kls, recs = [], []
    with _eval_mode(model):
        for xb in x.split(batch_size):
            xb = xb.to(model.device)
            mu, logvar = _stats(model, xb)
            rec = torch.zeros(len(xb), dtype=torch.float64)
            for _ in range(samples):
                logits = model.decode(reparameterize(mu, logvar, generator=gen))
                rec += reconstruction_per_image(logits, xb, likelihood).double().cpu()
            kls.append(kl_divergence(mu, logvar).cpu())
            recs.append((rec / samples).float())
    return torch.cat(kls), torch.cat(recs)


# ---------------------------------------------------------------------------------------------
# Log-likelihood: the ELBO and the importance-weighted estimate


def _log_px_given_z(logits, x, likelihood):
    """log p(x|z) per image. Bernoulli: −binary cross-entropy (as in vaelab.losses). Gaussian:
    the exact log density of N(x; sigmoid(logits), ½ I) = −squared error − (D/2) log π; the
    loss in vaelab.losses drops that constant, which does not change training."""
    if likelihood == "bernoulli":
        return -reconstruction_per_image(logits, x, "bernoulli")
    d = x[0].numel()
    return -reconstruction_per_image(logits, x, "gaussian") - 0.5 * d * math.log(math.pi)


@torch.no_grad()
def elbo(model, x: torch.Tensor, *, likelihood: str = "bernoulli", samples: int = 1,
         batch_size: int = 1000, seed: int = 0) -> torch.Tensor:
    """The ELBO of each image, ``(N,)`` nats: E_q[log p(x|z)] − KL(q(z|x) || p(z)), the KL in
    closed form and the expectation over ``samples`` seeded draws z ~ q(z|x).

    ``x``: images ``(N, 1, H, W)`` float32 in [0, 1]. Bernoulli: equals −(reconstruction + KL)
    of ``vaelab.losses``. Gaussian: includes the normalising constant −(D/2) log π that the loss
    leaves out (see ``_log_px_given_z``).
    """
    x = _images(model, x)
    kl, rec = _per_image_terms(model, x, likelihood, batch_size, seed, samples)
    const = 0.0 if likelihood == "bernoulli" else 0.5 * x[0].numel() * math.log(math.pi)
    return -(rec + kl) - const


def _log_weights(model, xb, mu, logvar, m: int, gen, likelihood) -> torch.Tensor:
    """log p(x|z) + log p(z) − log q(z|x) for ``m`` draws z ~ q(z|x) per image: ``(m, B)``
    float64 on the CPU."""
    z = reparameterize(mu.expand(m, *mu.shape), logvar.expand(m, *logvar.shape), generator=gen)
    logits = model.decode(z.flatten(0, 1))
    xs = xb.expand(m, *xb.shape).flatten(0, 1)
    log_px = _log_px_given_z(logits, xs, likelihood).view(m, len(xb))
    log_pz = -0.5 * (z.square() + LOG_2PI).sum(-1)
    eps = (z - mu) * torch.exp(-0.5 * logvar)
    log_qz = -0.5 * (eps.square() + logvar + LOG_2PI).sum(-1)
    return (log_px + log_pz - log_qz).double().cpu()


@torch.no_grad()
def importance_weighted_log_likelihood(model, x: torch.Tensor, k: int = 100, *,
                                       likelihood: str = "bernoulli", seed: int = 0,
                                       max_rows: int = 20000) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per image, ``(N,)`` nats (Burda et al. 2015):

        log p(x) ≈ logsumexp_i [log p(x|z_i) + log p(z_i) − log q(z_i|x)] − log k,
        z_1..z_k ~ q(z|x) drawn independently (seeded).

    ``x``: images ``(N, 1, H, W)`` float32 in [0, 1]. k = 1 is a one-sample estimate of the
    ELBO; the estimate is a lower bound on log p(x) in expectation that tightens as k grows.
    Computed in batches of at most ``max_rows`` decoded samples, so any k fits in memory.
    """
    x = _images(model, x)
    k = check_int(k, "k (importance samples per image)")
    check_choice(likelihood, "likelihood", LIKELIHOODS)
    max_rows = check_int(max_rows, "max_rows")
    gen = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    out = []
    with _eval_mode(model):
        for xb in x.split(max(1, min(len(x), max_rows // k))):
            xb = xb.to(model.device)
            mu, logvar = _stats(model, xb)
            total = torch.full((len(xb),), -math.inf, dtype=torch.float64)
            n_z = max(1, max_rows // len(xb))
            for start in range(0, k, n_z):
                log_w = _log_weights(model, xb, mu, logvar, min(n_z, k - start), gen, likelihood)
                total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
            out.append(total - math.log(k))
    return torch.cat(out).float()


# ---------------------------------------------------------------------------------------------
# Reading images as digits, and gaps between codes

def digit_reader(images, labels, *, test=None, seed: int = 0):
    """The digit reader the notebooks trust (``vaelab.reader.DigitReader``): a small CNN
    trained, seeded and cached, on ``images`` ``(N, 1, 28, 28)`` float32 in [0, 1] with their
    ``labels`` (at most ``reader.MAX_TRAIN`` of them), plus junk pictures labelled *not a
    digit*. ``test``: ``(images, labels)`` whose accuracy ``reader.describe()`` then states.
    Use it with ``read_as``: it is how the notebooks check what a decoded image shows."""
    from .reader import DigitReader

    return DigitReader.train(images, labels, test=test, seed=seed)


def read_as(reader, images) -> tuple[np.ndarray, np.ndarray]:
    """What ``reader`` (from ``digit_reader``) reads in ``images`` ``(N, 1, 28, 28)`` float32 in
    [0, 1] (e.g. ``torch.sigmoid`` of decoder logits): ``(digits, confidences)``, both ``(N,)``
    numpy — the digit read, or ``CANT_READ`` (-1) where the reader sees no digit or its top
    probability is below its threshold (80 %); the confidence is that top probability."""
    from .reader import DigitReader

    if not isinstance(reader, DigitReader):
        raise TypeError("reader must be a digit reader from vaelab.metrics.digit_reader; got "
                        f"{describe(reader)}")
    return reader.read(images)


def in_gap(codes, points, radius: float) -> np.ndarray:
    """``(M,)`` bool: True where a point of ``points`` ``(M, L)`` lies *in a gap* of ``codes``
    ``(N, L)`` — farther than ``radius`` (Euclidean) from every code. This is the one
    definition of "in a gap" in vaelab's notebooks; the share of points in gaps depends on
    ``radius`` (a larger radius finds fewer gaps), so always quote it with the radius."""
    radius = check_number(radius, "radius", minimum=0.0)
    c = torch.from_numpy(_codes(codes, "codes", min_cols=1))
    p = torch.from_numpy(_codes(points, "points"))
    if p.shape[1] != c.shape[1]:
        raise ValueError(f"points must have as many columns as codes ({c.shape[1]}); got "
                         f"{p.shape[1]}")
    rows = max(1, 4_000_000 // len(c))  # distance matrices of at most 4 million entries
    nearest = torch.cat([torch.cdist(chunk, c).min(dim=1).values for chunk in p.split(rows)])
    return (nearest > radius).numpy()
