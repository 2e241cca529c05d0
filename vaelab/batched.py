"""Several MLP VAEs trained in one pass: the β sweep's speed work, apart from the textbook loop.

A sweep trains many small ``VAE``s that differ only in β, seed or anchor rate. One at a time,
each step is a handful of small matrix multiplies and the CPU waits on Python more than it
computes. Here the M models' weights are stacked (``(M, in, out)`` per Linear layer, see
``stack``) and every layer of all M models runs as one batched matrix multiply
(``torch.baddbmm``); the M losses are summed before
``backward`` (their weights are independent, so each model gets exactly its own gradient) and
one Adam steps the stacked tensors (Adam works element by element, so that is M Adams).

Each model m starts from the weights ``make_model()`` gives after ``torch.manual_seed(seed_m)``,
sees its batches in the order ``fit`` uses for that seed, and draws its z noise from a generator
seeded with ``seed_m``, the same numbers ``fit`` draws. So ``fit_many`` computes what M
``vaelab.fit`` calls compute, up to float rounding (tested in ``tests/test_sweep.py``).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from . import fast
from .anchor import donutness
from .data import batches
from .losses import kl_divergence, reconstruction_per_image
from .models import VAE
from .train import TERMS, History, NonFiniteLossError, loss_function, mean_terms


def supports(model: nn.Module, fit_kwargs: dict) -> bool:
    """True when ``fit_many`` can train copies of ``model`` with these ``fit`` settings: a
    plain ``VAE`` on the CPU (the anchor loss, KL warm-up and free bits are fine)."""
    device = fit_kwargs.get("device")
    return type(model) is VAE and (device is None or torch.device(device).type == "cpu")


def stack(models: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Every parameter of the M models stacked on a new first axis: ``name -> (M, *shape)``,
    leaf tensors that require grad. A Linear layer's weight ``(out, in)`` is stored transposed,
    ``(M, in, out)``: the layout ``h @ W`` reads, so its gradient comes out in that layout too
    (stored as ``(M, out, in)``, every step's gradient would be transposed in a copy)."""
    states = [m.state_dict() for m in models]
    return {k: _to_stacked(k, torch.stack([s[k] for s in states])).requires_grad_()
            for k in states[0]}


def unstack(params: dict[str, torch.Tensor], models: list[nn.Module]) -> None:
    """Copy model m's slice of the stacked ``params`` into ``models[m]``."""
    with torch.no_grad():
        for m, model in enumerate(models):
            model.load_state_dict({k: _to_stacked(k, v)[m] for k, v in params.items()})


def _to_stacked(name: str, value: torch.Tensor) -> torch.Tensor:
    """A stacked Linear weight ``(M, out, in)`` ⇄ ``(M, in, out)`` (the transpose is its own
    inverse); any other tensor as it is."""
    if name.endswith("weight") and value.dim() == 3:
        return value.transpose(1, 2).contiguous()
    return value


def run_layers(module: nn.Module, prefix: str, params: dict, h: torch.Tensor) -> torch.Tensor:
    """``module`` (Linear layers and activations, nested in Sequentials) applied to M batches at
    once: ``h`` is ``(M, B, in)``; each Linear is one ``baddbmm`` with its stacked weights."""
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            h = run_layers(child, f"{prefix}{name}.", params, h)
        return h
    if isinstance(module, nn.Linear):
        weight, bias = params[prefix + "weight"], params[prefix + "bias"]  # (M, in, out), (M, out)
        return torch.baddbmm(bias.unsqueeze(1), h, weight)
    if isinstance(module, (nn.ReLU, nn.Tanh)):
        return module(h)
    raise TypeError(f"run_layers: {type(module).__name__} at {prefix!r} is not a Linear layer "
                    "or an activation; train this model with vaelab.fit")


def forward(vae: VAE, params: dict, x: torch.Tensor, eps: torch.Tensor):
    """``VAE.forward`` for M stacked models: ``x`` ``(M, B, 1, H, W)``, ``eps`` ``(M, B, L)``
    → ``(logits (M, B, 1, H, W), mu, logvar (M, B, L))``."""
    h = run_layers(vae.encoder, "encoder.", params, x.flatten(2))
    mu, logvar = run_layers(vae.to_stats, "to_stats.", params, h).chunk(2, dim=2)
    z = mu + eps * torch.exp(0.5 * logvar)  # models.reparameterize, M at a time
    logits = run_layers(vae.decoder, "decoder.", params, z)
    return logits.view(*x.shape), mu, logvar


