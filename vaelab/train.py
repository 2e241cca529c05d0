"""Training: ``fit`` trains a model with Adam on in-memory images; ``evaluate`` measures it.

``train_epoch`` is the classic PyTorch loop (pytorch/examples ``vae/main.py``): batches,
forward, loss, backward, step. ``fit`` wraps it in small named pieces a notebook needs: every
argument checked before the first step (``check_fit``), a progress bar (``Progress``), the last
good weights to fall back on (``GoodState``), and Ctrl-C / divergence handling
(``stop_cleanly``). Speed settings live in ``vaelab.fast``; cached training in ``vaelab.cache``.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from . import fast
from .anchor import anchor_prior_mean
from .checks import (
    check_choice,
    check_device,
    check_int,
    check_model,
    check_number,
    env_flag,
    images_of,
)
from .data import batches
from .losses import LIKELIHOODS, vae_loss
from .models import LatentModel

TERMS = ("total", "reconstruction", "kl")


class NonFiniteLossError(RuntimeError):
    """Training hit a nan/inf loss. ``history`` holds the epochs finished before it;
    ``kept_epoch`` is the epoch whose end state the model was put back to (0: the start)."""

    def __init__(self, message: str, history: History, kept_epoch: int = 0):
        super().__init__(message)
        self.history = history
        self.kept_epoch = kept_epoch


@dataclass
class History:
    """Per-epoch means in nats per image. ``train[i]`` / ``test[i]`` map each of ``TERMS`` to a
    float; ``seconds[i]`` is the wall time of epoch i's training pass; ``stopped`` says why
    training ended early (``"interrupted"``, ``"non-finite loss"``) or is None. An epoch enters
    the history once it is trained and (with test data) evaluated, so ``train`` and ``test``
    always have the same length."""

    train: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    stopped: str | None = None
    loaded: bool = False  # True when train_or_load took the model from its cache

    def add(self, train: dict, test: dict | None, seconds: float) -> None:
        self.train.append(train)
        if test is not None:
            self.test.append(test)
        self.seconds.append(seconds)

    def as_dict(self) -> dict:
        return {"train": self.train, "test": self.test, "seconds": self.seconds,
                "stopped": self.stopped}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(list(d["train"]), list(d["test"]), list(d["seconds"]), d.get("stopped"))

    def keep(self, epochs: int) -> None:
        """Keep only the first ``epochs`` epochs."""
        del self.train[epochs:], self.test[epochs:], self.seconds[epochs:]

    def __len__(self) -> int:
        return len(self.train)


def default_device() -> torch.device:
    """CUDA if present, else Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def quick_mode() -> bool:
    """True when ``VAELAB_QUICK`` is on: ``1``, ``true``, ``yes`` or ``on`` (the tests set it);
    unset, ``""``, ``0``, ``false``, ``no``, ``off`` are off, anything else a ValueError."""
    return env_flag("VAELAB_QUICK")


def epochs_for(images_seen: int, n_images: int) -> int:
    """Whole epochs so that a model sees at least ``images_seen`` training images: the ceiling of
    ``images_seen / n_images``, and at least 1. 200,000 images are 50 epochs of the embedded
    4,000-image subset and 4 epochs of full MNIST's 60,000 (240,000 images seen)."""
    images_seen = check_int(images_seen, "images_seen")
    n_images = check_int(n_images, "n_images")
    return max(1, math.ceil(images_seen / n_images))


def describe_budget(images_seen: int, n_images: int, source: str = "") -> str:
    """One line for a notebook's first output: the data, the budget and the epochs it gives,
    e.g. ``"embedded MNIST subset, 4,000 training images: 50 epochs = 200,000 images seen per
    model (budget 200,000)"``."""
    epochs = epochs_for(images_seen, n_images)
    data = {"embedded": "embedded MNIST subset", "files": "MNIST from files",
            "download": "downloaded MNIST"}.get(source, source or "training data")
    return (f"{data}, {n_images:,} training images: {epochs} epoch{'s' * (epochs != 1)} = "
            f"{epochs * n_images:,} images seen per model (budget {images_seen:,})")


def loss_function(beta: float = 1.0, likelihood: str = "bernoulli", anchor_rate: float = 0.0,
                  free_bits: float = 0.0):
    """``loss_fn(logits, x, mu, logvar) -> LossTerms``: ``vae_loss`` with these settings; with
    ``anchor_rate`` > 0 each image's prior mean is ``anchor_prior_mean`` (``vaelab.anchor``)."""
    beta = check_number(beta, "beta", minimum=0.0)
    likelihood = check_choice(likelihood, "likelihood", LIKELIHOODS)
    anchor_rate = check_number(anchor_rate, "anchor_rate", minimum=0.0)
    free_bits = check_number(free_bits, "free_bits", minimum=0.0)

    def loss_fn(logits, x, mu, logvar):
        prior = anchor_prior_mean(x, anchor_rate, mu.shape[1]) if anchor_rate else None
        return vae_loss(logits, x, mu, logvar, beta, likelihood, prior, free_bits)

    return loss_fn


