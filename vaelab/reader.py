"""A digit reader the notebooks can trust: a small CNN trained on the training split.

The notebooks check what a decoded picture shows ("the reader reads 58 % of the samples as a
digit") with this reader instead of by eye. It is a plain PyTorch classifier with eleven
outputs: the digits 0–9 and *not a digit*, learnt from made-up junk (noise, blank and flat grey
images, and blurred blobs). Its answer is **can't read** (``CANT_READ``, -1) when it says
*not a digit* or when its top probability is below ``THRESHOLD``::

    reader = DigitReader.train(x_train, y_train, test=(x_test, y_test))
    print(reader.describe())          # what it is and how often it reads test digits right
    digits, confidence = reader.read(images)     # digits: 0–9, or -1 for can't read

Training is seeded and cached in the model cache (``VAELAB_CACHE``), so every notebook that
asks for the reader of the same images gets the same one at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_images, check_int, describe
from .files import atomic_write

CANT_READ = -1     # read_as's answer for a picture it cannot read as a digit
THRESHOLD = 0.8    # below this top probability, the reader says it can't read the picture
NOT_A_DIGIT = 10   # the eleventh output: junk such as noise, blank images and blobs
EPOCHS = 6
MAX_TRAIN = 12_000  # trained on at most this many images, so full MNIST costs seconds too
BATCH = 64


def reader_network() -> nn.Sequential:
    """The reader's CNN: ``(N, 1, 28, 28)`` images → ``(N, 11)`` logits (0–9, not a digit)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),   # → (16, 12, 12)
        nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),  # → (32, 4, 4)
        nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 11))


def junk_images(digits: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, 1, 28, 28)`` pictures that are not digits: uniform noise, flat images of one grey
    level (blank included), and blobs (digits blurred with a 9-pixel box filter twice, then
    stretched to reach 1)."""
    third = n // 3
    noise = torch.rand(third, 1, 28, 28, generator=generator)
    flat = torch.rand(third, 1, 1, 1, generator=generator).expand(-1, 1, 28, 28) ** 2
    pick = torch.randint(len(digits), (n - 2 * third,), generator=generator)
    blob = digits[pick]
    for _ in range(2):
        blob = F.avg_pool2d(blob, 9, stride=1, padding=4)
    blob = (blob / blob.amax((1, 2, 3), keepdim=True).clamp(min=1e-6)).clamp(0, 1)
    return torch.cat([noise, flat, blob])


def train_network(images: torch.Tensor, labels: torch.Tensor, seed: int) -> nn.Sequential:
    """Train ``reader_network`` with Adam on ``images`` ``(N, 1, 28, 28)`` with digit
    ``labels`` ``(N,)``, plus N / 10 junk images labelled *not a digit*; seeded."""
    generator = torch.Generator().manual_seed(seed)
    junk = junk_images(images, max(1, len(images) // 10), generator)
    x = torch.cat([images, junk])
    y = torch.cat([labels, torch.full((len(junk),), NOT_A_DIGIT)])
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the initial weights
        net = reader_network()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(x), generator=generator).split(BATCH):
            loss = F.cross_entropy(net(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


@dataclass
class DigitReader:
    """A trained reader: ``read(images)`` → ``(digits, confidence)``; ``accuracy`` is the
    share of the test images it read as their own digit (None without test images)."""

    network: nn.Sequential
    n_train: int
    accuracy: float | None = None
    n_test: int = 0
    threshold: float = THRESHOLD

    @torch.no_grad()
    def read(self, images) -> tuple[np.ndarray, np.ndarray]:
        """``(digits, confidence)``, both ``(N,)`` numpy, for ``images`` ``(N, 1, 28, 28)``
        float32 in [0, 1]: the digit read (0–9), or ``CANT_READ`` (-1) where the top class is
        *not a digit* or its probability is below ``threshold``; confidence is the top
        probability."""
        x = check_images(images, name="images").detach().cpu()
        proba = torch.cat([self.network(b).softmax(1) for b in x.split(1000)])
        confidence, best = proba.max(1)
        unreadable = (best == NOT_A_DIGIT) | (confidence < self.threshold)
        return torch.where(unreadable, CANT_READ, best).numpy(), confidence.numpy()

    def describe(self) -> str:
        """One sentence: what the reader is, its test accuracy and its can't-read rule."""
        tested = ("" if self.accuracy is None else
                  f"; it reads {self.accuracy:.1%} of the {self.n_test:,} test images as their "
                  "own digit")
        return (f"a small CNN trained on {self.n_train:,} images{tested}; below "
                f"{self.threshold:.0%} confidence, or when it sees no digit, it answers "
                "\"can't read\"")

    @classmethod
    def train(cls, images, labels, *, test=None, seed: int = 0, folder=None) -> DigitReader:
        """The reader of ``images`` / ``labels`` (the first ``MAX_TRAIN``; cached in ``folder``,
        default the model cache); ``test``: ``(images, labels)`` whose accuracy it reports."""
        x, y = checked_pair(images, labels, "images", "labels")
        x, y = x[:MAX_TRAIN], y[:MAX_TRAIN]
        seed = check_int(seed, "seed", minimum=0)
        path = reader_path(x, y, seed, folder)
        network = load_network(path)
        if network is None:
            network = train_network(x, y, seed)
            with atomic_write(path) as fh:
                torch.save(network.state_dict(), fh)
        reader = cls(network, len(x))
        if test is not None:
            tx, ty = checked_pair(*test, "test images", "test labels")
            reader.accuracy = float((reader.read(tx)[0] == ty.numpy()).mean())
            reader.n_test = len(tx)
        return reader


def checked_pair(images, labels, name: str, labels_name: str):
    """``(images, labels)`` as a checked ``(N, 1, 28, 28)`` float tensor and ``(N,)`` int64."""
    x = check_images(images, name=name).detach().cpu()
    y = torch.as_tensor(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor)
                        else np.asarray(labels))
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"{labels_name} must be a 1-D array of integer digits; got "
                        f"{describe(labels)}")
    if len(y) != len(x) or len(y) == 0:
        raise ValueError(f"{name} and {labels_name} must describe the same images (at least "
                         f"one); got {len(x)} images and {len(y)} labels")
    if int(y.min()) < 0 or int(y.max()) > 9:
        raise ValueError(f"{labels_name} must be digits 0–9; got values from {int(y.min())} "
                         f"to {int(y.max())}")
    return x, y.long()


def reader_path(x: torch.Tensor, y: torch.Tensor, seed: int, folder) -> Path:
    """Where the reader of these images, labels and seed is cached."""
    from .cache import cache_key, fingerprint
    from .data import cache_dir

    folder = cache_dir() / "readers" if folder is None else Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key({"images": fingerprint(x), "labels": fingerprint(y), "seed": seed,
                     "epochs": EPOCHS, "batch": BATCH, "version": 1})
    return folder / f"digit-reader-{key}.pt"


def load_network(path: Path) -> nn.Sequential | None:
    """The cached network at ``path``, or None if there is none (or it cannot be read)."""
    if not path.exists():
        return None
    network = reader_network()
    try:
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, ValueError, EOFError):
        return None  # a damaged or old file: train again and replace it
    return network.eval()
