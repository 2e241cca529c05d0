"""The student-notebook generator, and that notebooks/student matches the solution notebooks."""

import ast
import contextlib
import io
import json
import re
from pathlib import Path

import nbformat
import pytest

from vaelab import cli, student
from vaelab.exercises import NOT_YET, Checks, check

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"

SOLUTION = '''\
import torch


def reparameterize(mu, logvar):
    """z = mu + sigma * eps with eps ~ N(0, I)."""
    std = torch.exp(0.5 * logvar)  # sigma, from log sigma^2
    # fresh noise every call
    eps = torch.randn_like(std)
    return mu + eps * std
    # the trick: randomness outside mu and logvar


check.reparameterize(reparameterize)   # prints one line'''


def body_of(source: str, name: str) -> list[ast.stmt]:
    fn = next(n for n in ast.parse(source).body if getattr(n, "name", None) == name)
    return fn.body


def test_stub_keeps_signature_docstring_and_checker_call():
    new, names = student.stub_source(SOLUTION)
    assert names == ["reparameterize"]
    assert new == '''\
import torch


def reparameterize(mu, logvar):
    """z = mu + sigma * eps with eps ~ N(0, I)."""
    raise NotImplementedError("...your code here...")


check.reparameterize(reparameterize)   # prints one line'''
    for leak in ("exp(0.5", "randn_like", "fresh noise", "the trick"):
        assert leak not in new


def test_stub_handles_odd_layouts():
    source = '''\
@functools.cache
def shapes(a,
           b: dict[str, int] = {"a": 1},  # a comment in the signature stays
           c=lambda y: y) -> list:
    def inner():
        return [1]
    return inner()
def one_liner(x): return x + 1
def doc_only(x):
    """Only a docstring."""
def last(x):
    return x * 2'''
    new, names = student.stub_source(source)
    assert names == ["shapes", "one_liner", "doc_only", "last"]
    tree = ast.parse(new)
    stub = ast.dump(ast.parse(student.STUB).body[0])
    for node in tree.body:
        assert ast.dump(node.body[-1]) == stub
        assert len(node.body) == 1 + (ast.get_docstring(node) is not None)
    assert "# a comment in the signature stays" in new and "@functools.cache" in new
    assert "inner" not in new and "x + 1" not in new and "x * 2" not in new
    assert new.count(student.STUB) == 4  # same quotes everywhere
    assert not new.endswith("\n")


def test_stub_of_source_without_functions_changes_nothing():
    assert student.stub_source("x = 1\nprint(x)\n") == ("x = 1\nprint(x)\n", [])


def test_can_raise_only_when_something_besides_the_checker_calls_the_stub():
    new, names = student.stub_source(SOLUTION)
    assert not student.can_raise(new, names)
    assert student.can_raise(new + "\nz = reparameterize(1, 2)", names)
    assert student.can_raise(new + "\ncheck.reparameterize(lambda m, v: reparameterize(m, v))",
                             names)


def test_stubbed_cell_runs_cleanly_and_says_not_written_yet():
    new, _ = student.stub_source(SOLUTION)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(new, "<cell>", "exec"), {"check": check})
    assert out.getvalue().startswith(f"{NOT_YET} reparameterize: not written yet")


def make_notebook(solution: str = SOLUTION, minor: int = 5) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = minor
    nb.metadata = {"kernelspec": {"name": "some-env", "display_name": "Some env"},
                   "widgets": {"state": {}}, "vaelab": {"series": 1}}
    intro = nbformat.v4.new_markdown_cell("# 02 The VAE\nSee [03](03_elbo.ipynb).")
    setup = nbformat.v4.new_code_cell("from vaelab.exercises import check\nprint('quick mode')",
                                      execution_count=1,
                                      outputs=[nbformat.v4.new_output("stream", text="quick\n")])
    setup.metadata = {"execution": {"iopub.status.busy": "2024"}, "scrolled": True}
    exercise = nbformat.v4.new_code_cell(solution, execution_count=2, outputs=[
        nbformat.v4.new_output("stream", text="✅ reparameterize: passed\n")])
    exercise.metadata = {"tags": ["solution"], "collapsed": False}
    check_cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(2 + 2)",
                                           execution_count=3,
                                           outputs=[nbformat.v4.new_output("stream", text="4\n")])
    nb.cells = [intro, setup, exercise, check_cell]
    if minor < 5:
        for cell in nb.cells:
            del cell["id"]
    return json.loads(json.dumps(nb))


