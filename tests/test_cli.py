import csv
import subprocess
import sys

import torch

from vaelab import load
from vaelab.cli import main


def test_train_then_encode(tmp_path, capsys):
    out = tmp_path / "runs" / "vae.pt"
    assert main(["train", "--model", "vae", "--latent", "2", "--beta", "1", "--epochs", "1",
                 "--out", str(out)]) == 0
    model = load(out)
    assert model.latent_dim == 2
    assert model.metadata["settings"]["epochs"] == 1
    assert model.metadata["data"]["source"] == "embedded"
    assert len(model.metadata["history"]["test"]) == 1
    assert "saved" in capsys.readouterr().out

    csv_path = tmp_path / "latents.csv"
    assert main(["encode", str(out), "--out", str(csv_path)]) == 0
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["label", "mu_0", "mu_1"] and len(rows) == 1001
    labels = torch.tensor([int(r[0]) for r in rows[1:]])
    assert labels.bincount().tolist() == [100] * 10
    assert all(len(r) == 3 and float(r[1]) == float(r[1]) for r in rows[1:])


def test_train_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "keep.pt"
    out.write_bytes(b"precious")
    assert main(["train", "--epochs", "0", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "vaelab", "train", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--latent" in result.stdout and "--beta" in result.stdout
