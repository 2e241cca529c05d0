"""Exercises in nbgrader's format, and the student notebooks made from them.

Each coded exercise is two cells in nbgrader's format (https://nbgrader.readthedocs.io):

* an answer cell (``nbgrader`` metadata ``solution: true``) that defines the function, with its
  body between ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
* a locked test cell worth points (``grade: true``) that runs the friendly checker:
  ``assert check.gaussian_kl(gaussian_kl)`` prints ✅, or ❌ and a hint, and fails when wrong.

``to_nbgrader`` turns the older layout (one cell tagged ``solution`` that defines the function
and calls its checker) into that format; ``tools/nbgrader_cells.py`` runs it on notebook files.
``student_notebook`` makes the student copy with nbgrader's own preprocessors (ClearSolutions,
ClearOutput, LockCells): solution regions become ``# YOUR CODE HERE`` /
``raise NotImplementedError()``, outputs go, a note at the top says where the copy came from.

    python -m vaelab student-notebooks           # or: make student-notebooks
"""

from __future__ import annotations

import ast
import copy
import io
import tokenize
from pathlib import Path

import nbformat

SOLUTION_TAG = "solution"            # the older layout, before tools/nbgrader_cells.py
RAISES_TAG = "raises-exception"      # nbval: this cell's error is expected (student copies)
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUDENT_DIR = "student"
PATTERN = "[0-9][0-9]_*.ipynb"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}
CELL_METADATA = ("tags", "nbgrader", "deletable", "editable")  # what student copies keep
POINTS = 1                           # per checker call; a teacher can change them in nbgrader


class SolutionCellError(ValueError):
    """A solution cell that cannot be turned into an exercise."""


def solution_metadata(grade_id: str) -> dict:
    """nbgrader (schema 3) metadata of an autograded answer cell."""
    return {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
            "solution": True, "task": False}


def test_metadata(grade_id: str, points: float) -> dict:
    """nbgrader (schema 3) metadata of a locked autograder test cell worth ``points``."""
    return {"grade": True, "grade_id": grade_id, "locked": True, "points": points,
            "schema_version": 3, "solution": False, "task": False}


def _header_end(tokens: list[tokenize.TokenInfo], node: ast.FunctionDef) -> int:
    """Line (1-based) of the ``:`` that ends the ``def`` header of ``node``."""
    depth = 0
    for tok in tokens:
        if tok.start < (node.lineno, node.col_offset):
            continue
        if tok.type == tokenize.OP:
            if tok.string in "([{":
                depth += 1
            elif tok.string in ")]}":
                depth -= 1
            elif tok.string == ":" and depth == 0:
                return tok.start[0]
    raise SolutionCellError(f"could not find the end of `def {node.name}`")


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _body_lines(node: ast.FunctionDef, lines: list[str], tokens) -> tuple[int, int, str]:
    """``(first, last, indent)``: the 0-based line span of ``node``'s body after its docstring
    (comment lines that trail inside the body included) and the body's indentation."""
    body = node.body
    has_doc = ast.get_docstring(node, clean=False) is not None
    header = _header_end(tokens, node)
    if body[0].lineno == header:
        raise SolutionCellError(f"`def {node.name}` has its body on the `def` line: put the "
                                "body on lines of its own")
    if len(body) == has_doc:
        raise SolutionCellError(f"`def {node.name}` has no code after its docstring to hide")
    end, j = node.end_lineno, node.end_lineno
    def_indent = len(_indent(lines[node.lineno - 1]))
    while j < len(lines):
        line = lines[j]
        if line.strip() and not (line.lstrip().startswith("#")
                                 and len(_indent(line)) > def_indent):
            break
        if line.strip():
            end = j + 1
        j += 1
    first = body[0].end_lineno if has_doc else header
    return first, end, _indent(lines[body[int(has_doc)].lineno - 1])


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as e:
        raise SolutionCellError(f"does not parse as Python ({e.msg}, line {e.lineno})") from e


def mark_solutions(source: str) -> tuple[str, list[str]]:
    """Put the body of every top-level function of ``source`` (after its docstring) between
    ``### BEGIN SOLUTION`` and ``### END SOLUTION``. Returns the new source and the names.
    A source that already has solution markers comes back unchanged."""
    tree = _parse(source)
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if BEGIN in source or END in source:
        return source, [n.name for n in defs]
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    lines = source.splitlines(keepends=True)
    for node in reversed(defs):
        first, last, indent = _body_lines(node, lines, tokens)
        if not lines[last - 1].endswith("\n"):
            lines[last - 1] += "\n"
            lines.insert(last, indent + END)
        else:
            lines.insert(last, indent + END + "\n")
        lines.insert(first, indent + BEGIN + "\n")
    new = "".join(lines)
    ast.parse(new)
    return new, [n.name for n in defs]


