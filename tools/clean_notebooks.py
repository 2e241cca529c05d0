"""Scrub notebook metadata so diffs stay readable: kernel ``python3``, no widget state,
no execution timing, no cell ids churn. Outputs stay. Usage: python tools/clean_notebooks.py NB..."""

import json
import sys
from pathlib import Path

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
            for out in cell.get("outputs", []):
                out.get("metadata", {}).pop("execution", None)
                data = out.get("data", {})
                data.pop("application/vnd.jupyter.widget-view+json", None)
                if out.get("output_type") in ("display_data", "execute_result") and not data:
                    out["_drop"] = True
            cell["outputs"] = [o for o in cell.get("outputs", []) if not o.get("_drop")]
    return nb


def main(paths: list[str]) -> int:
    for p in map(Path, paths):
        nb = clean(json.loads(p.read_text()))
        p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
