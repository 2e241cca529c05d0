"""How fast is ``vaelab.fit``? Side by side with the classic pytorch/examples VAE loop.

Runs, in one process and on the same images:

* the classic loop: torchvision ``MNIST`` + ``ToTensor`` + ``DataLoader(batch_size=128,
  shuffle=True)``, the pytorch/examples loss (sigmoid + ``binary_cross_entropy`` summed, plus
  the KL), Adam(lr=1e-3), training only;
* ``vaelab.fit`` (batch 128, Adam lr=1e-3, progress bar off), same model class and start weights;
* for the ConvVAE, the classic loop once more with the decoder built from
  ``torch.nn.ConvTranspose2d`` (same weights): the layers a pytorch/examples user would write;
* the machine's float32 matrix-multiply throughput (best of several 2048×2048 products),
* page faults for a freshly allocated 16 MiB buffer, before and after
  ``vaelab.fast.keep_freed_memory()`` (Linux/glibc; fit calls it on the CPU),
* seconds per epoch of ``vaelab.fit`` on a quiet machine and with one competing busy-loop
  process (``python -c "while True: pass"``, a stand-in for a browser drawing a page or another
  notebook), with torch's thread count kept (``vaelab.fast.tune_threads = False``: plain torch)
  and with vaelab's ``ThreadTuner``, side by side, quiet and busy runs alternating,

and prints, for ``VAE(latent_dim=20)`` and ``ConvVAE(latent_dim=10)``:

* speed-up = classic seconds per epoch / vaelab seconds per epoch (goal: >= 2 for the MLP VAE);
* FLOP ratio = vaelab seconds per epoch / (training FLOPs per epoch / matmul throughput), with
  training FLOPs = 3 × the forward FLOPs counted by ``torch.utils.flop_counter`` (goals: ≤ 1.5
  for the MLP VAE, ≤ 1.2 for the ConvVAE);
* test loss (negative ELBO, nats per image, same evaluator) after the same number of epochs,
  mean ± std over seeds, for both loops started from the same weights;
* busy / quiet = seconds per epoch with the competing process / without it (goal: <= 1.5 with
  vaelab's setting, on a 2-core machine), the training loss both settings reach from the same
  weights, and the thread counts the tuner ran its steps with.

and, with ``--series``, the first run of all seven notebooks from an empty cache
(``benchmarks/bench_series.py``) with its sweeps' one-``fit``-after-another baselines, then
one summary of every goal measured in this run.

Usage: ``python benchmarks/bench_training.py [--quick] [--series] [--root FOLDER_WITH_MNIST]
[--busy-only]``.
Images: full MNIST when its files are under ``--root``; otherwise the embedded 4,000-image
subset, written to IDX files in a temporary folder so the classic loop reads it with torchvision.
"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets, transforms

import vaelab
from vaelab import fast
from vaelab.fast import keep_freed_memory
from vaelab.models import VAE, ConvVAE


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 matrix-multiply throughput, GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def forward_flops_per_image(model: torch.nn.Module, batch: int = 128) -> float:
    x = torch.rand(batch, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / batch


def write_idx(images: torch.Tensor, labels: torch.Tensor, root: Path) -> None:
    """Write images (N, 1, 28, 28) in [0, 1] as MNIST IDX files under root/MNIST/raw (the same
    images serve as torchvision's train and t10k files; only the train split is read)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    pixels = (images.squeeze(1) * 255).round().to(torch.uint8).numpy()
    n = len(pixels)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + pixels.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.to(torch.uint8).numpy().tobytes())


