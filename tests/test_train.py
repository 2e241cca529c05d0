import pytest
import torch

import vaelab
from vaelab import train
from vaelab.models import VAE, ConvVAE
from vaelab.train import NonFiniteLossError, describe_budget, epochs_for, evaluate, fit


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_fit_learns_and_reports_history(small):
    x, xt = small
    torch.manual_seed(0)
    model = VAE(2)
    before = evaluate(model, xt)
    history = fit(model, x, epochs=3, test_data=xt, progress=False, device="cpu")
    assert len(history) == 3 and len(history.test) == 3 and len(history.seconds) == 3
    assert set(history.train[0]) == {"total", "reconstruction", "kl"}
    assert history.test[-1]["total"] < before["total"] - 100  # from ~545 to well under 450
    assert history.train[-1]["total"] < history.train[0]["total"]
    for row in history.train + history.test:
        assert row["total"] == pytest.approx(row["reconstruction"] + row["kl"], rel=1e-5)
    assert history.stopped is None and not model.training
    assert history.test[-1] == evaluate(model, xt)  # the history's test row is evaluate's


@pytest.mark.parametrize("tuned", [False, True], ids=["fixed-threads", "thread-tuner"])
def test_same_seed_same_result_on_cpu(small, monkeypatch, tuned):
    from vaelab import fast

    monkeypatch.setattr(fast, "tune_threads", tuned)  # the tuner may change threads mid-run
    x, xt = small
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        model = VAE(3)
        history = fit(model, x, epochs=2, seed=11, test_data=xt, progress=False, device="cpu")
        runs.append((params(model), history.train, history.test))
    if tuned:  # other thread counts round differently: the same up to float rounding
        assert torch.allclose(runs[0][0], runs[1][0], atol=1e-5)
    else:
        assert torch.equal(runs[0][0], runs[1][0])
        assert runs[0][1:] == runs[1][1:]
    torch.manual_seed(5)
    other = VAE(3)
    fit(other, x, epochs=2, seed=12, progress=False, device="cpu")
    assert not torch.equal(params(other), runs[0][0])


def test_beta_zero_is_an_autoencoder_through_the_same_code(small):
    x, _ = small
    torch.manual_seed(0)
    history = fit(VAE(2), x, epochs=1, beta=0.0, progress=False, device="cpu")
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
    history = fit(model, x, epochs=1, likelihood="gaussian", anchor_rate=3.0, progress=False,
                  device="cpu")
    assert len(history) == 1


def test_conv_vae_trains(small):
    x, xt = small
    torch.manual_seed(0)
    history = fit(ConvVAE(4), x[:128], epochs=1, test_data=xt[:32], progress=False,
                  device="cpu")
    assert history.test[0]["total"] < 545