def _is_check_call(stmt: ast.stmt) -> bool:
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name) and call.func.value.id == "check")


def split_checks(source: str) -> tuple[str, list[str]]:
    """Take the top-level ``check.<name>(...)`` calls out of ``source``.

    Returns the rest (trailing blank lines dropped) and ``(checker name, call source)`` pairs."""
    lines = source.splitlines(keepends=True)
    calls, drop = [], set()
    for stmt in _parse(source).body:
        if _is_check_call(stmt):
            calls.append((stmt.value.func.attr, ast.get_source_segment(source, stmt)))
            drop.update(range(stmt.lineno - 1, stmt.end_lineno))
    rest = "".join(line for i, line in enumerate(lines) if i not in drop).rstrip()
    return rest, calls


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _unique(name: str, taken: set[str]) -> str:
    new, k = name, 1
    while new in taken:
        k += 1
        new = f"{name}_{k}"
    taken.add(new)
    return new


def _convert_cell(cell: dict, where: str, taken: set[str], points: float) -> dict | None:
    """Make ``cell`` (tagged ``solution``) an nbgrader answer cell, in place; return the test
    cell that runs its checkers (None if it calls none)."""
    if cell["cell_type"] != "code":
        raise SolutionCellError(f"{where}: only code cells can be tagged {SOLUTION_TAG!r}")
    try:
        rest, calls = split_checks(_source(cell))
        marked, names = mark_solutions(rest)
    except SolutionCellError as e:
        raise SolutionCellError(f"{where}: {e}") from e
    if not names:
        raise SolutionCellError(f"{where} is tagged {SOLUTION_TAG!r} but defines no function: "
                                "put the solution in a top-level def (its body is what "
                                "students write) or drop the tag")
    meta = cell.setdefault("metadata", {})
    tags = [t for t in meta.get("tags", []) if t != SOLUTION_TAG]
    meta.pop("tags", None)
    if tags:
        meta["tags"] = tags
    meta["nbgrader"] = solution_metadata(_unique(names[0], taken))
    cell["source"] = marked
    if not calls:
        return None
    test = nbformat.v4.new_code_cell("\n".join(f"assert {text}" for _, text in calls))
    if cell.get("outputs"):  # what the checker printed now comes from the test cell
        test.outputs, cell["outputs"] = cell["outputs"], []
        test.execution_count = cell.get("execution_count")
    test.metadata["nbgrader"] = test_metadata(_unique(f"check_{calls[0][0]}", taken),
                                              points * len(calls))
    if "id" in cell:
        test["id"] = f"{cell['id']}-check"[-64:]
    else:
        del test["id"]
    return test


def to_nbgrader(nb: dict, name: str = "notebook", points: float = POINTS) -> int:
    """Convert, in place, every cell of ``nb`` tagged ``solution`` into an nbgrader answer
    cell followed by a test cell worth ``points`` per checker call. Cells already in nbgrader's
    format stay as they are, so converting twice changes nothing. Returns how many cells it
    converted; ``name`` is only used in error messages."""
    taken = {c["metadata"]["nbgrader"].get("grade_id") for c in nb["cells"]
             if "nbgrader" in c.get("metadata", {})}
    cells, converted = [], 0
    for number, cell in enumerate(nb["cells"], start=1):
        cells.append(cell)
        meta = cell.get("metadata", {})
        if SOLUTION_TAG not in meta.get("tags", []) or "nbgrader" in meta:
            continue
        test = _convert_cell(cell, f"{name}, cell {number}", taken, points)
        converted += 1
        if test is not None:
            cells.append(test)
    nb["cells"] = cells
    return converted


def _check_cells(nb, name: str) -> None:
    """Refuse what nbgrader would get wrong or leak, naming the cell."""
    from nbgrader.nbgraderformat import MetadataValidator, ValidationError

    validator = MetadataValidator()
    for number, cell in enumerate(nb.cells, start=1):
        where, meta = f"{name}, cell {number}", cell.metadata.get("nbgrader", {})
        if SOLUTION_TAG in cell.metadata.get("tags", []) and not meta:
            raise SolutionCellError(f"{where} is tagged {SOLUTION_TAG!r} but has no nbgrader "
                                    "metadata: run `python tools/nbgrader_cells.py` on the "
                                    "notebook first")
        try:
            validator.validate_cell(cell)
        except ValidationError as e:
            raise SolutionCellError(f"{where}: bad nbgrader metadata ({e.message})") from e
        begins, ends = cell.source.count("BEGIN SOLUTION"), cell.source.count("END SOLUTION")
        if begins != ends:
            raise SolutionCellError(f"{where}: {begins} BEGIN SOLUTION but {ends} END "
                                    "SOLUTION markers — every region needs both")
        if begins and not meta.get("solution"):
            raise SolutionCellError(f"{where} has a solution region but is not an nbgrader "
                                    "solution cell: run `python tools/nbgrader_cells.py`")


