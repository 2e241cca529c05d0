"""Build the vaelab site: ``python site/build.py [OUT]`` (default ``build/site``; ``make site``).

1. ``prepare``: copy site/*.md and a CLEANED copy of every stored notebook into a source folder
   (``build/site-src``); notebooks/ itself is never modified, and nothing is executed.
   Cleaning, output by output (``clean_output``): widget views and widget placeholders go (a
   widget has no meaning without its kernel; the explorers carry their own in-page version
   in ``text/html``), progress bars go (tqdm's stderr lines), ANSI colour codes and carriage
   returns are resolved, the GIF cell's local path line goes, and the static explorer's "run
   this cell" note is replaced by what a site reader can do.
2. Sphinx (myst-nb, sphinx-book-theme, site/conf.py) writes HTML into OUT, with MathJax copied
   in, trimmed.

Every file is written through ``vaelab.files.atomic_write``, and only when its content
changed, so a rebuild is incremental.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from vaelab.files import atomic_write
from vaelab.widgets import STATIC_NOTE

SITE = Path(__file__).resolve().parent
REPO = SITE.parent
WIDGET_MIMES = ("application/vnd.jupyter.widget-view+json",
                "application/vnd.jupyter.widget-state+json")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROGRESS = re.compile(r"\d+%\|.*\|")  # tqdm's bar: " 40%|████      | 4/10 [00:01<00:02, ...]"
LOCAL_PATH_LINE = re.compile(r"^\S+\.gif: [\d.,]+ [KMG]?i?B\n?", re.M)  # "runs/x.gif: 38 KiB"
NOTE_LIVE_HERE = "Static picture: this explorer is live in the page where JavaScript runs."
NOTE_STORED = ("Static picture, stored before the explorers ran in the page: open the notebook "
               "in Jupyter and run this cell to make it live.")


def resolve_text(text: str) -> str:
    """Terminal text as a reader would see it: ANSI codes dropped, and of each line rewritten
    with carriage returns (a progress bar), only its last state."""
    lines = ANSI.sub("", text).split("\n")
    return "\n".join(line.rstrip("\r").split("\r")[-1] for line in lines)


def clean_stream(out: dict) -> dict | None:
    """A stream output cleaned, or None when nothing is left (a bare progress bar)."""
    text = resolve_text("".join(out.get("text", "")))
    if out.get("name") == "stderr":
        text = "\n".join(line for line in text.split("\n") if not PROGRESS.search(line))
    text = LOCAL_PATH_LINE.sub("", text)
    return {**out, "text": text} if text.strip() else None


def clean_html(html: str) -> str:
    """An explorer's static note says what a site reader can do."""
    live = "vaelab-web-explorer" in html
    return html.replace(STATIC_NOTE, NOTE_LIVE_HERE if live else NOTE_STORED)


def clean_data(data: dict) -> dict | None:
    """A display's mime bundle without widget views, or None when only a placeholder is
    left (a widget's "HBox(children=...)" text)."""
    kept = {k: v for k, v in data.items() if k not in WIDGET_MIMES}
    if len(kept) < len(data) and set(kept) <= {"text/plain"}:
        return None
    if "text/html" in kept:
        kept["text/html"] = clean_html("".join(kept["text/html"]))
    if "text/plain" in kept:
        kept["text/plain"] = resolve_text("".join(kept["text/plain"]))
    return kept


def clean_output(out: dict) -> dict | None:
    """One cell output as the site shows it, or None to drop it."""
    kind = out.get("output_type")
    if kind == "stream":
        return clean_stream(out)
    if kind == "error":
        return {**out, "traceback": [resolve_text(line) for line in out.get("traceback", [])]}
    data = clean_data(out.get("data", {}))
    return None if data is None else {**out, "data": data}


def clean_notebook(nb: dict) -> dict:
    """A copy of ``nb`` (nbformat 4 as a dict) with every output cleaned; no widget state."""
    nb = json.loads(json.dumps(nb))
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            outputs = (clean_output(o) for o in cell.get("outputs", []))
            cell["outputs"] = [o for o in outputs if o is not None]
    return nb


def write_if_changed(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(data)


def prepare(src: Path, notebooks: Path = REPO / "notebooks") -> list[Path]:
    """Fill ``src`` with the site's pages and cleaned notebooks; returns the notebooks copied."""
    for page in SITE.glob("*.md"):
        write_if_changed(src / page.name, page.read_bytes())
    copied = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not copied:
        raise FileNotFoundError(f"notebooks: no NN_*.ipynb in {notebooks}; run from a checkout")
    for path in copied:
        nb = clean_notebook(json.loads(path.read_text(encoding="utf-8")))
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        write_if_changed(src / "notebooks" / path.name, text.encode("utf-8"))
    return copied


def build(out: Path, src: Path | None = None, quiet: bool = True,
          notebooks: Path = REPO / "notebooks") -> int:
    """Prepare the sources (from ``notebooks``) and run Sphinx (HTML) into ``out``; returns
    Sphinx's exit status."""
    from sphinx.cmd.build import build_main

    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"OUT: {out} is a file; pass a folder for the site")
    src = Path(src) if src is not None else out.parent / "site-src"
    prepare(src, Path(notebooks))
    # Sphinx's pickled doctrees (20+ MB) are a build cache: kept beside the sources, not
    # published with the site
    args = ["-b", "html", "-c", str(SITE), "-d", str(src / ".doctrees"), "-j", "1", str(src),
            str(out)]
    return build_main(args + (["-q"] if quiet else []))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "build" / "site"
    status = build(target, quiet=False)
    if status == 0:
        print(f"site built in {target}; preview: python -m http.server -d {target} 8000")
    sys.exit(status)
