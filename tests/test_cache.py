import json

import numpy as np
import pytest
import torch

from vaelab import cache, load
from vaelab.cache import cache_key, plain, train_or_load
from vaelab.models import VAE


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def tiny_vae():
    return VAE(2, hidden=(32,))


def test_train_or_load_caches_by_settings(small, tmp_path, monkeypatch, capsys):
    x, _ = small
    model, history = train_or_load("demo", tiny_vae, x, epochs=1, progress=False,
                                   folder=tmp_path)
    assert len(list(tmp_path.glob("demo-*.pt"))) == 1

    monkeypatch.setattr(cache, "fit_checked",
                        lambda *a, **k: pytest.fail("retrained a cached model"))
    again, history2 = train_or_load("demo", tiny_vae, x, epochs=1, progress=False,
                                    folder=tmp_path)
    assert "Loaded the trained VAE" in capsys.readouterr().out
    assert torch.equal(params(again), params(model)) and history2.train == history.train
    assert history2.loaded and not history.loaded
    monkeypatch.undo()

    train_or_load("demo", tiny_vae, x, epochs=2, progress=False, folder=tmp_path)
    assert len(list(tmp_path.glob("demo-*.pt"))) == 2  # other settings never overwrite
    train_or_load("demo", tiny_vae, x.flip(-1), epochs=1, progress=False,
                  folder=tmp_path)
    assert len(list(tmp_path.glob("demo-*.pt"))) == 3  # nor do other images of the same size
    retrained, _ = train_or_load("demo", tiny_vae, x, epochs=1, seed=0, retrain=True,
                                 progress=False, folder=tmp_path)
    assert torch.equal(params(retrained), params(model))  # same seed, same data


def test_numpy_settings_are_cached_and_found_again(small, tmp_path, monkeypatch, capsys):
    x, _ = small
    train_or_load("np", tiny_vae, x, epochs=1, beta=np.float64(4), lr=np.float32(1e-3),
                  progress=False, folder=tmp_path)
    monkeypatch.setattr(cache, "fit_checked",
                        lambda *a, **k: pytest.fail("retrained a cached model"))
    _, history = train_or_load("np", tiny_vae, x, epochs=np.int64(1), beta=4.0,
                               lr=np.float32(1e-3), progress=False, folder=tmp_path)
    assert history.loaded and "Loaded the trained VAE" in capsys.readouterr().out


def test_cache_key_changes_when_two_images_swap_or_two_pixels_move(small):
    x, _ = small
    swapped = x.clone()
    swapped[[0, 1]] = x[[1, 0]]
    nudged = x.clone()
    nudged[0, 0, 10, 10] += 0.25
    nudged[1, 0, 10, 10] -= 0.25
    keys = {cache_key({"train_data": d, "epochs": 1}) for d in (x, swapped, nudged)}
    assert len(keys) == 3
    assert cache_key({"train_data": x.clone(), "epochs": 1}) in keys


def test_cache_key_counts_every_setting_and_numpy_equals_python(small):
    x, test = small
    base = {"train_data": x, "epochs": 2, "beta": 4.0}
    assert cache_key(base) == cache_key({**base, "beta": np.float64(4), "epochs": np.int64(2)})
    assert cache_key(base) != cache_key({**base, "test_data": test})
    assert cache_key(base) != cache_key({**base, "epochs": 3})
    assert len(cache_key(base)) == 64


def test_test_data_is_part_of_the_cache_key(small, tmp_path):
    x, test = small
    train_or_load("t", tiny_vae, x, epochs=1, progress=False, folder=tmp_path)
    _, history = train_or_load("t", tiny_vae, x, epochs=1, test_data=test, progress=False,
                               folder=tmp_path)
    assert not history.loaded and len(history.test) == 1
    assert len(list(tmp_path.glob("t-*.pt"))) == 2


def test_plain_converts_numpy_and_torch_scalars_and_fingerprints_tensors():
    settings = {"beta": np.float64(4), "n": np.int32(3), "ok": np.bool_(True),
                "sizes": np.array([400, 100]), "hidden": (400,), "lr": torch.tensor(1e-3),
                "device": torch.device("cpu"), "x": torch.zeros(2, 3)}
    got = plain(settings)
    assert got["beta"] == 4.0 and type(got["beta"]) is float
    assert type(got["n"]) is int and got["ok"] is True
    assert got["sizes"] == [400, 100] and got["hidden"] == [400]
    assert type(got["lr"]) is float and got["device"] == "cpu"
    assert got["x"]["shape"] == [2, 3] and len(got["x"]["sha256"]) == 64
    json.dumps(got)  # plain means JSON-able


@pytest.mark.parametrize("value", [len, {1, 2}, object()])
def test_plain_refuses_what_text_would_not_identify_naming_the_key(value):
    with pytest.raises(TypeError, match=r"settings\['fit'\]\['loss'\] is"):
        plain({"fit": {"loss": value}})


def test_a_cached_file_that_does_not_load_says_so_and_retrains(small, tmp_path, capsys):
    x, _ = small
    train_or_load("bad", tiny_vae, x, epochs=1, progress=False, folder=tmp_path)
    (path,) = tmp_path.glob("bad-*.pt")
    path.write_bytes(b"damaged")
    capsys.readouterr()
    _, history = train_or_load("bad", tiny_vae, x, epochs=1, progress=False, folder=tmp_path)
    out = capsys.readouterr().out
    assert "Training anew: the cached model does not load" in out and out.count("\n") == 1
    assert not history.loaded
    assert load(path).metadata["history"]["train"] == history.train  # cached again


def test_unwritable_cache_folder_is_refused_before_training(small, tmp_path, monkeypatch):
    x, _ = small
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.setattr(cache, "fit_checked",
                        lambda *a, **k: pytest.fail("trained before checking"))
    with pytest.raises(ValueError, match="afile is a file.*VAELAB_CACHE"):
        train_or_load("m", tiny_vae, x, epochs=1, progress=False, folder=tmp_path / "afile")


def test_a_failed_cache_write_after_training_says_so_and_returns_the_model(small, tmp_path,
                                                                          monkeypatch, capsys):
    x, _ = small

    def full_disk(*args, **kwargs):
        raise OSError("disk full or not writable: somewhere")

    monkeypatch.setattr(cache, "save", full_disk)
    model, history = train_or_load("m", tiny_vae, x, epochs=1, progress=False, folder=tmp_path)
    assert len(history) == 1 and isinstance(model, VAE)
    assert "is not cached (disk full" in capsys.readouterr().out


def test_images_seen_is_keyed_as_the_epochs_it_gives(small, tmp_path, monkeypatch, capsys):
    x, _ = small  # 512 images: 513 images seen are 2 epochs
    _, history = train_or_load("b", tiny_vae, x, images_seen=513, progress=False,
                               folder=tmp_path)
    assert len(history) == 2
    monkeypatch.setattr(cache, "fit_checked",
                        lambda *a, **k: pytest.fail("retrained a cached model"))
    _, again = train_or_load("b", tiny_vae, x, epochs=2, progress=False, folder=tmp_path)
    assert again.loaded
