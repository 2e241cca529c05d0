"""The first run of the whole series: all seven notebooks in full mode from an empty cache.

A learner's first ``make notebooks`` (or Run All, notebook after notebook) trains every model.
This script runs notebooks 01-07 in order with ``jupyter nbconvert --execute`` (kernel start
included) in full mode on the embedded subset, with an EMPTY model cache of their own, claims
printed but not enforced (``VAELAB_CLAIMS=report``: a timing run), executed copies in a temporary
folder (the stored notebooks are not touched). It prints

* the seconds of each notebook and of the series (goal: ≤ 10 minutes on 2 cores);
* the slowest cells (from nbconvert's recorded timing): every cell over 30 s should show
  progress, and every cell should stay under 60 s, except a sweep that prints its estimate;
* beside it, the baselines of the experiments that changed: notebook 07's β sweep (15 models)
  and notebook 06's anchor sweep (6 models) trained one ``fit`` after another against one
  batched pass (``vaelab.batched``), a few epochs each, measured side by side in this run.

    python benchmarks/bench_series.py            # about 10 minutes
    python benchmarks/bench_series.py --only 01  # some notebooks
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_S, CELL_PROGRESS_S, CELL_LIMIT_S = 600, 30, 60


def run_notebook(notebook: Path, out_dir: Path, env: dict) -> tuple[float, list]:
    """Seconds to execute ``notebook``, and ``[(seconds, cell index, first line)]`` per cell."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=3600", "--ExecutePreprocessor.record_timing=True",
         "--output-dir", str(out_dir), str(notebook)],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    seconds = time.perf_counter() - start
    executed = json.loads((out_dir / notebook.name).read_text())
    cells = []
    for index, cell in enumerate(executed["cells"]):
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            t0, t1 = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
            first = "".join(cell["source"]).strip().splitlines()[0][:60]
            cells.append(((t1 - t0).total_seconds(), index, first))
    return seconds, cells


def one_by_one_vs_batched(make_model, x, runs: list[dict], epochs: int,
                          **fit_kwargs) -> tuple[float, float]:
    """Seconds for ``epochs`` of the models ``runs`` (each a dict of beta / seed / anchor_rate):
    one ``fit`` after another, then all in one ``batched.fit_many`` pass (same models, data and
    settings)."""
    import torch

    from vaelab import batched, fit

    def models():
        out = []
        for run in runs:
            torch.manual_seed(run["seed"])
            out.append(make_model())
        return out

    start = time.perf_counter()
    for model, run in zip(models(), runs, strict=True):
        fit(model, x, epochs=epochs, progress=False, **run, **fit_kwargs)
    one_by_one = time.perf_counter() - start
    start = time.perf_counter()
    batched.fit_many(models(), x, [r.get("beta", 1.0) for r in runs], [r["seed"] for r in runs],
                     anchor_rates=[r.get("anchor_rate", 0.0) for r in runs], epochs=epochs,
                     progress=False, **fit_kwargs)
    return one_by_one, time.perf_counter() - start


def baselines() -> dict[str, tuple[float, float]]:
    """The two sweeps that train in one batched pass, a few epochs each, both ways (each
    ``fit`` has a start-up cost that one epoch would overweight)."""
    from vaelab import load_mnist
    from vaelab.models import VAE
    from vaelab.shapes import load_shapes

    shapes = load_shapes("small", verbose=False).images
    betas = [{"beta": b, "seed": s} for b in (0.5, 1.0, 2.0, 4.0, 8.0) for s in range(3)]
    mnist = load_mnist(download=False, verbose=False).images  # the embedded subset here
    anchors = [{"anchor_rate": a, "seed": s} for a in (1.0, 2.0, 4.0) for s in (0, 1)]
    return {
        "notebook 07's β sweep (15 models, 2 epochs each)": one_by_one_vs_batched(
            lambda: VAE(latent_dim=10, hidden=(256, 256), image_size=32), shapes, betas, 2,
            batch_size=64),
        "notebook 06's anchor sweep (its 6 new models, 10 epochs each)": one_by_one_vs_batched(
            lambda: VAE(latent_dim=2, hidden=(400, 100)), mnist, anchors, 10,
            likelihood="gaussian"),
    }


def first_run(numbers=None) -> tuple[float, list]:
    """Run notebooks 01-07 (or those whose number is in ``numbers``) in order, in full mode from
    an empty cache of their own; print each one's seconds. Returns ``(total seconds, [(seconds,
    notebook, cell index, first line)] of the cells over CELL_PROGRESS_S)``."""
    notebooks = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
    if numbers:
        notebooks = [nb for nb in notebooks if nb.name[:2] in numbers]
    total, slow = 0.0, []
    with tempfile.TemporaryDirectory(prefix="vaelab-series-") as tmp:
        env = {**os.environ, "VAELAB_QUICK": "0", "VAELAB_OFFLINE": "1", "MPLBACKEND": "agg",
               "VAELAB_CLAIMS": "report", "VAELAB_CACHE": str(Path(tmp) / "cache"),
               "VAELAB_DATA": str(Path(tmp) / "no-files")}
        for nb in notebooks:
            seconds, cells = run_notebook(nb, Path(tmp) / "out", env)
            total += seconds
            slow += [(s, nb.name[:2], i, line) for s, i, line in cells if s > CELL_PROGRESS_S]
            print(f"{nb.name:<40} {seconds:6.0f} s   (series so far {total:5.0f} s)", flush=True)
    print(f"\nfirst run of {len(notebooks)} notebooks, empty cache, full mode: {total:.0f} s = "
          f"{total / 60:.1f} min (goal ≤ {GOAL_S // 60} min: "
          f"{'met' if total <= GOAL_S else 'NOT met'})")
    print(f"cells over {CELL_PROGRESS_S} s (each should show progress; over {CELL_LIMIT_S} s only "
          "a sweep that prints its estimate):")
    for seconds, nb, index, line in sorted(slow, reverse=True):
        print(f"  {nb} cell {index:>2}: {seconds:5.0f} s   {line}")
    return total, slow


def print_baselines() -> None:
    print("\nthe sweeps trained both ways, side by side:")
    for what, (one_by_one, together) in baselines().items():
        print(f"  {what}: one fit after another {one_by_one:.1f} s, one batched pass "
              f"{together:.1f} s ({one_by_one / together:.2f}× faster)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", default=None, help="notebook numbers (default: all)")
    p.add_argument("--skip-baseline", action="store_true")
    args = p.parse_args()
    first_run(args.only)
    if not args.skip_baseline:
        print_baselines()
    return 0


if __name__ == "__main__":
    sys.exit(main())
