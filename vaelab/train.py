"""Training: ``fit`` with Adam on an in-memory tensor, and ``train_or_load`` for cached models."""

from __future__ import annotations

import ctypes
import functools
import math
import os
import platform
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .anchor import anchor_prior_mean
from .checks import check_images, check_int, images_of
from .data import batches
from .losses import LIKELIHOODS, vae_loss
from .models import LatentModel

TERMS = ("total", "reconstruction", "kl")


class NonFiniteLossError(RuntimeError):
    """Training hit a nan/inf loss. ``history`` holds the epochs finished before it."""

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """Per-epoch means in nats per image. ``train[i]`` / ``test[i]`` map each of ``TERMS`` to a
    float; ``seconds[i]`` is the wall time of epoch i's training pass; ``stopped`` says why
    training ended early (``"interrupted"``, ``"non-finite loss"``) or is None."""

    train: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    stopped: str | None = None
    loaded: bool = False  # True when train_or_load took the model from its cache

    def as_dict(self) -> dict:
        return {"train": self.train, "test": self.test, "seconds": self.seconds,
                "stopped": self.stopped}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(list(d["train"]), list(d["test"]), list(d["seconds"]), d.get("stopped"))

    def __len__(self) -> int:
        return len(self.train)


def default_device() -> torch.device:
    """CUDA if present, else Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from its heap and keep freed memory for reuse.

    By default glibc maps a block over 128 KiB fresh from the kernel and returns it when freed
    (it raises that threshold as blocks are freed, but never above 32 MiB), so each training step
    pays a page fault per 4 KiB of every large buffer it allocates again: a tenth of a
    ``ConvVAE`` epoch here. ``fit`` calls this once before training on the CPU; freed memory
    then stays with the process (up to 1 GiB) for the next step. Linux with glibc only;
    returns whether the setting took.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)
                and libc.mallopt(m_trim_threshold, 1 << 30))


def quick_mode() -> bool:
    """True when ``VAELAB_QUICK`` is set to anything but ``""``/``"0"`` (the tests set it)."""
    return os.environ.get("VAELAB_QUICK", "") not in ("", "0")


def epochs_for(images_seen: int, n_images: int) -> int:
    """Whole epochs so that a model sees at least ``images_seen`` training images: the ceiling of
    ``images_seen / n_images``, and at least 1. 200,000 images are 50 epochs of the embedded
    4,000-image subset and 4 epochs of full MNIST's 60,000 (240,000 images seen)."""
    images_seen = check_int(images_seen, "images_seen")
    n_images = check_int(n_images, "n_images")
    return max(1, math.ceil(images_seen / n_images))


def describe_budget(images_seen: int, n_images: int, source: str = "") -> str:
    """One line for a notebook's first output: the data, the budget and the epochs it gives,
    e.g. ``"embedded MNIST subset, 4,000 training images: 50 epochs = 200,000 images seen per
    model (budget 200,000)"``."""
    epochs = epochs_for(images_seen, n_images)
    data = {"embedded": "embedded MNIST subset", "files": "MNIST from files",
            "download": "downloaded MNIST"}.get(source, source or "training data")
    return (f"{data}, {n_images:,} training images: {epochs} epoch{'s' * (epochs != 1)} = "
            f"{epochs * n_images:,} images seen per model (budget {images_seen:,})")


@torch.no_grad()
def evaluate(model: LatentModel, data, *, beta: float = 1.0, likelihood: str = "bernoulli",
             anchor_rate: float = 0.0, batch_size: int = 1000, seed: int = 0) -> dict:
    """Mean loss terms (nats per image) over ``data``, with one z ~ q(z|x) per image (seeded).

    With β = 1 and no anchor, ``total`` is an unbiased estimate of the negative ELBO.
    """
    x = images_of(data)
    check_images(x)
    device = model.device
    was_training = model.training
    model.eval()
    sums = dict.fromkeys(TERMS, 0.0)
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        for xb in x.split(batch_size):
            xb = xb.to(device)
            logits, mu, logvar = model(xb)
            prior = anchor_prior_mean(xb, anchor_rate, mu.shape[1]) if anchor_rate else None
            terms = vae_loss(logits, xb, mu, logvar, beta, likelihood, prior)
            for name, value in zip(TERMS, terms, strict=True):
                sums[name] += float(value) * len(xb)
    finally:
        torch.set_rng_state(rng_state)
        model.train(was_training)
    return {name: s / len(x) for name, s in sums.items()}


