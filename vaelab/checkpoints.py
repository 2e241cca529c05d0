"""Checkpoints: one file with the model class, its constructor arguments, weights and metadata.

Files are written atomically (a temporary file beside the target, checked to load, then a
rename), so an error or a crash never leaves half a checkpoint in place of a good one. They are
read with ``torch.load(weights_only=True)``: loading a checkpoint can never run code. A sha256
digest of the model name, configuration and weights is saved with them and checked on loading,
so an edited file (say, ``relu`` changed to ``tanh``) is refused rather than loaded silently.
Every problem with a file is a ``CheckpointError`` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .checks import check_device, describe
from .files import atomic_write
from .models import MODELS, LatentModel

FORMAT = "vaelab-checkpoint"
VERSION = 1
_SCALARS = (bool, int, float, complex, str, bytes)  # bool first: it is also an int


class CheckpointError(ValueError):
    """A file that is not a readable, matching vaelab checkpoint."""


def _class_name(model: LatentModel) -> str:
    for key, cls in MODELS.items():
        if type(model) is cls:
            return key
    names = ", ".join(c.__name__ for c in MODELS.values())
    raise TypeError(f"save() takes a vaelab model ({names}); got {type(model).__name__}")


def scalar(value):
    """``value`` as a built-in Python scalar (numpy scalars and subclasses such as
    ``np.float64`` or an ``IntEnum`` too), or ``value`` itself when it is none of those."""
    if isinstance(value, np.generic):
        value = value.item()
    for kind in _SCALARS:
        if isinstance(value, kind):
            return kind(value)
    return value


def storable(value, name: str = "metadata"):
    """``value`` as data a checkpoint can hold and ``weights_only`` loading gives back equal:
    dicts, lists, tuples, sets, built-in scalars, None, tensors (detached, on the CPU),
    ``torch.device`` / ``torch.dtype``. numpy scalars become Python numbers and numpy arrays
    lists; paths become strings. Anything else (a function, a model, a frozenset...) raises a
    TypeError naming where it is in ``value``, e.g. ``metadata['settings']['fn']``."""
    value = scalar(value)
    if value is None or isinstance(value, (*_SCALARS, torch.device, torch.dtype)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return storable(value.tolist(), name)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {storable(k, f"a key of {name}"): storable(v, f"{name}[{k!r}]")
                for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        items = [storable(v, f"{name}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, list):
            return items
        return tuple(items) if isinstance(value, tuple) else set(items)
    hint = ("store its name (f.__name__) instead" if callable(value) else
            "store sorted(...) as a list instead" if isinstance(value, frozenset) else
            "convert it to one of those")
    raise TypeError(f"{name} is {describe(value)} ({type(value).__name__}); a checkpoint holds "
                    f"plain data (dict, list, tuple, set, str, numbers, bool, None) and tensors "
                    f"— {hint}")


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (in C order): equal exactly when the values
    are. About 0.1 s for 60,000 MNIST images (188 MB of float32) on one CPU core."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype} {tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def weights_digest(kind: str, config: dict, state_dict: dict) -> str:
    """sha256 over the model name, its configuration (as JSON) and every weight tensor."""
    parts = [kind, config, [(k, tensor_sha256(state_dict[k])) for k in sorted(state_dict)]]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded, once it is clear a file can be written there: it is not a
    folder, no folder above it is a file, and the nearest existing folder takes a new file.
    Otherwise a ValueError naming the path and what to do. Call it before a long training."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name, e.g. {path / 'model.pt'}")
    folder = path.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder — choose "
                         "another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".vaelab-write-test-", dir=folder)
    except OSError as err:
        raise ValueError(f"cannot write {path}: the folder {folder} is not writable "
                         f"({err.strerror}) — choose another folder") from err
    os.close(fd)
    os.unlink(probe)
    return path


def save(model: LatentModel, path: str | os.PathLike, **metadata) -> Path:
    """Write ``model`` and ``metadata`` (training settings, history, ...) to ``path`` atomically.

    ``path`` may start with ``~``; missing folders are made; the file gets the mode a new file
    gets (the umask), or keeps the mode of the file it replaces. Metadata is converted by
    ``storable`` (numpy values become Python ones); anything it refuses raises a TypeError
    naming the key before any file is touched. A failed write keeps the old file. Returns the
    path written.
    """
    kind = _class_name(model)
    metadata = storable(metadata)
    path = check_writable(path)
    config = storable(model.config, "model.config")
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "model": kind, "config": config,
               "state_dict": state_dict, "metadata": metadata,
               "digest": weights_digest(kind, config, state_dict)}
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(payload, path)
    return path


def _write_atomically(payload: dict, path: Path) -> None:
    """Serialise ``payload``, check that it loads back, then write it with ``atomic_write``."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever it is, the file would not load
        raise TypeError(f"{path} was not written: the checkpoint would not load back "
                        f"({type(err).__name__}); pass plain metadata") from None
    with atomic_write(path, "wb") as fh:
        fh.write(buffer.getbuffer())


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LatentModel:
    """Rebuild the saved model; its metadata is on ``model.metadata`` (a dict). Eval mode.

    ``map_location`` is a device this machine has (``"cpu"``, ``"cuda"``, ``"mps"``, a
    ``torch.device``), checked as ``fit`` checks ``device``. A missing file raises
    FileNotFoundError; any other problem with the file (not a checkpoint, truncated, edited,
    other objects in it) a ``CheckpointError`` naming it.
    """
    map_location = check_device(map_location, "map_location")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint at {path}. Train one with `python -m vaelab train --out {path}` "
            "or save a model with vaelab.save(model, path).")
    payload = _read(path)
    _check_payload(path, payload)
    kind, config = payload["model"], {k: tuple(v) if isinstance(v, list) else v
                                      for k, v in payload["config"].items()}
    try:
        model = MODELS[kind](**config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its configuration {config} does not fit model "
                              f"{kind!r} ({err}); the file was edited or is damaged") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the weights do not match {kind}({config}): "
                              f"{_first_line(err)}") from None
    model.metadata = payload["metadata"]
    return model.to(map_location).eval()


