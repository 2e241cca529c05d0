"""The Bernoulli loss of the batched sweeps: ``vaelab.fast.BernoulliNLL`` against torch's
``F.binary_cross_entropy_with_logits``, forward and backward, side by side in one run.

The sweeps' loss is binary cross-entropy on logits summed per image. torch computes its
``log(1 + e^(−|l|))`` term with ``log1p``; ``BernoulliNLL`` uses ``log`` of ``1 + e^(−|l|)``
and writes the gradient σ(l) − x out. This prints both times (median of several repeats) at
the shapes the course trains with, the elementwise ``log1p`` and ``log`` alone, and the
largest difference between the two losses and their gradients.

Usage: ``python benchmarks/bench_losses.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from vaelab import fast

SHAPES = {  # (images, 1, H, W): what one step of the course's trainings sees
    "vaelab.fit, MNIST batch of 128": (128, 1, 28, 28),
    "notebook 07's batched sweep, 15 models × 64 shapes": (960, 1, 32, 32),
}


def milliseconds(run, repeats: int) -> float:
    """Median wall time of ``run()`` over ``repeats`` calls, after two warm-up calls."""
    run(), run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def torch_loss(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def compare(name: str, shape: tuple, repeats: int, g: torch.Generator) -> None:
    """Print both losses' times and differences at one shape."""
    logits = (4 * torch.randn(shape, generator=g)).requires_grad_()
    x = torch.rand(shape, generator=g).round()
    weights = torch.rand(shape[0], generator=g)
    ours = fast.bernoulli_nll_per_image(logits, x)
    theirs = torch_loss(logits, x)
    (d_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    (d_theirs,) = torch.autograd.grad((theirs * weights).sum(), logits)
    ours, theirs = ours.detach(), theirs.detach()
    t_theirs = milliseconds(lambda: torch_loss(logits, x).sum().backward(), repeats)
    t_ours = milliseconds(lambda: fast.bernoulli_nll_per_image(logits, x).sum().backward(),
                          repeats)
    print(f"\n{name} {tuple(shape)}: loss forward + backward, median of {repeats}")
    print(f"  torch binary_cross_entropy_with_logits {t_theirs:7.2f} ms")
    print(f"  vaelab.fast.BernoulliNLL               {t_ours:7.2f} ms   "
          f"({t_theirs / t_ours:.2f}× faster)")
    print(f"  largest difference: loss {float((ours - theirs).abs().max()):.1e} nats per "
          f"image (of about {float(theirs.mean()):.0f}), gradient "
          f"{float((d_ours - d_theirs).abs().max()):.1e}")
    with torch.no_grad():
        t = (-logits.abs()).exp()
        t_log1p = milliseconds(lambda: torch.log1p(t), repeats)
        t_log = milliseconds(lambda: torch.log(1 + t), repeats)
    print(f"  elementwise: log1p(t) {t_log1p:.2f} ms, log(1 + t) {t_log:.2f} ms "
          f"({t_log1p / t_log:.1f}× as long)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    fast.keep_freed_memory()  # as fit and the batched pass do: no page faults on fresh buffers
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    g = torch.Generator().manual_seed(0)
    for name, shape in SHAPES.items():
        compare(name, shape, args.repeats, g)


if __name__ == "__main__":
    main()
