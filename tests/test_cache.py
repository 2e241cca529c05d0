import pytest
import torch

from vaelab import cache
from vaelab.cache import train_or_load
from vaelab.models import VAE


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_train_or_load_caches_by_settings(small, tmp_path, monkeypatch, capsys):
    x, _ = small
    model, history = train_or_load("demo", lambda: VAE(2), x, epochs=1, progress=False,
                                   folder=tmp_path)
    assert len(list(tmp_path.glob("demo-*.pt"))) == 1

    monkeypatch.setattr(cache, "fit", lambda *a, **k: pytest.fail("retrained a cached model"))
    again, history2 = train_or_load("demo", lambda: VAE(2), x, epochs=1, progress=False,
                                    folder=tmp_path)
    assert "Loaded the trained VAE" in capsys.readouterr().out
    assert torch.equal(params(again), params(model)) and history2.train == history.train
    assert history2.loaded and not history.loaded
    monkeypatch.undo()

    train_or_load("demo", lambda: VAE(2), x, epochs=2, progress=False, folder=tmp_path)
    assert len(list(tmp_path.glob("demo-*.pt"))) == 2  # other settings never overwrite
    train_or_load("demo", lambda: VAE(2), x.flip(-1), epochs=1, progress=False,
                  folder=tmp_path)
    assert len(list(tmp_path.glob("demo-*.pt"))) == 3  # nor do other images of the same size
    retrained, _ = train_or_load("demo", lambda: VAE(2), x, epochs=1, seed=0, retrain=True,
                                 progress=False, folder=tmp_path)
    assert torch.equal(params(retrained), params(model))  # same seed, same data
