"""The set-up a new user meets: README commands, CI script, pip and conda lists in step."""

import ast
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # pip name -> conda-forge name where they differ


def _requirement(line: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", line)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for extra in project["optional-dependencies"].values() for r in extra
              if not r.startswith("vaelab[")]  # dev includes the site extra by name
    pip = dict(_requirement(r) for r in project["dependencies"] + extras)
    conda = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:\n", 1)[1].splitlines():
        m = re.fullmatch(r"  (?:    )?- ([A-Za-z][\w.\-]*)\s*(.*)", line)  # conda or its pip:
        if m and m.group(1) not in ("python", "pip"):
            conda[m.group(1).lower()] = m.group(2).replace(" ", "")
    expected = {CONDA_NAMES.get(name, name): spec.split(";")[0] for name, spec in pip.items()}
    assert conda == expected, "environment.yml and pyproject.toml list different packages"
    assert "python=3.11" in (ROOT / "environment.yml").read_text()


def test_readme_quickstart_has_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", quickstart, re.S).group(1)
    commands = [c for c in block.splitlines() if c.strip() and not c.startswith("#")]
    assert commands == ["make lab", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_readme_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        assert f"notebooks/{nb.name}" in readme, f"README's table misses {nb.name}"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("**/*.ipynb")),
                         ids=lambda p: p.name)
def test_notebooks_are_scrubbed(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in nb["metadata"], "stored widget state: run tools/clean_notebooks.py"
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"stored error in {path.name}"
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_every_function_in_the_package_fits_on_one_screen():
    long = []
    for path in sorted((ROOT / "vaelab").glob("*.py")):
        for fn in _functions(ast.parse(path.read_text())):
            lines = fn.end_lineno - fn.lineno + 1
            if lines > 60:
                long.append(f"{path.name}:{fn.lineno} {fn.name} ({lines} lines)")
    assert not long, "functions longer than 60 lines (split where the idea splits): " + ", ".join(
        long)


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in sorted((ROOT / "vaelab").glob("*.py")):
        tree = ast.parse(path.read_text())
        modules = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and n.level == 1 and not n.module for a in n.names}  # from . import viz
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                private += [f"{path.name}: from {node.module} import {a.name}"
                            for a in node.names if a.name.startswith("_")]
            elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                  and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                  and node.value.id in modules):
                private.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert not private, "private names used across modules: " + ", ".join(private)
