"""The real course in nbgrader: the seven stored notebooks go through ``generate_assignment``
and ``autograde`` (quick mode, as a teacher would run it; README "With nbgrader").

* The released notebooks hold nbgrader's stubs and no solution.
* A student who writes the solutions back gets every point of every notebook.
* A student whose KL has the wrong sign (notebook 03) loses exactly that point, and sees the
  checker's line in the graded notebook.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

pytestmark = pytest.mark.slow  # seven notebooks autograded in quick mode: about 2 minutes

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ASSIGNMENT = "course"
MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", re.M)
STUB = "# YOUR CODE HERE\n    raise NotImplementedError()"


def nbgrader(root: Path, *args: str) -> None:
    bin_dir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` from PATH
    env = {**os.environ, "VAELAB_OFFLINE": "1", "VAELAB_QUICK": "1", "MPLBACKEND": "agg",
           "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stderr[-3000:]}"


def solutions(path: Path) -> dict[str, str]:
    """grade_id → the answer cell's source with the solution written out (markers dropped)."""
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: MARKER.sub("", c.source) for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def submit(root: Path, who: str, names: list[str], change=lambda name, source: source) -> None:
    """Hand in the released notebooks ``names`` with every answer cell filled in from the
    solutions, passed through ``change(notebook name, source)``."""
    folder = root / "submitted" / who / ASSIGNMENT
    folder.mkdir(parents=True)
    for name in names:
        released = nbformat.read(root / "release" / ASSIGNMENT / name, as_version=4)
        answers = solutions(REPO / "notebooks" / name)
        for cell in released.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                assert STUB in cell.source, f"{name}: {grade_id} has no stub"
                cell.source = change(name, answers[grade_id])
        nbformat.write(released, folder / name)


def flip_kl(name: str, source: str) -> str:
    if not name.startswith("03_"):
        return source
    flipped = source.replace("return 0.5", "return -0.5", 1)
    assert flipped != source, "notebook 03's KL solution no longer starts with 'return 0.5'"
    return flipped


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("course")
    (root / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(root)!r}\n"
        "c.CourseDirectory.course_id = 'vae'\nc.Execute.timeout = 900\n")
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    for path in NOTEBOOKS:
        (source / path.name).write_bytes(path.read_bytes())
    nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    submit(root, "alice", [p.name for p in NOTEBOOKS])
    submit(root, "bob", [p.name for p in NOTEBOOKS if p.name.startswith("03_")], flip_kl)
    nbgrader(root, "autograde", ASSIGNMENT, "--force")
    return root


def test_released_notebooks_hold_stubs_and_no_solutions(course):
    for path in NOTEBOOKS:
        nb = nbformat.read(course / "release" / ASSIGNMENT / path.name, as_version=4)
        sources = "\n".join(c.source for c in nb.cells)
        assert "BEGIN SOLUTION" not in sources and STUB in sources, path.name
        for answer in solutions(path).values():
            body = answer.split('"""')[-1].strip()  # the code after the docstring
            assert body not in sources, f"{path.name}: the solution is in the released copy"


def scores(root: Path, who: str, name: str) -> dict[str, float]:
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        graded = gb.find_submission_notebook(Path(name).stem, ASSIGNMENT, who)
        return {g.name: g.score for g in graded.grades if g.max_score}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_the_solutions_get_every_point(course, path):
    got = scores(course, "alice", path.name)
    assert got and all(score == 1 for score in got.values()), got


def test_a_flipped_kl_loses_exactly_that_point_and_says_why(course):
    name = next(p.name for p in NOTEBOOKS if p.name.startswith("03_"))
    got = scores(course, "bob", name)
    assert sorted(got.values()).count(0) == 1 and sum(got.values()) == len(got) - 1, got
    graded = nbformat.read(course / "autograded" / "bob" / ASSIGNMENT / name, as_version=4)
    printed = "".join(o.get("text", "") for c in graded.cells if c.cell_type == "code"
                      for o in c.outputs if o.output_type == "stream")
    assert "❌ gaussian_kl: KL has the wrong sign" in printed
