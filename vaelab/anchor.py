"""The anchor loss: pull images by their "donutness" towards one corner of the latent space.

Each image gets a *donutness* d(x) in [-1, 1]: the share of its ink on a ring (the donut map)
minus the share on a vertical bar (the stick map). The anchor loss moves the image's prior from
N(0, I) to N(a · d(x), I) in every coordinate (``anchor_prior_mean``), so the KL term

    KL(q(z|x) || N(a · d(x), I)) = KL at μ − a · d(x) of the standard formula  (``anchor_kl``)

pulls ring-shaped images (in MNIST, the 0s) towards (+a, +a, …) and bar-shaped ones (the 1s)
towards (−a, −a, …); where the other digits go, training decides (notebook 06 measures it).
``vaelab.losses.vae_loss`` takes the shifted mean as ``prior_mean``; ``fit(...,
anchor_rate=a)`` passes it. Notebook 06 tells the story.
"""

from __future__ import annotations

import torch

from .checks import check_images, check_int, check_number, check_tensor, describe
from .losses import kl_divergence


def donut_map(size: int = 28, inner: float = 0.38, outer: float = 0.92) -> torch.Tensor:
    """A ``(size, size)`` float32 0/1 map of a thick ring filling most of the frame.

    ``inner`` and ``outer`` are radii as fractions of half the frame (0 ≤ inner < outer).
    """
    size = check_int(size, "size")
    inner = check_number(inner, "inner", minimum=0.0)
    outer = check_number(outer, "outer", above=inner)
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = torch.sqrt((yy - c) ** 2 + (xx - c) ** 2) / (size / 2)
    return ((r >= inner) & (r <= outer)).to(torch.float32)


def stick_map(size: int = 28, width: int = 6) -> torch.Tensor:
    """A ``(size, size)`` float32 0/1 map of a vertical bar ``width`` pixels wide, centred."""
    size = check_int(size, "size")
    width = check_int(width, "width")
    if width > size:
        raise ValueError(f"width must be at most size ({size}) pixels; got {width}")
    m = torch.zeros(size, size)
    left = (size - width) // 2
    m[:, left:left + width] = 1.0
    return m


def donutness(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per image: (share of its ink on the donut map) − (share of its ink on the stick map).

    ``x`` is ``(N, 1, H, H)`` float32 in [0, 1]; returns ``(N,)`` float32 in [-1, 1]. Zeros score
    highest and ones lowest (measured in notebook 06); a blank image scores 0 (``eps`` keeps
    0/0 away).
    """
    on_donut, on_stick = ink_shares(x, eps)
    return on_donut - on_stick


def ink_shares(x: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the shares of its ink on the donut map and on the stick map, each ``(N,)``
    in [0, 1] (0 for a blank image); ``donutness`` is their difference."""
    if isinstance(x, torch.Tensor) and x.dim() == 2:
        raise ValueError(f"x must have shape (N, 1, H, H); got {tuple(x.shape)} — for one "
                         "image use x.view(1, 1, 28, 28)")
    check_images(x, name="x")
    if x.shape[2] != x.shape[3]:
        raise ValueError(f"donutness takes square images (N, 1, H, H); got {tuple(x.shape)}")
    eps = check_number(eps, "eps", above=0.0)
    ink = x.flatten(1)
    total = ink.sum(1) + eps
    donut = donut_map(x.shape[-1]).to(x).flatten()
    stick = stick_map(x.shape[-1]).to(x).flatten()
    return ink @ donut / total, ink @ stick / total


def anchor_prior_mean(x: torch.Tensor, anchor_rate: float, latent_dim: int) -> torch.Tensor:
    """``(N, latent_dim)`` prior means ``anchor_rate × donutness(x)`` in every coordinate.

    ``x``: images ``(N, 1, H, H)`` float32 in [0, 1]; ``anchor_rate`` ≥ 0 (0: the plain prior).
    """
    anchor_rate = check_number(anchor_rate, "anchor_rate", minimum=0.0)
    latent_dim = check_int(latent_dim, "latent_dim")
    return (anchor_rate * donutness(x)).unsqueeze(1).expand(-1, latent_dim)


def anchor_kl(mu: torch.Tensor, logvar: torch.Tensor, x: torch.Tensor,
              anchor_rate: float) -> torch.Tensor:
    """The anchor KL term per image ``(N,)`` nats: KL(N(μ, σ²) || N(anchor_rate × donutness(x), I)).

    ``mu``, ``logvar``: ``(N, L)``; ``x``: the N images. ``anchor_rate = 0`` gives back
    ``kl_divergence(mu, logvar)``.
    """
    check_tensor(mu, "mu", dim=2)
    check_tensor(logvar, "logvar", dim=2)
    if mu.shape != logvar.shape or (isinstance(x, torch.Tensor) and len(x) != len(mu)):
        raise ValueError(f"mu, logvar and x must describe the same N images; got mu "
                         f"{tuple(mu.shape)}, logvar {tuple(logvar.shape)}, x {describe(x)}")
    return kl_divergence(mu - anchor_prior_mean(x, anchor_rate, mu.shape[1]), logvar)