def test_evaluate_is_repeatable_and_leaves_the_global_random_state_alone(small):
    _, xt = small
    torch.manual_seed(0)
    model = VAE(2)
    state = torch.get_rng_state()
    first = evaluate(model, xt, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert evaluate(model, xt, seed=3) == first
    assert evaluate(model, xt, seed=4)["total"] != first["total"]


def test_divergence_puts_back_the_initial_state_when_epoch_one_fails(small):
    x, xt = small
    torch.manual_seed(0)
    model = VAE(2)
    start = params(model).clone()
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch \d+/4.*lower learning rate") \
            as info:
        fit(model, x, epochs=50, lr=1e6, progress=False, device="cpu")
    assert torch.equal(params(model), start)
    assert info.value.kept_epoch == 0 and "before training" in str(info.value)
    assert info.value.history.stopped == "non-finite loss"
    assert evaluate(model, xt)["total"] == pytest.approx(evaluate(VAE(2).eval(), xt)["total"],
                                                         rel=0.05)  # finite, untrained


def nan_at_call(monkeypatch, n):
    """Make VAE.forward return NaN logits on its n-th call."""
    calls = {"n": 0}
    real_forward = VAE.forward

    def forward(self, xb, **kwargs):
        calls["n"] += 1
        logits, mu, logvar = real_forward(self, xb, **kwargs)
        return (logits * float("nan") if calls["n"] == n else logits), mu, logvar

    monkeypatch.setattr(VAE, "forward", forward)


@pytest.mark.parametrize(("failing_call", "where"), [(6, "epoch 2, batch 2/4"),
                                                     (9, "epoch 3, batch 1/4")])
def test_divergence_puts_back_the_last_good_state_and_keeps_the_history(
        small, monkeypatch, failing_call, where):
    """4 batches an epoch: call 6 is batch 2 of epoch 2, so the start of epoch 2 (the end of
    epoch 1) gave a finite loss and is kept; call 9 is batch 1 of epoch 3, so the end of epoch 2
    never did, and the end of epoch 1 is kept in both cases."""
    x, _ = small
    torch.manual_seed(0)
    after_one_epoch = VAE(2)
    fit(after_one_epoch, x, epochs=1, progress=False, device="cpu")
    torch.manual_seed(0)
    model = VAE(2)
    nan_at_call(monkeypatch, failing_call)
    with pytest.raises(NonFiniteLossError, match=where) as info:
        fit(model, x, epochs=5, progress=False, device="cpu")
    assert torch.equal(params(model), params(after_one_epoch))
    assert info.value.kept_epoch == 1 and "after epoch 1" in str(info.value)
    assert len(info.value.history) == failing_call // 4


def test_keyboard_interrupt_keeps_model_and_history(small, monkeypatch, capsys):
    x, _ = small
    torch.manual_seed(0)
    model = VAE(2)
    start = params(model).clone()
    calls = {"n": 0}
    real_forward = VAE.forward

    def forward(self, xb, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # epoch 2, batch 3 of 4
            raise KeyboardInterrupt
        return real_forward(self, xb, **kwargs)

    monkeypatch.setattr(VAE, "forward", forward)
    history = fit(model, x, epochs=5, progress=False, device="cpu")
    assert history.stopped == "interrupted" and len(history) == 1
    assert not torch.equal(params(model), start)
    assert "Interrupted at epoch 2, batch 3" in capsys.readouterr().out


def test_interrupt_during_evaluation_keeps_train_and_test_the_same_length(small, monkeypatch):
    x, xt = small
    calls = {"n": 0}
    real_evaluate = train.mean_terms

    def evaluate_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train, "mean_terms", evaluate_then_interrupt)
    history = fit(VAE(2), x, epochs=3, test_data=xt, progress=False, device="cpu")
    assert history.stopped == "interrupted"
    assert len(history.train) == len(history.test) == len(history.seconds) == 1


@pytest.mark.parametrize(("data", "message"), [
    (torch.rand(64, 1, 28, 28) * 255, "divide by 255"),
    (torch.rand(64, 28, 28), "unsqueeze"),
    (torch.rand(64, 1, 32, 32), r"\(N, 1, 28, 28\); got \(64, 1, 32, 32\)"),
    (torch.rand(0, 1, 28, 28), "empty"),
    (torch.rand(64, 1, 28, 28).double(), r"x\.float\(\)"),
    (torch.rand(64, 1, 28, 28).half(), r"x\.float\(\)"),
    (torch.rand(64, 1, 28, 28).bfloat16(), r"x\.float\(\)"),
    ((torch.rand(64, 1, 28, 28) * 255).to(torch.uint8), r"x\.float\(\) / 255"),
])
def test_bad_training_images_are_refused_with_what_to_do(data, message):
    with pytest.raises(ValueError, match=message):
        fit(VAE(2, hidden=(8,)), data, epochs=1, progress=False, device="cpu")


X = torch.rand(16, 1, 28, 28)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"batch_size": 2.5}, TypeError, "batch_size"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"beta": "1"}, TypeError, "beta must be a number"),
    ({"beta": -1.0}, ValueError, "beta must be ≥ 0"),
    ({"beta": float("nan")}, ValueError, "beta must be a finite number"),
    ({"beta": float("inf")}, ValueError, "beta must be a finite number"),
    ({"lr": 0.0}, ValueError, "lr must be > 0"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number"),
    ({"epochs": True}, TypeError, "epochs"),
    ({"epochs": 1.5}, TypeError, "epochs"),
    ({"epochs": -1}, ValueError, "epochs"),
    ({"epochs": None}, TypeError, "exactly one of epochs"),
    ({"images_seen": 100}, TypeError, "exactly one of epochs"),
    ({"seed": -1}, ValueError, "seed"),
    ({"likelihood": "poisson"}, ValueError, "likelihood"),
    ({"anchor_rate": -1.0}, ValueError, "anchor_rate"),
    ({"device": "gpu"}, ValueError, "device"),
    ({"device": 0}, TypeError, "device"),
    ({"test_data": torch.rand(8, 1, 32, 32)}, ValueError, r"test images.*\(8, 1, 32, 32\)"),
    ({"test_data": torch.rand(8, 1, 28, 28) * 255}, ValueError, "divide by 255"),
])
def test_every_argument_is_checked_before_the_first_step(kwargs, error, message, monkeypatch):
    def no_training(*args, **kw):
        raise AssertionError("fit trained before checking its arguments")

    monkeypatch.setattr(train, "train_epoch", no_training)
    with pytest.raises(error, match=message):
        fit(VAE(2, hidden=(8,)), X, **{"epochs": 1, **kwargs}, progress=False)


