"""The exercises work in a real nbgrader course: generate_assignment gives the students stubs,
autograde gives full marks to the solutions and takes exactly one exercise's points for a
wrong KL, and the student sees the checker's friendly line in the graded notebook."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from vaelab import student

pytestmark = pytest.mark.slow  # one nbgrader course, two kernels: about 25 s on 2 cores

ASSIGNMENT, NOTEBOOK = "ps1", "vae"

SETUP = "import torch\n\nfrom vaelab.exercises import check"
REPARAMETERIZE = '''\
def reparameterize(mu, logvar):
    """z = mu + sigma * eps with eps ~ N(0, I), (N, L)."""
    std = torch.exp(0.5 * logvar)
    return mu + torch.randn_like(std) * std


check.reparameterize(reparameterize)'''
GAUSSIAN_KL = '''\
def gaussian_kl(mu, logvar):
    """KL(N(mu, sigma^2) || N(0, I)) per image, (N,)."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1).sum(1)


check.gaussian_kl(gaussian_kl)'''

ANSWERS = {"reparameterize": "std = torch.exp(0.5 * logvar)\n"
                             "    return mu + torch.randn_like(std) * std",
           "gaussian_kl": "return 0.5 * (mu.square() + logvar.exp() - logvar - 1).sum(1)"}
STUB = "# YOUR CODE HERE\n    raise NotImplementedError()"


def source_notebook() -> nbformat.NotebookNode:
    """Two exercises in the older layout, converted like the course notebooks."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": dict(student.KERNELSPEC),
                                            "language_info": dict(student.LANGUAGE_INFO)})
    nb.cells = [nbformat.v4.new_markdown_cell("# Two exercises"),
                nbformat.v4.new_code_cell(SETUP)]
    for i, source in enumerate([REPARAMETERIZE, GAUSSIAN_KL]):
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["solution"]})
        cell.id = f"exercise-{i}"
        nb.cells.append(cell)
    assert student.to_nbgrader(nb, f"{NOTEBOOK}.ipynb") == 2
    return nb


def nbgrader(root: Path, *args: str) -> None:
    bin_dir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` from PATH
    env = {**os.environ, "VAELAB_OFFLINE": "1", "MPLBACKEND": "agg",
           "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stderr[-3000:]}"


def submit(root: Path, released: Path, who: str, answers: dict[str, str]) -> None:
    """Hand in the released notebook with the stubs of ``answers``' functions filled in."""
    nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        for name, answer in answers.items():
            if cell.source.startswith(f"def {name}("):
                assert STUB in cell.source
                cell.source = cell.source.replace(STUB, answer)
    folder = root / "submitted" / who / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{NOTEBOOK}.ipynb")


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("course")
    (root / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(root)!r}\n"
        "c.CourseDirectory.course_id = 'vaelab'\n")
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(source_notebook(), root / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    released = root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    submit(root, released, "alice", ANSWERS)
    wrong_kl = ANSWERS["gaussian_kl"].replace("return 0.5", "return -0.5")  # sign flipped
    submit(root, released, "bob", {**ANSWERS, "gaussian_kl": wrong_kl})
    nbgrader(root, "autograde", ASSIGNMENT, "--force")
    return root


def test_released_notebook_has_nbgraders_stubs_and_no_solutions(course):
    nb = nbformat.read(course / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    sources = "\n".join(c.source for c in nb.cells)
    assert sources.count("raise NotImplementedError()") == 2
    for leak in ("randn_like", "logvar.exp()", "BEGIN SOLUTION"):
        assert leak not in sources
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert [c.source for c in tests] == ["assert check.reparameterize(reparameterize)",
                                         "assert check.gaussian_kl(gaussian_kl)"]


def scores(root: Path, who: str) -> dict[str, float]:
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        graded = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, who)
        return {g.name: g.score for g in graded.grades}


def test_solutions_get_full_marks(course):
    assert scores(course, "alice") == {"check_reparameterize": 1, "check_gaussian_kl": 1}


def test_a_flipped_kl_loses_exactly_that_exercises_point(course):
    assert scores(course, "bob") == {"check_reparameterize": 1, "check_gaussian_kl": 0}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        submission = gb.find_submission(ASSIGNMENT, "bob")
        assert (submission.score, submission.max_score) == (1, 2)


def test_the_graded_notebook_shows_the_checkers_friendly_line(course):
    graded = nbformat.read(course / "autograded" / "bob" / ASSIGNMENT / f"{NOTEBOOK}.ipynb",
                           as_version=4)
    kl_test = next(c for c in graded.cells if c.source == "assert check.gaussian_kl(gaussian_kl)")
    printed = "".join(o.get("text", "") for o in kl_test.outputs if o.output_type == "stream")
    assert printed.startswith("❌ gaussian_kl: KL has the wrong sign"), printed
    assert [o.ename for o in kl_test.outputs if o.output_type == "error"] == ["AssertionError"]
