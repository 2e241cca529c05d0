"""The set-up a new user meets: README commands, CI script, pip and conda lists in step."""

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
    pip = dict(_requirement(r) for r in project["dependencies"]
               + project["optional-dependencies"]["dev"])
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