def test_fit_refuses_what_is_not_a_model_or_images():
    with pytest.raises(TypeError, match="vaelab model"):
        fit(torch.nn.Linear(2, 2), X, epochs=1)
    with pytest.raises(TypeError, match="train_data"):
        fit(VAE(2), 3, epochs=1)


def test_images_seen_gives_the_epochs_that_cover_it(small):
    x, _ = small
    history = fit(VAE(2, hidden=(8,)), x, images_seen=1000, progress=False, device="cpu")
    assert len(history) == 2  # 1000 images of 512 per epoch: 2 epochs


def test_accepts_image_data_and_pairs(mnist):
    train_set, _ = mnist
    small = vaelab.ImageData(train_set.images[:128], train_set.labels[:128], "embedded")
    assert len(fit(VAE(2), small, epochs=1, progress=False, device="cpu")) == 1
    assert len(fit(VAE(2), (small.images, small.labels), epochs=1, progress=False,
                   device="cpu")) == 1


def test_default_device_prefers_cuda_then_mps_then_the_cpu(monkeypatch):
    mps = torch.backends.mps
    for cuda, apple, want in [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setattr(mps, "is_available", lambda apple=apple: apple)
        assert train.default_device().type == want


@pytest.mark.parametrize(("images_seen", "n_images", "epochs"), [
    (200_000, 4_000, 50), (200_000, 60_000, 4), (1, 4_000, 1), (8_001, 4_000, 3)])
def test_epochs_for_known_budgets(images_seen, n_images, epochs):
    assert epochs_for(images_seen, n_images) == epochs


@pytest.mark.parametrize(("args", "error"), [((0, 100), ValueError), ((100, 0), ValueError),
                                             ((100.0, 10), TypeError), (("100", 10), TypeError)])
def test_epochs_for_refuses_empty_or_non_integer_budgets(args, error):
    with pytest.raises(error):
        epochs_for(*args)


def test_describe_budget_says_data_budget_and_epochs():
    assert describe_budget(200_000, 4_000, "embedded") == (
        "embedded MNIST subset, 4,000 training images: 50 epochs = 200,000 images seen per "
        "model (budget 200,000)")
    assert describe_budget(1, 60_000, "files") == (
        "MNIST from files, 60,000 training images: 1 epoch = 60,000 images seen per model "
        "(budget 1)")


def test_quick_mode(monkeypatch):
    monkeypatch.setenv("VAELAB_QUICK", "1")
    assert train.quick_mode()
    monkeypatch.setenv("VAELAB_QUICK", "0")
    assert not train.quick_mode()


def test_kl_warmup_ramps_beta_from_zero_over_the_first_epochs(small):
    x, _ = small
    torch.manual_seed(0)
    history = fit(VAE(2), x, epochs=3, kl_warmup_epochs=2, progress=False, device="cpu")
    for row, weight in zip(history.train, (0.0, 0.5, 1.0), strict=True):  # β·min(1, (e-1)/2)
        assert row["total"] == pytest.approx(row["reconstruction"] + weight * row["kl"], rel=1e-5)
    with pytest.raises(ValueError, match="kl_warmup_epochs"):
        fit(VAE(2), x, epochs=1, kl_warmup_epochs=-1, progress=False, device="cpu")


def test_free_bits_reach_fit_and_keep_the_reported_kl_true(small):
    x, _ = small
    torch.manual_seed(0)
    history = fit(VAE(2), x, epochs=1, free_bits=50.0, progress=False, device="cpu")
    row = history.train[0]   # every unit below 50 nats: each is charged exactly 50
    assert row["total"] == pytest.approx(row["reconstruction"] + 2 * 50.0, rel=1e-5)
    assert 0 < row["kl"] < 100