def _student_tags(cell, stubbed: set[str]) -> None:
    """Tag every code cell that will fail until the student has written the exercise
    ``raises-exception`` (nbval then runs the student copies without failing): the check cells,
    and any other cell that uses a stubbed function outside its own definition."""
    if cell.cell_type != "code":
        return
    calls = bool(cell.metadata.get("nbgrader", {}).get("grade")) or _uses(cell.source, stubbed)
    tags = cell.metadata.get("tags", [])
    if calls and RAISES_TAG not in tags:
        cell.metadata["tags"] = [*tags, RAISES_TAG]


def _uses(source: str, names: set[str]) -> bool:
    """Whether ``source`` (IPython magics and shell lines skipped) uses one of ``names``
    outside the definitions of those functions."""
    lines = ["pass" if line.lstrip().startswith(("%", "!")) else line
             for line in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return False
    others = [s for s in tree.body if not (
        isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name in names)
        and not isinstance(s, (ast.Import, ast.ImportFrom))]
    return any(isinstance(n, ast.Name) and n.id in names for s in others for n in ast.walk(s))


def _note(source_name: str, with_id: bool) -> dict:
    # the solution notebook is named, not linked: its answers are not one click away
    note = nbformat.v4.new_markdown_cell(
        f"> **Student version** — generated from the solution notebook `{source_name}` by "
        "`make student-notebooks`; do not edit by hand.\n>\n"
        "> In each exercise cell, replace `# YOUR CODE HERE` and `raise NotImplementedError()` "
        "with your code and run the cell; then run the check cell below it: ✅ means your "
        "function works, ❌ says what to look at.")
    if with_id:
        note["id"] = "student-version-note"  # fixed, so regenerating gives identical files
    else:
        del note["id"]
    return note


def student_notebook(nb: dict, source_name: str) -> nbformat.NotebookNode:
    """The student version of notebook ``nb`` (a dict or NotebookNode; not modified)."""
    from nbgrader.preprocessors import ClearOutput, ClearSolutions, LockCells

    nb = nbformat.from_dict(copy.deepcopy(dict(nb)))
    for cell in nb.cells:
        cell.source = _source(cell)
    _check_cells(nb, source_name)
    stubbed = {n.name for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
               and c.cell_type == "code" for n in ast.parse(c.source).body
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    resources: dict = {}
    for pre in (ClearSolutions(), ClearOutput(), LockCells()):
        nb, resources = pre.preprocess(nb, resources)
    for cell in nb.cells:
        _student_tags(cell, stubbed)
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in CELL_METADATA}
    meta = nb.metadata
    nb.metadata = nbformat.from_dict({
        "kernelspec": dict(KERNELSPEC),
        "language_info": dict(meta.get("language_info") or LANGUAGE_INFO),
        **({"vaelab": meta["vaelab"]} if "vaelab" in meta else {})})
    with_id = (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5)
    nb.cells.insert(0, nbformat.from_dict(_note(source_name, with_id)))
    return nb


def dumps(nb: dict) -> str:
    """Notebook JSON text as Jupyter writes it (sources split into lines, a final newline)."""
    return nbformat.writes(nbformat.from_dict(nb)) + "\n"


def student_versions(notebooks: Path | str) -> dict[Path, str]:
    """``{student path: JSON text}`` for every numbered notebook in the folder ``notebooks``."""
    notebooks = Path(notebooks)
    if not notebooks.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {notebooks.resolve()} — run from the "
                                "repository root or pass the folder")
    out = {}
    for path in sorted(notebooks.glob(PATTERN)):
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        out[notebooks / STUDENT_DIR / path.name] = dumps(student_notebook(nb, path.name))
    return out


def stale(notebooks: Path | str) -> list[str]:
    """What is out of date in ``notebooks/student`` (empty when it matches the solutions)."""
    notebooks = Path(notebooks)
    want = student_versions(notebooks)
    problems = [f"{p} is missing" if not p.exists() else f"{p} differs from its solution notebook"
                for p, text in want.items()
                if not p.exists() or p.read_text(encoding="utf-8") != text]
    problems += [f"{p} has no solution notebook" for p in
                 sorted((notebooks / STUDENT_DIR).glob("*.ipynb")) if p not in want]
    return problems


def write(notebooks: Path | str) -> list[Path]:
    """Write ``notebooks/student/NN_*.ipynb``; remove student notebooks with no source."""
    notebooks = Path(notebooks)
    want = student_versions(notebooks)
    folder = notebooks / STUDENT_DIR
    folder.mkdir(exist_ok=True)
    for p in folder.glob("*.ipynb"):
        if p not in want:
            p.unlink()
    for p, text in want.items():
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
    return list(want)
