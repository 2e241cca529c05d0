"""Models with one small surface: ``encode``, ``decode``, ``forward``, ``sample``, ``reconstruct``.

* ``encode(x)`` takes images ``(N, 1, 28, 28)`` and returns ``(mu, logvar)``, each ``(N, L)``
  (``logvar`` is log σ²; the deterministic ``AE`` returns ``(z, None)``).
* ``decode(z)`` takes ``(N, L)`` codes and returns **logits** ``(N, 1, 28, 28)``; a sigmoid turns
  them into Bernoulli means, and only ``sample`` / ``reconstruct`` (for display) apply it.
* ``forward(x)`` returns ``(logits, mu, logvar)`` with ``z = mu + eps * sigma`` inside.
"""

from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``z = mu + eps * sigma`` with ``eps ~ N(0, I)``: the randomness sits outside mu and logvar,
    so gradients flow through both."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


class LatentModel(nn.Module):
    """What every vaelab model shares. Subclasses set ``latent_dim`` and define ``_encode`` /
    ``_decode`` on validated inputs; ``config`` holds the constructor arguments (checkpoints)."""

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

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor; got {type(x).__name__}")
        shape = self.image_shape
        if tuple(x.shape[1:]) != shape:
            hint = (" — add the channel axis with x.unsqueeze(1)"
                    if tuple(x.shape[1:]) == shape[1:] else "")
            want = ", ".join(map(str, shape))
            raise ValueError(f"{type(self).__name__} takes images of shape (N, {want}); "
                             f"got {tuple(x.shape)}{hint}")
        return x

    def _check_z(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 1:
            z = z.unsqueeze(0)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"this {type(self).__name__} has latent_dim={self.latent_dim}; "
                             f"got codes of shape {tuple(z.shape)} — pass (N, {self.latent_dim})")
        return z

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(N, 1, 28, 28)`` images → ``(mu, logvar)``, each ``(N, latent_dim)``."""
        return self._encode(self._check_x(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, latent_dim)`` codes → logits ``(N, 1, 28, 28)`` (apply sigmoid to display)."""
        return self._decode(self._check_z(z))

    @torch.no_grad()
    def encode_means(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Posterior means ``(N, latent_dim)`` (codes, for the AE) of many images, in batches."""
        self._check_x(x)
        return torch.cat([self._encode(xb.to(self.device))[0] for xb in x.split(batch_size)]).cpu()

    def forward(self, x: torch.Tensor):
        """``(logits, mu, logvar)``: decode a z drawn from q(z|x) (the mean, for the AE)."""
        mu, logvar = self._encode(self._check_x(x))
        z = mu if logvar is None else reparameterize(mu, logvar)
        return self._decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, 1, 28, 28)`` in [0, 1]: decode z ~ N(0, I), show Bernoulli means."""
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return torch.sigmoid(self._decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Images in [0, 1] decoded from z = mu (default) or from a z drawn from q(z|x)."""
        mu, logvar = self.encode(x.to(self.device))
        z = reparameterize(mu, logvar) if sample and logvar is not None else mu
        return torch.sigmoid(self._decode(z))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def _mlp(sizes, activation: str) -> nn.Sequential:
    act = _ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers)


def _check_args(latent_dim: int, activation: str) -> None:
    if not isinstance(latent_dim, int) or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive integer; got {latent_dim!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}")


class AE(LatentModel):
    """Plain autoencoder 784 → 400 → L → 400 → 784 with ReLU; ``encode`` returns ``(z, None)``.

    ``image_size`` (default 28) sets square input images of that many pixels a side.
    """

    def __init__(self, latent_dim: int = 2, hidden: tuple[int, ...] = (400,),
                 activation: str = "relu", image_size: int = 28):
        super().__init__()
        _check_args(latent_dim, activation)
        hidden = tuple(hidden)
        self.latent_dim = latent_dim
        self.image_shape = (1, image_size, image_size)
        self.config = {"latent_dim": latent_dim, "hidden": hidden, "activation": activation,
                       "image_size": image_size}
        self.encoder = _mlp((image_size**2, *hidden), activation)
        self.to_code = nn.Linear(hidden[-1], latent_dim)
        self.decoder = nn.Sequential(_mlp((latent_dim, *hidden[::-1]), activation),
                                     nn.Linear(hidden[0], image_size**2))

    def _encode(self, x):
        return self.to_code(self.encoder(x.flatten(1))), None

    def _decode(self, z):
        return self.decoder(z).view(-1, *self.image_shape)


class VAE(LatentModel):
    """MLP VAE: 784 → hidden → (mu, logvar) in R^L; decoder L → reversed hidden → 784 logits.

    ``hidden=(400,)`` is the classic model; ``hidden=(400, 100)`` the deeper 784-400-100-L one.
    ``activation`` is ``"relu"`` or ``"tanh"`` for the hidden layers; ``image_size`` (default
    28) sets square input images of that many pixels a side.
    """

    def __init__(self, latent_dim: int = 2, hidden: tuple[int, ...] = (400,),
                 activation: str = "relu", image_size: int = 28):
        super().__init__()
        _check_args(latent_dim, activation)
        hidden = tuple(hidden)
        self.latent_dim = latent_dim
        self.image_shape = (1, image_size, image_size)
        self.config = {"latent_dim": latent_dim, "hidden": hidden, "activation": activation,
                       "image_size": image_size}
        self.encoder = _mlp((image_size**2, *hidden), activation)
        self.to_stats = nn.Linear(hidden[-1], 2 * latent_dim)  # [mu | logvar]
        self.decoder = nn.Sequential(_mlp((latent_dim, *hidden[::-1]), activation),
                                     nn.Linear(hidden[0], image_size**2))

    def _encode(self, x):
        mu, logvar = self.to_stats(self.encoder(x.flatten(1))).chunk(2, dim=1)
        return mu, logvar

    def _decode(self, z):
        return self.decoder(z).view(-1, *self.image_shape)


class _ShiftedPatchSum(torch.autograd.Function):
    """A transposed convolution (stride s, kernel k a multiple of s, no padding) on the CPU, in
    channels-last memory, as one matrix multiply plus q² shifted adds (q = k / s).

    Output row ``y = s·i + k_y`` with ``k_y = s·a + p`` is ``s·(i + a) + p``: the patch of input
    pixel ``i`` at tap block ``a`` lands ``a`` blocks further on, at phase ``p``. So the matrix
    multiply ``x[pixel, :] @ W`` makes every patch at once, laid out ``(a, p, b, p', C_out)``,
    and the output sums q² shifted slices of them. The backward gathers the same windows of the
    output gradient (one strided copy) and needs two more large matrix multiplies.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride):
        n, c_in, h, w = x.shape
        _, c_out, kh, kw = weight.shape
        (sh, sw), qh, qw = stride, kh // stride[0], kw // stride[1]
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c_in)  # free for channels-last x
        wmat = weight.view(c_in, c_out, qh, sh, qw, sw).permute(0, 2, 3, 4, 5, 1).reshape(c_in, -1)
        patches = (rows @ wmat).view(n, h, w, qh, sh, qw, sw, c_out)
        out = x.new_empty(n, h + qh - 1, sh, w + qw - 1, sw, c_out)
        out.copy_(bias.view(1, 1, 1, 1, 1, -1) if bias is not None else x.new_zeros(()))
        # out[n, i + a, p, j + b, p', c] += patches[n, i, j, a, p, b, p', c]
        for a in range(qh):
            for b in range(qw):
                out[:, a:a + h, :, b:b + w].add_(patches[:, :, :, a, :, b].transpose(2, 3))
        ctx.save_for_backward(rows, wmat)
        ctx.shape = (n, c_in, h, w, c_out, kh, kw, sh, sw, qh, qw, bias is not None)
        return out.view(n, (h + qh - 1) * sh, (w + qw - 1) * sw, c_out).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        rows, wmat = ctx.saved_tensors
        n, c_in, h, w, c_out, kh, kw, sh, sw, qh, qw, has_bias = ctx.shape
        g = grad.permute(0, 2, 3, 1).contiguous()  # (n, H, W, C_out): free when channels-last
        sn, sy, sx, _ = g.stride()
        windows = g.as_strided((n, h, w, qh, sh, qw, sw, c_out),
                               (sn, sh * sy, sw * sx, sh * sy, sy, sw * sx, sx, 1))
        d_patches = windows.reshape(n * h * w, -1)  # one copy: every window, laid out like patches
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = (d_patches @ wmat.t()).view(n, h, w, c_in).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            dw = (rows.t() @ d_patches).view(c_in, qh, sh, qw, sw, c_out)
            dw = dw.permute(0, 5, 1, 2, 3, 4).reshape(c_in, c_out, kh, kw)
        if has_bias and ctx.needs_input_grad[2]:
            db = g.sum((0, 1, 2))
        return dx, dw, db, None


class ConvTranspose2d(nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` with the same parameters and results, faster on the CPU.

    A transposed convolution scatters ``x[n, :, i, j] @ W`` (a ``C_out × k × k`` patch per input
    pixel) onto the output at ``(i·s, j·s)`` and sums where patches overlap. Here that is one
    large matrix multiply and a sum of shifted slices (``_ShiftedPatchSum``), with the output in
    channels-last memory so the next layer reads its pixels as matrix rows without a copy; a
    one-pixel input needs no sum at all (the layer is then exactly one matrix multiply).
    PyTorch's CPU kernel runs these shapes at a fraction of the machine's matrix-multiply speed
    (see ``benchmarks/bench_training.py``). Kernels that are not a multiple of the stride,
    padding, groups, dilation, other devices and dtypes use the torch kernel.
    """

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if (x.device.type != "cpu" or x.dtype != torch.float32 or output_size is not None
                or x.dim() != 4 or self.groups != 1 or self.padding != (0, 0)
                or self.output_padding != (0, 0) or self.dilation != (1, 1)
                or kh % sh or kw % sw):
            return super().forward(x, output_size)
        n, c_in, h, w = x.shape
        if h == w == 1:  # every patch lands on its own output: one matrix multiply, no sum
            out = (x.view(n, c_in) @ self.weight.view(c_in, -1)).view(n, -1, kh, kw)
            return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)
        return _ShiftedPatchSum.apply(x, self.weight, self.bias, (sh, sw))


class ConvVAE(LatentModel):
    """Convolutional VAE.

    Encoder: conv 1→32 (4×4, stride 2), 32→64 (4×4, s2), 64→128 (3×3, s2): 28 → 13 → 5 → 2,
    then the 2×2×128 = 512 features → (mu, logvar).
    Decoder: linear L → 1024, reshape to 1024×1×1, transposed conv 1024→256 (4×4, s2),
    256→128 (6×6, s2), 128→1 (6×6, s2): 1 → 4 → 12 → 28, logits.
    """

    def __init__(self, latent_dim: int = 10):
        super().__init__()
        _check_args(latent_dim, "relu")
        self.latent_dim = latent_dim
        self.config = {"latent_dim": latent_dim}
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2), nn.ReLU(),
            nn.Flatten(),
        )
        self.to_stats = nn.Linear(2 * 2 * 128, 2 * latent_dim)
        self.from_code = nn.Sequential(nn.Linear(latent_dim, 1024), nn.ReLU())
        self.decoder = nn.Sequential(
            ConvTranspose2d(1024, 256, 4, stride=2), nn.ReLU(),
            ConvTranspose2d(256, 128, 6, stride=2), nn.ReLU(),
            ConvTranspose2d(128, 1, 6, stride=2),
        )

    def _encode(self, x):
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar

    def _decode(self, z):
        return self.decoder(self.from_code(z).view(-1, 1024, 1, 1))


MODELS = {"ae": AE, "vae": VAE, "convvae": ConvVAE}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
