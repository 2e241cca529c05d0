"""Loss terms, in **nats per image**: sums over pixels and latent dimensions, means over a batch.

The VAE maximises the ELBO, so it minimises

    loss = reconstruction + beta * KL,  reconstruction = -log p(x|z),  KL = KL(q(z|x) || p(z)).

Functions whose name ends in ``_per_image`` return ``(N,)`` tensors; ``vae_loss`` averages them.
Inputs are checked for type and shape only (no pass over the data), so the checks cost nothing
in a training loop. The anchor loss's shifted prior lives in ``vaelab.anchor``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .checks import check_choice, check_number, check_tensor

LIKELIHOODS = ("bernoulli", "gaussian")


class LossTerms(NamedTuple):
    """Batch means in nats per image: ``total = reconstruction + beta * kl``."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def _check_pair(logits, x) -> None:
    check_tensor(logits, "logits", min_dim=2)
    check_tensor(x, "x", min_dim=2)
    if logits.shape != x.shape:
        raise ValueError(f"logits and x must have the same shape (N, 1, H, W); got logits "
                         f"{tuple(logits.shape)} and x {tuple(x.shape)}")


def _check_stats(mu, logvar) -> None:
    check_tensor(mu, "mu", dim=2)
    check_tensor(logvar, "logvar", dim=2)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape (N, L); got mu "
                         f"{tuple(mu.shape)} and logvar {tuple(logvar.shape)}")


def bernoulli_nll_per_image(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) for a Bernoulli decoder: binary cross-entropy on logits, summed over pixels.

    ``logits`` and ``x``: ``(N, 1, H, W)``; returns ``(N,)``."""
    _check_pair(logits, x)
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def squared_error_per_image(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error between x and the decoded image sigmoid(logits), summed over pixels.

    For a Gaussian decoder N(x; sigmoid(logits), 1/2) this is -log p(x|z) up to a constant.
    ``logits`` and ``x``: ``(N, 1, H, W)``; returns ``(N,)``.
    """
    _check_pair(logits, x)
    return (torch.sigmoid(logits) - x).square().flatten(1).sum(1)


def reconstruction_per_image(logits, x, likelihood: str = "bernoulli") -> torch.Tensor:
    """The reconstruction term for ``likelihood`` ``"bernoulli"`` or ``"gaussian"``, ``(N,)``."""
    check_choice(likelihood, "likelihood", LIKELIHOODS)
    if likelihood == "bernoulli":
        return bernoulli_nll_per_image(logits, x)
    return squared_error_per_image(logits, x)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, per_dim: bool = False) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) in closed form.

    Per dimension: ½ (μ² + σ² − log σ² − 1). Returns ``(N,)`` summed over dimensions, or
    ``(N, L)`` with ``per_dim=True``. ``mu``, ``logvar``: ``(N, L)``.
    """
    _check_stats(mu, logvar)
    kl = 0.5 * (mu.square() + logvar.exp() - logvar - 1.0)
    return kl if per_dim else kl.sum(1)


def vae_loss(logits, x, mu, logvar, beta: float = 1.0, likelihood: str = "bernoulli",
             prior_mean: torch.Tensor | None = None, free_bits: float = 0.0) -> LossTerms:
    """Negative (β-weighted) ELBO and its terms, in nats per image (batch means).

    ``logvar=None`` (a plain autoencoder) gives KL = 0. ``prior_mean`` (``(N, L)`` or
    broadcastable) moves each image's prior to N(prior_mean, I): KL(N(μ,σ²) || N(m, I)) is the
    standard KL evaluated at μ − m (``vaelab.anchor.anchor_prior_mean`` gives the anchor loss's
    m). β = 0 trains a plain autoencoder through the same code.

    ``free_bits`` λ > 0 (Kingma et al. 2016) charges each latent j at least λ nats: ``total``
    uses Σ_j max(λ, batch mean of KL_j), so a unit below λ feels no pull towards the prior;
    ``kl`` stays the true KL.
    """
    beta = check_number(beta, "beta", minimum=0.0)
    free_bits = check_number(free_bits, "free_bits", minimum=0.0)
    rec = reconstruction_per_image(logits, x, likelihood).mean()
    if logvar is None:
        kl = rec.new_zeros(())
    else:
        if prior_mean is not None:
            check_tensor(prior_mean, "prior_mean")
            try:
                fits = torch.broadcast_shapes(prior_mean.shape, mu.shape) == mu.shape
            except RuntimeError:
                fits = False
            if not fits:
                raise ValueError(f"prior_mean must be (N, L) like mu {tuple(mu.shape)}, or "
                                 f"broadcast to it; got {tuple(prior_mean.shape)}")
        kl_per_unit = kl_divergence(mu if prior_mean is None else mu - prior_mean, logvar,
                                    per_dim=True).mean(0)                      # (L,)
        kl = kl_per_unit.sum()
        if free_bits:
            return LossTerms(rec + beta * kl_per_unit.clamp(min=free_bits).sum(), rec, kl)
    return LossTerms(rec + beta * kl, rec, kl)