def test_student_notebook_clears_outputs_scrubs_metadata_and_stubs_solutions():
    nb = make_notebook()
    before = json.dumps(nb)
    out = student.student_notebook(nb, "02_variational_autoencoder.ipynb")
    assert json.dumps(nb) == before, "the solution notebook must not be modified"
    nbformat.validate(nbformat.from_dict(out))

    assert out["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in out["metadata"] and out["metadata"]["vaelab"] == {"series": 1}
    note, intro, setup, exercise, check_cell = out["cells"]
    note["source"], exercise["source"] = "".join(note["source"]), "".join(exercise["source"])
    assert note["cell_type"] == "markdown"
    assert "Student version" in note["source"] and "`make student-notebooks`" in note["source"]
    assert "../02_variational_autoencoder.ipynb" in note["source"]
    assert "do not edit by hand" in note["source"]
    for cell in (setup, exercise, check_cell):
        assert cell["outputs"] == [] and cell["execution_count"] is None
    assert setup["metadata"] == {} and intro["source"] == make_notebook()["cells"][0]["source"]
    assert exercise["metadata"] == {"tags": ["exercise"]}
    assert exercise["source"] == student.stub_source(SOLUTION)[0]
    assert check_cell["source"].startswith("# NBVAL_CHECK_OUTPUT")  # unrun: nbval won't compare
    assert [c["id"] for c in out["cells"][1:]] == [c["id"] for c in nb["cells"]]


def test_student_cell_that_calls_its_stub_may_raise():
    nb = make_notebook(SOLUTION + "\nz = reparameterize(torch.zeros(1), torch.zeros(1))")
    exercise = student.student_notebook(nb, "02_x.ipynb")["cells"][3]
    assert exercise["metadata"]["tags"] == ["exercise", "raises-exception"]


def test_old_notebooks_without_cell_ids_stay_valid():
    out = student.student_notebook(make_notebook(minor=4), "01_x.ipynb")
    assert "id" not in out["cells"][0]
    nbformat.validate(nbformat.from_dict(out))


@pytest.mark.parametrize(("source", "cell_type", "message"), [
    ("check.reparameterize(reparameterize)", "code", "defines no function"),
    ("def f(:\n    pass", "code", "does not parse as Python"),
    ("def f(x):\n    return x", "markdown", "only code cells"),
])
def test_bad_solution_cells_say_which_cell_and_what_to_do(source, cell_type, message):
    nb = make_notebook()
    nb["cells"][2]["source"] = source
    nb["cells"][2]["cell_type"] = cell_type
    if cell_type == "markdown":
        for key in ("outputs", "execution_count"):
            nb["cells"][2].pop(key)
    with pytest.raises(student.SolutionCellError, match=f"04_x.ipynb, cell 3.*{message}"):
        student.student_notebook(nb, "04_x.ipynb")


def test_write_then_stale_round_trip(tmp_path):
    nb = make_notebook()
    (tmp_path / "01_a.ipynb").write_text(json.dumps(nb))
    (tmp_path / "notes.ipynb").write_text(json.dumps(make_notebook()))  # not numbered: skipped
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "09_gone.ipynb").write_text("{}")
    assert set(student.stale(tmp_path)) == {f"{tmp_path}/student/01_a.ipynb is missing",
                                            f"{tmp_path}/student/09_gone.ipynb has no solution "
                                            "notebook"}
    assert student.write(tmp_path) == [tmp_path / "student" / "01_a.ipynb"]
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == ["01_a.ipynb"]
    assert student.stale(tmp_path) == []

    nb["cells"][2]["source"] = SOLUTION.replace("0.5 * logvar", "logvar / 2")
    (tmp_path / "01_a.ipynb").write_text(json.dumps(nb))
    assert student.stale(tmp_path) == []  # the change is inside the stubbed body
    nb["cells"][0]["source"] = "# 02 A new title"
    (tmp_path / "01_a.ipynb").write_text(json.dumps(nb))
    assert student.stale(tmp_path) == [f"{tmp_path}/student/01_a.ipynb differs from its "
                                       "solution notebook"]


def test_cli_writes_checks_and_explains_a_missing_folder(tmp_path, capsys):
    (tmp_path / "01_a.ipynb").write_text(json.dumps(make_notebook()))
    assert cli.main(["student-notebooks", "--notebooks", str(tmp_path), "--check"]) == 1
    assert "run `make student-notebooks`" in capsys.readouterr().err
    assert cli.main(["student-notebooks", "--notebooks", str(tmp_path)]) == 0
    assert "wrote 1 student notebook to" in capsys.readouterr().out
    assert cli.main(["student-notebooks", "--notebooks", str(tmp_path), "--check"]) == 0
    assert cli.main(["student-notebooks", "--notebooks", str(tmp_path / "nope")]) == 2
    assert "no notebooks folder" in capsys.readouterr().err


# --- the repository's notebooks --------------------------------------------------------------

NUMBERED = sorted(NOTEBOOKS.glob(student.PATTERN))
CHECK_CALL = re.compile(r"^check\.(\w+)\(", re.M)


def test_student_notebooks_are_up_to_date():
    assert NUMBERED, f"no numbered notebooks in {NOTEBOOKS}"
    problems = student.stale(NOTEBOOKS)
    assert not problems, ("notebooks/student is out of date with the solution notebooks — run "
                          "`make student-notebooks`:\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("path", NUMBERED, ids=[p.name for p in NUMBERED])
def test_every_notebook_has_a_self_checking_exercise(path):
    nb = json.loads(path.read_text())
    solutions = ["".join(c["source"]) for c in nb["cells"]
                 if "solution" in c.get("metadata", {}).get("tags", [])]
    calls = [name for src in solutions for name in CHECK_CALL.findall(src)]
    assert calls, (f"{path.name} needs a code cell tagged 'solution' that defines a function "
                   "and calls its checker, e.g. check.gaussian_kl(gaussian_kl)")
    unknown = [name for name in calls if not hasattr(Checks, name)]
    assert not unknown, f"{path.name} calls checkers that don't exist: {unknown}; see {check!r}"
