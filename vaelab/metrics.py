"""Metrics: how much a representation disentangles, how many latents it uses, what it costs.

* ``mutual_info_gap`` — the Mutual Information Gap (Chen et al. 2018) of codes against known
  factors; ``active_units`` — latents whose posterior mean moves with the data (Burda et al.);
* ``rate_distortion`` — mean KL (rate) and mean reconstruction term (distortion) of a model;
* ``elbo`` and ``importance_weighted_log_likelihood`` — per-image log p(x) bounds (Burda et al.
  2015), in nats.

All values are in nats (natural logarithms).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from sklearn.metrics import mutual_info_score

from .checks import check_images
from .losses import LIKELIHOODS, kl_divergence, reconstruction_per_image

LOG_2PI = math.log(2 * math.pi)


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


def _numpy(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, columns); got shape {a.shape}")
    return a


def discretize(codes, n_bins: int = 20) -> np.ndarray:
    """Each column of ``codes`` ``(N, L)`` cut into ``n_bins`` equal-width bins spanning its own
    range (as in disentanglement_lib); returns bin numbers ``(N, L)`` int64. A constant column
    falls into one bin."""
    codes = _numpy(codes, "codes").astype(np.float64)
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins=n_bins)
        out[:, j] = np.digitize(codes[:, j], edges[1:-1])
    return out


def mutual_info_gap(codes, factors, n_bins: int = 20) -> MIG:
    """The Mutual Information Gap of ``codes`` ``(N, L)`` (use the encoder means) against
    ``factors`` ``(N, K)`` (integer indices of the true factors of the same N images).

    Each latent is discretised into ``n_bins`` equal-width bins; I(z_j; v_k) comes from
    ``sklearn.metrics.mutual_info_score`` and H(v_k) = I(v_k; v_k). For factor k,
    MIG_k = (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k), with z_(1), z_(2) the two latents with
    the most information about v_k. MIG is the mean of MIG_k over factors: 1 when each factor
    is captured whole by one latent and by no other, 0 when none is or when two latents share
    it equally.
    """
    z = discretize(codes, n_bins)
    v = _numpy(factors, "factors")
    if len(z) != len(v):
        raise ValueError(f"codes and factors must describe the same images; got {len(z)} codes "
                         f"and {len(v)} factor rows")
    if z.shape[1] < 2:
        raise ValueError("MIG compares the two most informative latents; codes need at least 2 "
                         f"columns, got {z.shape[1]}")
    if not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"factors must be integer indices (the discrete factor values); got "
                         f"{v.dtype} — pass data.factors, not data.values")
    entropy = np.array([mutual_info_score(v[:, k], v[:, k]) for k in range(v.shape[1])])
    if (entropy <= 0).any():
        bad = np.flatnonzero(entropy <= 0).tolist()
        raise ValueError(f"factor column(s) {bad} take a single value here, so they carry no "
                         "information and MIG is undefined for them — drop those columns")
    mi = np.array([[mutual_info_score(v[:, k], z[:, j]) for k in range(v.shape[1])]
                   for j in range(z.shape[1])])
    ranked = np.sort(mi, axis=0)[::-1]
    per_factor = (ranked[0] - ranked[1]) / entropy
    return MIG(float(per_factor.mean()), per_factor, mi, entropy, mi.argmax(axis=0))


# ---------------------------------------------------------------------------------------------
# Active units, rate and distortion


class ActiveUnits(NamedTuple):
    """``count`` latents whose posterior mean has variance above the threshold across the
    data; ``mask`` ``(L,)`` bool marks them; ``variance`` ``(L,)`` is that variance."""

    count: int
    mask: torch.Tensor
    variance: torch.Tensor


def active_units(model_or_means, images: torch.Tensor | None = None, *,
                 threshold: float = 0.01) -> ActiveUnits:
    """Active units (Burda et al. 2015): latent j is active when Var_x[ E_q(z|x)[z_j] ] exceeds
    ``threshold`` (0.01). Pass a model and images ``(N, 1, H, W)``, or posterior means ``(N, L)``.
    """
    if isinstance(model_or_means, torch.nn.Module):
        if images is None:
            raise ValueError("active_units(model, images): pass the images to encode")
        means = model_or_means.encode_means(images)
    else:
        means = torch.as_tensor(model_or_means)
        if means.dim() != 2 or len(means) < 2:
            raise ValueError(f"posterior means must be (N, L) with N >= 2; "
                             f"got {tuple(means.shape)}")
    variance = means.double().var(dim=0).float()
    mask = variance > threshold
    return ActiveUnits(int(mask.sum()), mask, variance)


class RateDistortion(NamedTuple):
    """Means over a dataset in nats per image: ``rate`` = KL(q(z|x) || p(z)) (exact),
    ``distortion`` = −log p(x|z) with one z ~ q(z|x) per image, ``elbo`` = −(rate + distortion)."""

    rate: float
    distortion: float
    elbo: float


def _vae(model) -> None:
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "encode"):
        raise TypeError(f"model must be a vaelab VAE; got {type(model).__name__}")


def _stats(model, xb):
    mu, logvar = model.encode(xb)
    if logvar is None:
        raise TypeError(f"{type(model).__name__} has no posterior variance (a plain autoencoder): "
                        "rate, ELBO and log-likelihood estimates need a VAE")
    return mu, logvar


def _images(data) -> torch.Tensor:
    x = data if isinstance(data, torch.Tensor) else data[0]
    check_images(x)
    return x


@torch.no_grad()
def rate_distortion(model, data, *, likelihood: str = "bernoulli", batch_size: int = 1000,
                    seed: int = 0) -> RateDistortion:
    """Mean rate (KL) and distortion (reconstruction term) of ``model`` on ``data`` (images, or
    an ``ImageData`` / ``ShapesData``), nats per image; one seeded z ~ q(z|x) per image."""
    x = _images(data)
    per_image = _per_image_terms(model, x, likelihood, batch_size, seed)
    rate, distortion = (float(t.double().mean()) for t in per_image)
    return RateDistortion(rate, distortion, -(rate + distortion))


def _check_likelihood(likelihood: str) -> None:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}")


def _per_image_terms(model, x, likelihood, batch_size, seed, samples: int = 1):
    """Per-image KL ``(N,)`` and reconstruction term ``(N,)`` averaged over ``samples`` z."""
    _vae(model)
    _check_likelihood(likelihood)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    kls, recs = [], []
    try:
        for xb in x.split(batch_size):
            xb = xb.to(model.device)
            mu, logvar = _stats(model, xb)
            rec = torch.zeros(len(xb), dtype=torch.float64)
            for _ in range(samples):
                eps = torch.randn(mu.shape, generator=gen).to(mu)
                logits = model.decode(mu + eps * torch.exp(0.5 * logvar))
                rec += reconstruction_per_image(logits, xb, likelihood).double().cpu()
            kls.append(kl_divergence(mu, logvar).cpu())
            recs.append((rec / samples).float())
    finally:
        model.train(was_training)
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

    Bernoulli: equals −(reconstruction + KL) of ``vaelab.losses``. Gaussian: includes the
    normalising constant −(D/2) log π that the loss leaves out (see ``_log_px_given_z``).
    """
    x = _images(x)
    kl, rec = _per_image_terms(model, x, likelihood, batch_size, seed, samples)
    const = 0.0 if likelihood == "bernoulli" else 0.5 * x[0].numel() * math.log(math.pi)
    return -(rec + kl) - const


