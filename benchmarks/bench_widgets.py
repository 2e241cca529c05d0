"""How long does one slider move take in the latent explorer? Target: well under 100 ms.

Times the whole kernel-side callback path: ``slider.value = v`` → observer → code from the
sliders → decode ONE image → PNG bytes into ``ipywidgets.Image`` (→ for L = 2, the scatter
with its marker redrawn from the pre-rendered background) → readout. Cases:

* ``VAE(latent_dim=2)`` with the latent scatter of 1,000 encoded test images (marker moves),
* ``VAE(latent_dim=10)`` (ten sliders, no scatter),
* ``ConvVAE(latent_dim=10)`` (the heaviest decoder in the course).

Models are untrained: decoding costs the same with any weights. What is not timed: sending
the bytes to the browser and drawing them (the browser test prints that end-to-end time).
For comparison it also times redrawing a matplotlib figure per move, the slow way.

Usage: ``python benchmarks/bench_widgets.py [--updates N]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

import vaelab
from vaelab import viz
from vaelab.widgets import latent_explorer

TARGET_MS = 100.0


def time_updates(explorer, n: int, seed: int = 0) -> list[float]:
    """Milliseconds for each of n slider moves (random slider, random value in its range)."""
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(n):
        slider = explorer.sliders[rng.integers(len(explorer.sliders))]
        value = float(rng.uniform(slider.min, slider.max))
        start = time.perf_counter()
        slider.value = value
        times.append((time.perf_counter() - start) * 1000)
    return times


def time_matplotlib_redraw(model, n: int) -> list[float]:
    """The slow way: a new matplotlib figure rendered to PNG per move."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        z = torch.tensor([[np.sin(i), np.cos(i)]], dtype=torch.float32)
        fig = viz.show_images(viz.decode_images(model, z), nrow=1)
        FigureCanvasAgg(fig).print_png(io.BytesIO())
        times.append((time.perf_counter() - start) * 1000)
    return times


def report(name: str, times: list[float]) -> None:
    ordered = sorted(times)
    median = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"{name:<44} median {median:7.2f} ms   95th pct {p95:7.2f} ms   "
          f"target/95th = {TARGET_MS / p95:6.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300, help="slider moves per case")
    args = parser.parse_args()
    torch.manual_seed(0)
    test = vaelab.load_mnist(train=False, verbose=False)
    print(f"{args.updates} slider moves per case; torch threads: {torch.get_num_threads()}; "
          f"target: well under {TARGET_MS:.0f} ms per move\n")

    cases = [
        ("VAE L=2 + scatter marker (1,000 points)",
         lambda: latent_explorer(vaelab.VAE(latent_dim=2), start=test.images[:1],
                                 scatter=(test.images, test.labels))),
        ("VAE L=10, ten sliders", lambda: latent_explorer(vaelab.VAE(latent_dim=10))),
        ("ConvVAE L=10, ten sliders", lambda: latent_explorer(vaelab.ConvVAE(latent_dim=10))),
    ]
    for name, build in cases:
        start = time.perf_counter()
        explorer = build()
        built = time.perf_counter() - start
        time_updates(explorer, 10)  # warm-up
        report(name, time_updates(explorer, args.updates))
        print(f"{'':<44} (explorer built in {built * 1000:.0f} ms)")
    report("for comparison: matplotlib redraw per move",
           time_matplotlib_redraw(vaelab.VAE(latent_dim=2), max(20, args.updates // 10)))


if __name__ == "__main__":
    main()
