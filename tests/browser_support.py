"""Open a page in a real headless Chromium and report what it did: console errors, every request, a screenshot.

Chromium is driven through its DevTools protocol over `--remote-debugging-pipe` (NUL-terminated JSON on
file descriptors 3 and 4): no port to pick or race for, no websocket client to install, and the network
log (Network.requestWillBeSent) is the browser's own account of every request the page made. Playwright
would need its own browser download; `--dump-dom` and verbose logging do not list requests reliably.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageVisit:
    requests: list[str] = field(default_factory=list)  # every URL the page asked for (its own file first)
    console_errors: list[str] = field(default_factory=list)  # console.error, exceptions, CSP and load errors
    screenshot: bytes = b""  # PNG of the viewport
    full_page: bytes = b""  # PNG of the whole page
    title: str = ""


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed its pipe (exit {self.proc.poll()})")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30):
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event


def visit(page: Path, *, width: int = 1280, height: int = 900, chromium: str | None = None) -> PageVisit:
    """Load `page` (a local file) in headless Chromium at width x height; what it requested and showed."""
    binary = chromium or find_chromium()
    if binary is None:
        raise RuntimeError("no chromium on PATH")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="mlperf-bert-chromium-") as profile:

        def fds() -> None:  # in the child: its fd 3 reads our messages, its fd 4 writes its answers
            read, write = os.dup(to_browser_r), os.dup(from_browser_w)  # away from 3 and 4 first
            os.dup2(read, 3)  # dup2's copies are inheritable; the pipes' own ends are not
            os.dup2(write, 4)

        proc = subprocess.Popen(
            [binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=fds,
            close_fds=False,  # keep 3 and 4 (closing happens after preexec_fn); other fds are non-inheritable
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        pipe = _Pipe(proc, to_browser_w, from_browser_r)
        try:
            return _load(pipe, page, width, height)
        finally:
            try:
                pipe.call("Browser.close", timeout=5)
            except (RuntimeError, TimeoutError, OSError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(to_browser_w)
            os.close(from_browser_r)


def _load(pipe: _Pipe, page: Path, width: int, height: int) -> PageVisit:
    target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Network", "Runtime", "Log"):
        pipe.call(f"{domain}.enable", session=session)
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    pipe.events.clear()
    pipe.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    pipe.wait_for("Page.loadEventFired", timeout=60)
    time.sleep(0.5)  # late console messages or requests (none expected)
    pipe.call("Runtime.evaluate", {"expression": "1"}, session=session)  # flushes pending events into the log
    visit = PageVisit()
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            visit.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            visit.console_errors.append(f"load failed: {params.get('errorText')} {params.get('blockedReason', '')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            visit.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            visit.console_errors.append(str(params["exceptionDetails"].get("text")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            visit.console_errors.append(f"{params['entry'].get('source')}: {params['entry'].get('text')}")
    visit.title = pipe.call("Runtime.evaluate", {"expression": "document.title"}, session=session)["result"]["value"]
    shot = pipe.call("Page.captureScreenshot", {"format": "png"}, session=session)
    visit.screenshot = base64.b64decode(shot["data"])
    size = pipe.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
    full = pipe.call(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(size["height"], 16000), "scale": 1},
        },
        session=session,
    )
    visit.full_page = base64.b64decode(full["data"])
    return visit