def loss_terms(logits, x, mu, logvar, betas: torch.Tensor, likelihood: str,
               prior_mean: torch.Tensor | None = None,
               free_bits: torch.Tensor | None = None) -> torch.Tensor:
    """``vae_loss``'s ``(total, reconstruction, kl)`` of each model, nats per image (batch
    means): ``(3, M)``. ``betas``: ``(M,)``; ``prior_mean``: ``(M, B)`` each image's prior mean
    in every coordinate (the anchor loss), or None for N(0, I); ``free_bits``: ``(M,)`` each
    model's λ (``total`` charges each latent at least λ nats, as ``vae_loss`` does), or None."""
    m, b, latents = mu.shape
    if likelihood == "bernoulli":  # the textbook loss, with a faster kernel (vaelab.fast)
        rec = fast.bernoulli_nll_per_image(logits.flatten(0, 1), x.flatten(0, 1))
    else:
        rec = reconstruction_per_image(logits.flatten(0, 1), x.flatten(0, 1), likelihood)
    if prior_mean is not None:
        mu = mu - prior_mean.unsqueeze(2)  # KL to N(m, I) is the standard KL at μ − m
    kl_per_unit = kl_divergence(mu.flatten(0, 1), logvar.flatten(0, 1), per_dim=True)
    kl_per_unit = kl_per_unit.view(m, b, latents).mean(1)                      # (M, L)
    rec, kl = rec.view(m, b).mean(1), kl_per_unit.sum(1)
    charged = kl if free_bits is None else torch.maximum(kl_per_unit, free_bits[:, None]).sum(1)
    return torch.stack([rec + betas * charged, rec, kl])


def fit_many(models: list[VAE], x: torch.Tensor, betas, seeds, *, epochs: int,
             batch_size: int = 128, lr: float = 1e-3, likelihood: str = "bernoulli",
             anchor_rates=None, kl_warmup_epochs=None, free_bits=None,
             test_data: torch.Tensor | None = None, progress: bool = True,
             label: str = "models") -> list[History]:
    """Train ``models[m]`` with β ``betas[m]``, seed ``seeds[m]``, anchor rate
    ``anchor_rates[m]``, KL warm-up ``kl_warmup_epochs[m]`` and free bits ``free_bits[m]``
    (each list defaults to none for every model) as ``vaelab.fit`` would, all M in one batched
    pass; return one ``History`` per model.

    ``models``: VAEs of one configuration, each freshly built after
    ``torch.manual_seed(seeds[m])`` (as ``train_or_load`` builds them). ``x``: checked training
    images ``(N, 1, H, W)`` on the CPU; ``test_data``: checked test images or None. Each
    history's ``seconds`` is the pass's time divided by M. With ``progress`` a bar shows the
    images seen, after one line with the estimated time (from the first epoch's first steps).
    A nan/inf loss raises ``NonFiniteLossError`` naming the model.
    """
    fast.prepare(torch.device("cpu"))
    params = stack(models)
    optimizer = fast.adam(list(params.values()), lr, torch.device("cpu"))
    betas_t = torch.tensor([float(b) for b in betas])
    rates = [0.0] * len(models) if anchor_rates is None else [float(a) for a in anchor_rates]
    warmups = [0] * len(models) if kl_warmup_epochs is None else [int(w) for w in kl_warmup_epochs]
    floors = None if free_bits is None or not any(free_bits) else torch.tensor(
        [float(f) for f in free_bits])
    # The anchor loss's prior mean a_m · d(x) (vaelab.anchor): d of every training image, once.
    anchors = (torch.tensor(rates), donutness(x)) if any(rates) else None
    orders = [torch.Generator().manual_seed(s) for s in seeds]  # batch orders, as fit's
    noises = [torch.Generator().manual_seed(s) for s in seeds]  # z draws, as fit's
    histories = [History() for _ in models]
    bar = Estimate(len(models), epochs, len(x), batch_size, progress, label)
    epoch = 0  # the epoch a non-finite loss stops in
    try:
        with fast.tuned_threads(optimizer, torch.device("cpu")):  # fit's thread tuner
            for epoch in range(1, epochs + 1):  # noqa: B007 - named in the error below
                start = time.perf_counter()
                warm = torch.tensor([min(1.0, (epoch - 1) / w) if w else 1.0 for w in warmups])
                sums = train_epoch(models[0], params, optimizer, x, betas_t * warm, likelihood,
                                   anchors, floors, batch_size, orders, noises, bar)
                share = (time.perf_counter() - start) / len(models)
                record(histories, models, params, sums / len(x), test_data, likelihood,
                       betas, rates, seeds, share)
    except NonFiniteBatches as err:
        m = err.model
        raise NonFiniteLossError(
            f"training stopped: model {m} (β={betas[m]:g}, seed={seeds[m]}) reached a loss of "
            f"{err.loss} at epoch {epoch}. Try a lower learning rate (lr={lr:g} now, e.g. "
            f"lr={lr / 10:g}), or train it alone with vaelab.fit.", histories[m]) from None
    finally:
        bar.close()
    unstack(params, models)
    return histories