@torch.no_grad()
def evaluate(model: LatentModel, data, *, beta: float = 1.0, likelihood: str = "bernoulli",
             anchor_rate: float = 0.0, batch_size: int = 1000, seed: int = 0) -> dict:
    """Mean loss terms (nats per image) over ``data``, with one z ~ q(z|x) per image drawn from
    a ``torch.Generator`` seeded with ``seed`` (torch's global random state is left alone).

    With β = 1 and no anchor, ``total`` is an unbiased estimate of the negative ELBO.
    """
    check_model(model)
    x = model.check_images(images_of(data, "data"))
    batch_size = check_int(batch_size, "batch_size")
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    return mean_terms(model, x, loss_function(beta, likelihood, anchor_rate), batch_size,
                      generator)


@torch.no_grad()
def mean_terms(model: LatentModel, x: torch.Tensor, loss_fn, batch_size: int,
               generator: torch.Generator) -> dict:
    """``evaluate`` on checked arguments: the mean of ``loss_fn``'s terms over the images ``x``
    ``(N, 1, H, W)``, in batches, one z per image drawn from ``generator``."""
    was_training = model.training
    model.eval()
    sums = dict.fromkeys(TERMS, 0.0)
    try:
        for xb in x.split(batch_size):
            xb = xb.to(model.device)
            logits, mu, logvar = model(xb, generator=generator)
            for name, value in zip(TERMS, loss_fn(logits, xb, mu, logvar), strict=True):
                sums[name] += float(value) * len(xb)
    finally:
        model.train(was_training)
    return {name: s / len(x) for name, s in sums.items()}


class NonFiniteBatch(Exception):
    """Raised by ``train_epoch`` when a batch's loss is nan or inf (before its step); ``fit``
    turns it into ``NonFiniteLossError``."""

    def __init__(self, batch: int, loss: float):
        super().__init__(f"loss {loss} at batch {batch}")
        self.batch, self.loss = batch, loss


def train_epoch(model: LatentModel, x: torch.Tensor, optimizer, loss_fn, batch_size: int,
                generator: torch.Generator, on_batch=None) -> dict:
    """One pass over the images ``x`` in shuffled batches: forward, loss, backward, step.

    Returns the epoch's mean loss terms ``{"total", "reconstruction", "kl"}`` (nats per image).
    ``generator`` orders the batches; ``on_batch(batch, n_images, terms)`` is called after each
    step with the batch's loss terms (a CPU tensor). A nan/inf loss raises ``NonFiniteBatch``
    before it can reach the weights.
    """
    model.train()
    sums = torch.zeros(3, dtype=torch.float64)
    for batch, idx in enumerate(batches(len(x), batch_size, generator), start=1):
        xb = x[idx.to(x.device)]
        logits, mu, logvar = model(xb)
        terms = loss_fn(logits, xb, mu, logvar)
        values = torch.stack([t.detach() for t in terms]).cpu()
        if not torch.isfinite(values).all():
            raise NonFiniteBatch(batch, float(values[0]))
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        sums += values.double() * len(idx)
        if on_batch is not None:
            on_batch(batch, len(idx), values)
    return dict(zip(TERMS, (sums / len(x)).tolist(), strict=True))


