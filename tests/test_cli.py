import csv
import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from vaelab import checkpoints, load, train
from vaelab.cli import main


@pytest.fixture
def fast(tmp_path):
    """Options for a quick run: 128 training and 30 test images (3 of each digit) in IDX files
    under tmp_path/data, a 32-unit hidden layer, one epoch."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 128), ("t10k", 30)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        for name, blob in ((f"{prefix}-images-idx3-ubyte", struct.pack(">IIII", 2051, n, 28, 28)
                            + images.tobytes()),
                           (f"{prefix}-labels-idx1-ubyte", struct.pack(">II", 2049, n)
                            + labels.tobytes())):
            (raw / f"{name}.gz").write_bytes(gzip.compress(blob))
    return ["--data-root", str(tmp_path / "data"), "--hidden", "32", "--epochs", "1"]


def test_train_then_encode(tmp_path, capsys, fast):
    out = tmp_path / "runs" / "vae.pt"
    assert main(["train", "--model", "vae", "--latent", "2", "--beta", "1", *fast,
                 "--out", str(out)]) == 0
    model = load(out)
    assert model.latent_dim == 2
    assert model.metadata["settings"]["epochs"] == 1
    assert model.metadata["data"]["source"] == "files"
    assert len(model.metadata["history"]["test"]) == 1
    assert "saved" in capsys.readouterr().out

    csv_path = tmp_path / "latents.csv"
    assert main(["encode", str(out), "--out", str(csv_path), *fast[:2]]) == 0
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["label", "mu_0", "mu_1"] and len(rows) == 31
    labels = torch.tensor([int(r[0]) for r in rows[1:]])
    assert labels.bincount().tolist() == [3] * 10
    assert all(len(r) == 3 and float(r[1]) == float(r[1]) for r in rows[1:])


def error_line(capsys) -> str:
    """The one ``error:`` line on stderr (asserting there is one, and no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def no_training(monkeypatch):
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("trained before checking"))


def test_train_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "keep.pt"
    out.write_bytes(b"precious")
    assert main(["train", "--epochs", "1", "--out", str(out)]) == 2
    assert "--force" in error_line(capsys)
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize(("out", "message"), [
    ("afile/x.pt", "afile is a file, not a folder"),
    (".", "is a folder; give a file name"),
    ("/proc/vaelab-test/x.pt", "/proc is not writable"),
])
def test_unwritable_out_is_refused_before_training(tmp_path, monkeypatch, capsys, fast, out,
                                                   message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file")
    no_training(monkeypatch)
    assert main(["train", *fast, "--out", out, "--force"]) == 2
    assert message in error_line(capsys)


def test_a_failed_save_after_training_writes_the_model_elsewhere_and_says_where(
        tmp_path, monkeypatch, capsys, fast):
    out = tmp_path / "m.pt"
    real_save = checkpoints.save

    def save_fails_at_out(model, path, **metadata):
        if path == out:
            raise OSError(f"disk full or not writable: {out}")
        return real_save(model, path, **metadata)

    monkeypatch.setattr(checkpoints, "save", save_fails_at_out)
    assert main(["train", *fast, "--out", str(out)]) == 1
    err = error_line(capsys)
    fallback = err.split("saved to ")[1].split(" instead")[0]
    assert "disk full" in err and load(fallback).metadata["settings"]["epochs"] == 1


def test_nan_loss_keeps_the_finished_epochs_in_a_checkpoint(tmp_path, monkeypatch, capsys, fast):
    real_fit = train.fit

    def fit_then_nan(model, train_data, **kwargs):
        history = real_fit(model, train_data, **{**kwargs, "epochs": 1})
        history.stopped = "non-finite loss"
        raise train.NonFiniteLossError("training stopped: the loss became nan at epoch 2",
                                       history, 1)

    monkeypatch.setattr(train, "fit", fit_then_nan)
    out = tmp_path / "m.pt"
    assert main(["train", *fast, "--epochs", "3", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "error: training stopped: the loss became nan" in captured.err
    assert "after epoch 1" in captured.out
    metadata = load(out).metadata
    assert len(metadata["history"]["train"]) == 1
    assert metadata["history"]["stopped"] == "non-finite loss"


def test_images_seen_gives_the_epochs_and_says_so(tmp_path, capsys, fast):
    out = tmp_path / "m.pt"
    assert main(["train", *fast[:4], "--images-seen", "129", "--out", str(out)]) == 0
    assert "--images-seen 129: 2 epochs of 128 training images" in capsys.readouterr().out
    settings = load(out).metadata["settings"]
    assert settings["epochs"] == 2 and settings["images_seen"] == 129
    assert len(load(out).metadata["history"]["train"]) == 2


@pytest.mark.parametrize("argv", [
    ["--epochs", "2", "--images-seen", "100"],
    ["--lr", "-1"],
    ["--activation", "sigmoid"],
    ["--model", "gan"],
    ["--latent", "0"],
])
def test_bad_options_exit_2_before_training(tmp_path, monkeypatch, capsys, argv):
    no_training(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(["train", *argv, "--out", str(tmp_path / "m.pt")])
    assert exit_.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_choices_come_from_the_registries(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "{ae,vae,convvae}" in out and "{relu,tanh}" in out and "{bernoulli,gaussian}" in out


def test_convvae_with_mlp_options_is_a_usage_error(tmp_path, capsys):
    assert main(["train", "--model", "convvae", "--hidden", "32",
                 "--out", str(tmp_path / "m.pt")]) == 2
    assert "fixed architecture" in error_line(capsys)


def test_damaged_checkpoint_is_one_line_exit_1_and_debug_shows_the_traceback(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    assert main(["encode", str(junk), "--out", str(tmp_path / "z.csv")]) == 1
    assert "junk.pt is not a vaelab checkpoint" in error_line(capsys)
    with pytest.raises(checkpoints.CheckpointError):
        main(["encode", str(junk), "--out", str(tmp_path / "z.csv"), "--debug"])


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "vaelab", "train", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--latent" in result.stdout and "--beta" in result.stdout
