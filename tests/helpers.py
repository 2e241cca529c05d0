"""Small shared pieces for the tests."""

import torch

from vaelab import VAE


def tiny(latent_dim: int, cls=VAE):
    """An untrained, seeded model with a 32-unit hidden layer, in eval mode."""
    torch.manual_seed(0)
    return cls(latent_dim=latent_dim, hidden=(32,)).eval()
