"""Exercises in nbgrader's format, the student notebooks made from them, and that
notebooks/student matches the solution notebooks."""

import contextlib
import importlib.util
import io
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbgrader.nbgraderformat import MetadataValidator

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

MARKED = '''\
import torch


def reparameterize(mu, logvar):
    """z = mu + sigma * eps with eps ~ N(0, I)."""
    ### BEGIN SOLUTION
    std = torch.exp(0.5 * logvar)  # sigma, from log sigma^2
    # fresh noise every call
    eps = torch.randn_like(std)
    return mu + eps * std
    # the trick: randomness outside mu and logvar
    ### END SOLUTION'''

STUDENT = '''\
import torch


def reparameterize(mu, logvar):
    """z = mu + sigma * eps with eps ~ N(0, I)."""
    # YOUR CODE HERE
    raise NotImplementedError()'''


def test_split_checks_takes_the_checker_calls_out():
    rest, calls = student.split_checks(SOLUTION)
    assert calls == [("reparameterize", "check.reparameterize(reparameterize)")]
    assert rest == SOLUTION[:SOLUTION.index("\n\n\ncheck.")]


def test_mark_solutions_wraps_each_body_after_its_docstring():
    rest, _ = student.split_checks(SOLUTION)
    assert student.mark_solutions(rest) == (MARKED, ["reparameterize"])
    assert student.mark_solutions(MARKED) == (MARKED, ["reparameterize"])  # already marked


def test_mark_solutions_handles_odd_layouts():
    source = '''\
@functools.cache
def shapes(a,
           b: dict[str, int] = {"a": 1},  # a comment in the signature stays
           c=lambda y: y) -> list:
    def inner():
        return [1]
    return inner()
def last(x):
    return x * 2'''
    new, names = student.mark_solutions(source)
    assert names == ["shapes", "last"]
    assert new == '''\
@functools.cache
def shapes(a,
           b: dict[str, int] = {"a": 1},  # a comment in the signature stays
           c=lambda y: y) -> list:
    ### BEGIN SOLUTION
    def inner():
        return [1]
    return inner()
    ### END SOLUTION
def last(x):
    ### BEGIN SOLUTION
    return x * 2
    ### END SOLUTION'''


@pytest.mark.parametrize(("source", "message"), [
    ("def f(x): return x + 1", "body on the `def` line"),
    ('def f(x):\n    """Only a docstring."""', "no code after its docstring"),
    ("def f(:\n    pass", "does not parse as Python"),
])
def test_mark_solutions_refuses_what_it_cannot_mark(source, message):
    with pytest.raises(student.SolutionCellError, match=message):
        student.mark_solutions(source)


def make_notebook(solution: str = SOLUTION, minor: int = 5) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = minor
    nb.metadata = {"kernelspec": {"name": "some-env", "display_name": "Some env"},
                   "language_info": {"name": "python", "version": "3.11.9",
                                     "codemirror_mode": {"name": "ipython", "version": 3}},
                   "widgets": {"state": {}}, "vaelab": {"series": 1}}
    intro = nbformat.v4.new_markdown_cell("# 02 The VAE\nSee [03](03_elbo.ipynb).")
    setup = nbformat.v4.new_code_cell("from vaelab.exercises import check\nprint('quick mode')",
                                      execution_count=1,
                                      outputs=[nbformat.v4.new_output("stream", text="quick\n")])
    setup.metadata = {"execution": {"iopub.status.busy": "2024"}, "scrolled": True}
    exercise = nbformat.v4.new_code_cell(solution, execution_count=2, outputs=[
        nbformat.v4.new_output("stream", text="✅ reparameterize: passed\n")])
    exercise.metadata = {"tags": ["solution"]}
    check_cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(2 + 2)",
                                           execution_count=3,
                                           outputs=[nbformat.v4.new_output("stream", text="4\n")])
    nb.cells = [intro, setup, exercise, check_cell]
    if minor < 5:
        for cell in nb.cells:
            del cell["id"]
    return json.loads(json.dumps(nb))


def converted(solution: str = SOLUTION, minor: int = 5) -> dict:
    nb = make_notebook(solution, minor)
    assert student.to_nbgrader(nb) == 1
    return json.loads(json.dumps(nb))


def test_to_nbgrader_makes_an_answer_cell_and_a_locked_test_cell_worth_a_point():
    nb = converted()
    MetadataValidator().validate_nb(nbformat.from_dict(nb))
    nbformat.validate(nbformat.from_dict(nb))
    intro, setup, answer, test, check_cell = nb["cells"]
    assert answer["source"] == MARKED
    assert answer["metadata"] == {"nbgrader": student.solution_metadata("reparameterize")}
    assert answer["outputs"] == [] and answer["execution_count"] == 2
    assert test["source"] == "assert check.reparameterize(reparameterize)"
    assert test["metadata"]["nbgrader"] == {
        "grade": True, "grade_id": "check_reparameterize", "locked": True, "points": 1,
        "schema_version": 3, "solution": False, "task": False}
    assert test["outputs"][0]["text"] == "✅ reparameterize: passed\n"  # moved with the call
    assert test["id"] == f"{answer['id']}-check"


