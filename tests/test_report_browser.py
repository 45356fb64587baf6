"""The report in a real browser: headless Chromium opens it offline, with zero console errors and every
figure drawn. Skipped when Chromium is not installed (Debian: ``apt-get install chromium``).

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: fd 3 in,
fd 4 out, NUL-terminated JSON), so no extra Python package is needed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from study.analyze import main as analyze_main
from tests.test_analysis_helpers import write_study

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-extensions",
         # parcoords is WebGL; without a GPU Chromium needs this opt-in to its software renderer
         "--enable-unsafe-swiftshader", "--remote-debugging-pipe", "about:blank"]
# Counts the figures and those plotly has drawn: an SVG layer, and for WebGL traces a canvas.
PROBE = """(() => {
  const divs = [...document.querySelectorAll('.plotly-graph-div')];
  const drawn = divs.filter(d => d.querySelector('.main-svg') && d._fullLayout &&
    (!d.querySelector('.parcoords') || d.querySelector('canvas')));
  return JSON.stringify({ready: document.readyState === 'complete' && location.protocol === 'file:',
                         figures: divs.length, drawn: drawn.length, plotly: typeof Plotly,
                         height: document.documentElement.scrollHeight});
})()"""


class Browser:
    """A minimal DevTools-protocol client for one headless Chromium page."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()

        def wire_fds() -> None:  # in the child: the protocol's fixed descriptors
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={profile}"], preexec_fn=wire_fds,
                                     pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self.events: list[dict[str, Any]] = []
        self._replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                (self._replies.put(message) if "id" in message else self.events.append(message))

    def call(self, method: str, session: bool = False, timeout: float = 60, **params: Any) -> dict[str, Any]:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._replies.get(timeout=max(0.1, deadline - time.monotonic()))
            if reply["id"] == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, session=True, **params)

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls and browser log entries at level error."""
        out = []
        for e in list(self.events):
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                details = p.get("exceptionDetails", {})
                out.append(f"{details.get('text', '')} {details.get('exception', {}).get('description', '')}")
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"{p['entry'].get('source')}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the browser may already be gone
            self.call("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)


def open_report(path: Path, profile: Path, screenshot: Path | None = None, width: int = 1400) -> dict[str, Any]:
    """Load ``path`` and wait until plotly has drawn every figure (or 60 s); returns the probe's counts,
    the console errors, and (optionally) writes a full-page screenshot."""
    executable = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    browser = Browser(executable, profile)
    try:
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            browser.page(domain)
        browser.page("Emulation.setDeviceMetricsOverride", width=width, height=1000, deviceScaleFactor=1,
                     mobile=False)
        browser.page("Page.navigate", url=path.resolve().as_uri())
        deadline, state = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            result = browser.page("Runtime.evaluate", expression=PROBE, returnByValue=True)["result"]
            state = json.loads(result.get("value", "{}")) if result.get("type") == "string" else {}
            if state.get("ready") and state.get("drawn") == state.get("figures"):
                break
            time.sleep(0.25)
        time.sleep(0.5)  # let late errors (async WebGL setup) arrive
        if screenshot is not None:
            shot = browser.page("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                clip={"x": 0, "y": 0, "width": width, "height": state.get("height", 1000),
                                      "scale": 1})
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        return {**state, "errors": browser.errors()}
    finally:
        browser.close()


def test_report_opens_offline_with_every_figure_drawn_and_no_console_error(tmp_path):
    study = write_study(tmp_path / "s")
    assert analyze_main([str(study)]) == 0
    html = (study / "report.html").read_text()
    expected = html.count('class="plotly-graph-div"')
    state = open_report(study / "report.html", tmp_path / "profile", screenshot=tmp_path / "report.png")
    assert state["plotly"] == "object"
    assert state["figures"] == expected == 7  # headline, pareto, balance, curves, parallel, slices, importance
    assert state["drawn"] == state["figures"], state
    assert state["errors"] == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_browser_reports_a_console_error(tmp_path):
    """The check itself: a page that throws must be caught (a silent checker would pass anything)."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom'); undefined_function();</script></body></html>")
    state = open_report(page, tmp_path / "profile")
    assert any("boom" in e for e in state["errors"]) and any("undefined_function" in e for e in state["errors"])


def test_report_of_a_small_real_study(ray_cluster, tmp_path):
    """study.run (three methods of the compare space, two epochs) -> study.analyze -> Chromium."""
    from study.run import main as run_main
    from tests.conftest import TINY

    assert run_main(["--storage", str(tmp_path), "--name", "real", "--space", "compare", "--samples", "3",
                     "--methods", "shared/equal,shared/static,shared/gradnorm",
                     "--epochs", "2", *TINY]) == 0
    assert analyze_main([str(tmp_path / "real")]) == 0
    page = (tmp_path / "real" / "report.html").read_text()
    for method in ("shared/equal", "shared/static", "shared/gradnorm"):
        assert method in page
    assert "No finished dual trial" not in page  # --methods ran three shared methods only: no note on dual
    assert "shared/gradnorm has 1." in page  # its importance is read from its own Optuna study in optuna.db
    state = open_report(tmp_path / "real" / "report.html", tmp_path / "profile")
    assert state["figures"] == page.count('class="plotly-graph-div"') >= 5
    assert state["drawn"] == state["figures"] and state["errors"] == []
