"""Headless Chromium driven over the DevTools protocol: open a page of MLflow's single-page app,
wait until it shows what it should, time that, read the DOM, take a screenshot.

``chromium --screenshot`` waits a fixed (virtual) time and cannot tell a page that rendered from
one still loading, click a button, nor close what MLflow shows on a first visit only (its
Assistant panel, a third of the width; a "Detect Issues" tip; a user closes each once, and
MLflow remembers). Here each page is awaited on a condition, so the screenshot shows the finished
page and the time it took is measured.

The DevTools websocket client is aiohttp's (MLflow depends on it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--hide-scrollbars")

# MLflow's own localStorage flags (its useLocalStorage key + "_v1"): what it shows on a first
# visit only has been shown (the Assistant panel that opens itself, the Traces page's "Detect
# Issues" tip), so a page looks as it does for a user who closed them once.
FIRST_VISIT_SEEN = (("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true"),
                    ("mlflow.detectIssues.guidanceShown_v1", "true"))


class PageTimeout(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one tab, ``width`` x ``height`` CSS pixels."""

    def __init__(self, chromium: str, width: int = 1920, height: int = 1080):
        self.chromium, self.width, self.height = chromium, width, height
        self._next_id = 0

    async def __aenter__(self) -> Browser:
        import aiohttp

        self._profile = tempfile.mkdtemp(prefix="inspect-otel-chromium-")
        self._proc = subprocess.Popen(
            [self.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}",
             "--remote-debugging-port=0", f"--window-size={self.width},{self.height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            await asyncio.sleep(0.05)
        port = port_file.read_text().split()[0]
        self._http = aiohttp.ClientSession()
        async with self._http.get(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        self._ws = await self._http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=self.width,
                        height=self.height, deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._ws.close()
            await self._http.close()
        finally:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            shutil.rmtree(self._profile, ignore_errors=True)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        mid = self._next_id
        await self._ws.send_str(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads((await self._ws.receive()).data)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                            awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:80]}: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    async def open(self, url: str, ready: str, timeout: float = 90.0, settle: float = 1.0) -> float:
        """Load ``url`` afresh and wait until the JS expression ``ready`` is true; the seconds
        that took (from the navigation). ``settle``: then wait that long for late layout.

        Every page is a new document load, as when a link is opened: MLflow's pages read some
        URL parameters only when they mount (a hash change within the app is not the same)."""
        await self.send("Page.navigate", url="about:blank")
        start = time.monotonic()
        await self.send("Page.navigate", url=url)
        while True:
            try:
                if await self.evaluate(ready):
                    break
            except RuntimeError:
                pass  # the page is being replaced
            if time.monotonic() - start > timeout:
                raise PageTimeout(f"{url}: not ready after {timeout:.0f}s ({ready})")
            await asyncio.sleep(0.05)
        took = time.monotonic() - start
        await asyncio.sleep(settle)
        return took

    async def skip_first_visit(self, origin: str) -> None:
        """Pages of ``origin`` as for a returning user (see FIRST_VISIT_SEEN)."""
        await self.open(origin + "/", "document.readyState === 'complete'", settle=0)
        for key, value in FIRST_VISIT_SEEN:
            await self.evaluate(f"localStorage.setItem({json.dumps(key)}, {json.dumps(value)})")

    async def wait(self, ready: str, timeout: float = 60.0) -> float:
        """Wait until the JS expression ``ready`` is true; the seconds that took."""
        start = time.monotonic()
        while not await self.evaluate(ready):
            if time.monotonic() - start > timeout:
                raise PageTimeout(f"not ready after {timeout:.0f}s ({ready})")
            await asyncio.sleep(0.05)
        return time.monotonic() - start

    async def screenshot(self, path: Path) -> None:
        r = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(r["data"]))


def text_visible(*texts: str) -> str:
    """A ``ready`` expression: every one of ``texts`` is in the page's visible text."""
    return " && ".join(f"document.body.innerText.includes({json.dumps(t)})" for t in texts)


def click(component_id: str) -> str:
    """JS: click the element with MLflow's ``data-component-id``."""
    return f"document.querySelector('[data-component-id={json.dumps(component_id)}]').click()"


def choose(option: str) -> str:
    """JS: click the option with that text in the open list."""
    return (f"[...document.querySelectorAll('[role=option]')]"
            f".find(o => o.innerText.trim() === {json.dumps(option)}).click()")


def fill(component_id: str, value: str) -> str:
    """JS: type ``value`` into the input with that ``data-component-id`` (as React sees typing)."""
    return ("(() => { const el = document.querySelector('[data-component-id="
            f"{json.dumps(component_id)}]'); el.focus(); Object.getOwnPropertyDescriptor("
            "HTMLInputElement.prototype, 'value').set.call(el, " + json.dumps(value) + "); "
            "el.dispatchEvent(new Event('input', {bubbles: true})); })()")


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or \
        os.environ.get("CHROMIUM")
