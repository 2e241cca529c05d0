"""The latent explorer in a real JupyterLab, driven by headless Chromium (playwright).

Starts JupyterLab on a free localhost port with throwaway settings, opens
``tests/browser/explorer_demo.ipynb``, runs all cells, moves the z₁ slider with the keyboard and
waits until the kernel's callback has sent back a new image. Screenshots before and after land
in pytest's ``tmp_path`` (their paths are printed; ``pytest -s`` shows them).

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

import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).parent / "browser" / "explorer_demo.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 90      # server up, page loaded, kernel idle: generous for a busy 2-core CI box
RENDER_TIMEOUT_S = 120    # all cells run and the widget drawn
UPDATE_TIMEOUT_S = 30     # the kernel's answer to a slider move
PRESSES = 10              # ArrowRight presses: z₁ moves by 10 slider steps (0.1)


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
