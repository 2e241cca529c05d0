"""The course website's budgets, measured in headless Chromium on this machine.

Builds the site from the stored notebooks (or takes ``--site`` already built), serves it on
127.0.0.1 with every other request blocked, and prints, for every page with in-page explorers:

* the size of each explorer's decoder (the bytes ``vaelab.web.export_decoder`` wrote) and of the
  page's HTML;
* the time from navigation start until every explorer on the page is live (``data-ready``);
* the time of one slider update, median and max over ``--moves`` moves: the slider's value set
  and its ``input`` event dispatched, which decodes the code in JavaScript and draws the
  picture (and the scatter marker) — a decode and a draw, timed with ``performance.now()``;

and the whole site's size. Budgets (issue "the course as a website"): one decode ≤ 5 ms for an
MLP decoder and ≤ 50 ms for the ConvVAE; a page interactive ≤ 2 s after load; the site ≤ 40 MB.

    python benchmarks/bench_site.py [--site build/site] [--moves 40]
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from test_web import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402

BUDGET_MS = {"mlp": 5.0, "convvae": 50.0}
INTERACTIVE_BUDGET_S, SITE_BUDGET_MB = 2.0, 40.0

TIME_MOVES = """([index, moves]) => {
    const root = document.querySelectorAll('div.vaelab-web-explorer')[index];
    const input = root.querySelector('input[type=range]');
    const lo = Number(input.min), hi = Number(input.max), times = [];
    for (let k = 0; k < moves; k++) {
        input.value = String(lo + (hi - lo) * ((k * 7919) % moves) / moves);
        const t0 = performance.now();
        input.dispatchEvent(new Event('input', {bubbles: true}));
        times.push(performance.now() - t0);
    }
    return times;
}"""
DECODERS = """() => Array.from(document.querySelectorAll('div.vaelab-web-explorer')).map(root => {
    const own = root.querySelector('script.vaelab-web-decoder');
    const shared = root.dataset.decoder ? document.getElementById(root.dataset.decoder) : null;
    return (own || shared).textContent.trim();
})"""
ALL_READY = ("() => { const r = document.querySelectorAll('div.vaelab-web-explorer');"
             " return r.length > 0 && Array.from(r).every(e => e.dataset.ready === '1'); }")


def build_site(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("site_build", REPO / "site" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module.build(out) != 0:
        raise SystemExit("sphinx-build failed")
    return out


def measure_page(p, url: str, moves: int) -> dict:
    browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    blocked: list[str] = []
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(
        ("http://127.0.0.1", "data:")) else (blocked.append(r.request.url), r.abort()))
    page.goto(url)
    page.wait_for_function(ALL_READY, timeout=30_000, polling=10)
    ready_s = page.evaluate("() => performance.now()") / 1000
    decoders = page.evaluate(DECODERS)
    rows = []
    for index, payload in enumerate(decoders):
        data = base64.b64decode(payload)
        header = json.loads(data[12:12 + int.from_bytes(data[8:12], "little")])
        times = sorted(page.evaluate(TIME_MOVES, [index, moves]))
        dtypes = sorted({t["dtype"] for t in header["tensors"]}, reverse=True)
        rows.append({"kind": header["kind"], "dtype": "+".join(dtypes),
                     "bytes": len(data), "median_ms": times[len(times) // 2],
                     "max_ms": times[-1]})
    browser.close()
    return {"ready_s": ready_s, "explorers": rows, "blocked": blocked}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", type=Path, default=None, help="a built site (default: build one)")
    ap.add_argument("--moves", type=int, default=40, help="slider moves timed per explorer")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    site = args.site or build_site(Path(tempfile.mkdtemp(prefix="vaelab-site-")) / "site")
    size_mb = sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 1e6
    pages = sorted(p for p in (site / "notebooks").glob("*.html")
                   if "vaelab-web-explorer" in p.read_text(encoding="utf-8"))
    server, url = serve(site)
    print(f"site {site}: {size_mb:.1f} MB (budget {SITE_BUDGET_MB:.0f} MB)")
    print("| page | HTML MB | live after (s) | explorer | decoder | size MB | update median / "
          "max (ms) | budget (ms) |\n|---|---|---|---|---|---|---|---|")
    with sync_playwright() as p:
        for path in pages:
            m = measure_page(p, f"{url}/notebooks/{path.name}", args.moves)
            for i, row in enumerate(m["explorers"]):
                print(f"| {path.stem} | {path.stat().st_size / 1e6:.1f} | {m['ready_s']:.2f} | "
                      f"{i + 1} | {row['kind']} ({row['dtype']}) | {row['bytes'] / 1e6:.2f} | "
                      f"{row['median_ms']:.1f} / {row['max_ms']:.1f} | "
                      f"{BUDGET_MS[row['kind']]:.0f} |")
            if m["blocked"]:
                print(f"  {path.stem}: blocked requests {m['blocked']}")
    server.shutdown()
    print(f"budgets: page live ≤ {INTERACTIVE_BUDGET_S} s after navigation start; one update "
          "≤ 5 ms (MLP) / 50 ms (ConvVAE)")


if __name__ == "__main__":
    main()
