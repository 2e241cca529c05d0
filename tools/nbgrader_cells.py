"""Put a notebook's exercises in nbgrader's format, in place.

Every code cell tagged ``solution`` (a function and a ``check.<name>(function)`` call) becomes
an nbgrader answer cell, the function body between ``### BEGIN SOLUTION`` and
``### END SOLUTION``, followed by a locked test cell worth 1 point per checker:
``assert check.<name>(function)``. Cells already in nbgrader's format are left alone, so running
it twice changes nothing. See vaelab/student.py.

    python tools/nbgrader_cells.py notebooks/0*.ipynb
"""

import argparse
import sys
from pathlib import Path

import nbformat

from vaelab import student
from vaelab.files import atomic_write


def convert(path: Path, points: float = student.POINTS) -> int:
    """Convert the notebook at ``path`` in place; return how many cells changed."""
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    converted = student.to_nbgrader(nb, path.name, points)
    new = nbformat.writes(nb) + "\n"
    if new != text:
        with atomic_write(path, "w") as fh:  # a full disk keeps the notebook as it was
            fh.write(new)
    return converted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--points", type=float, default=student.POINTS,
                        help="points per checker call (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        for path in args.notebooks:
            n = convert(path, args.points)
            if n:  # a second run prints nothing: nothing is left to convert
                print(f"{path}: {n} exercise cell{'s' * (n != 1)} converted")
    except (OSError, student.SolutionCellError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