def classic_epoch(model, loader, optimizer) -> None:
    """One training epoch exactly as pytorch/examples vae/main.py does it on the CPU."""
    model.train()
    train_loss = 0.0
    for data, _ in loader:
        optimizer.zero_grad()
        logits, mu, logvar = model(data)
        recon = torch.sigmoid(logits)
        bce = F.binary_cross_entropy(recon.view(-1, 784), data.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss = bce + kld
        loss.backward()
        train_loss += loss.item()
        optimizer.step()


def with_torch_layers(model: ConvVAE) -> ConvVAE:
    """A copy of ``model`` built with torch's own ``nn.ConvTranspose2d`` (same weights)."""
    with torch.random.fork_rng():  # building it draws weights; leave the random stream alone
        plain = ConvVAE(**model.config, fast=False)
    plain.load_state_dict(model.state_dict())
    return plain


def page_faults_of_a_fresh_buffer(mib: int = 16) -> int:
    """Minor page faults while a ``mib`` MiB tensor is allocated, written and freed, as a training
    step does with its large buffers (glibc's default: one per 4 KiB page, 4,096 for 16 MiB)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(mib << 18)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def report_page_faults() -> None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        print("page faults: not measured (glibc's mallopt is Linux/glibc only)")
        return
    default = [page_faults_of_a_fresh_buffer() for _ in range(3)]
    took = keep_freed_memory()
    page_faults_of_a_fresh_buffer()  # the heap grows once
    kept = [page_faults_of_a_fresh_buffer() for _ in range(3)]
    print(f"page faults per fresh 16 MiB buffer: {default} by default, {kept} after "
          f"keep_freed_memory() (took: {took}; goal: < 100)")


def timed_classic(model, loader, epochs) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    classic_epoch(model, loader, opt)  # warm-up
    return [_timed(lambda: classic_epoch(model, loader, opt)) for _ in range(epochs)]


def compare(name, make_model, x, loader, test_x, *, timed_epochs, loss_epochs, seeds, peak):
    torch.manual_seed(0)
    model = make_model()
    fwd = forward_flops_per_image(model)
    train_flops = 3 * fwd * len(x)
    bound = train_flops / (peak * 1e9)

    start = copy.deepcopy(model.state_dict())
    # vaelab: the first epoch is a warm-up; history.seconds times each epoch's training pass.
    ours = vaelab.fit(model, x, epochs=timed_epochs + 1, progress=False, device="cpu").seconds[1:]
    model.load_state_dict(start)
    torch_layers = with_torch_layers(model) if isinstance(model, ConvVAE) else None
    classic = timed_classic(model, loader, timed_epochs)
    t_ours, t_classic = statistics.median(ours), statistics.median(classic)

    print(f"\n{name}: {fwd / 1e6:.2f} MFLOP forward per image, training ≈ 3× = "
          f"{3 * fwd / 1e6:.2f} MFLOP per image, {train_flops / 1e9:.1f} GFLOP per epoch "
          f"of {len(x):,} images")
    print(f"  seconds per epoch (median of {timed_epochs}): vaelab.fit {t_ours:.2f} s, "
          f"classic loop {t_classic:.2f} s, matmul bound {bound:.2f} s")
    print(f"  speed-up over the classic loop: {t_classic / t_ours:.2f}×")
    speedups = {"classic loop": t_classic / t_ours}
    if torch_layers is not None:
        t_torch = statistics.median(timed_classic(torch_layers, loader, timed_epochs))
        speedups["classic loop, torch layers"] = t_torch / t_ours
        print(f"  classic loop with torch.nn.ConvTranspose2d layers: {t_torch:.2f} s per epoch; "
              f"speed-up over it: {t_torch / t_ours:.2f}×")
    print(f"  vaelab.fit time / FLOP bound:   {t_ours / bound:.2f}×")

    if loss_epochs:
        losses = {"vaelab.fit": [], "classic": []}
        for seed in seeds:
            torch.manual_seed(seed)
            init = make_model().state_dict()
            a, b = make_model(), make_model()
            a.load_state_dict(init)
            b.load_state_dict(init)
            vaelab.fit(a, x, epochs=loss_epochs, seed=seed, progress=False, device="cpu")
            torch.manual_seed(seed)
            opt = torch.optim.Adam(b.parameters(), lr=1e-3)
            for _ in range(loss_epochs):
                classic_epoch(b, loader, opt)
            for key, m in (("vaelab.fit", a), ("classic", b)):
                losses[key].append(vaelab.evaluate(m, test_x, seed=123)["total"])
        summary = ", ".join(f"{k} {statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}"
                            for k, v in losses.items())
        print(f"  test loss after {loss_epochs} epochs (nats per image, mean ± std over seeds "
              f"{list(seeds)}): {summary}")
    return speedups, t_ours / bound


@contextmanager
def competing_process(busy: bool):
    """Within the block, with ``busy``, one more process keeps a core busy (a Python busy loop);
    it is killed afterwards."""
    if not busy:
        yield
        return
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # running before the first step
        yield
    finally:
        loop.kill()
        loop.wait()


class CountingTuner(fast.ThreadTuner):
    """vaelab's tuner, counting the steps it runs at each thread count."""

    steps = collections.Counter()

    def step(self, seconds: float) -> None:
        CountingTuner.steps[self.threads] += 1
        super().step(seconds)


def busy_and_quiet(name, make_model, x, *, epochs, rounds) -> dict:
    """Median seconds per epoch of ``vaelab.fit`` (the first epoch of each fit is a warm-up) for
    each (setting, busy) pair, alternating quiet and busy runs and the order of the settings."""
    torch.manual_seed(0)
    start = make_model().state_dict()
    seconds, loss, counts = collections.defaultdict(list), {}, {}
    tuner, tune_threads, fast.ThreadTuner = fast.ThreadTuner, fast.tune_threads, CountingTuner
    try:
        for r in range(rounds):
            for busy in (False, True):
                with competing_process(busy):
                    for tune in (False, True) if r % 2 == 0 else (True, False):
                        fast.tune_threads = tune
                        CountingTuner.steps = collections.Counter()
                        model = make_model()
                        model.load_state_dict(start)
                        history = vaelab.fit(model, x, epochs=epochs + 1, progress=False,
                                             device="cpu")
                        seconds[tune, busy] += history.seconds[1:]
                        loss[tune] = history.train[-1]["total"]
                        if tune:
                            counts[busy] = counts.get(busy, collections.Counter()) + \
                                CountingTuner.steps
    finally:
        fast.ThreadTuner, fast.tune_threads = tuner, tune_threads
    t = {key: statistics.median(v) for key, v in seconds.items()}
    n = epochs * rounds
    print(f"\n{name}, {len(x):,} images, seconds per epoch (median of {n} epoch{'s' * (n > 1)} "
          f"each, after a warm-up epoch):")
    print(f"  {'':28s} {'quiet':>8s} {'busy':>8s} {'busy / quiet':>13s}")
    for tune, label in ((False, f"torch defaults ({torch.get_num_threads()} threads)"),
                        (True, "vaelab (tuned threads)")):
        print(f"  {label:28s} {t[tune, False]:8.3f} {t[tune, True]:8.3f} "
              f"{t[tune, True] / t[tune, False]:12.2f}×")
    print(f"  vaelab / torch defaults: quiet {t[True, False] / t[False, False]:.2f}×, "
          f"busy {t[True, True] / t[False, True]:.2f}×; training loss after {epochs + 1} "
          f"epochs: torch defaults {loss[False]:.4f}, vaelab {loss[True]:.4f}")
    shares = ["; ".join(f"{k} thread{'s' * (k > 1)} {c / sum(counts[busy].values()):.0%}"
                        for k, c in sorted(counts[busy].items())) for busy in (False, True)]
    print(f"  steps the tuner ran at each thread count: quiet {shares[0]}; busy {shares[1]}")
    return {setting: t[tune, True] / t[tune, False]
            for tune, setting in ((False, "torch"), (True, "vaelab"))}


def report_busy(train_images, quick: bool, skip_conv: bool) -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nOne competing busy-loop process: {fast.usable_cores()} usable cores, torch "
          f"{torch.get_num_threads()} threads; 1-minute load average before: {load:.2f}"
          f"{' (other programs are running: quiet is not quiet)' if load > 0.5 else ''}")
    ratios = {"VAE(latent_dim=20)": busy_and_quiet(
        "VAE(latent_dim=20)", lambda: VAE(20), train_images, epochs=2 if quick else 4,
        rounds=1 if quick else 2)}
    if not skip_conv:
        ratios["ConvVAE(latent_dim=10)"] = busy_and_quiet(
            "ConvVAE(latent_dim=10)", lambda: ConvVAE(10), train_images[:1024],
            epochs=2 if quick else 3, rounds=1 if quick else 2)
    return ratios


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=None, help="folder with full MNIST files")
    p.add_argument("--quick", action="store_true", help="fewer epochs and seeds")
    p.add_argument("--skip-conv", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--series", action="store_true",
                   help="then also the first run of the seven notebooks from an empty cache "
                        "(benchmarks/bench_series.py, about 10 minutes)")
    p.add_argument("--busy-only", action="store_true",
                   help="only the quiet vs busy comparison (one competing busy-loop process)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    train_set = vaelab.load_mnist(True, args.root, download=False)
    if args.busy_only:
        print_busy_summary(report_busy(train_set.images, args.quick, args.skip_conv))
        return
    test_set = vaelab.load_mnist(False, args.root, download=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if train_set.source == "files" else Path(tmp)
        if train_set.source != "files":
            write_idx(train_set.images, train_set.labels, root)
        mnist = datasets.MNIST(str(root), train=True, download=False,
                               transform=transforms.ToTensor())
        assert torch.equal(mnist[0][0], train_set.images[0]), "the two loops see other images"
        loader = DataLoader(mnist, batch_size=128, shuffle=True)

        report_page_faults()
        peak_before = matmul_gflops()
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"float32 matmul throughput {peak_before:.1f} GFLOP/s (2048×2048, best of 5)")
        quick = args.quick
        results = {"VAE(latent_dim=20)": compare(
            "VAE(latent_dim=20)", lambda: VAE(20), train_set.images, loader, test_set.images,
            timed_epochs=3 if quick else 5, loss_epochs=3 if quick else 10,
            seeds=(0, 1) if quick else (0, 1, 2), peak=peak_before)}
        if not args.skip_conv:
            results["ConvVAE(latent_dim=10)"] = compare(
                "ConvVAE(latent_dim=10)", lambda: ConvVAE(10), train_set.images, loader,
                test_set.images, timed_epochs=1 if quick else 3, loss_epochs=1 if quick else 3,
                seeds=(0, 1) if quick else (0, 1, 2), peak=peak_before)
        peak_after = matmul_gflops()
        print(f"\nmatmul throughput at the end: {peak_after:.1f} GFLOP/s "
              f"({100 * (peak_after / peak_before - 1):+.0f}% vs the start)")
        busy = report_busy(train_set.images, quick, args.skip_conv)
    series = None
    if args.series:
        sys.path.insert(0, str(Path(__file__).parent))
        import bench_series

        print("\nthe first run of the series, all seven notebooks, full mode, empty cache:")
        series, _ = bench_series.first_run()
        bench_series.print_baselines()
    print(f"\nsummary of this run (load average at the end "
          f"{os.getloadavg()[0]:.1f}; goals of the third speed round)")
    goals = {"VAE(latent_dim=20)": 1.5, "ConvVAE(latent_dim=10)": 1.2}
    for name, (speedups, ratio) in results.items():
        over = ", ".join(f"{s:.2f}× over the {k}" for k, s in speedups.items())
        print(f"  {name:24s} time / FLOP bound {ratio:5.2f}× (goal ≤ {goals[name]}: "
              f"{'met' if ratio <= goals[name] else 'NOT met'}); speed-up {over}")
    print_busy_summary(busy)
    if series is not None:
        print(f"\nfirst run of the series: {series:.0f} s = {series / 60:.1f} min (goal ≤ 10 min: "
              f"{'met' if series <= 600 else 'NOT met'})")


def print_busy_summary(ratios: dict) -> None:
    print("\nbusy / quiet seconds per epoch, one competing busy-loop process (goal: ≤ 1.5)")
    for name, r in ratios.items():
        print(f"  {name:24s} torch defaults {r['torch']:5.2f}×; vaelab {r['vaelab']:5.2f}× "
              f"({'met' if r['vaelab'] <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
