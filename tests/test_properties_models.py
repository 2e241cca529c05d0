"""Property-based tests: whatever a user passes, each call either gives a correct result or
raises TypeError / ValueError with a message — never a torch/numpy internal, never silent NaN."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab.models import AE, VAE, ConvVAE
from vaelab.train import evaluate, fit

SETTINGS = settings(max_examples=30, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int64,
          torch.bool]


def tiny(cls=VAE):
    torch.manual_seed(0)
    return CONV if cls is ConvVAE else cls(2, hidden=(8,)).eval()


torch.manual_seed(0)
CONV = ConvVAE(2).eval()  # built once: its 6 M weights take a moment


@st.composite
def image_batches(draw, max_n: int = 40):
    """Valid image batches half the time; otherwise other shapes, dtypes, ranges or NaN/inf."""
    n = draw(st.integers(0 if max_n > 20 else 1, max_n))
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    if draw(st.booleans()):
        return x
    flaws = ["shape", "range", "dtype", "empty"] + (["nonfinite"] if n else [])
    flaw = draw(st.sampled_from(flaws))
    if flaw == "shape":
        shape = draw(st.sampled_from([(n, 28, 28), (n, 3, 28, 28), (n, 1, 27, 28), (n, 784),
                                      (28, 28), (n, 1, 28, 28, 1)]))
        return torch.rand(shape)
    if flaw == "range":
        return x * draw(st.sampled_from([255.0, -1.0, 1.5, 1e30]))
    if flaw == "nonfinite":
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf]))
        return x
    if flaw == "empty":
        return x[:0]
    dtype = draw(st.sampled_from(DTYPES[1:]))
    return x.to(dtype) if dtype.is_floating_point else (x * 255).to(dtype)


def is_valid(x) -> bool:
    return (x.dtype == torch.float32 and x.dim() == 4 and tuple(x.shape[1:]) == (1, 28, 28)
            and len(x) > 0 and bool(torch.isfinite(x).all()) and 0 <= x.min() and x.max() <= 1)


def refused_clearly(call, *args, **kwargs) -> bool:
    """True if ``call`` raised TypeError/ValueError with a message; other errors fail the test."""
    try:
        call(*args, **kwargs)
    except (TypeError, ValueError) as err:
        assert str(err), f"{type(err).__name__} without a message"
        assert "mat1 and mat2" not in str(err) and "Expected" not in str(err), str(err)
        return True
    return False


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


@SETTINGS
@given(cls=st.sampled_from([AE, VAE, ConvVAE]), data=st.data())
def test_encode_forward_reconstruct_give_a_correct_result_or_a_clear_error(cls, data):
    model = tiny(cls)
    x = data.draw(image_batches(max_n=6 if cls is ConvVAE else 40))
    valid = is_valid(x)
    for call in (model.encode, model.encode_means, model, model.reconstruct):
        if not valid:
            assert refused_clearly(call, x), f"{call} accepted {x.dtype} {tuple(x.shape)}"
    if valid:
        mu, logvar = model.encode(x)
        assert mu.shape == (len(x), 2) and finite(mu)
        assert torch.allclose(model.encode_means(x), mu, atol=1e-6)
        logits, _, _ = model(x)
        assert logits.shape == x.shape and finite(logits)
        recon = model.reconstruct(x)
        assert recon.shape == x.shape and 0 <= recon.min() and recon.max() <= 1


@st.composite
def codes(draw):
    n = draw(st.integers(0, 30))
    width = draw(st.sampled_from([2, 2, 2, 1, 3]))
    z = torch.randn(n, width, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    z = z * draw(st.sampled_from([1.0, 100.0, 1e4]))
    if z.numel() and draw(st.booleans()):
        z.view(-1)[draw(st.integers(0, z.numel() - 1))] = draw(
            st.sampled_from([math.nan, math.inf]))
    form = draw(st.sampled_from(["float32", "float64", "int", "list", "row"]))
    if form == "float64":
        return z.double()
    if form == "int":
        return z.nan_to_num().clamp(-1e4, 1e4).long()
    if form == "list":
        return z.tolist()
    return z[0] if form == "row" and n else z


@SETTINGS
@given(z=codes())
def test_decode_gives_finite_logits_or_a_clear_error(z):
    model = tiny()
    t = torch.as_tensor(z, dtype=torch.float64)
    t = t.unsqueeze(0) if t.dim() == 1 else t
    valid = t.dim() == 2 and t.shape[1] == 2 and finite(t)
    if not valid:
        assert refused_clearly(model.decode, z)
        return
    logits = model.decode(z)
    assert logits.shape == (len(t), 1, 28, 28) and finite(logits)


@SETTINGS
@given(n=st.one_of(st.integers(-3, 300), st.floats(-2, 5), st.just("4"), st.none()))
def test_sample_gives_images_in_0_1_or_a_clear_error(n):
    model = tiny()
    if isinstance(n, int) and n >= 1:
        images = model.sample(n)
        assert images.shape == (n, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    else:
        assert refused_clearly(model.sample, n)


@SETTINGS
@given(x=image_batches(max_n=12), beta=st.sampled_from([1.0, 0.0, -1.0, math.nan, "1"]),
       batch_size=st.sampled_from([1000, 3, 0, 2.5]),
       seed=st.sampled_from([0, 5, -1]))
def test_evaluate_gives_finite_terms_or_a_clear_error(x, beta, batch_size, seed):
    model = tiny()
    args = {"beta": beta, "batch_size": batch_size, "seed": seed}
    ok = (is_valid(x) and beta in (0.0, 1.0) and batch_size in (1000, 3) and seed >= 0)
    if not ok:
        assert refused_clearly(evaluate, model, x, **args)
        return
    terms = evaluate(model, x, **args)
    assert all(math.isfinite(v) for v in terms.values())
    assert terms["total"] == pytest.approx(terms["reconstruction"] + beta * terms["kl"],
                                           rel=1e-5)


FIT_FLAWS = {"lr": [0.0, -1.0, math.inf, math.nan, "1e-3"], "epochs": [True, 1.0, -1, None, 0],
             "batch_size": [0, 2.5, "4"], "beta": [-1.0, math.nan, "1"],
             "test_data": [torch.rand(3, 1, 28, 32), torch.rand(3, 1, 28, 28) * 255,
                           torch.rand(3, 1, 28, 28).double()]}


@SETTINGS
@given(x=image_batches(max_n=12), flaw=st.sampled_from([None, None, *FIT_FLAWS]),
       pick=st.integers(0, 4), epochs=st.integers(1, 2), batch_size=st.integers(1, 20),
       with_test=st.booleans())
def test_fit_trains_with_finite_history_or_refuses_before_the_first_step(
        x, flaw, pick, epochs, batch_size, with_test):
    model = tiny()
    start = [p.detach().clone() for p in model.parameters()]
    args = {"epochs": epochs, "batch_size": batch_size, "test_data": x if with_test else None,
            "progress": False, "device": "cpu"}
    if flaw is not None:
        args[flaw] = FIT_FLAWS[flaw][pick % len(FIT_FLAWS[flaw])]
    if flaw is not None or not is_valid(x):
        assert refused_clearly(fit, model, x, **args)
        assert all(torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True))
        return
    history = fit(model, x, **args)
    assert len(history) == epochs and history.stopped is None
    assert len(history.test) == (epochs if with_test else 0)
    for row in history.train + history.test:
        assert all(math.isfinite(v) for v in row.values())
    assert all(finite(p) for p in model.parameters())
