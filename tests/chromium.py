"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
no websocket library and no browser download, just Debian's chromium and two file descriptors.

`open_page` loads a file, records every console message, exception and network request, and
returns them with whatever a JavaScript expression evaluated to and a PNG screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def chromium_binary() -> str:
    """Chromium's path; installs it (scripts/setup-chromium) when missing, skips if it cannot."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return str(shutil.which(name))
    setup = subprocess.run([str(ROOT / "scripts/setup-chromium")], capture_output=True, text=True)
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip(f"headless Chromium could not be installed: {setup.stderr.strip()[-300:]}")
    return found


@dataclass
class PageVisit:
    console: list[dict[str, Any]] = field(default_factory=list)  # Runtime.consoleAPICalled / Log entries
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    value: Any = None
    screenshot: bytes = b""
    scroll_width: int = 0

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [c for c in self.console if c.get("level") in ("error", "warning")] + self.exceptions


class Browser:
    def __init__(self, binary: str, profile: Path) -> None:
        read_end, self._out = os.pipe()  # chromium reads commands on fd 3
        self._in, write_end = os.pipe()  # and writes replies and events on fd 4
        to_child, from_child = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (read_end, write_end))
        os.close(read_end)
        os.close(write_end)
        # chromium wants the pipes as fds 3 and 4; bash moves them there (from fds above 9, so
        # nothing collides) and closes the originals
        move = f'exec "$0" "$@" 3<&{to_child} 4>&{from_child} {to_child}<&- {from_child}>&-'
        self.proc = subprocess.Popen(
            [
                "bash",
                "-c",
                move,
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
            ],
            pass_fds=(to_child, from_child),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._next = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(30)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while time.monotonic() < deadline:
            event = self._read(deadline - time.monotonic())
            self.events.append(event)
            if event.get("method") == method:
                return event
        raise TimeoutError(f"Chromium sent no {method}")

    def _read(self, timeout: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], max(timeout, 0.1))
            if not ready:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(message))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)


def open_page(path: Path, expression: str, profile: Path, width: int = 390, height: int = 844) -> PageVisit:
    """Load `path` in a phone-sized viewport; evaluate `expression` (must return JSON-able)."""
    browser = Browser(chromium_binary(), profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
            session,
        )
        browser.events.clear()
        browser.send("Page.navigate", {"url": path.resolve().as_uri()}, session)
        browser.wait_for("Page.loadEventFired")
        visit = PageVisit()
        visit.value = _evaluate(browser, session, expression)
        visit.scroll_width = int(_evaluate(browser, session, "document.documentElement.scrollWidth"))
        shot = browser.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session
        )
        visit.screenshot = base64.b64decode(shot["data"])
        _record(browser.events, visit)
        return visit
    finally:
        browser.close()


def _evaluate(browser: Browser, session: str, expression: str) -> Any:
    result = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
    if "exceptionDetails" in result:
        raise RuntimeError(f"{expression!r} raised {result['exceptionDetails']}")
    return result["result"].get("value")


def _record(events: list[dict[str, Any]], visit: PageVisit) -> None:
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            visit.console.append({"level": params.get("type"), "args": params.get("args")})
        elif method == "Log.entryAdded":
            visit.console.append({"level": params["entry"].get("level"), "text": params["entry"].get("text")})
        elif method == "Runtime.exceptionThrown":
            visit.exceptions.append(params)
        elif method == "Network.requestWillBeSent":
            visit.requests.append(params["request"]["url"])