def fit(model: LatentModel, train_data, *, epochs: int | None = None,
        images_seen: int | None = None, batch_size: int = 128, lr: float = 1e-3,
        beta: float = 1.0, seed: int = 0, test_data=None, likelihood: str = "bernoulli",
        anchor_rate: float = 0.0, kl_warmup_epochs: int = 0, free_bits: float = 0.0,
        device: torch.device | str | None = None, progress: bool = True) -> History:
    """Train ``model`` with Adam; return a ``History`` of per-epoch loss terms (nats per image).

    ``train_data``/``test_data``: images ``(N, 1, 28, 28) float32 in [0, 1]``, or an
    ``ImageData`` / ``(images, labels)`` pair. Give ``epochs`` (≥ 1), or ``images_seen`` for the
    fewest whole epochs that show the model that many images (``epochs_for``). Every argument
    is checked before the first step (``check_fit``). The images move to ``device`` (default:
    the best available) once; batches are slices of a seeded permutation. ``beta`` weights the
    KL term (0 gives an autoencoder); ``anchor_rate`` > 0 adds the anchor loss
    (``vaelab.anchor``). Against posterior collapse: ``kl_warmup_epochs`` W > 0 trains epoch e
    with β·min(1, (e − 1)/W) (KL warm-up: 0 in the first epoch, β from epoch W + 1 on);
    ``free_bits`` λ > 0 charges each latent at least λ nats (``losses.vae_loss``).
    Same seed and data give the same weights on the CPU: bit for bit with
    ``vaelab.fast.tune_threads = False``; otherwise up to float rounding (about 1e-7 for the
    ConvVAE), since the thread tuner may change the number of threads between steps.

    Ctrl-C, or SIGTERM (``kill``, ``timeout``, a job scheduler, a hub culling the kernel),
    stops early: the model goes back to its weights at the end of the last finished epoch, so
    the model and the returned history (``stopped="interrupted"``) agree. A nan/inf loss raises
    ``NonFiniteLossError`` carrying the history, with the model put back to its last good
    state: the end of the last epoch from which training still computed a finite loss.
    """
    plan = check_fit(model, train_data, epochs=epochs, images_seen=images_seen,
                     batch_size=batch_size, lr=lr, beta=beta, seed=seed, test_data=test_data,
                     likelihood=likelihood, anchor_rate=anchor_rate,
                     kl_warmup_epochs=kl_warmup_epochs, free_bits=free_bits, device=device)
    return fit_checked(model, plan, progress)


@dataclass(frozen=True)
class FitPlan:
    """fit's arguments once ``check_fit`` has checked them: the training images ``x`` and test
    images ``test_x`` ``(N, 1, H, W)`` (on the CPU, as given), the number of epochs, the
    device, and the loss and optimiser settings."""

    x: torch.Tensor
    test_x: torch.Tensor | None
    epochs: int
    batch_size: int
    lr: float
    beta: float
    seed: int
    likelihood: str
    anchor_rate: float
    kl_warmup_epochs: int
    free_bits: float
    device: torch.device


def check_fit(model, train_data, *, epochs=None, images_seen=None, batch_size=128, lr=1e-3,
              beta=1.0, seed=0, test_data=None, likelihood="bernoulli", anchor_rate=0.0,
              kl_warmup_epochs=0, free_bits=0.0, device=None) -> FitPlan:
    """Check every argument of ``fit`` (same names, same defaults) before anything trains, each
    image set once; return them as a ``FitPlan``. ``train_or_load`` calls it at its door."""
    check_model(model)
    x = model.check_images(images_of(train_data, "train_data"), name="training images")
    test_x = None if test_data is None else model.check_images(
        images_of(test_data, "test_data"), name="test images")
    if (epochs is None) == (images_seen is None):
        raise TypeError(f"fit takes exactly one of epochs=... or images_seen=...; got "
                        f"epochs={epochs!r}, images_seen={images_seen!r}")
    epochs = epochs_for(images_seen, len(x)) if epochs is None else check_int(epochs, "epochs")
    loss_function(beta, likelihood, anchor_rate, free_bits)  # checks the loss settings
    return FitPlan(
        x=x, test_x=test_x, epochs=epochs, batch_size=check_int(batch_size, "batch_size"),
        lr=check_number(lr, "lr", above=0.0), beta=float(beta),
        seed=check_int(seed, "seed", minimum=0), likelihood=likelihood,
        anchor_rate=float(anchor_rate), free_bits=float(free_bits),
        kl_warmup_epochs=check_int(kl_warmup_epochs, "kl_warmup_epochs", minimum=0),
        device=default_device() if device is None else check_device(device))


