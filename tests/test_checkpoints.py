import os

import pytest
import torch

from vaelab import checkpoints
from vaelab.checkpoints import CheckpointError, load, save
from vaelab.models import AE, VAE, ConvVAE


@pytest.mark.parametrize("make", [lambda: AE(3), lambda: VAE(2, hidden=(400, 100),
                                  activation="tanh"), lambda: ConvVAE(5)])
def test_round_trip_keeps_class_arguments_weights_and_metadata(make, tmp_path, seeded):
    model = make()
    history = {"train": [{"total": 1.5}], "test": [], "seconds": [0.1], "stopped": None}
    path = save(model, tmp_path / "sub" / "m.pt", settings={"lr": 1e-3, "beta": 4.0},
                history=history)
    loaded = load(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.metadata == {"settings": {"lr": 1e-3, "beta": 4.0}, "history": history}
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded.reconstruct(x), model.eval().reconstruct(x))
    assert not loaded.training


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m vaelab train"):
        load(tmp_path / "nope.pt")


def test_truncated_file(tmp_path):
    path = save(VAE(2), tmp_path / "m.pt")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load(path)


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError):
        load(junk)
    bare = tmp_path / "bare.pt"
    torch.save(VAE(2).state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a vaelab checkpoint"):
        load(bare)


def test_mismatched_weights(tmp_path):
    path = save(VAE(2), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["latent_dim"] = 3
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match"):
        load(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_loading_never_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoints.FORMAT, "version": 1, "model": "vae", "config": {},
                "state_dict": {}, "metadata": {"x": _Exploit()}}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load(path)
    assert not (tmp_path / "pwned").exists()


def test_save_is_atomic(tmp_path, monkeypatch):
    path = save(VAE(2), tmp_path / "m.pt", note="the good one")

    def failing_save(obj, fh, *args, **kwargs):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save(VAE(2), path, note="the broken one")
    monkeypatch.undo()
    assert load(path).metadata["note"] == "the good one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temp files left


def test_save_refuses_other_modules(tmp_path):
    with pytest.raises(TypeError, match="vaelab model"):
        save(torch.nn.Linear(2, 2), tmp_path / "x.pt")
