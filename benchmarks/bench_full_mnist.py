"""How long the notebooks take on full MNIST's size, side by side with the embedded subset.

An online learner gets full MNIST (60,000 training + 10,000 test images) instead of the
embedded 4,000 + 1,000. The notebooks set training budgets in *images seen* and derive their
epochs from the data they get, so full MNIST should cost about what the subset costs. This
script measures it: it writes a stand-in of MNIST's size and layout (the four IDX files under
``<root>/MNIST/raw``, made of the embedded images with small random shifts — for timing only,
never for reported losses), then runs each notebook in full mode with ``jupyter nbconvert
--execute`` (kernel start included) twice, each column with its own empty model cache, with
claims printed but not enforced (``VAELAB_CLAIMS=report``; the count of those that did not
hold is printed, since the stand-in is not MNIST):

* ``subset``: offline, no MNIST files, so ``load_mnist`` takes the embedded subset;
* ``full-size``: ``VAELAB_DATA`` points at the stand-in.

It prints the seconds per notebook and the ratio full-size / subset. Executed copies go to a
temporary folder; the stored notebooks are not touched.

    python benchmarks/bench_full_mnist.py                 # notebooks 01-06, about 20 minutes
    python benchmarks/bench_full_mnist.py --only 01 02    # some notebooks
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"train": 60_000, "t10k": 10_000}
GOAL = 1.5


def shifted_copies(images: np.ndarray, labels: np.ndarray, n: int, rng) -> tuple:
    """``n`` images drawn from ``images`` (uint8, (M, 28, 28)), each moved by up to 2 pixels."""
    pick = rng.integers(0, len(images), n)
    out = np.zeros((n, 28, 28), dtype=np.uint8)
    shifts = rng.integers(-2, 3, (n, 2))
    for i, (k, (dy, dx)) in enumerate(zip(pick, shifts, strict=True)):
        out[i] = np.roll(images[k], (dy, dx), axis=(0, 1))
    return out, labels[pick].astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (as MNIST ships them), gzip-compressed."""
    magic = bytes([0, 0, 0x08, array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(magic + dims + array.tobytes())


def write_stand_in(root: Path, seed: int = 0) -> None:
    """The four MNIST files under ``root/MNIST/raw``, built from the embedded subset."""
    from vaelab.data import load_embedded_mnist

    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, train in (("train", True), ("t10k", False)):
        data = load_embedded_mnist(train)
        pixels = (data.images[:, 0] * 255).round().byte().numpy()
        images, labels = shifted_copies(pixels, data.labels.numpy(), SIZES[split], rng)
        write_idx(raw / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte.gz", labels)


def run_notebook(notebook: Path, out_dir: Path, env: dict) -> tuple[float, int]:
    """Seconds to execute ``notebook`` in full mode with ``env`` (raises if it fails), and how
    many of its claims did not hold on this data (printed, not enforced: VAELAB_CLAIMS=report)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=3600", "--output-dir", str(out_dir), str(notebook)],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    seconds = time.perf_counter() - start
    executed = json.loads((out_dir / notebook.name).read_text())
    streams = "".join("".join(o.get("text", "")) for c in executed["cells"]
                      for o in c.get("outputs", []))
    return seconds, streams.count("your run differs here")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", default=["01", "02", "03", "04", "05", "06"],
                   help="notebook numbers to run (default: 01 to 06)")
    args = p.parse_args()
    notebooks = [nb for n in args.only for nb in sorted(ROOT.glob(f"notebooks/{n}_*.ipynb"))]
    with tempfile.TemporaryDirectory(prefix="vaelab-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_stand_in(tmp / "mnist")
        print(f"wrote a 60,000 / 10,000-image stand-in in {time.perf_counter() - t0:.0f} s")
        base = {**os.environ, "VAELAB_QUICK": "0", "VAELAB_OFFLINE": "1", "MPLBACKEND": "agg",
                "VAELAB_CLAIMS": "report"}  # timing only: the stand-in's results are not read
        columns = {"subset": {**base, "VAELAB_DATA": str(tmp / "no-files")},
                   "full-size": {**base, "VAELAB_DATA": str(tmp / "mnist")}}
        times: dict[str, dict[str, float]] = {}
        for column, env in columns.items():
            env = {**env, "VAELAB_CACHE": str(tmp / f"cache-{column}")}  # empty model cache
            for nb in notebooks:
                seconds, unheld = run_notebook(nb, tmp / f"out-{column}", env)
                times.setdefault(nb.name, {})[column] = seconds
                print(f"{column:>9}  {nb.name:<40} {seconds:6.0f} s   "
                      f"({unheld} claim(s) did not hold on this data)", flush=True)
    print(f"\n{'notebook':<40} {'subset':>8} {'full-size':>10} {'ratio':>6}")
    for name, t in times.items():
        print(f"{name:<40} {t['subset']:7.0f}s {t['full-size']:9.0f}s "
              f"{t['full-size'] / t['subset']:5.2f}×")
    sub = sum(t["subset"] for t in times.values())
    full = sum(t["full-size"] for t in times.values())
    ratio = full / sub
    print(f"{'all':<40} {sub:7.0f}s {full:9.0f}s {ratio:5.2f}×   "
          f"(goal ≤ {GOAL}×: {'met' if ratio <= GOAL else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