def fit(model: LatentModel, train_data, *, epochs: int, batch_size: int = 128, lr: float = 1e-3,
        beta: float = 1.0, seed: int = 0, test_data=None, likelihood: str = "bernoulli",
        anchor_rate: float = 0.0, device: torch.device | str | None = None,
        progress: bool = True) -> History:
    """Train ``model`` with Adam; return a ``History`` of per-epoch loss terms (nats per image).

    ``train_data``/``test_data``: images ``(N, 1, 28, 28) float32 in [0, 1]``, or an
    ``ImageData`` / ``(images, labels)`` pair. The images move to ``device`` (default: the best
    available) once; batches are slices of a seeded permutation. ``beta`` weights the KL term
    (0 gives an autoencoder). ``anchor_rate`` > 0 adds the anchor loss (see ``vaelab.losses``).
    Same seed and data give identical results on the CPU, where ``fit`` first calls
    ``keep_freed_memory()`` so large per-step buffers are reused rather than mapped anew.
    Ctrl-C / KeyboardInterrupt stops early and keeps the model and the history so far;
    a non-finite loss raises ``NonFiniteLossError`` with the model at its last finite state.
    """
    if not isinstance(model, LatentModel):
        raise TypeError(f"model must be a vaelab model (AE, VAE, ConvVAE); got {type(model)}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}")
    if not (isinstance(epochs, int) and epochs >= 0):
        raise ValueError(f"epochs must be a non-negative integer; got {epochs!r}")
    if not batch_size >= 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size!r}")
    x = images_of(train_data)
    check_images(x)
    model._check_x(x[:1])
    if test_data is not None:
        check_images(images_of(test_data))

    device = torch.device(device) if device is not None else default_device()
    if device.type == "cpu":
        keep_freed_memory()
    model.to(device).train()
    x = x.to(device)
    test_x = None if test_data is None else images_of(test_data).to(device)  # moved once, too
    prior = anchor_prior_mean(x, anchor_rate, model.latent_dim) if anchor_rate else None
    torch.manual_seed(seed)
    order_rng = torch.Generator().manual_seed(seed)
    fused = device.type in ("cpu", "cuda")
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=fused)

    history = History()
    n_batches = math.ceil(len(x) / batch_size)
    bar = tqdm(total=epochs * len(x), unit="img", unit_scale=True, disable=not progress,
               desc=f"{type(model).__name__}", dynamic_ncols=True)
    epoch = batch = 0
    try:
        for epoch in range(1, epochs + 1):
            bar.set_description(f"epoch {epoch}/{epochs}")
            sums = torch.zeros(3, dtype=torch.float64)
            start = time.perf_counter()
            snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
            for batch, idx in enumerate(batches(len(x), batch_size, order_rng), start=1):
                idx = idx.to(device)
                xb = x[idx]
                logits, mu, logvar = model(xb)
                terms = vae_loss(logits, xb, mu, logvar, beta, likelihood,
                                 None if prior is None else prior[idx])
                values = torch.stack([t.detach() for t in terms]).cpu()
                if not torch.isfinite(values).all():
                    _restore_if_broken(model, snapshot)
                    raise NonFiniteLossError(
                        f"training stopped: the loss became {float(values[0])} at epoch {epoch}, "
                        f"batch {batch}/{n_batches}. The model keeps its last finite weights. "
                        f"Try a lower learning rate (lr={lr:g} now, e.g. lr={lr / 10:g}), or check "
                        "the images for NaNs.", history)
                opt.zero_grad(set_to_none=True)
                terms.total.backward()
                opt.step()
                sums += values.double() * len(idx)
                bar.update(len(idx))
                if batch % 10 == 0 or batch == n_batches:
                    bar.set_postfix(loss=f"{float(values[0]):.1f}", refresh=False)
            history.seconds.append(time.perf_counter() - start)
            history.train.append(dict(zip(TERMS, (sums / len(x)).tolist(), strict=True)))
            if test_x is not None:
                history.test.append(evaluate(model, test_x, beta=beta, likelihood=likelihood,
                                             anchor_rate=anchor_rate, seed=seed))
                bar.set_postfix(loss=f"{history.train[-1]['total']:.1f}",
                                test=f"{history.test[-1]['total']:.1f}", refresh=False)
    except KeyboardInterrupt:
        history.stopped = "interrupted"
        print(f"Interrupted at epoch {epoch}, batch {batch}: the model and the "
              f"{len(history)} finished epoch(s) of history are kept.")
    except NonFiniteLossError:
        history.stopped = "non-finite loss"
        raise
    finally:
        bar.close()
        model.eval()
    return history


def _restore_if_broken(model: LatentModel, snapshot: dict) -> None:
    """Put back the epoch-start weights if the last step left non-finite ones."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        model.load_state_dict(snapshot)