@torch.no_grad()
def importance_weighted_log_likelihood(model, x: torch.Tensor, k: int = 100, *,
                                       likelihood: str = "bernoulli", seed: int = 0,
                                       max_rows: int = 20000) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per image, ``(N,)`` nats (Burda et al. 2015):

        log p(x) ≈ logsumexp_i [log p(x|z_i) + log p(z_i) − log q(z_i|x)] − log k,
        z_1..z_k ~ q(z|x) drawn independently (seeded).

    k = 1 is a one-sample estimate of the ELBO; the estimate is a lower bound on log p(x) in
    expectation that tightens as k grows. Computed in batches of at most ``max_rows``
    decoded samples, so any k fits in memory.
    """
    _vae(model)
    _check_likelihood(likelihood)
    x = _images(x)
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"k (the number of importance samples) must be a positive integer; "
                         f"got {k!r}")
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    out = []
    try:
        n_images = max(1, min(len(x), max_rows // k))
        for xb in x.split(n_images):
            xb = xb.to(model.device)
            mu, logvar = _stats(model, xb)
            std = torch.exp(0.5 * logvar)
            total = torch.full((len(xb),), -math.inf, dtype=torch.float64)
            n_z = max(1, max_rows // len(xb))
            for start in range(0, k, n_z):
                m = min(n_z, k - start)
                eps = torch.randn((m, *mu.shape), generator=gen).to(mu)  # (m, B, L)
                z = mu + eps * std
                logits = model.decode(z.flatten(0, 1))
                xs = xb.expand(m, *xb.shape).flatten(0, 1)
                log_px = _log_px_given_z(logits, xs, likelihood).view(m, len(xb))
                log_pz = -0.5 * (z.square() + LOG_2PI).sum(-1)
                log_qz = -0.5 * (eps.square() + logvar + LOG_2PI).sum(-1)
                log_w = (log_px + log_pz - log_qz).double().cpu()
                total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
            out.append(total - math.log(k))
    finally:
        model.train(was_training)
    return torch.cat(out).float()

