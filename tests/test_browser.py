"""The latent explorer in a real JupyterLab, driven by headless Chromium (playwright).

Starts JupyterLab on a free localhost port as ``make lab`` does (its settings override and its
save hook, both read from the Makefile; the autosave interval cut to a few seconds), and

* opens ``tests/browser/explorer_demo.ipynb``, runs all cells, moves the z₁ slider with the
  keyboard and waits until the kernel's callback has sent back a new image;
* runs a small notebook with two explorers (VAE L=2, ConvVAE L=10) and a tqdm progress bar in
  a 1,400-px window with the file browser open, checks nothing overflows sideways, saves it
  (the file holds the in-page explorers and the bar's final line, no widget view or state; the
  live widgets still answer), shuts the kernel down (each explorer says it is not connected),
  then three times: reopens it (not marked modified once the kernel is there), drags an
  in-page explorer's slider (the picture changes), lets an autosave write it, and checks the
  file again. No "Error displaying widget", no console error, no news pop-up. The same
  notebook scrubbed by ``tools/clean_notebooks.py`` opens with the static pictures and is not
  marked modified.

Screenshots land in pytest's ``tmp_path`` (their paths are printed; ``pytest -s`` shows them).

Needs Chromium at /usr/bin/chromium (the browser is never downloaded) and the playwright
Python package; skipped with the reason otherwise.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
import clean_notebooks  # noqa: E402
from test_export import drag_first_slider  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
MAKEFILE = Path(__file__).parents[1] / "Makefile"
NOTEBOOK = Path(__file__).parent / "browser" / "explorer_demo.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 90      # server up, page loaded, kernel idle: generous for a busy 2-core CI box
RENDER_TIMEOUT_S = 120    # all cells run and the widget drawn
UPDATE_TIMEOUT_S = 30     # the kernel's answer to a slider move
PRESSES = 10              # ArrowRight presses: z₁ moves by 10 slider steps (0.5)
AUTOSAVE_S = 3            # JupyterLab's autosave interval here (120 s by default)
SAVE_TIMEOUT_S = 60       # a save, a kernel shut down


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return (f"Chromium is not at {CHROMIUM}: install it (e.g. apt-get install chromium) "
                "to run the JupyterLab browser test")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install playwright (no browser download)"
    return None


pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")]


def make_variable(name: str, parse):
    """A variable of the Makefile's ``lab`` set-up, parsed (``json`` or ``shlex``)."""
    text = re.sub(r"\\\n\s*", " ", MAKEFILE.read_text())  # join continued lines
    value = re.search(rf"^{name}\s*:=\s*(.*)$", text, re.M).group(1)
    return parse.loads(value) if parse is json else parse.split(value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


class LabServer:
    """A JupyterLab process with its own settings, kernels, runtime and root folders."""

    def __init__(self, base: Path):
        self.root = base / "root"
        self.root.mkdir()
        shutil.copy(NOTEBOOK, self.root / NOTEBOOK.name)
        self.log = base / "jupyterlab.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)
        env.pop("JUPYTER_PATH", None)
        for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                    "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR",
                    "MPLCONFIGDIR"):
            (base / var.lower()).mkdir()
            env[var] = str(base / var.lower())
        env["VAELAB_CACHE"] = str(base / "vaelab-cache")
        env["OMP_NUM_THREADS"] = "1"  # a tiny model; on a busy CI box more threads only wait
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        # What `make lab` writes: its settings as an override, its flags on the command line.
        overrides = base / "app_settings" / "overrides.d"
        overrides.mkdir(parents=True)
        (overrides / "vaelab.json").write_text(json.dumps(make_variable("LAB_SETTINGS", json)))
        docs = base / "jupyterlab_settings_dir" / "@jupyterlab" / "docmanager-extension"
        docs.mkdir(parents=True)  # autosave every few seconds, once the test turns it on
        (docs / "plugin.jupyterlab-settings").write_text(
            json.dumps({"autosave": False, "autosaveInterval": AUTOSAVE_S}))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={self.port}", "--ServerApp.port_retries=0",
               "--IdentityProvider.token=", "--ServerApp.password=",
               f"--ServerApp.root_dir={self.root}", "--LabApp.expose_app_in_browser=True",
               f"--LabApp.app_settings_dir={base / 'app_settings'}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False",
               *make_variable("LAB_FLAGS", shlex)]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers often run as root
            cmd.append("--allow-root")
        self._log_file = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(cmd, env=env, cwd=self.root, stdout=self._log_file,
                                        stderr=subprocess.STDOUT)
        self._cookies = http.cookiejar.CookieJar()
        self._http = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self._cookies))

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.process.returncode}:\n"
                                   f"{_log_tail(self.log)}")
            try:
                with self._http.open(f"{self.url}/api/status", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"JupyterLab did not answer on {self.url} within {timeout:.0f} s:\n"
                           f"{_log_tail(self.log)}")

    def stop(self) -> None:
        """POST /api/shutdown (with the _xsrf cookie the server hands out); kill if need be."""
        try:
            if self.process.poll() is None:
                try:
                    self._http.open(f"{self.url}/lab", timeout=10).close()  # sets _xsrf
                    xsrf = next((c.value for c in self._cookies if c.name == "_xsrf"), "")
                    request = urllib.request.Request(f"{self.url}/api/shutdown", method="POST",
                                                     headers={"X-XSRFToken": xsrf}, data=b"")
                    self._http.open(request, timeout=5).close()
                except (urllib.error.URLError, OSError):
                    pass
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.terminate()
                    try:
                        self.process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        self.process.kill()
                        self.process.wait(timeout=10)
        finally:
            self._log_file.close()


