"""Command line: ``python -m vaelab train ...``, ``encode ...`` and ``student-notebooks``.

Every error is one line on stderr, ``error: <what went wrong and what to do>``, with exit code 2
for a command line that cannot work (a bad option, an ``--out`` that cannot be written) and 1
for a failure on the way (a damaged checkpoint, a loss that became NaN); ``--debug`` shows the
Python traceback instead. Destinations are checked before anything trains.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from . import checkpoints, data, losses, models, train
from .files import atomic_write


class UsageError(Exception):
    """A command line that cannot work: exit code 2."""


def out_file(text: str, force: bool, reading: Path | None = None) -> Path:
    """``--out`` as a Path (``~`` expanded) once it is clear the result can be written there:
    not a folder (an existing one, or a name ending in ``/``), not the file being read
    (``reading``), not an existing file unless ``force``. Otherwise a UsageError."""
    if not text.strip():
        raise UsageError("--out is empty; give a file name, e.g. --out "
                         + ("latents.csv" if reading else "model.pt"))
    try:
        out = Path(text).expanduser()
    except RuntimeError:  # "~name" for a user this machine does not have
        raise UsageError(f"--out {text}: no such user's home folder; give a path without "
                         "'~name'") from None
    if text.endswith(("/", os.sep)) or out.is_dir():
        raise UsageError(f"--out {text} is a folder; give a file name in it, e.g. "
                         f"--out {out / ('latents.csv' if reading else 'model.pt')}")
    if reading is not None and (out.resolve() == reading.resolve()
                                or out.exists() and reading.exists() and out.samefile(reading)):
        raise UsageError(f"--out {text} is the checkpoint being encoded; choose another --out")
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to replace it or choose another --out")
    try:
        return checkpoints.check_writable(out)
    except ValueError as err:
        raise UsageError(f"--out: {err}") from None


def _make_model(args) -> models.LatentModel:
    if args.model == "convvae" and (args.hidden is not None or args.activation is not None):
        raise UsageError("--hidden and --activation apply to ae and vae; convvae has a fixed "
                         "architecture")
    kwargs = {"latent_dim": args.latent}
    if args.model != "convvae":
        kwargs |= {"hidden": tuple(args.hidden or [400]), "activation": args.activation or "relu"}
    torch.manual_seed(args.seed)
    return models.MODELS[args.model](**kwargs)


def _train(args) -> int:
    out = out_file(args.out, args.force)
    model = _make_model(args)
    train_set = data.load_mnist(True, args.data_root, dataset=args.dataset)
    test_set = data.load_mnist(False, args.data_root, dataset=args.dataset)
    epochs = args.epochs
    if args.images_seen is not None:
        epochs = train.epochs_for(args.images_seen, len(train_set.images))
        print(f"--images-seen {args.images_seen:,}: {epochs} epoch{'s' * (epochs != 1)} of "
              f"{len(train_set.images):,} training images")
    settings = {"epochs": epochs, "batch_size": args.batch_size, "lr": args.lr,
                "beta": args.beta, "seed": args.seed, "likelihood": args.likelihood,
                "anchor_rate": args.anchor_rate}
    extra = {"settings": settings | {"images_seen": args.images_seen},
             "data": {"dataset": args.dataset, "source": train_set.source}}
    try:
        history = train.fit(model, train_set, test_data=test_set, device=args.device,
                            **settings)
    except train.NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return _save_kept(model, out, err.history.as_dict(), err.kept_epoch, extra)
    if history.stopped is not None:  # Ctrl-C or SIGTERM: keep the finished epochs
        _save_kept(model, out, history.as_dict(), len(history), extra)
        return 130
    path, code = _save(model, out, history=history.as_dict(), **extra)
    last = history.test[-1]["total"]
    print(f"saved {path} ({len(history)} epochs, test loss {last:.2f} nats per image)")
    return code


def _save_kept(model, out: Path, record: dict, kept: int, extra: dict) -> int:
    """After training stopped early: save the model with the history of its ``kept`` finished
    epochs (nothing when none finished, so an older ``--out`` is never replaced by an untrained
    model). Returns 1."""
    if kept == 0:
        print(f"nothing saved to {out}: no epoch finished", file=sys.stderr)
        return 1
    record = {k: v[:kept] if isinstance(v, list) else v for k, v in record.items()}
    path, _ = _save(model, out, history=record, **extra)
    print(f"saved {path}: the model as it was after epoch {kept}, with the history of its "
          f"{kept} epoch(s)")
    return 1


def _save(model, out: Path, **metadata) -> tuple[Path, int]:
    """Save to ``out``; if that fails after all, to a new temporary folder, and say so.
    Returns the path written and the exit code (1 when ``out`` could not be written). When
    the fallback fails too, its folder is removed and the OSError names both paths, both
    errors first to last."""
    try:
        return checkpoints.save(model, out, **metadata), 0
    except (OSError, ValueError) as err:
        first = err
    folder = Path(tempfile.mkdtemp(prefix="vaelab-"))
    try:
        fallback = checkpoints.save(model, folder / out.name, **metadata)
    except (OSError, ValueError) as err:
        shutil.rmtree(folder, ignore_errors=True)
        raise OSError(f"could not write {out} ({_one_line(first)}), nor the fallback "
                      f"{folder / out.name} ({_one_line(err)}); nothing is saved") from first
    print(f"error: could not write {out} ({_one_line(first)}); the trained model is saved "
          f"to {fallback} instead", file=sys.stderr)
    return fallback, 1


def _encode(args) -> int:
    out = out_file(args.out, args.force, reading=args.checkpoint.expanduser())
    model = checkpoints.load(args.checkpoint)
    test_set = data.load_mnist(False, args.data_root, dataset=args.dataset)
    mu = model.encode_means(test_set.images)
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["label", *(f"mu_{i}" for i in range(model.latent_dim))])
    for label, row in zip(test_set.labels.tolist(), mu.tolist(), strict=True):
        writer.writerow([label, *(f"{v:.6g}" for v in row)])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "wb") as fh:
        fh.write(text.getvalue().encode("utf-8"))
    print(f"wrote {len(mu):,} codes to {out}")
    return 0


def _student_notebooks(args) -> int:
    from . import student

    try:
        if args.check:
            problems = student.stale(args.notebooks)
            for line in problems:
                print(line, file=sys.stderr)
            if problems:
                print("student notebooks are out of date: run `make student-notebooks`",
                      file=sys.stderr)
            return 1 if problems else 0
        written = student.write(args.notebooks)
    except (FileNotFoundError, student.SolutionCellError) as e:
        raise UsageError(str(e)) from e
    n = len(written)
    print(f"wrote {n} student notebook{'s' * (n != 1)} to {args.notebooks / student.STUDENT_DIR}")
    return 0


def _number(kind, minimum: float, *, above: bool = False):
    """An argparse type: ``kind`` (int or float), finite, ≥ ``minimum`` (> with ``above``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '≥'} {minimum}; "
                                             f"got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _train_parser(sub) -> argparse.ArgumentParser:
    t = sub.add_parser("train", help="train a model on MNIST and save a checkpoint")
    t.add_argument("--model", choices=list(models.MODELS), default="vae")
    t.add_argument("--latent", type=_number(int, 1), default=2, help="latent dimensions L")
    t.add_argument("--hidden", type=_number(int, 1), nargs="+", default=None,
                   help="MLP hidden sizes (ae, vae; default: 400)")
    t.add_argument("--activation", choices=list(models.ACTIVATIONS), default=None,
                   help="hidden-layer activation (ae, vae; default: relu)")
    t.add_argument("--beta", type=_number(float, 0.0), default=1.0)
    budget = t.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=_number(int, 1), default=20, help="default: 20")
    budget.add_argument("--images-seen", type=_number(int, 1), default=None, metavar="N",
                        help="train the fewest whole epochs that show the model N images")
    t.add_argument("--batch-size", type=_number(int, 1), default=128)
    t.add_argument("--lr", type=_number(float, 0.0, above=True), default=1e-3)
    t.add_argument("--seed", type=_number(int, 0), default=0)
    t.add_argument("--likelihood", choices=list(losses.LIKELIHOODS), default="bernoulli")
    t.add_argument("--anchor-rate", type=_number(float, 0.0), default=0.0)
    t.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    t.add_argument("--out", required=True, help="checkpoint file to write (not a folder)")
    t.add_argument("--force", action="store_true", help="replace --out if it exists")
    t.set_defaults(run=_train)
    return t


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vaelab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    t = _train_parser(sub)

    e = sub.add_parser("encode", help="write label and mu of every test image to a CSV file")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--out", required=True, help="CSV file to write (not a folder)")
    e.add_argument("--force", action="store_true", help="replace --out if it exists")
    e.set_defaults(run=_encode)

    st = sub.add_parser("student-notebooks",
                        help="write notebooks/student/: the notebooks with exercise solutions "
                             "replaced by stubs and outputs cleared")
    st.add_argument("--notebooks", type=Path, default=Path("notebooks"),
                    help="folder with the numbered notebooks (default: notebooks)")
    st.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if notebooks/student is out of date")
    st.set_defaults(run=_student_notebooks)

    for s in (t, e):
        s.add_argument("--dataset", choices=["mnist", "fashion"], default="mnist")
        s.add_argument("--data-root", default=None, help="folder with MNIST files")
    for s in (t, e, st):
        s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show Python tracebacks")
    return p


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse exits with 2 by itself)."""
    args = parser().parse_args(argv)
    try:
        with train.sigterm_as_interrupt():  # SIGTERM (kill, timeout, a scheduler) is Ctrl-C
            return args.run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - one line instead of a traceback
        if args.debug:
            raise
        known = (UsageError, ValueError, TypeError, OSError, RuntimeError)
        hint = "" if isinstance(err, known) else " (unexpected: --debug shows the traceback)"
        print(f"error: {_one_line(err)}{hint}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1
