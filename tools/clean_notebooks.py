"""Scrub notebooks so diffs stay readable: kernel ``python3``, no widget state, no execution
timing. Other outputs stay. Usage: python tools/clean_notebooks.py NB.ipynb...

Widgets have no meaning without their kernel. An output that carries a static picture beside
its widget (vaelab's explorers: ``text/html`` or ``image/png``) keeps the picture and loses the
widget view, so JupyterLab, nbconvert and GitHub all show the picture (JupyterLab would show
"Error displaying widget: model not found" for a view without its model). A widget output with
nothing but text (a progress bar's "HBox(children=...)" / "0%|" line) is dropped.

``language_info`` is kept as the kernel wrote it (JupyterLab writes it on opening; a notebook
without it opens already "modified").
"""

import json
import platform
import sys
from pathlib import Path

from vaelab.files import atomic_write

WIDGET = "application/vnd.jupyter.widget-view+json"
PICTURES = ("text/html", "image/png", "image/svg+xml", "image/jpeg")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_KEYS = ("codemirror_mode", "file_extension", "mimetype", "name", "nbconvert_exporter",
                 "pygments_lexer", "version")


def language_info(meta: dict) -> dict:
    """The notebook's ``language_info`` as ipykernel reports it; what is missing is filled in
    for the Python running this script (the one that ran the notebooks)."""
    info = {"codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
            "file_extension": ".py", "mimetype": "text/x-python", "name": "python",
            "nbconvert_exporter": "python", "pygments_lexer": f"ipython{sys.version_info[0]}",
            "version": platform.python_version()}
    stored = meta.get("language_info", {})
    info.update({k: stored[k] for k in LANGUAGE_KEYS if k in stored})
    return info


def clean_output(out: dict) -> dict | None:
    """``out`` without widget views or timing, or None when nothing worth storing is left."""
    data = out.get("data", {})
    if WIDGET in data:
        if not any(kind in data for kind in PICTURES):
            return None
        out["data"] = {k: v for k, v in data.items() if k != WIDGET}
    out.get("metadata", {}).pop("execution", None)
    return out


def clean(nb: dict) -> dict:
    meta = nb.get("metadata", {})
    nb["metadata"] = {"kernelspec": KERNELSPEC, "language_info": language_info(meta)}
    if "vaelab" in meta:
        nb["metadata"]["vaelab"] = meta["vaelab"]
    for cell in nb["cells"]:
        keep = {k: v for k, v in cell.get("metadata", {}).items() if k in ("tags", "nbgrader")}
        cell["metadata"] = keep
        if cell["cell_type"] == "code":
            outputs = (clean_output(o) for o in cell.get("outputs", []))
            cell["outputs"] = [o for o in outputs if o is not None]
    return nb


def main(paths: list[str]) -> int:
    for p in map(Path, paths):
        nb = clean(json.loads(p.read_text()))
        with atomic_write(p, "w") as fh:  # a full disk keeps the notebook as it was
            fh.write(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