def _first_line(err: BaseException) -> str:
    """The first line of an error's message (at most 150 characters), or its type's name."""
    lines = str(err).strip().splitlines()
    return lines[0][:150] if lines else type(err).__name__


def _read(path: Path):
    """The unpickled contents of ``path``, loaded with ``weights_only=True``."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a vaelab checkpoint: vaelab.save writes a zip "
                              "archive and this file is not one (truncated, corrupt, or "
                              "another kind of file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to parse means a bad file
        text = str(err)
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", text)
        if isinstance(err, pickle.UnpicklingError) and "Weights only" in text:
            what = f" such as {found.group(1)}" if found else ""
            raise CheckpointError(
                f"{path} holds Python objects{what} besides plain data and tensors. vaelab "
                "loads checkpoints with weights_only=True so that a file never runs code, and "
                "refuses this one; vaelab.save never writes such objects.") from None
        detail = "" if "weights_only" in text or not text.strip() else f": {_first_line(err)}"
        raise CheckpointError(f"{path} could not be read as a checkpoint (truncated, corrupt, "
                              f"or not written by vaelab.save; {type(err).__name__}{detail})"
                              ) from None


def _check_payload(path: Path, payload) -> None:
    """A CheckpointError unless ``payload`` has every part of a vaelab checkpoint, intact."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vaelab checkpoint (no '{FORMAT}' marker); "
                              "for a bare state_dict, build the model and call load_state_dict.")
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {version!r}; this vaelab "
                              f"reads up to {VERSION} — upgrade vaelab.")
    kinds = {"model": str, "config": dict, "state_dict": dict, "metadata": dict}
    for key, kind in kinds.items():
        if not isinstance(payload.get(key), kind):
            got = "is missing" if key not in payload else f"is {describe(payload[key])}"
            raise CheckpointError(f"{path}: its {key!r} entry {got}, not a {kind.__name__}; "
                                  "the file was edited or not written by vaelab.save")
    if not all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values()):
        raise CheckpointError(f"{path}: its weights are not all tensors; the file was edited")
    if payload["model"] not in MODELS:
        raise CheckpointError(f"{path} holds an unknown model {payload['model']!r}; "
                              f"known: {sorted(MODELS)}")
    digest = payload.get("digest")  # files from before the digest load without the check
    if digest is not None and digest != weights_digest(payload["model"], payload["config"],
                                                       payload["state_dict"]):
        raise CheckpointError(f"{path} was changed after vaelab.save wrote it: its model name, "
                              "configuration or weights no longer match the digest saved with "
                              "them. Save the model again from the code that trained it.")