class NonFiniteBatches(Exception):
    """A model's loss was nan or inf (before its step); ``fit_many`` turns it into
    ``NonFiniteLossError``."""

    def __init__(self, model: int, loss: float):
        super().__init__(f"model {model}: loss {loss}")
        self.model, self.loss = model, loss


def train_epoch(vae, params, optimizer, x, betas, likelihood, anchors, free_bits, batch_size,
                orders, noises, bar) -> torch.Tensor:
    """One epoch of all M models: returns the summed loss terms ``(3, M)`` (float64, nats).
    ``betas``: this epoch's β of each model (after warm-up); ``anchors``: ``(rates (M,),
    donutness of every training image (N,))`` or None; ``free_bits``: ``(M,)`` or None."""
    sums = torch.zeros(3, len(orders), dtype=torch.float64)
    for idx in zip(*(batches(len(x), batch_size, g) for g in orders), strict=True):
        idx = torch.stack(idx)                                          # (M, B)
        xb = x[idx]                                                     # (M, B, 1, H, W)
        eps = torch.stack([torch.randn((idx.shape[1], vae.latent_dim), generator=g)
                           for g in noises])                            # (M, B, L)
        logits, mu, logvar = forward(vae, params, xb, eps)
        prior_mean = None if anchors is None else anchors[0].unsqueeze(1) * anchors[1][idx]
        terms = loss_terms(logits, xb, mu, logvar, betas, likelihood, prior_mean, free_bits)
        values = terms.detach()
        bad = (~torch.isfinite(values[0])).nonzero()
        if len(bad):
            raise NonFiniteBatches(int(bad[0]), float(values[0, bad[0]]))
        optimizer.zero_grad(set_to_none=True)
        terms[0].sum().backward()  # independent weights: each model gets its own gradient
        optimizer.step()
        sums += values.double() * idx.shape[1]
        bar.step(idx.shape[1])
    return sums


def record(histories, models, params, means, test_data, likelihood, betas, rates, seeds,
           seconds) -> None:
    """Add this epoch to each model's history (test terms as ``fit`` measures them: the
    model's own β and anchor rate, one z per image from a generator seeded with its seed)."""
    if test_data is not None:
        unstack(params, models)
    for m, history in enumerate(histories):
        test = None
        if test_data is not None:
            loss = loss_function(float(betas[m]), likelihood, rates[m])
            test = mean_terms(models[m], test_data, loss,
                              1000, torch.Generator().manual_seed(seeds[m]))
        history.add(dict(zip(TERMS, means[:, m].tolist(), strict=True)), test, seconds)


class Estimate:
    """A progress bar over all M models' images, which first prints the estimated time of the
    whole pass from the steps of the first few seconds (at most 20 steps)."""

    def __init__(self, n_models, epochs, n_images, batch_size, enabled, label):
        self.n_models, self.enabled, self.label = n_models, enabled, label
        self.total_steps = epochs * math.ceil(n_images / batch_size)
        self.steps, self.start, self.said = 0, time.perf_counter(), False
        self.bar = tqdm(total=epochs * n_images * n_models, unit="img", unit_scale=True,
                        disable=not enabled, dynamic_ncols=True,
                        desc=f"{label}: {n_models} models in one pass")

    def step(self, batch: int) -> None:
        self.steps += 1
        if not self.said and (self.steps == 20 or self.steps == self.total_steps):
            seconds = (time.perf_counter() - self.start) / self.steps * self.total_steps
            self.said = True
            if self.enabled:
                self.bar.write(f"{self.label}: training {self.n_models} models in one batched "
                               f"pass, estimated {seconds / 60:.1f} min "
                               f"({seconds / self.n_models:.0f} s per model)")
        self.bar.update(batch * self.n_models)

    def close(self) -> None:
        self.bar.close()