def test_to_nbgrader_twice_changes_nothing():
    nb = converted()
    before = json.dumps(nb)
    assert student.to_nbgrader(nb) == 0
    assert json.dumps(nb) == before


def test_to_nbgrader_keeps_grade_ids_unique_and_other_tags():
    nb = make_notebook()
    second = json.loads(json.dumps(nb["cells"][2]))
    second["id"], second["metadata"]["tags"] = "again", ["solution", "keep-me"]
    nb["cells"].append(second)
    assert student.to_nbgrader(nb, points=2.5) == 2
    ids = [c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"]
           if "nbgrader" in c["metadata"]]
    assert ids == ["reparameterize", "check_reparameterize", "reparameterize_2",
                   "check_reparameterize_2"]
    assert nb["cells"][-2]["metadata"]["tags"] == ["keep-me"]
    assert nb["cells"][-1]["metadata"]["nbgrader"]["points"] == 2.5
    MetadataValidator().validate_nb(nbformat.from_dict(nb))


@pytest.mark.parametrize(("source", "cell_type", "message"), [
    ("check.reparameterize(reparameterize)", "code", "defines no function"),
    ("def f(:\n    pass", "code", "does not parse as Python"),
    ("def f(x):\n    return x", "markdown", "only code cells"),
])
def test_bad_solution_cells_say_which_cell_and_what_to_do(source, cell_type, message):
    nb = make_notebook()
    nb["cells"][2]["source"] = source
    nb["cells"][2]["cell_type"] = cell_type
    with pytest.raises(student.SolutionCellError, match=f"04_x.ipynb, cell 3.*{message}"):
        student.to_nbgrader(nb, "04_x.ipynb")


def test_student_notebook_stubs_with_nbgrader_clears_outputs_and_keeps_jupyter_metadata():
    nb = converted()
    before = json.dumps(nb)
    out = json.loads(student.dumps(student.student_notebook(nb, "02_vae.ipynb")))
    assert json.dumps(nb) == before, "the solution notebook must not be modified"
    nbformat.validate(nbformat.from_dict(out))

    assert out["metadata"] == {"kernelspec": student.KERNELSPEC,
                               "language_info": make_notebook()["metadata"]["language_info"],
                               "vaelab": {"series": 1}}
    note, intro, setup, answer, test, check_cell = (
        dict(c, source="".join(c["source"])) for c in out["cells"])
    assert "Student version" in note["source"] and "`make student-notebooks`" in note["source"]
    assert "`02_vae.ipynb`" in note["source"] and "do not edit by hand" in note["source"]
    assert "](" not in note["source"], "the solution notebook is named, not linked"
    for cell in (setup, answer, test, check_cell):
        assert cell["outputs"] == [] and cell["execution_count"] is None
    assert setup["metadata"] == {} and intro["source"] == make_notebook()["cells"][0]["source"]
    assert answer["source"] == STUDENT
    assert answer["metadata"]["nbgrader"]["solution"] and "tags" not in answer["metadata"]
    assert test["source"] == "assert check.reparameterize(reparameterize)"
    assert test["metadata"]["tags"] == ["raises-exception"]  # fails until the student writes it
    assert test["metadata"]["editable"] is False and test["metadata"]["deletable"] is False
    assert check_cell["source"].startswith("# NBVAL_CHECK_OUTPUT")  # unrun: nbval won't compare
    assert [c["id"] for c in out["cells"][1:]] == [c["id"] for c in nb["cells"]]


def test_student_cells_run_and_the_test_cell_fails_with_the_friendly_line():
    out = student.student_notebook(converted(), "02_vae.ipynb")
    answer, test = out.cells[3], out.cells[4]
    scope, printed = {"check": check}, io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(answer.source, "<answer>", "exec"), scope)
        with pytest.raises(AssertionError):
            exec(compile(test.source, "<test>", "exec"), scope)
    assert printed.getvalue().startswith(f"{NOT_YET} reparameterize: not written yet")


def test_student_answer_cell_that_calls_its_stub_may_raise():
    nb = converted(SOLUTION + "\nz = reparameterize(torch.zeros(1), torch.zeros(1))")
    answer = student.student_notebook(nb, "02_x.ipynb").cells[3]
    assert answer.metadata["tags"] == ["raises-exception"]


def test_old_notebooks_without_cell_ids_stay_valid():
    nb = converted(minor=4)
    out = student.student_notebook(nb, "01_x.ipynb")
    assert all("id" not in c for c in out.cells)
    nbformat.validate(out)


@pytest.mark.parametrize(("change", "message"), [
    (lambda nb: nb, "run `python tools/nbgrader_cells.py`"),
    (lambda nb: student.to_nbgrader(nb) and nb["cells"][2].update(
        source=MARKED.replace("    ### END SOLUTION", "")), "1 BEGIN SOLUTION but 0 END"),
    (lambda nb: student.to_nbgrader(nb) and nb["cells"][2]["metadata"].pop("nbgrader"),
     "not an nbgrader solution cell"),
    (lambda nb: student.to_nbgrader(nb) and nb["cells"][3]["metadata"]["nbgrader"].pop(
        "points"), "bad nbgrader metadata"),
])
def test_student_notebook_refuses_cells_that_would_leak_or_break(change, message):
    nb = make_notebook()
    change(nb)
    with pytest.raises(student.SolutionCellError, match=re.escape(message)):
        student.student_notebook(nb, "03_x.ipynb")


