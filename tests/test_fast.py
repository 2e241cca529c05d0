import platform

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaelab import fast
from vaelab.checkpoints import load, save
from vaelab.fast import FastConvTranspose2d, speed_up
from vaelab.losses import vae_loss
from vaelab.models import ConvVAE


@pytest.mark.parametrize(("c_in", "c_out", "k", "stride", "hw", "bias"), [
    (1024, 8, 4, 2, (1, 1), True),   # one-pixel input: a single matrix multiply
    (16, 8, 6, 2, (4, 4), True),     # the ConvVAE's middle layer, small
    (64, 1, 6, 2, (12, 12), True),   # the ConvVAE's last layer
    (5, 3, (4, 6), (2, 3), (3, 5), False),  # rectangular kernel, stride and input; no bias
    (3, 5, 3, 2, (5, 5), True),      # kernel not a multiple of the stride: torch's kernel
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_conv_transpose_matches_torch(c_in, c_out, k, stride, hw, bias, channels_last,
                                           seeded):
    layer = FastConvTranspose2d(c_in, c_out, k, stride=stride, bias=bias)
    x = torch.randn(3, c_in, *hw)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ours = layer(x)
    ref = F.conv_transpose2d(x, layer.weight, layer.bias, stride=stride)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5)
    params = (x, layer.weight) if layer.bias is None else (x, layer.weight, layer.bias)
    grad = torch.randn_like(ref)
    g_ours = torch.autograd.grad(ours, params, grad)
    g_ref = torch.autograd.grad(ref, params, grad)
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_print_shows_which_transposed_convolution_runs():
    assert str(ConvVAE(4).decoder[0]) == \
        "FastConvTranspose2d(1024, 256, kernel_size=(4, 4), stride=(2, 2))"
    assert str(ConvVAE(4, fast=False).decoder[0]) == \
        "ConvTranspose2d(1024, 256, kernel_size=(4, 4), stride=(2, 2))"


def test_fast_flag_draws_the_same_weights_and_keeps_the_parameter_names():
    torch.manual_seed(0)
    quick = ConvVAE(4)
    after_quick = torch.rand(1)
    torch.manual_seed(0)
    plain = ConvVAE(4, fast=False)
    assert torch.equal(torch.rand(1), after_quick)  # the swap draws no random numbers
    assert list(quick.state_dict()) == list(plain.state_dict())
    for key, value in quick.state_dict().items():
        assert torch.equal(value, plain.state_dict()[key]), key
    assert "fast" not in quick.config  # checkpoints store only what changes the model


def test_speed_up_swaps_only_torch_transposed_convolutions_and_shares_their_parameters():
    model = nn.Sequential(nn.ConvTranspose2d(4, 2, 4, stride=2), nn.Conv2d(2, 2, 3))
    weight = model[0].weight
    speed_up(model)
    assert type(model[0]) is FastConvTranspose2d and type(model[1]) is nn.Conv2d
    assert model[0].weight is weight


def test_checkpoint_of_a_fast_model_loads_into_torch_layers_and_back(tmp_path):
    torch.manual_seed(1)
    model = ConvVAE(3).eval()
    save(model, tmp_path / "conv.pt")
    loaded = load(tmp_path / "conv.pt")
    assert type(loaded.decoder[2]) is FastConvTranspose2d
    plain = ConvVAE(3, fast=False).eval()
    plain.load_state_dict(model.state_dict())
    z = torch.randn(5, 3)
    assert torch.allclose(plain.decode(z), loaded.decode(z), atol=1e-5)


def test_conv_vae_trains_like_one_built_from_torch_layers(seeded):
    """Same weights, same noise: the loss and every gradient match torch's layers, and the fast
    layers leave the output channels-last."""
    ours = ConvVAE(4)
    ref = ConvVAE(4, fast=False)
    ref.load_state_dict(ours.state_dict())
    x = torch.rand(5, 1, 28, 28)
    losses = []
    for model in (ours, ref):
        torch.manual_seed(3)
        logits, mu, logvar = model(x)
        loss = vae_loss(logits, x, mu, logvar).total
        loss.backward()
        losses.append(loss.detach())
    assert torch.allclose(losses[0], losses[1], rtol=1e-5)
    for (name, a), b in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-5), name
    middle = ours.decoder[:3](ours.from_code(torch.zeros(2, 4)).view(-1, 1024, 1, 1))
    assert middle.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("scale", [1.0, 8.0, 100.0, 1e4])  # logits up to about ±4 · scale
@pytest.mark.parametrize("shape", [(7, 1, 5, 5), (3, 1, 28, 28), (2, 9)])
def test_fast_bernoulli_nll_matches_torch_values_and_gradients(shape, scale):
    g = torch.Generator().manual_seed(0)
    logits = (scale * torch.randn(shape, generator=g)).requires_grad_()
    x = torch.rand(shape, generator=g)
    x[0] = x[0].round()  # binary and grey pixels
    weights = torch.rand(shape[0], generator=g)  # a different upstream gradient per image
    got = fast.bernoulli_nll_per_image(logits, x)
    want = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    assert got.shape == want.shape == (shape[0],)
    # log(1 + t) for log1p(t): under 1e-7 per pixel, on top of float32 sums of ~1e5 nats
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4 * x[0].numel())
    (d_got,) = torch.autograd.grad((got * weights).sum(), logits)
    (d_want,) = torch.autograd.grad((want * weights).sum(), logits)
    torch.testing.assert_close(d_got, d_want, rtol=1e-5, atol=1e-6)


