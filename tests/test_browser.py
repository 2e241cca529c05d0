"""The latent explorer in a real JupyterLab, driven by headless Chromium (playwright).

Starts JupyterLab on a free localhost port with throwaway settings (widget state saved with
the notebook, as ``make lab`` sets it), and

* opens ``tests/browser/explorer_demo.ipynb``, runs all cells, moves the z₁ slider with the
  keyboard and waits until the kernel's callback has sent back a new image;
* runs a small notebook with two explorers (VAE L=2, ConvVAE L=10) and a tqdm progress bar in
  a 1,400-px window with the file browser open, checks nothing overflows sideways, saves it,
  shuts the kernel down and reloads the page: every explorer shows its last picture with a note
  to rerun the cell, the bar its final line, and no "Error displaying widget"; the same
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

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).parent / "browser" / "explorer_demo.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 90      # server up, page loaded, kernel idle: generous for a busy 2-core CI box
RENDER_TIMEOUT_S = 120    # all cells run and the widget drawn
UPDATE_TIMEOUT_S = 30     # the kernel's answer to a slider move
PRESSES = 10              # ArrowRight presses: z₁ moves by 10 slider steps (0.5)


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
        # No news or update pop-ups over the notebook.
        settings = base / "jupyterlab_settings_dir" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        widgets = base / "jupyterlab_settings_dir" / "@jupyter-widgets" / "jupyterlab-manager"
        widgets.mkdir(parents=True)  # what `make lab` sets (there as an override)
        (widgets / "plugin.jupyterlab-settings").write_text(json.dumps({"saveState": True}))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={self.port}", "--ServerApp.port_retries=0",
               "--IdentityProvider.token=", "--ServerApp.password=",
               f"--ServerApp.root_dir={self.root}", "--LabApp.expose_app_in_browser=True",
               "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False"]
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
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK.name}")
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
# Save, shut down, reopen: pictures, never "Error displaying widget".

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


def visible_count(page, selector: str) -> int:
    return sum(1 for el in page.locator(selector).all() if el.is_visible())


def open_notebook(page, url: str, name: str) -> None:
    page.goto(f"{url}/lab/tree/{name}")
    page.wait_for_function(KERNEL_IDLE, timeout=START_TIMEOUT_S * 1000)


def start_code() -> str:
    """The readout the first explorer of REOPEN_CELLS must start with (same seed, same code)."""
    import torch

    import vaelab
    from vaelab.widgets import describe_code

    torch.manual_seed(0)
    x = torch.rand(200, 1, 28, 28)
    return describe_code(vaelab.VAE(latent_dim=2).encode_means(x[:1])[0])


def test_saved_notebook_reopens_with_pictures_and_no_widget_errors(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in REOPEN_CELLS])
    nb.metadata["kernelspec"] = dict(clean_notebooks.KERNELSPEC)
    saved = lab.root / "reopen_demo.ipynb"
    nbformat.write(nb, saved)
    shots = {}
    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_notebook(page, lab.url, saved.name)
            page.evaluate("""async () => {
                const app = window.jupyterapp;
                app.shell.activateById('filebrowser');   // the file browser stays open
                await app.commands.execute('notebook:run-all-cells');
            }""")
            page.wait_for_function(
                "() => document.querySelectorAll('img.vaelab-explorer-image').length === 2"
                " && document.body.innerText.includes('40/40')",
                timeout=RENDER_TIMEOUT_S * 1000)
            page.wait_for_function(KERNEL_IDLE, timeout=RENDER_TIMEOUT_S * 1000)
            assert not page.evaluate("window.jupyterapp.shell.leftCollapsed")
            layout = page.evaluate(LAYOUT)
            live_readout = page.locator(".vaelab-readout").first.inner_text()
            shots["live"] = tmp_path / "live.png"
            page.screenshot(path=shots["live"])
            for i, explorer in enumerate(page.locator(".vaelab-explorer").all()):
                shots[f"live explorer {i + 1}"] = tmp_path / f"live_explorer_{i + 1}.png"
                explorer.screenshot(path=shots[f"live explorer {i + 1}"])
            assert visible_count(page, ".vaelab-live-note") == 0  # live: no note

            page.evaluate(f"""async () => {{
                await window.jupyterapp.commands.execute('docmanager:save');
                await {PANEL}.sessionContext.shutdown();
            }}""")
            page.reload()
            page.wait_for_function(KERNEL_IDLE, timeout=START_TIMEOUT_S * 1000)
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('.vaelab-live-note'))"
                ".filter(n => n.offsetParent !== null).length === 2",
                timeout=RENDER_TIMEOUT_S * 1000)
            reopened_text = page.evaluate(f"{PANEL}.content.node.innerText")
            reopened_images = visible_count(page, "img.vaelab-explorer-image")
            reopened_dirty = page.evaluate(f"{PANEL}.context.model.dirty")
            shots["reopened"] = tmp_path / "reopened.png"
            page.screenshot(path=shots["reopened"])

            stored = json.loads(saved.read_text())
            stored["metadata"].pop("language_info")  # the scrubber must write it back whole
            clean = lab.root / "reopen_clean.ipynb"
            clean.write_text(json.dumps(clean_notebooks.clean(stored), indent=1))
            open_notebook(page, lab.url, clean.name)
            page.wait_for_function(
                "() => document.querySelectorAll('img[alt=\"decoded image\"]').length === 2",
                timeout=RENDER_TIMEOUT_S * 1000)
            page.wait_for_timeout(1000)  # kernel info in, language_info compared
            clean_text = page.evaluate(f"{PANEL}.content.node.innerText")
            clean_dirty = page.evaluate(f"{PANEL}.context.model.dirty")
            shots["scrubbed"] = tmp_path / "scrubbed.png"
            page.screenshot(path=shots["scrubbed"])
        finally:
            browser.close()

    print("\nscreenshots: " + ", ".join(str(s) for s in shots.values()))
    print(f"layout: {layout}; reopened notebook modified: {reopened_dirty}; "
          f"{time.monotonic() - started:.1f} s in the browser")
    assert live_readout == start_code(), "the explorer does not start at the start code"
    for box in layout:  # nothing sticks out sideways at 1,400 px with the file browser open
        assert box["explorer"][0] <= box["explorer"][1], box
        assert box["output"][0] <= box["output"][1], box
        assert box["readout"][0] <= box["readout"][1] and box["readout_lines"] <= 2, box
    assert "widgets" in json.loads(saved.read_text())["metadata"], "widget state not saved"
    for text in (reopened_text, clean_text):
        assert not any(error in text for error in ERRORS), text[:2000]
    assert reopened_images == 2
    assert "100%" in reopened_text and "40/40" in reopened_text  # the bar's final line
    assert clean_text.count("Static picture: run this cell") == 2
    assert not clean_dirty, "the scrubbed notebook opened modified"
