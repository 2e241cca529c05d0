"""Student notebooks: ``notebooks/NN_*.ipynb`` with their exercise solutions taken out.

Cells tagged ``solution`` define a function and call its checker. The student version keeps
each top-level ``def``'s signature and docstring, replaces its body with
``raise NotImplementedError("...your code here...")`` and keeps the cell's other statements
(the checker call). Every output and execution count is cleared, metadata is scrubbed like
``tools/clean_notebooks.py`` does, and a note at the top says where the notebook came from.

    python -m vaelab student-notebooks           # or: make student-notebooks
"""

from __future__ import annotations

import ast
import copy
import io
import json
import tokenize
from pathlib import Path

import nbformat

SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"
RAISES_TAG = "raises-exception"
STUB = 'raise NotImplementedError("...your code here...")'
STUDENT_DIR = "student"
PATTERN = "[0-9][0-9]_*.ipynb"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


class SolutionCellError(ValueError):
    """A ``solution`` cell the generator cannot turn into an exercise."""


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


def _stub_function(node: ast.FunctionDef, lines: list[str], tokens) -> None:
    """Replace the body of ``node`` in ``lines`` (in place) by ``STUB``."""
    body = node.body
    has_doc = ast.get_docstring(node, clean=False) is not None
    header = _header_end(tokens, node)
    if body[0].lineno == header:  # `def f(x): return x` — rebuild the def from the tree
        new = copy.copy(node)
        new.body = body[:1] * has_doc + ast.parse(STUB).body
        start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        indent = _indent(lines[start - 1])
        newline = "\n" if lines[node.end_lineno - 1].endswith("\n") else ""
        unparsed = ast.unparse(new).replace(ast.unparse(ast.parse(STUB)), STUB)
        text = [indent + t for t in unparsed.splitlines()]
        lines[start - 1:node.end_lineno] = ["\n".join(text) + newline]
        return
    keep_to = body[0].end_lineno if has_doc else header
    end, j = node.end_lineno, node.end_lineno
    def_indent = len(_indent(lines[node.lineno - 1]))
    while j < len(lines):  # comment lines that trail inside the body go too
        line = lines[j]
        if line.strip() and not (line.lstrip().startswith("#")
                                 and len(_indent(line)) > def_indent):
            break
        if line.strip():
            end = j + 1
        j += 1
    newline = "\n" if lines[end - 1].endswith("\n") else ""
    if not lines[keep_to - 1].endswith("\n"):  # a docstring-only def at the end of the cell
        lines[keep_to - 1] += "\n"
    lines[keep_to:end] = [_indent(lines[body[0].lineno - 1]) + STUB + newline]


def stub_source(source: str) -> tuple[str, list[str]]:
    """Replace the body of every top-level function in ``source`` by ``STUB``.

    Keeps decorators, signature, docstring, comments on the ``def`` line and every other
    statement. Returns the new source and the names of the stubbed functions.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise SolutionCellError(f"does not parse as Python ({e.msg}, line {e.lineno})") from e
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    lines = source.splitlines(keepends=True)
    names = []
    for node in reversed(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
            _stub_function(node, lines, tokens)
    new_source = "".join(lines)
    ast.parse(new_source)  # the stubbed cell must still be valid Python
    return new_source, names[::-1]


def can_raise(source: str, stubbed: list[str]) -> bool:
    """True if a statement other than a ``check.<name>(fn)`` call may run a stubbed function."""
    allowed: set[int] = set()
    others = []
    for stmt in ast.parse(source).body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Import, ast.ImportFrom)):
            continue
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "check"):
            allowed |= {id(a) for a in call.args if isinstance(a, ast.Name)}
        others.append(stmt)
    return any(isinstance(n, ast.Name) and n.id in stubbed and id(n) not in allowed
               for stmt in others for n in ast.walk(stmt))


def _scrub(nb: dict) -> dict:
    """The same metadata scrub as tools/clean_notebooks.py, plus cleared outputs and counts."""
    meta = nb.get("metadata", {})
    nb["metadata"] = {"kernelspec": dict(KERNELSPEC),
                      "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    if "vaelab" in meta:
        nb["metadata"]["vaelab"] = meta["vaelab"]
    for cell in nb["cells"]:
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k == "tags"}
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


def student_notebook(nb: dict, source_name: str) -> dict:
    """The student version of notebook ``nb`` (a dict or NotebookNode; not modified)."""
    nb = copy.deepcopy(dict(nb))
    nb["cells"] = [copy.deepcopy(dict(c)) for c in nb["cells"]]
    for number, cell in enumerate(nb["cells"], start=1):
        tags = list(cell.get("metadata", {}).get("tags", []))
        if SOLUTION_TAG not in tags:
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code":
            raise SolutionCellError(f"{source_name}, cell {number}: only code cells can be "
                                    f"tagged {SOLUTION_TAG!r}")
        try:
            new, stubbed = stub_source(source)
        except SolutionCellError as e:
            raise SolutionCellError(f"{source_name}, cell {number}: {e}") from e
        if not stubbed:
            raise SolutionCellError(f"{source_name}, cell {number} is tagged {SOLUTION_TAG!r} "
                                    "but defines no function: put the solution in a top-level "
                                    "def (its body is what students write) or drop the tag")
        cell["source"] = new.splitlines(keepends=True)  # as Jupyter stores it
        tags = [EXERCISE_TAG if t == SOLUTION_TAG else t for t in tags]
        if can_raise(new, stubbed) and RAISES_TAG not in tags:
            tags.append(RAISES_TAG)
        cell.setdefault("metadata", {})["tags"] = tags
    note = nbformat.v4.new_markdown_cell(
        f"> **Student version** — generated from [`../{source_name}`](../{source_name}) by "
        "`make student-notebooks`; do not edit by hand.\n>\n"
        "> Exercise cells say `raise NotImplementedError`: replace that line with your code "
        "and run the cell — the check at the end of the cell tells you whether it works.")
    note["source"] = note["source"].splitlines(keepends=True)
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
        note["id"] = "student-version-note"  # fixed, so regenerating gives identical files
    else:
        del note["id"]
    nb["cells"].insert(0, dict(note))
    return _scrub(nb)


def dumps(nb: dict) -> str:
    """Notebook JSON text as tools/clean_notebooks.py writes it."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def student_versions(notebooks: Path | str) -> dict[Path, str]:
    """``{student path: JSON text}`` for every numbered notebook in the folder ``notebooks``."""
    notebooks = Path(notebooks)
    if not notebooks.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {notebooks.resolve()} — run from the "
                                "repository root or pass the folder")
    out = {}
    for path in sorted(notebooks.glob(PATTERN)):
        nb = json.loads(path.read_text(encoding="utf-8"))
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
