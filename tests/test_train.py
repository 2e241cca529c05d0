import platform
import resource

import pytest
import torch

import vaelab
from vaelab import train
from vaelab.models import VAE, ConvVAE
from vaelab.train import NonFiniteLossError, evaluate, fit


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_fit_learns_and_reports_history(small):
    x, xt = small
    torch.manual_seed(0)
    model = VAE(2)
    before = evaluate(model, xt)
    history = fit(model, x, epochs=3, test_data=xt, progress=False, device="cpu")
    assert len(history) == 3 and len(history.test) == 3 and len(history.seconds) == 3
    assert all(s > 0 for s in history.seconds)
    assert set(history.train[0]) == {"total", "reconstruction", "kl"}
    assert history.test[-1]["total"] < before["total"] - 100  # from ~545 to well under 450
    assert history.train[-1]["total"] < history.train[0]["total"]
    for row in history.train + history.test:
        assert row["total"] == pytest.approx(row["reconstruction"] + row["kl"], rel=1e-5)
    assert history.stopped is None and not model.training


def test_same_seed_same_result_on_cpu(small):
    x, xt = small
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        model = VAE(3)
        history = fit(model, x, epochs=2, seed=11, test_data=xt, progress=False, device="cpu")
        runs.append((params(model), history.train, history.test))
    assert torch.equal(runs[0][0], runs[1][0])
    assert runs[0][1:] == runs[1][1:]
    torch.manual_seed(5)
    other = VAE(3)
    fit(other, x, epochs=2, seed=12, progress=False, device="cpu")
    assert not torch.equal(params(other), runs[0][0])


def test_beta_zero_is_an_autoencoder_through_the_same_code(small):
    x, _ = small
    torch.manual_seed(0)
    history = fit(VAE(2), x, epochs=1, beta=0.0, progress=False)
    row = history.train[0]
    assert row["total"] == pytest.approx(row["reconstruction"])
    assert row["kl"] > 0  # still measured, just not minimised


def test_anchor_rate_changes_the_kl_term(small):
    x, _ = small
    torch.manual_seed(0)
    model = VAE(2)
    plain = evaluate(model, x, likelihood="gaussian")
    anchored = evaluate(model, x, likelihood="gaussian", anchor_rate=3.0)
    assert plain["reconstruction"] == pytest.approx(anchored["reconstruction"])
    assert anchored["kl"] != pytest.approx(plain["kl"])
    fit(model, x, epochs=1, likelihood="gaussian", anchor_rate=3.0, progress=False)


def test_conv_vae_trains(small):
    x, xt = small
    torch.manual_seed(0)
    history = fit(ConvVAE(4), x[:128], epochs=1, test_data=xt[:32], progress=False)
    assert history.test[0]["total"] < 545


def test_non_finite_loss_stops_with_a_clear_message(small):
    x, _ = small
    torch.manual_seed(0)
    model = VAE(2)
    with pytest.raises(NonFiniteLossError, match=r"epoch \d+, batch \d+/4.*lower learning rate") \
            as info:
        fit(model, x, epochs=50, lr=1e8, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert info.value.history.stopped == "non-finite loss"


def test_keyboard_interrupt_keeps_model_and_history(small, monkeypatch, capsys):
    x, _ = small
    torch.manual_seed(0)
    model = VAE(2)
    start = params(model).clone()
    calls = {"n": 0}
    real_forward = VAE.forward

    def forward(self, xb):
        calls["n"] += 1
        if calls["n"] == 7:  # epoch 2, batch 3 of 4
            raise KeyboardInterrupt
        return real_forward(self, xb)

    monkeypatch.setattr(VAE, "forward", forward)
    history = fit(model, x, epochs=5, progress=False)
    assert history.stopped == "interrupted" and len(history) == 1
    assert not torch.equal(params(model), start)
    assert "Interrupted at epoch 2, batch 3" in capsys.readouterr().out


@pytest.mark.parametrize(("data", "error", "message"), [
    (torch.rand(64, 1, 28, 28) * 255, ValueError, "divide by 255"),
    (torch.rand(64, 28, 28), ValueError, "unsqueeze"),
    (torch.rand(64, 1, 32, 32), ValueError, r"\(N, 1, 28, 28\)"),
])
def test_bad_training_input(data, error, message):
    with pytest.raises(error, match=message):
        fit(VAE(2), data, epochs=1, progress=False)


def test_bad_arguments():
    x = torch.rand(8, 1, 28, 28)
    with pytest.raises(TypeError, match="vaelab model"):
        fit(torch.nn.Linear(2, 2), x, epochs=1)
    with pytest.raises(ValueError, match="likelihood"):
        fit(VAE(2), x, epochs=1, likelihood="poisson")
    with pytest.raises(ValueError, match="epochs"):
        fit(VAE(2), x, epochs=-1)


def test_accepts_image_data_and_pairs(mnist):
    train_set, _ = mnist
    small = vaelab.ImageData(train_set.images[:128], train_set.labels[:128], "embedded")
    assert len(fit(VAE(2), small, epochs=1, progress=False)) == 1
    assert len(fit(VAE(2), (small.images, small.labels), epochs=1, progress=False)) == 1


def test_default_device_is_cpu_here():
    assert train.default_device().type == "cpu"


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc's mallopt")
def test_training_on_the_cpu_reuses_freed_memory_without_page_faults():
    def page_faults_of_a_fresh_16_mib_buffer():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(4 << 20)  # allocated, written and freed, as a training step does
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    assert train.keep_freed_memory()
    page_faults_of_a_fresh_16_mib_buffer()  # the heap grows once
    assert page_faults_of_a_fresh_16_mib_buffer() < 100  # glibc's default: 4,096 (4 KiB pages)


def test_quick_mode(monkeypatch):
    monkeypatch.setenv("VAELAB_QUICK", "1")
    assert train.quick_mode()
    monkeypatch.setenv("VAELAB_QUICK", "0")
    assert not train.quick_mode()
