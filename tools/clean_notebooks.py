"""Scrub notebooks so diffs stay readable: kernel ``python3``, no widget state or widget outputs,
no execution timing. Other outputs stay. Usage: python tools/clean_notebooks.py NB.ipynb..."""

import json
import sys
from pathlib import Path

WIDGET = "application/vnd.jupyter.widget-view+json"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def clean(nb: dict) -> dict:
    meta = nb.get("metadata", {})
    nb["metadata"] = {"kernelspec": KERNELSPEC,
                      "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    if "vaelab" in meta:
        nb["metadata"]["vaelab"] = meta["vaelab"]
    for cell in nb["cells"]:
        keep = {k: v for k, v in cell.get("metadata", {}).items() if k in ("tags",)}
        cell["metadata"] = keep
        if cell["cell_type"] == "code":
            # A widget (progress bar, explorer) has no meaning without a kernel: drop the whole
            # output, including its "HBox(children=...)" / "0%|" text fallback.
            cell["outputs"] = [o for o in cell.get("outputs", [])
                               if WIDGET not in o.get("data", {})]
            for out in cell["outputs"]:
                out.get("metadata", {}).pop("execution", None)
    return nb


def main(paths: list[str]) -> int:
    for p in map(Path, paths):
        nb = clean(json.loads(p.read_text()))
        p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