def test_write_then_stale_round_trip(tmp_path):
    nb = converted()
    (tmp_path / "01_a.ipynb").write_text(json.dumps(nb))
    (tmp_path / "notes.ipynb").write_text(json.dumps(nb))  # not numbered: skipped
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "09_gone.ipynb").write_text("{}")
    assert set(student.stale(tmp_path)) == {f"{tmp_path}/student/01_a.ipynb is missing",
                                            f"{tmp_path}/student/09_gone.ipynb has no solution "
                                            "notebook"}
    assert student.write(tmp_path) == [tmp_path / "student" / "01_a.ipynb"]
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == ["01_a.ipynb"]
    assert student.stale(tmp_path) == []

    nb["cells"][2]["source"] = MARKED.replace("0.5 * logvar", "logvar / 2")
    (tmp_path / "01_a.ipynb").write_text(json.dumps(nb))
    assert student.stale(tmp_path) == []  # the change is inside the solution region
    nb["cells"][0]["source"] = "# 02 A new title"
    (tmp_path / "01_a.ipynb").write_text(json.dumps(nb))
    assert student.stale(tmp_path) == [f"{tmp_path}/student/01_a.ipynb differs from its "
                                       "solution notebook"]


def test_cli_writes_checks_and_explains_a_missing_folder(tmp_path, capsys):
    (tmp_path / "01_a.ipynb").write_text(json.dumps(converted()))
    assert cli.main(["student-notebooks", "--notebooks", str(tmp_path), "--check"]) == 1
    assert "run `make student-notebooks`" in capsys.readouterr().err
    assert cli.main(["student-notebooks", "--notebooks", str(tmp_path)]) == 0
    assert "wrote 1 student notebook to" in capsys.readouterr().out
    assert cli.main(["student-notebooks", "--notebooks", str(tmp_path), "--check"]) == 0
    assert cli.main(["student-notebooks", "--notebooks", str(tmp_path / "nope")]) == 2
    assert "no notebooks folder" in capsys.readouterr().err


def load_tool():
    spec = importlib.util.spec_from_file_location("nbgrader_cells",
                                                  REPO / "tools" / "nbgrader_cells.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_nbgrader_cells_tool_converts_in_place_and_a_second_run_changes_nothing(tmp_path, capsys):
    tool = load_tool()
    path = tmp_path / "02_vae.ipynb"
    path.write_text(nbformat.writes(nbformat.from_dict(make_notebook())) + "\n")
    assert tool.main([str(path)]) == 0
    first = path.read_text()
    assert tool.main([str(path)]) == 0
    assert path.read_text() == first
    assert capsys.readouterr().out.splitlines() == [f"{path}: 1 exercise cell converted"]
    assert nbformat.reads(first, as_version=4).cells[2].source == MARKED
    bad = tmp_path / "03_bad.ipynb"
    bad.write_text(json.dumps(make_notebook("def f(x): return x")))
    assert tool.main([str(bad)]) == 1
    assert "03_bad.ipynb, cell 3: `def f` has its body on the `def` line" in \
        capsys.readouterr().err


# --- the repository's notebooks --------------------------------------------------------------

NUMBERED = sorted(NOTEBOOKS.glob(student.PATTERN))
ASSERT_CHECK = re.compile(r"^assert check\.(\w+)\((\w+)\)$", re.M)


def test_student_notebooks_are_up_to_date():
    assert NUMBERED, f"no numbered notebooks in {NOTEBOOKS}"
    problems = student.stale(NOTEBOOKS)
    assert not problems, ("notebooks/student is out of date with the solution notebooks — run "
                          "`make student-notebooks`:\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("path", NUMBERED, ids=[p.name for p in NUMBERED])
def test_every_notebook_has_an_autograded_exercise(path):
    nb = nbformat.read(path, as_version=4)
    MetadataValidator().validate_nb(nb)
    tests = [(i, ASSERT_CHECK.findall(c.source)) for i, c in enumerate(nb.cells)
             if c.metadata.get("nbgrader", {}).get("grade")]
    assert tests, (f"{path.name} needs an exercise in nbgrader's format: an answer cell and a "
                   "test cell `assert check.<name>(<function>)` — run "
                   "`python tools/nbgrader_cells.py` on it")
    for i, calls in tests:
        assert calls, f"{path.name}, cell {i + 1}: the test cell should assert a checker"
        answer = nb.cells[i - 1]
        assert answer.metadata.get("nbgrader", {}).get("solution"), \
            f"{path.name}, cell {i}: the cell before a test cell should be its answer cell"
        for name, function in calls:
            assert hasattr(Checks, name), f"{path.name} calls check.{name}; see {check!r}"
            assert re.search(rf"^def {function}\(", answer.source, re.M)
            assert student.BEGIN in answer.source and student.END in answer.source
