"""Models with one small surface: ``encode``, ``decode``, ``forward``, ``sample``, ``reconstruct``.

* ``encode(x)`` takes images ``(N, 1, 28, 28)`` and returns ``(mu, logvar)``, each ``(N, L)``
  (``logvar`` is log σ²; the deterministic ``AE`` returns ``(z, None)``).
* ``decode(z)`` takes ``(N, L)`` codes and returns **logits** ``(N, 1, 28, 28)``; a sigmoid turns
  them into Bernoulli means, and only ``sample`` / ``reconstruct`` (for display) apply it.
* ``forward(x)`` returns ``(logits, mu, logvar)`` with ``z = mu + eps * sigma`` inside.

Every public method checks its input (``vaelab.checks``): images must be float32 in [0, 1] of
the model's shape, codes finite; a wrong call gets an error that says what to do.
"""

from __future__ import annotations

import torch
from torch import nn

from .checks import (
    VaelabModel,
    are_images,
    check_choice,
    check_codes,
    check_images,
    check_int,
    check_sizes,
)
from .fast import speed_up

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``z = mu + eps * sigma`` with ``eps ~ N(0, I)``: the randomness sits outside mu and logvar,
    so gradients flow through both. With a (CPU) ``generator`` eps is drawn from it and moved to
    mu's device, so a seeded draw leaves torch's global random state alone."""
    if generator is None:
        eps = torch.randn_like(mu)
    else:
        eps = torch.randn(mu.shape, generator=generator, device=generator.device).to(mu)
    return mu + eps * torch.exp(0.5 * logvar)


class LatentModel(nn.Module, VaelabModel):
    """What every vaelab model shares. Subclasses set ``latent_dim`` and define ``_encode`` /
    ``_decode`` on checked inputs; ``config`` holds the constructor arguments (checkpoints)."""

    latent_dim: int
    config: dict
    image_shape: tuple[int, int, int] = (1, 28, 28)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_images(self, x, name: str = "images") -> torch.Tensor:
        """``x`` if it is a batch this model takes: ``(N, *image_shape)`` float32 in [0, 1]; else
        an error that says what to do (``vaelab.checks.check_images``)."""
        if are_images(x, self.image_shape):  # one cheap pass: fine for every training batch
            return x
        return check_images(x, shape=self.image_shape, name=name)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(N, 1, 28, 28)`` images → ``(mu, logvar)``, each ``(N, latent_dim)``."""
        return self._encode(self.check_images(x))

    def decode(self, z) -> torch.Tensor:
        """``(N, latent_dim)`` codes → logits ``(N, 1, 28, 28)`` (apply sigmoid to display)."""
        return self._decode(check_codes(z, self.latent_dim).to(self.device))

    @torch.no_grad()
    def encode_means(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Posterior means ``(N, latent_dim)`` (codes, for the AE) of many images, in batches."""
        self.check_images(x)
        batch_size = check_int(batch_size, "batch_size")
        return torch.cat([self._encode(xb.to(self.device))[0] for xb in x.split(batch_size)]).cpu()

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """``(logits, mu, logvar)``: decode a z drawn from q(z|x) (the mean, for the AE);
        ``generator`` seeds that draw (see ``reparameterize``)."""
        mu, logvar = self.encode(x)
        z = mu if logvar is None else reparameterize(mu, logvar, generator)
        return self._decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, 1, 28, 28)`` in [0, 1]: decode z ~ N(0, I), show Bernoulli means."""
        n = check_int(n, "n")
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return torch.sigmoid(self._decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Images in [0, 1] decoded from z = mu (default) or from a z drawn from q(z|x)."""
        mu, logvar = self._encode(self.check_images(x).to(self.device))
        z = reparameterize(mu, logvar) if sample and logvar is not None else mu
        return torch.sigmoid(self._decode(z))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def mlp(sizes, activation: str) -> nn.Sequential:
    """Linear layers ``sizes[0] → sizes[1] → …``, each followed by ``activation``."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers)


class MLPModel(LatentModel):
    """What ``AE`` and ``VAE`` share: checked arguments, ``config``, and the decoder
    L → reversed hidden → pixels (logits). Subclasses build ``encoder``, their head, then
    ``decoder = self.mlp_decoder()`` in that order (it fixes the random initial weights)."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], activation: str,
                 image_size: int):
        super().__init__()
        self.latent_dim = check_int(latent_dim, "latent_dim")
        self.hidden = check_sizes(hidden, "hidden")
        self.activation = check_choice(activation, "activation", tuple(ACTIVATIONS))
        image_size = check_int(image_size, "image_size")
        self.image_shape = (1, image_size, image_size)
        self.config = {"latent_dim": self.latent_dim, "hidden": self.hidden,
                       "activation": activation, "image_size": image_size}

    def mlp_encoder(self) -> nn.Sequential:
        return mlp((self.image_shape[1] ** 2, *self.hidden), self.activation)

    def mlp_decoder(self) -> nn.Sequential:
        return nn.Sequential(mlp((self.latent_dim, *self.hidden[::-1]), self.activation),
                             nn.Linear(self.hidden[0], self.image_shape[1] ** 2))

    def _decode(self, z):
        return self.decoder(z).view(-1, *self.image_shape)


class AE(MLPModel):
    """Plain autoencoder 784 → 400 → L → 400 → 784 with ReLU; ``encode`` returns ``(z, None)``.

    ``image_size`` (default 28) sets square input images of that many pixels a side.
    """

    def __init__(self, latent_dim: int = 2, hidden: tuple[int, ...] = (400,),
                 activation: str = "relu", image_size: int = 28):
        super().__init__(latent_dim, hidden, activation, image_size)
        self.encoder = self.mlp_encoder()
        self.to_code = nn.Linear(self.hidden[-1], latent_dim)
        self.decoder = self.mlp_decoder()

    def _encode(self, x):
        return self.to_code(self.encoder(x.flatten(1))), None


class VAE(MLPModel):
    """MLP VAE: 784 → hidden → (mu, logvar) in R^L; decoder L → reversed hidden → 784 logits.

    ``hidden=(400,)`` is the classic model; ``hidden=(400, 100)`` the deeper 784-400-100-L one.
    ``activation`` is ``"relu"`` or ``"tanh"`` for the hidden layers; ``image_size`` (default
    28) sets square input images of that many pixels a side.
    """

    def __init__(self, latent_dim: int = 2, hidden: tuple[int, ...] = (400,),
                 activation: str = "relu", image_size: int = 28):
        super().__init__(latent_dim, hidden, activation, image_size)
        self.encoder = self.mlp_encoder()
        self.to_stats = nn.Linear(self.hidden[-1], 2 * latent_dim)  # [mu | logvar]
        self.decoder = self.mlp_decoder()

    def _encode(self, x):
        mu, logvar = self.to_stats(self.encoder(x.flatten(1))).chunk(2, dim=1)
        return mu, logvar


class ConvVAE(LatentModel):
    """Convolutional VAE.

    Encoder: conv 1→32 (4×4, stride 2), 32→64 (4×4, s2), 64→128 (3×3, s2), no padding; the
    three stride-2 convolutions shrink the 28×28 image to a small grid (notebook 05 works out
    its size, layer by layer), whose 128 channels are flattened → (mu, logvar).
    Decoder: linear L → 1024, reshape to 1024×1×1, transposed conv 1024→256 (4×4, s2),
    256→128 (6×6, s2), 128→1 (6×6, s2): 1 → 4 → 12 → 28, logits.

    ``fast=True`` (default) runs the transposed convolutions as ``vaelab.fast``'s
    ``FastConvTranspose2d``: same parameters and results (up to float rounding), faster on
    some CPUs than torch's kernel (``benchmarks/bench_training.py`` measures it).
    ``fast=False`` keeps torch's own layers. Checkpoints load either way.
    """

    def __init__(self, latent_dim: int = 10, fast: bool = True):
        super().__init__()
        self.latent_dim = check_int(latent_dim, "latent_dim")
        self.config = {"latent_dim": self.latent_dim}
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2), nn.ReLU(),
            nn.Flatten(),
        )
        self.to_stats = nn.Linear(2 * 2 * 128, 2 * latent_dim)
        self.from_code = nn.Sequential(nn.Linear(latent_dim, 1024), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 256, 4, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(256, 128, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 1, 6, stride=2),
        )
        if fast:  # swap in vaelab.fast.FastConvTranspose2d; print(model) shows it
            speed_up(self)

    def _encode(self, x):
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar

    def _decode(self, z):
        return self.decoder(self.from_code(z).view(-1, 1024, 1, 1))


MODELS = {"ae": AE, "vae": VAE, "convvae": ConvVAE}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
