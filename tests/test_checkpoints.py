import errno
import os
import stat
import zipfile

import numpy as np
import pytest
import torch

from vaelab import checkpoints, files
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


@pytest.mark.parametrize("blob", [os.urandom(1000), b"a text file, not a checkpoint\n" * 9,
                                  b"", b"PK\x03\x04" + os.urandom(200)],
                         ids=["random", "text", "empty", "zip-header"])
def test_not_a_checkpoint(tmp_path, blob):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(blob)
    with pytest.raises(CheckpointError, match="junk.pt") as err:
        load(junk)
    assert "weights_only=False" not in str(err.value)
    bare = tmp_path / "bare.pt"
    torch.save(VAE(2).state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a vaelab checkpoint"):
        load(bare)


def edit(path, change):
    """Load a checkpoint's payload, apply ``change`` to it and write it back with torch.save."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_mismatched_weights_in_a_checkpoint_without_digest(tmp_path):
    path = save(VAE(2), tmp_path / "m.pt")
    edit(path, lambda p: (p["config"].update(latent_dim=3), p.pop("digest")))
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
    with pytest.raises(CheckpointError, match="objects such as posix.system") as err:
        load(path)
    assert not (tmp_path / "pwned").exists()
    assert "weights_only=True" in str(err.value) and "weights_only=False" not in str(err.value)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = save(VAE(2), tmp_path / "m.pt", note="the good one")

    def failing_fsync(fd):  # half the file is written when the disk fills up
        os.write(fd, b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full or not writable: .*m.pt"):
        save(VAE(2), path, note="the broken one")
    monkeypatch.undo()
    assert load(path).metadata["note"] == "the good one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temp files left


def test_save_refuses_other_modules(tmp_path):
    with pytest.raises(TypeError, match="vaelab model"):
        save(torch.nn.Linear(2, 2), tmp_path / "x.pt")


def test_edited_activation_is_refused_by_the_digest(tmp_path):
    path = save(VAE(2, activation="relu"), tmp_path / "m.pt")
    edit(path, lambda p: p["config"].update(activation="tanh"))
    with pytest.raises(CheckpointError, match="m.pt was changed after vaelab.save"):
        load(path)


def test_edited_weights_are_refused_by_the_digest(tmp_path):
    path = save(VAE(2), tmp_path / "m.pt")
    edit(path, lambda p: p["state_dict"]["to_stats.bias"].add_(0.001))
    with pytest.raises(CheckpointError, match="changed after vaelab.save"):
        load(path)


def test_checkpoint_without_digest_still_loads(tmp_path):
    model = VAE(2)
    path = save(model, tmp_path / "old.pt", note="from before the digest")
    edit(path, lambda p: p.pop("digest"))
    assert torch.equal(load(path).to_stats.bias, model.to_stats.bias)


def test_model_name_edited_to_another_model_is_a_checkpoint_error(tmp_path):
    path = save(VAE(2), tmp_path / "m.pt")
    edit(path, lambda p: (p.update(model="convvae"), p.pop("digest")))
    with pytest.raises(CheckpointError, match="does not fit model 'convvae'"):
        load(path)
    edit(path, lambda p: p.update(model="vae2"))
    with pytest.raises(CheckpointError, match="unknown model 'vae2'"):
        load(path)


@pytest.mark.parametrize("key", ["model", "config", "state_dict", "metadata"])
def test_missing_entry_is_a_checkpoint_error_naming_it(tmp_path, key):
    path = save(VAE(2), tmp_path / "m.pt")
    edit(path, lambda p: p.pop(key))
    with pytest.raises(CheckpointError, match=f"m.pt: its '{key}' entry is missing"):
        load(path)


def test_save_converts_numpy_metadata_to_plain_python(tmp_path):
    path = save(VAE(2), tmp_path / "m.pt", settings={"beta": np.float64(4), "epochs": np.int64(3),
                                                     "sizes": np.array([1, 2])})
    settings = load(path).metadata["settings"]
    assert settings == {"beta": 4.0, "epochs": 3, "sizes": [1, 2]}
    assert [type(v) for v in settings.values()] == [float, int, list]


@pytest.mark.parametrize(("metadata", "where"), [
    ({"settings": {"loss": len}}, r"metadata\['settings'\]\['loss'\] is <built-in function len>"),
    ({"net": VAE(2)}, r"metadata\['net'\] is"),
    ({"tags": frozenset({"a"})}, r"metadata\['tags'\] is .*sorted"),
])
def test_save_refuses_metadata_it_cannot_load_and_keeps_the_old_file(tmp_path, metadata, where):
    path = save(VAE(2), tmp_path / "m.pt", note="the good one")
    before = path.read_bytes()
    with pytest.raises(TypeError, match=where):
        save(VAE(2), path, **metadata)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_save_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    path = save(VAE(2), "~/runs/x.pt")
    assert path == tmp_path / "home" / "runs" / "x.pt" and path.exists()
    assert not (tmp_path / "~").exists()
    assert load("~/runs/x.pt").latent_dim == 2


def test_saved_file_gets_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o022)
    try:
        path = save(VAE(2), tmp_path / "m.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_save_under_a_file_says_which_path_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(ValueError, match="afile is a file, not a folder"):
        save(VAE(2), tmp_path / "afile" / "x.pt")


def test_save_to_a_folder_asks_for_a_file_name(tmp_path):
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        save(VAE(2), tmp_path)


def test_disk_full_says_so_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = save(VAE(2), tmp_path / "m.pt", note="the good one")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OSError, match=f"disk full or not writable: {path}"):
        save(VAE(2), path, note="the new one")
    monkeypatch.undo()
    assert load(path).metadata["note"] == "the good one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_check_writable_refuses_a_folder_that_takes_no_files(tmp_path):
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux's /proc, where no file can be created even as root")
    with pytest.raises(ValueError, match="/proc is not writable"):
        checkpoints.check_writable("/proc/vaelab-test/x.pt")


def test_a_zip_whose_pickle_is_cut_short_is_a_checkpoint_error(tmp_path):
    """torch raises a bare EOFError (no message) for this one; it once gave an IndexError."""
    path = save(VAE(2), tmp_path / "m.pt")
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob[:-30] if name.endswith("data.pkl") else blob)
    with pytest.raises(CheckpointError, match="m.pt could not be read as a checkpoint"):
        load(path)
