"""Command line: ``python -m vaelab train ...``, ``encode ...`` and ``student-notebooks``."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch


def _train(args) -> int:
    from . import checkpoints, data, models, train

    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force to replace it or choose another --out",
              file=sys.stderr)
        return 2
    kwargs = {"latent_dim": args.latent}
    if args.model != "convvae":
        kwargs |= {"hidden": tuple(args.hidden), "activation": args.activation}
    torch.manual_seed(args.seed)
    model = models.MODELS[args.model](**kwargs)
    train_set = data.load_mnist(True, args.data_root, dataset=args.dataset)
    test_set = data.load_mnist(False, args.data_root, dataset=args.dataset)
    settings = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                "beta": args.beta, "seed": args.seed, "likelihood": args.likelihood,
                "anchor_rate": args.anchor_rate}
    history = train.fit(model, train_set, test_data=test_set, device=args.device, **settings)
    checkpoints.save(model, args.out, settings=settings, history=history.as_dict(),
                     data={"dataset": args.dataset, "source": train_set.source})
    last = history.test[-1]["total"] if history.test else float("nan")
    print(f"saved {args.out} ({len(history)} epochs, test loss {last:.2f} nats per image)")
    return 0


def _encode(args) -> int:
    from . import checkpoints, data

    model = checkpoints.load(args.checkpoint)
    test_set = data.load_mnist(False, args.data_root, dataset=args.dataset)
    with torch.no_grad():
        mu = torch.cat([model.encode(xb)[0] for xb in test_set.images.split(1000)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", *(f"mu_{i}" for i in range(model.latent_dim))])
        for label, row in zip(test_set.labels.tolist(), mu.tolist(), strict=True):
            writer.writerow([label, *(f"{v:.6g}" for v in row)])
    print(f"wrote {len(mu):,} codes to {args.out}")
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
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = len(written)
    print(f"wrote {n} student notebook{'s' * (n != 1)} to {args.notebooks / student.STUDENT_DIR}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vaelab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on MNIST and save a checkpoint")
    t.add_argument("--model", choices=["ae", "vae", "convvae"], default="vae")
    t.add_argument("--latent", type=int, default=2, help="latent dimensions L")
    t.add_argument("--hidden", type=int, nargs="+", default=[400], help="MLP hidden sizes")
    t.add_argument("--activation", choices=["relu", "tanh"], default="relu")
    t.add_argument("--beta", type=float, default=1.0)
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--likelihood", choices=["bernoulli", "gaussian"], default="bernoulli")
    t.add_argument("--anchor-rate", type=float, default=0.0)
    t.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    t.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    t.add_argument("--force", action="store_true", help="replace --out if it exists")
    t.set_defaults(run=_train)

    e = sub.add_parser("encode", help="write label and mu of every test image to a CSV file")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--out", type=Path, required=True)
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)