def fit_checked(model: LatentModel, plan: FitPlan, progress: bool = True) -> History:
    """``fit`` on arguments ``check_fit`` has checked: train ``model`` for ``plan.epochs``."""
    p, device = plan, plan.device
    fast.prepare(device)  # speed settings for this device
    model.to(device)
    x = p.x.to(device)
    test_x = None if p.test_x is None else p.test_x.to(device)
    torch.manual_seed(p.seed)  # the z draws
    order = torch.Generator().manual_seed(p.seed)  # the batch order
    optimizer = fast.adam(model.parameters(), p.lr, device)  # torch.optim.Adam
    test_loss = loss_function(p.beta, p.likelihood, p.anchor_rate)
    history, good = History(), GoodState(model)
    bar = Progress(p.epochs, len(x), p.batch_size, progress)
    with (stop_cleanly(model, history, bar, good, p.lr), sigterm_as_interrupt(),
          fast.tuned_threads(optimizer, device)):  # the CPU thread count, from step times
        for epoch in range(1, p.epochs + 1):
            bar.start_epoch(epoch)
            good.start_epoch(epoch)
            warm = min(1.0, (epoch - 1) / p.kl_warmup_epochs) if p.kl_warmup_epochs else 1.0
            loss_fn = loss_function(p.beta * warm, p.likelihood, p.anchor_rate, p.free_bits)
            start = time.perf_counter()
            train = train_epoch(model, x, optimizer, loss_fn, p.batch_size, order, bar.on_batch)
            seconds = time.perf_counter() - start
            test = None if test_x is None else mean_terms(
                model, test_x, test_loss, 1000, torch.Generator().manual_seed(p.seed))
            history.add(train, test, seconds)
            bar.end_epoch(train, test)
    return history


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so whatever handles
    Ctrl-C keeps the finished work; the previous handler is back afterwards. Signals reach
    only the main thread, so in any other thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


class Progress:
    """fit's tqdm bar (images seen, loss), and where training is (``epoch``, and ``batch``: the
    batches of it finished), for messages."""

    def __init__(self, epochs: int, n_images: int, batch_size: int, enabled: bool):
        self.epochs, self.epoch, self.batch = epochs, 0, 0
        self.n_batches = math.ceil(n_images / batch_size)
        self.bar = tqdm(total=epochs * n_images, unit="img", unit_scale=True,
                        disable=not enabled, dynamic_ncols=True)

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.batch = epoch, 0
        self.bar.set_description(f"epoch {epoch}/{self.epochs}")

    def on_batch(self, batch: int, n_images: int, terms: torch.Tensor) -> None:
        self.batch = batch
        self.bar.update(n_images)
        if batch % 10 == 0 and not self.bar.disable:
            self.bar.set_postfix(loss=f"{float(terms[0]):.1f}", refresh=False)

    def end_epoch(self, train: dict, test: dict | None) -> None:
        shown = {"loss": f"{train['total']:.1f}"}
        if test is not None:
            shown["test"] = f"{test['total']:.1f}"
        self.bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        self.bar.close()


class GoodState:
    """Copies of the weights at the start of the current and of the previous epoch.

    A state is good once a loss computed from it was finite: the current epoch's start is,
    after its first batch; before that, the previous epoch's start is (weights can stay finite
    while the codes have grown to 1e15, so "finite weights" is not enough).
    """

    def __init__(self, model: LatentModel):
        self.model = model
        self.previous = self.current = (0, self.copy())

    def copy(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def start_epoch(self, epoch: int) -> None:
        if epoch > 1:
            self.previous, self.current = self.current, (epoch - 1, self.copy())

    def rewind(self, history: History) -> int:
        """After an interruption: put back the weights at the end of the last epoch this
        object holds, and cut ``history`` to that many epochs, so the two agree; return it."""
        epoch, state = self.current
        self.model.load_state_dict(state)
        history.keep(epoch)
        return epoch

    def restore(self, failed_batch: int) -> int:
        """Put the good state back; return the epoch it ended (0: the initial weights)."""
        epoch, state = self.current if failed_batch > 1 else self.previous
        self.model.load_state_dict(state)
        return epoch


@contextmanager
def stop_cleanly(model: LatentModel, history: History, bar: Progress, good: GoodState,
                 lr: float):
    """Around fit's epochs: Ctrl-C keeps the model and history; a non-finite loss restores the
    good state and raises ``NonFiniteLossError``; the bar closes and the model ends in eval."""
    try:
        yield
    except KeyboardInterrupt as err:
        history.stopped = "interrupted"
        batch = min(bar.batch + 1, bar.n_batches)  # bar.batch counts the finished ones
        kept = good.rewind(history)
        state = f"its weights after epoch {kept}" if kept else "its weights before training"
        print(f"{'SIGTERM' if str(err) == 'SIGTERM' else 'Interrupted'} at epoch {bar.epoch}, "
              f"batch {batch}: the model is back at {state}, and the history keeps those "
              f"{kept} finished epoch(s).")
    except NonFiniteBatch as err:
        history.stopped = "non-finite loss"
        kept = good.restore(err.batch)
        state = f"after epoch {kept}" if kept else "before training"
        raise NonFiniteLossError(
            f"training stopped: the loss became {err.loss} at epoch {bar.epoch}, batch "
            f"{err.batch}/{bar.n_batches}. The model is back at its last good state ({state}). "
            f"Try a lower learning rate (lr={lr:g} now, e.g. lr={lr / 10:g}).", history,
            kept) from None
    finally:
        bar.close()
        model.eval()