@pytest.fixture
def lab(tmp_path):
    server = LabServer(tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# JavaScript run in the page. The app object is exposed by --LabApp.expose_app_in_browser.
KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return Boolean(kernel && kernel.status === 'idle' && panel.content
                   && panel.content.widgets && panel.content.widgets.length > 0);
}"""
STATE = """() => {
    const img = document.querySelector('img.vaelab-explorer-image');
    const readout = document.querySelector('.vaelab-readout');
    const slider = document.querySelector('.vaelab-z-slider .widget-readout');
    return {src: img ? img.src : null, readout: readout ? readout.innerText : null,
            slider: slider ? slider.innerText : null};
}"""
UPDATED = """([before]) => {
    const img = document.querySelector('img.vaelab-explorer-image');
    const readout = document.querySelector('.vaelab-readout');
    const slider = document.querySelector('.vaelab-z-slider .widget-readout');
    if (!img || !readout || !slider || img.src === before.src) return false;
    // The kernel writes the readout after it has decoded and sent the image: wait until it
    // reports the slider's final value, so the image shown is the one for that value.
    const plain = (text) => text.replace(/\\u2212/g, '-');  // d3 and vaelab write a real minus
    const z1 = plain(readout.innerText).match(/z = \\(([-0-9.]+)/);
    return Boolean(z1) && Math.abs(parseFloat(z1[1]) - parseFloat(plain(slider.innerText))) < 1e-6;
}"""


def number(text: str) -> float:
    return float(text.replace("\u2212", "-"))


def test_latent_explorer_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK.name}", timeout=START_TIMEOUT_S * 1000)
            page.wait_for_function(KERNEL_IDLE, timeout=START_TIMEOUT_S * 1000)
            times = {"lab open, kernel idle": time.monotonic() - started}
            page.evaluate("""async () => {
                const app = window.jupyterapp;
                app.shell.collapseLeft();
                await app.commands.execute('notebook:run-all-cells');
            }""")

            image = page.locator("img.vaelab-explorer-image")
            image.wait_for(state="visible", timeout=RENDER_TIMEOUT_S * 1000)
            page.wait_for_function(KERNEL_IDLE, timeout=RENDER_TIMEOUT_S * 1000)
            times["cells run, explorer drawn"] = time.monotonic() - started
            assert page.locator("text=Loading widget").count() == 0
            labels = page.locator(".vaelab-z-slider .widget-label").all_inner_texts()
            assert labels == ["z₁", "z₂"], labels
            box = image.bounding_box()
            assert box["width"] >= 200 and box["height"] >= 200, f"image too small: {box}"
            assert page.locator("img.vaelab-scatter-image").is_visible()

            page.locator(".vaelab-explorer").evaluate("el => el.scrollIntoView({block: 'center'})")
            before = page.evaluate(STATE)
            before_png = image.screenshot()
            shot_before = tmp_path / "explorer_before.png"
            page.screenshot(path=shot_before)

            handle = page.locator(".vaelab-z-slider .noUi-handle").first
            handle.focus()
            moved = time.monotonic()
            for _ in range(PRESSES):
                page.keyboard.press("ArrowRight")
            page.wait_for_function(UPDATED, arg=[before], timeout=UPDATE_TIMEOUT_S * 1000)
            latency = time.monotonic() - moved
            after = page.evaluate(STATE)
            after_png = image.screenshot()
            shot_after = tmp_path / "explorer_after.png"
            page.screenshot(path=shot_after)
        finally:
            browser.close()

    print(f"\nscreenshots: {shot_before}\n             {shot_after}")
    times["slider moved, image back"] = time.monotonic() - started
    print(f"slider {before['slider']} -> {after['slider']}; readout {before['readout']!r} -> "
          f"{after['readout']!r}; {PRESSES} key presses answered in "
          f"{latency * 1000:.0f} ms")
    print("seconds since the browser started: "
          + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    assert number(after["slider"]) > number(before["slider"])
    assert after["src"] != before["src"]
    assert after_png != before_png, "the decoded image looks the same after moving z₁"


# ---------------------------------------------------------------------------------------------
# Save, shut down, reopen again and again: live explorers, never "Error displaying widget".

REOPEN_CELLS = [
    "import torch\nfrom tqdm.auto import tqdm\n\nimport vaelab\n"
    "from vaelab.widgets import latent_explorer\n\ntorch.manual_seed(0)\n"
    "x, y = torch.rand(200, 1, 28, 28), torch.arange(200) % 10\n"
    "for _ in tqdm(range(40), desc=\"training\"):\n    pass",
    "latent_explorer(vaelab.VAE(latent_dim=2), start=x[:1], scatter=(x, y))",
    "latent_explorer(vaelab.ConvVAE(latent_dim=10), start=x[:1], scatter=(x, y))",
]
PANEL = "window.jupyterapp.shell.currentWidget"
LAYOUT = """() => Array.from(document.querySelectorAll('.vaelab-explorer')).map(el => {
    const out = el.closest('.jp-OutputArea-output');
    const readout = el.querySelector('.vaelab-readout');
    return {explorer: [el.scrollWidth, el.clientWidth], output: [out.scrollWidth, out.clientWidth],
            readout_lines: readout.innerText.trim().split('\\n').length,
            readout: [readout.scrollWidth, readout.clientWidth]};
})"""
ERRORS = ["Error displaying widget", "model not found"]
# The notebook's text, scripts and styles left out, cells scrolled out of view included.
TEXT = f"""() => {{
    const copy = {PANEL}.content.node.cloneNode(true);
    copy.querySelectorAll('script, style').forEach(e => e.remove());
    return copy.textContent;
}}"""
BAR_LINE = re.compile(r"training: 100%\|█{10}\| 40/40 \[")
IN_PAGE_READY = """() => {
    const roots = document.querySelectorAll('div.vaelab-web-explorer');
    return roots.length === 2 && Array.from(roots).every(r => r.dataset.ready === '1');
}"""
ONE_ROW = """() => Array.from(document.querySelectorAll('.vaelab-web-live')).map(live => {
    const left = Array.from(live.children).map(c => c.getBoundingClientRect().left);
    return left.every((x, i) => i === 0 || x > left[i - 1]);  // no panel wrapped to a new row
})"""


def run_js(page, body: str, seconds: float):
    """Run the JavaScript ``body`` (an async function's body) and await it, failing after
    ``seconds``: page.evaluate alone would wait for ever on a dialog (a save that collides
    with an autosave asks whether to overwrite the file)."""
    return page.evaluate(f"""() => Promise.race([(async () => {{ {body} }})(),
        new Promise((_, fail) => setTimeout(() => fail(new Error('no answer in {seconds} s: '
            + document.body.innerText.slice(0, 300))), {seconds * 1000}))])""")


def visible_count(page, selector: str) -> int:
    return sum(1 for el in page.locator(selector).all() if el.is_visible())


def open_notebook(page, url: str, name: str) -> None:
    """Open ``name`` and wait until it is the current tab and its kernel is idle. Lab restores
    the tabs of the last visit too, and one of those can be current for a moment."""
    page.goto(f"{url}/lab/tree/{name}", timeout=START_TIMEOUT_S * 1000)
    current = ("() => { const app = window.jupyterapp;"  # undefined while the page loads
               " const panel = app && app.shell && app.shell.currentWidget;"
               f" return !!panel && !!panel.context && panel.context.path === {name!r}; }}")
    page.wait_for_function(current, timeout=START_TIMEOUT_S * 1000)
    page.wait_for_function(KERNEL_IDLE, timeout=START_TIMEOUT_S * 1000)


def start_code() -> str:
    """The readout the first explorer of REOPEN_CELLS must start with (same seed, same code)."""
    import torch

    import vaelab
    from vaelab.widgets import describe_code

    torch.manual_seed(0)
    x = torch.rand(200, 1, 28, 28)
    return describe_code(vaelab.VAE(latent_dim=2).encode_means(x[:1])[0])


def watch(page, problems: list[str]) -> None:
    """Console errors and uncaught page errors land in ``problems``."""
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))


def on_disk(path: Path) -> dict:
    """What the saved notebook holds: output kinds per cell, the bar's text, widget state."""
    nb = nbformat.read(path, as_version=4)  # multi-line strings joined
    outputs = [c.get("outputs", []) for c in nb["cells"]]
    return {"kinds": [[sorted(o.get("data", {})) for o in cell] for cell in outputs],
            "bar": "".join(o.get("data", {}).get("text/plain", "") for o in outputs[0]),
            "explorers": sum("vaelab-web-explorer" in o.get("data", {}).get("text/html", "")
                             for cell in outputs for o in cell),
            "widgets": "widgets" in nb["metadata"], "cycle": nb["metadata"].get("test_cycle")}


def reopen_cycle(page, url: str, name: str, cycle: int, path: Path) -> dict:
    """Open the notebook afresh; wait 3 s after the kernel is there; drag a slider; let an
    autosave write the notebook (a metadata change marks it modified). What was seen."""
    open_notebook(page, url, name)
    page.wait_for_function(IN_PAGE_READY, timeout=RENDER_TIMEOUT_S * 1000)
    page.wait_for_timeout(3000)  # the kernel's widget manager has had time to mark it modified
    seen = {"dirty": page.evaluate(f"{PANEL}.context.model.dirty"),
            "text": page.evaluate(TEXT),
            "in_page": visible_count(page, "canvas.vaelab-web-picture"),
            "one_row": page.evaluate(ONE_ROW)}
    seen["drag"] = drag_first_slider(page)
    page.evaluate(f"{PANEL}.context.model.setMetadata('test_cycle', {cycle})")
    page.wait_for_function(f"() => !{PANEL}.context.model.dirty",  # the autosave has run
                           timeout=(3 * AUTOSAVE_S + SAVE_TIMEOUT_S) * 1000)
    seen["disk"] = on_disk(path)
    return seen


def check_cycle(seen: dict, cycle: int) -> None:
    assert not seen["dirty"], f"reopen {cycle + 1}: marked modified as the kernel connected"
    assert not any(error in seen["text"] for error in ERRORS), seen["text"][:2000]
    assert seen["in_page"] == 2 and BAR_LINE.search(seen["text"]), seen["text"][:2000]
    assert seen["one_row"] == [True, True], "an in-page explorer wrapped at 1,400 px"
    before, after = seen["drag"]
    assert after["pixels"] != before["pixels"] and after["readout"] != before["readout"]
    disk = seen["disk"]
    assert disk["cycle"] == cycle and disk["explorers"] == 2 and not disk["widgets"], disk
    assert BAR_LINE.match(disk["bar"]), disk


def run_and_save(page, url: str, name: str, path: Path) -> dict:
    """Run the notebook with the file browser open, check the live explorers, save, and check
    that the open session's widgets still answer. What was seen."""
    open_notebook(page, url, name)
    run_js(page, """const app = window.jupyterapp;
        app.shell.activateById('filebrowser');   // the file browser stays open
        await app.commands.execute('notebook:run-all-cells');""", RENDER_TIMEOUT_S)
    page.wait_for_function(
        "() => document.querySelectorAll('img.vaelab-explorer-image').length === 2"
        " && document.body.innerText.includes('40/40')", timeout=RENDER_TIMEOUT_S * 1000)
    page.wait_for_function(KERNEL_IDLE, timeout=RENDER_TIMEOUT_S * 1000)
    seen = {"file_browser": not page.evaluate("window.jupyterapp.shell.leftCollapsed"),
            "layout": page.evaluate(LAYOUT),
            "readout": page.locator(".vaelab-readout").first.inner_text(),
            "notes": visible_count(page, ".vaelab-live-note")}
    run_js(page, "await window.jupyterapp.commands.execute('docmanager:save');", SAVE_TIMEOUT_S)
    page.wait_for_function(f"() => !{PANEL}.context.model.dirty", timeout=SAVE_TIMEOUT_S * 1000)
    seen["disk"] = on_disk(path)
    before = page.evaluate(STATE)
    page.locator(".vaelab-z-slider .noUi-handle").first.focus()
    for _ in range(PRESSES):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(UPDATED, arg=[before], timeout=UPDATE_TIMEOUT_S * 1000)
    return seen


def test_saved_explorers_reopen_live_after_saves_and_autosaves(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in REOPEN_CELLS])
    nb.metadata["kernelspec"] = dict(clean_notebooks.KERNELSPEC)
    saved = lab.root / "reopen_demo.ipynb"
    nbformat.write(nb, saved)
    shots, problems, cycles = {}, [], []
    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            watch(page, problems)
            live = run_and_save(page, lab.url, saved.name, saved)
            shots["live, saved"] = tmp_path / "live.png"
            page.screenshot(path=shots["live, saved"])
            run_js(page, f"await {PANEL}.sessionContext.shutdown();", SAVE_TIMEOUT_S)
            page.wait_for_function(  # the kernel is gone: both explorers say so
                "() => Array.from(document.querySelectorAll('.vaelab-live-note'))"
                ".filter(n => n.offsetParent !== null).length === 2",
                timeout=UPDATE_TIMEOUT_S * 1000)
            shots["kernel shut down"] = tmp_path / "shut_down.png"
            page.screenshot(path=shots["kernel shut down"])
            autosave = "docmanager:toggle-autosave"  # off while the test saved by hand
            run_js(page, f"await window.jupyterapp.commands.execute('{autosave}');",
                   SAVE_TIMEOUT_S)
            autosaving = page.evaluate(f"window.jupyterapp.commands.isToggled('{autosave}')")
            for cycle in range(3):
                cycles.append(reopen_cycle(page, lab.url, saved.name, cycle, saved))
                if cycle == 0:
                    shots["reopened"] = tmp_path / "reopened.png"
                    page.screenshot(path=shots["reopened"])
            news = "Jupyter news" in page.evaluate("document.body.innerText")

            stored = json.loads(saved.read_text())
            stored["metadata"].pop("language_info")  # the scrubber must write it back whole
            stored["cells"].insert(0, nbformat.v4.new_markdown_cell("A scrubbed copy."))
            clean = lab.root / "reopen_clean.ipynb"  # a file this Lab never signed: untrusted
            clean.write_text(json.dumps(clean_notebooks.clean(stored), indent=1))
            open_notebook(page, lab.url, clean.name)
            page.wait_for_function(  # the same words the assertion below counts
                f"() => ({TEXT})().split('Static picture: run this cell').length === 3",
                timeout=RENDER_TIMEOUT_S * 1000)
            page.wait_for_timeout(1000)  # kernel info in, language_info compared
            clean_text = page.evaluate(TEXT)
            clean_dirty = page.evaluate(f"{PANEL}.context.model.dirty")
            shots["scrubbed"] = tmp_path / "scrubbed.png"
            page.screenshot(path=shots["scrubbed"])
        finally:
            browser.close()

    print("\nscreenshots: " + ", ".join(str(s) for s in shots.values()))
    print(f"layout: {live['layout']}; {time.monotonic() - started:.1f} s in the browser")
    assert live["readout"] == start_code(), "the explorer does not start at the start code"
    assert live["file_browser"] and live["notes"] == 0  # live: no "not connected" note
    for box in live["layout"]:  # nothing sticks out sideways at 1,400 px with the file browser
        assert box["explorer"][0] <= box["explorer"][1], box
        assert box["output"][0] <= box["output"][1], box
        assert box["readout"][0] <= box["readout"][1] and box["readout_lines"] <= 2, box
    disk = live["disk"]  # the file: in-page explorers, the bar's last line, no widget views
    assert disk["kinds"] == [[["text/plain"]], [["text/html", "text/plain"]],
                             [["text/html", "text/plain"]]], disk
    assert disk["explorers"] == 2 and not disk["widgets"] and BAR_LINE.match(disk["bar"]), disk
    for cycle, seen in enumerate(cycles):
        check_cycle(seen, cycle)
    assert autosaving, "the test could not turn JupyterLab's autosave on"
    assert not news, "JupyterLab asked about news: make lab's settings should turn that off"
    assert problems == [], problems
    assert not any(error in clean_text for error in ERRORS), clean_text[:2000]
    assert clean_text.count("Static picture: run this cell") == 2
    assert not clean_dirty, "the scrubbed notebook opened modified"