def test_fast_bernoulli_nll_gradient_passes_gradcheck_in_float64():
    g = torch.Generator().manual_seed(1)
    logits = (3 * torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)).requires_grad_()
    x = torch.rand(4, 1, 3, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(fast.BernoulliNLL.apply, (logits, x))


def test_fast_bernoulli_nll_hands_what_it_does_not_cover_to_the_textbook_loss():
    logits, x = torch.zeros(2, 4, dtype=torch.float64), torch.ones(2, 4, dtype=torch.float64)
    assert fast.bernoulli_nll_per_image(logits, x).grad_fn is None  # torch's path, no autograd
    with pytest.raises(ValueError, match="same shape"):
        fast.bernoulli_nll_per_image(torch.zeros(2, 4), torch.ones(2, 5))


def test_keep_freed_memory_takes_on_glibc_linux_only():
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert fast.keep_freed_memory() is on_glibc


def test_adam_is_fused_on_the_cpu_and_plain_elsewhere():
    params = [nn.Parameter(torch.zeros(3))]
    assert fast.adam(params, 1e-3, torch.device("cpu")).defaults["fused"] is True
    assert not fast.adam(params, 1e-3, torch.device("mps")).defaults["fused"]
    assert fast.adam(params, 0.5, torch.device("cpu")).defaults["lr"] == 0.5


# ---------------------------------------------------------------------------------------------
# The thread tuner: its mechanism, fed made-up step times (timing goals are the benchmark's)

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def threads_back():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def train_for(tuner, clock, seconds_at, steps):
    """``steps`` made-up training steps; ``seconds_at(threads)`` is each one's duration. Returns
    the thread count each step ran with."""
    used = []
    for _ in range(steps):
        assert tuner.threads == torch.get_num_threads()
        used.append(tuner.threads)
        clock.now += seconds_at(tuner.threads)
        tuner.step(seconds_at(tuner.threads))
    return used


def test_tuner_keeps_all_threads_on_a_quiet_machine(threads_back):
    torch.set_num_threads(2)
    clock = Clock()
    tuner = fast.ThreadTuner(2, clock=clock)
    used = train_for(tuner, clock, {1: 0.16, 2: 0.10}.get, 200)  # 20 s of steps
    assert used[:3] == [2, 2, 2] and used[3] == 1  # one try of 1 thread after 3 steps...
    assert used.count(1) <= 9 and used[-1] == 2  # ...again ~10 s later (20 × the try), not kept
    assert tuner.switches == 2 * used.count(1) // 3  # each try: 3 steps, there and back


def test_tuner_drops_a_thread_when_a_core_is_busy_and_takes_it_back_when_it_is_free(
        threads_back):
    clock = Clock()
    tuner = fast.ThreadTuner(2, clock=clock)
    busy = train_for(tuner, clock, {1: 0.016, 2: 0.20}.get, 1000)  # 2 threads: 12× slower
    tries = "".join(map(str, busy[3:])).split("1")  # the runs of 2 threads after the start
    assert busy[:4] == [2, 2, 2, 1] and busy[-1] == 1  # 1 thread is kept...
    assert sorted(set(tries)) == ["", "22"]  # ...and each later try of 2 ends after 2 steps
    assert 2 <= tries.count("22") <= 4  # ~8 s apart (20 × the 0.4 s a try takes) in 16 s
    quiet = train_for(tuner, clock, {1: 0.016, 2: 0.010}.get, 1000)  # the competitor is gone
    assert quiet[-1] == 2 and quiet.index(2) < 8 / 0.016  # the next try takes 2 back


def test_tuner_spends_a_small_share_of_the_time_trying(threads_back):
    clock = Clock()
    tuner = fast.ThreadTuner(4, clock=clock, every=1.0, share=0.05)
    seconds_at = {1: 0.4, 2: 0.3, 3: 0.2, 4: 0.1}.get
    used = train_for(tuner, clock, seconds_at, 500)
    tried = sum(seconds_at(t) for t in used if t != 4)
    assert used[-1] == 4 and tried < 0.06 * clock.now  # 3 threads: twice as slow, tried rarely
    tuner = fast.ThreadTuner(4, clock=Clock())
    assert train_for(tuner, tuner.clock, {1: 0.1, 2: 0.1, 3: 0.1, 4: 0.5}.get, 40)[-1] == 3


def test_tuner_tries_ever_less_often_on_a_quiet_machine(threads_back):
    """Failed tries in a row double the wait (up to 60 s): over 10 minutes of quiet, steps of
    20 ms, the slower single thread runs under 0.5 % of the time (a wait fixed at its first
    length, 2.6 s here, would give about 5 %)."""
    clock = Clock()
    tuner = fast.ThreadTuner(2, clock=clock)
    seconds_at = {1: 0.032, 2: 0.020}.get
    used = train_for(tuner, clock, seconds_at, 30_000)  # 10 minutes
    tried = sum(seconds_at(t) for t in used if t == 1)
    assert used[-1] == 2 and tried < 0.005 * clock.now
    starts = [i for i in range(1, len(used)) if used[i] == 1 and used[i - 1] == 2]
    gaps = [(b - a) * 0.02 for a, b in zip(starts, starts[1:], strict=False)]  # seconds, about
    assert gaps[:4] == sorted(gaps[:4]) and max(gaps) <= 61


def test_tuner_tries_at_once_when_a_quiet_machine_gets_busy(threads_back):
    """After long quiet the next try is up to 60 s away, but a pace that falls by half at the
    current count starts one at once: one thread is kept within a few steps."""
    clock = Clock()
    tuner = fast.ThreadTuner(2, clock=clock)
    train_for(tuner, clock, {1: 0.032, 2: 0.020}.get, 15_000)  # 5 quiet minutes
    busy = train_for(tuner, clock, {1: 0.032, 2: 0.12}.get, 100)  # a competitor arrives
    assert busy.index(1) <= 6 and busy[-1] == 1


def test_tuned_threads_restores_the_count_and_never_uses_more_threads_than_cores(
        threads_back, monkeypatch):
    params = [nn.Parameter(torch.zeros(3))]
    optimizer = fast.adam(params, 1e-3, torch.device("cpu"))
    monkeypatch.setattr(fast, "usable_cores", lambda: 2)
    torch.set_num_threads(4)
    with pytest.raises(KeyboardInterrupt), fast.tuned_threads(optimizer, torch.device("cpu")) \
            as tuner:
        assert tuner.most == 2 and torch.get_num_threads() == 2
        for _ in range(20):
            params[0].grad = torch.ones(3)
            optimizer.step()
            assert torch.get_num_threads() <= 2
        raise KeyboardInterrupt
    assert torch.get_num_threads() == 4 and tuner.last_step is not None
    last = tuner.last_step
    optimizer.step()  # the hook is gone: the tuner hears of no more steps
    assert tuner.last_step == last
    for device, threads, cores, tune in [("cpu", 1, 2, True), ("cpu", 2, 1, True),
                                         ("meta", 2, 2, True), ("cpu", 2, 2, False)]:
        torch.set_num_threads(threads)
        monkeypatch.setattr(fast, "usable_cores", lambda cores=cores: cores)
        monkeypatch.setattr(fast, "tune_threads", tune)
        with fast.tuned_threads(optimizer, torch.device(device)) as tuner:
            assert tuner is None and torch.get_num_threads() == threads


def test_fit_tunes_threads_on_the_cpu_and_gives_them_back(small, threads_back, monkeypatch):
    """fit hands every optimizer step to the tuner; switching threads at every step leaves the
    weights of a fixed thread count (here bit for bit: the MLP VAE's sums do not depend on it)."""
    x, _ = small
    tuners = []

    class EveryStep(fast.ThreadTuner):  # switches between 1 and 2 threads at every step
        def __init__(self, most):
            super().__init__(most)
            tuners.append(self)

        def step(self, seconds):
            self.use(3 - self.threads)

    monkeypatch.setattr(fast, "usable_cores", lambda: 2)
    monkeypatch.setattr(fast, "ThreadTuner", EveryStep)
    from vaelab.models import VAE
    from vaelab.train import fit
    weights = []
    for tune in (False, True):
        monkeypatch.setattr(fast, "tune_threads", tune)
        torch.set_num_threads(2)
        torch.manual_seed(0)
        model = VAE(3)
        fit(model, x[:256], epochs=2, progress=False, device="cpu")
        assert torch.get_num_threads() == 2
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert len(tuners) == 1 and tuners[0].switches == 2 * 256 // 128 - 1
    assert torch.allclose(weights[0], weights[1], rtol=0, atol=1e-6)


def test_tuner_is_not_fooled_by_one_long_step_at_each_epoch_end(threads_back):
    """The step that carries an epoch's end (evaluation, a copy of the weights) is left out of
    the pace, so a long one neither makes the current count look slow nor ends a try."""
    clock = Clock()
    tuner = fast.ThreadTuner(2, clock=clock)
    step = iter(range(10_000))

    def seconds_at(threads):
        return {1: 0.015, 2: 0.010}[threads] + (0.5 if next(step) % 32 == 31 else 0.0)

    used = train_for(tuner, clock, seconds_at, 640)  # 20 epochs of 32 steps
    assert used[-1] == 2 and used.count(1) < 0.1 * len(used)
    assert fast.ThreadTuner.pace([0.01, 0.01, 0.5]) == pytest.approx(0.01)
