"""Open a report in a real headless Chromium (Chrome DevTools protocol) and see what a person would see.

Used by the tests and by ``imagerank report --check``: it loads the file, waits for the load event, and returns
the console messages, uncaught exceptions, browser log errors, every network request the page made, a few facts
from the rendered DOM, and PNG screenshots. The DevTools websocket is driven with tornado's client (tornado
is a dependency of dask.distributed), so no extra package is needed; Chromium is Debian's ``chromium``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]
#: Facts read from the rendered page after load.
PROBE = """(() => {
  const imgs = Array.from(document.images);
  return {
    title: document.title,
    sections: Array.from(document.querySelectorAll('main section')).map(s => s.id),
    toc_links: document.querySelectorAll('nav.toc a').length,
    images: imgs.length,
    broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => (i.alt || '').slice(0, 80)),
    plots: document.querySelectorAll('img.plot').length,
    plots_rendered: Array.from(document.querySelectorAll('img.plot')).filter(i => i.naturalWidth > 100).length,
    body_height: document.documentElement.scrollHeight,
    body_width: document.documentElement.scrollWidth,
    viewport_width: window.innerWidth,
  };
})()"""

SECTION_BOXES = """Array.from(document.querySelectorAll('main section')).map(s => {
  const r = s.getBoundingClientRect();
  return {id: s.id, x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height};
})"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageCheck:
    url: str
    console: list[dict] = field(default_factory=list)  # console.* calls: {"type", "text"}
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)  # browser log entries of level error (failed loads, CSP)
    requests: list[str] = field(default_factory=list)  # every URL the page requested
    facts: dict = field(default_factory=dict)
    screenshots: dict[str, Path] = field(default_factory=dict)

    @property
    def console_errors(self) -> list[str]:
        return [m["text"] for m in self.console if m["type"] in ("error", "assert")] + self.exceptions + self.log_errors

    @property
    def network_requests(self) -> list[str]:
        """Requests that would need the network (anything but the file itself and data: URIs)."""
        return [u for u in self.requests if not u.startswith(("data:", "file:", "about:"))]


def check_page(path: str | Path, screenshot_dir: str | Path | None = None, *, width: int = 1360, height: int = 900,
               timeout: float = 60.0, chromium: str | None = None, sections: bool = False) -> PageCheck:
    """Load ``path`` in headless Chromium; collect errors and requests; write top and full-page screenshots."""
    chromium = chromium or find_chromium()
    if not chromium:
        raise FileNotFoundError("no chromium binary on PATH: run `make system-deps` in the imagerank repository "
                                "(or, on Debian, apt-get install -y chromium)")
    url = Path(path).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="imagerank-chromium-")
    process = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = _devtools_endpoint(process, profile, timeout)
        return asyncio.run(asyncio.wait_for(_drive(endpoint, url, screenshot_dir, width, height, sections), timeout))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_endpoint(process: subprocess.Popen, profile: str, timeout: float) -> str:
    """The browser's websocket URL, from its DevToolsActivePort file (or the 'DevTools listening' line)."""
    deadline = time.monotonic() + timeout
    port_file = Path(profile) / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}: {process.stderr.read()[-2000:]}")
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


class _Session:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []
        self.waiting: dict[int, asyncio.Future] = {}

    async def pump(self):
        while True:
            message = await self.ws.read_message()
            if message is None:
                return
            payload = json.loads(message)
            if "id" in payload and payload["id"] in self.waiting:
                self.waiting.pop(payload["id"]).set_result(payload)
            else:
                self.events.append(payload)

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self.ws.write_message(json.dumps(message))
        reply = await future
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def wait_for(self, method: str, since: int = 0, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events[since:]:
                if event.get("method") == method:
                    return event
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no {method} within {timeout} s")


async def _drive(endpoint: str, url: str, screenshot_dir, width: int, height: int, sections: bool) -> PageCheck:
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(endpoint, max_message_size=512 * 1024 * 1024)
    cdp = _Session(ws)
    pump = asyncio.ensure_future(cdp.pump())
    try:
        target = (await cdp.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        sid = (await cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            await cdp.send(f"{domain}.enable", session=sid)
        await cdp.send("Emulation.setDeviceMetricsOverride",
                       {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=sid)
        mark = len(cdp.events)
        await cdp.send("Page.navigate", {"url": url}, session=sid)
        await cdp.wait_for("Page.loadEventFired", since=mark, timeout=60)
        await asyncio.sleep(0.5)  # late console messages
        facts = (await cdp.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True},
                                session=sid))["result"].get("value", {})
        check = PageCheck(url=url, facts=facts)
        if screenshot_dir is not None:
            out = Path(screenshot_dir)
            out.mkdir(parents=True, exist_ok=True)
            shot = await cdp.send("Page.captureScreenshot", {"format": "png"}, session=sid)
            check.screenshots["top"] = _save(out / "report-top.png", shot["data"])
            full_height = min(int(facts.get("body_height") or height), 16000)
            shot = await cdp.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": full_height, "scale": 0.5}}, session=sid)
            check.screenshots["full"] = _save(out / "report-full.png", shot["data"])
            if sections:
                boxes = (await cdp.send("Runtime.evaluate", {"expression": SECTION_BOXES, "returnByValue": True},
                                        session=sid))["result"].get("value", [])
                for box in boxes:
                    shot = await cdp.send("Page.captureScreenshot", {
                        "format": "png", "captureBeyondViewport": True,
                        "clip": {"x": box["x"], "y": box["y"], "width": box["w"], "height": min(box["h"], 6000),
                                 "scale": 1}}, session=sid)
                    check.screenshots[box["id"]] = _save(out / f"section-{box['id']}.png", shot["data"])
        for event in cdp.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                check.console.append({"type": params.get("type"), "text": text})
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                check.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                if entry.get("level") == "error":
                    check.log_errors.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
            elif method == "Network.requestWillBeSent":
                check.requests.append(params.get("request", {}).get("url", ""))
        return check
    finally:
        pump.cancel()
        ws.close()


def _save(path: Path, data: str) -> Path:
    path.write_bytes(base64.b64decode(data))
    return path


def external_resource_urls(page: str) -> list[str]:
    """http(s)/protocol-relative URLs the markup would load as resources (src, link href, CSS url(), @import)."""
    found = re.findall(r"""\bsrc\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]+)""", page, flags=re.I)
    found += re.findall(r"""<link\b[^>]*\bhref\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]+)""", page, flags=re.I)
    found += re.findall(r"""url\(\s*["']?\s*((?:https?:)?//[^)"']+)""", page, flags=re.I)
    found += re.findall(r"""@import\s+["']((?:https?:)?//[^"']+)""", page, flags=re.I)
    return found


if __name__ == "__main__":  # python -m imagerank.reporting.browser REPORT.html [SCREENSHOT_DIR]
    import sys

    result = check_page(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.getcwd(), sections=True)
    print(json.dumps({"facts": result.facts, "console_errors": result.console_errors,
                      "network_requests": result.network_requests,
                      "screenshots": {k: str(v) for k, v in result.screenshots.items()}}, indent=2))
