import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaelab import losses


@pytest.fixture
def gaussians(seeded):
    return torch.randn(64, 5), torch.randn(64, 5)


def test_kl_matches_torch_distributions(gaussians):
    mu, logvar = gaussians
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    assert torch.allclose(losses.kl_divergence(mu, logvar, per_dim=True), ref, atol=1e-5)
    assert torch.allclose(losses.kl_divergence(mu, logvar), ref.sum(1), atol=1e-4)


def test_kl_matches_monte_carlo():
    gen = torch.Generator().manual_seed(1)
    mu, logvar = torch.tensor([[0.7, -1.2]]), torch.tensor([[-0.5, 0.8]])
    q = Normal(mu, (0.5 * logvar).exp())
    z = mu + (0.5 * logvar).exp() * torch.randn(400_000, 2, generator=gen)
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    assert abs(float(mc) - float(losses.kl_divergence(mu, logvar))) < 0.01


def test_kl_is_zero_only_at_the_prior():
    zero = torch.zeros(1, 3)
    assert float(losses.kl_divergence(zero, zero)) == 0.0
    assert float(losses.kl_divergence(zero + 0.1, zero)) > 0
    assert float(losses.kl_divergence(zero, zero + 0.1)) > 0


def test_bernoulli_is_binary_cross_entropy(seeded):
    logits, x = torch.randn(8, 1, 28, 28) * 3, torch.rand(8, 1, 28, 28).round()
    ref = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(losses.bernoulli_nll_per_image(logits, x), ref, atol=1e-3)


def test_gaussian_is_squared_error_of_the_decoded_image(seeded):
    logits, x = torch.randn(8, 1, 28, 28), torch.rand(8, 1, 28, 28)
    ref = ((torch.sigmoid(logits) - x) ** 2).sum((1, 2, 3))
    assert torch.allclose(losses.squared_error_per_image(logits, x), ref)
    # -log N(x; m, 1/2) = (x - m)^2 + const: the squared error is a Gaussian NLL.
    nll = -Normal(torch.sigmoid(logits), 0.5 ** 0.5).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(nll - ref, (nll - ref)[0].expand(8), atol=1e-3)


def test_vae_loss_terms_are_nats_per_image(seeded):
    logits, x = torch.randn(8, 1, 28, 28), torch.rand(8, 1, 28, 28)
    mu, logvar = torch.randn(8, 4), torch.randn(8, 4)
    terms = losses.vae_loss(logits, x, mu, logvar, beta=4.0)
    assert torch.isclose(terms.reconstruction, losses.bernoulli_nll_per_image(logits, x).mean())
    assert torch.isclose(terms.kl, losses.kl_divergence(mu, logvar).mean())
    assert torch.isclose(terms.total, terms.reconstruction + 4.0 * terms.kl)
    assert torch.isclose(losses.vae_loss(logits, x, mu, logvar, beta=0.0).total,
                         terms.reconstruction)


def test_vae_loss_for_an_autoencoder_has_no_kl(seeded):
    logits, x = torch.randn(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    terms = losses.vae_loss(logits, x, torch.randn(2, 2), None)
    assert float(terms.kl) == 0.0 and torch.equal(terms.total, terms.reconstruction)


def test_prior_mean_moves_the_prior(gaussians):
    mu, logvar = gaussians
    m = torch.full_like(mu, 1.5)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(m, 1.0)).sum(1).mean()
    logits, x = torch.zeros(64, 1, 28, 28), torch.zeros(64, 1, 28, 28)
    assert torch.isclose(losses.vae_loss(logits, x, mu, logvar, prior_mean=m).kl, ref, atol=1e-4)


def test_unknown_likelihood():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        losses.reconstruction_per_image(torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28), "l1")



def test_inputs_of_the_wrong_kind_or_shape_are_named():
    x = torch.zeros(2, 1, 28, 28)
    with pytest.raises(ValueError, match=r"same shape.*\(2, 1, 28, 28\) and x \(3, 1, 28, 28\)"):
        losses.bernoulli_nll_per_image(x, torch.zeros(3, 1, 28, 28))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        losses.squared_error_per_image(x, x.numpy())
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        losses.kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="floating-point"):
        losses.kl_divergence(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="beta must be ≥ 0"):
        losses.vae_loss(x, x, torch.zeros(2, 3), torch.zeros(2, 3), beta=-1.0)
    with pytest.raises(ValueError, match="prior_mean must be"):
        losses.vae_loss(x, x, torch.zeros(2, 3), torch.zeros(2, 3), prior_mean=torch.zeros(5, 3))


def test_free_bits_charge_each_unit_at_least_lambda_and_leave_the_kl_true(seeded):
    logits, x = torch.randn(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    mu = torch.zeros(3, 4, requires_grad=True)   # at the prior: KL 0 in each of 4 units
    logvar = torch.zeros(3, 4)
    plain = losses.vae_loss(logits, x, mu, logvar)
    floored = losses.vae_loss(logits, x, mu, logvar, beta=2.0, free_bits=0.5)
    assert float(floored.kl.detach()) == 0.0                          # the true KL
    torch.testing.assert_close(floored.total, plain.reconstruction + 2.0 * 4 * 0.5)
    floored.total.backward()
    assert float(mu.grad.abs().max()) == 0.0   # below the floor: no pull towards the prior


def test_free_bits_change_nothing_for_units_above_the_floor(seeded):
    logits, x = torch.randn(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    mu, logvar = torch.full((3, 2), 2.0), torch.zeros(3, 2)           # KL 2 nats per unit
    plain = losses.vae_loss(logits, x, mu, logvar, beta=1.5)
    floored = losses.vae_loss(logits, x, mu, logvar, beta=1.5, free_bits=1.0)
    torch.testing.assert_close(floored.total, plain.total)
    with pytest.raises(ValueError, match="free_bits"):
        losses.vae_loss(logits, x, mu, logvar, free_bits=-1.0)
