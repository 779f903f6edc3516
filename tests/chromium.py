"""Headless Chromium for the tests, driven over the DevTools protocol (CDP) with ``websocket-client``.

Debian's ``chromium`` runs headless with a fresh profile and a DevTools port chosen
by the browser; :class:`Browser` opens one page, navigates, polls the rendered
text until what a test waits for is there (a watch with a timeout, no fixed
sleep), and takes PNG screenshots. The browser process is stopped on exit.

Use :func:`chromium_binary` to find the browser; the fixture that needs it skips
without one on a developer's machine and fails under CI (``CI`` set), as
``tests/integration/registry_fixture.py`` does for the registry.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import websocket

from tests.realparts import require_tool

CANDIDATES = ("chromium", "chromium-browser")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chromium_binary() -> str | None:
    """The path of Debian's chromium, if installed."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The chromium binary; skip the test without one (fail under CI)."""
    return require_tool(*CANDIDATES)


class BrowserError(RuntimeError):
    """The browser did not start, or a page did not show what was expected in time."""


class Browser:
    """One headless Chromium with one page, as a context manager."""

    def __init__(self, binary: str, width: int = 1280, height: int = 1600, timeout: float = 30) -> None:
        self.binary = binary
        self.width = width
        self.height = height
        self.timeout = timeout
        self.console: list[str] = []
        #: (status, method, URL) of every HTTP response the page received, in order.
        self.responses: list[tuple[int, str, str]] = []
        self._request_methods: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._profile = Path(tempfile.mkdtemp(prefix="fleet-sandbox-chromium-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._socket: websocket.WebSocket | None = None

    def __enter__(self) -> Browser:
        port = _free_port()
        argv = [
            self.binary,
            "--headless",
            "--no-sandbox",  # runs as root in CI
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={self._profile}",
            f"--window-size={self.width},{self.height}",
            "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={port}",
            "about:blank",
        ]
        self._log = (self._profile / "chromium.log").open("wb")
        self._process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            page = self._wait_for_page(port)
            self._socket = websocket.create_connection(
                page["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True
            )
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Network.enable")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_for_page(self, port: int) -> dict[str, Any]:
        """Poll the DevTools HTTP endpoint until the browser lists its page."""
        assert self._process is not None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:  # noqa: S310
                    pages = [t for t in json.load(response) if t.get("type") == "page"]
                if pages:
                    return dict(pages[0])
            except (OSError, ValueError):
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = (self._profile / "chromium.log").read_text(errors="replace")[-1500:]
                raise BrowserError(f"chromium did not open its DevTools port {port}: {log}")
            time.sleep(0.1)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._socket is not None:
            self._socket.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a CDP command and return its result (events received meanwhile are kept as console lines)."""
        assert self._socket is not None
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._record(message)

    def _record(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            self.console.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append(f"exception: {details.get('exception', {}).get('description', details.get('text'))}")
        elif method == "Network.requestWillBeSent":
            self._request_methods[params.get("requestId", "")] = params.get("request", {}).get("method", "")
        elif method == "Network.responseReceived":
            response = params.get("response", {})
            request_method = self._request_methods.pop(params.get("requestId", ""), "")
            self.responses.append((int(response.get("status", 0)), request_method, str(response.get("url", ""))))

    def navigate(self, url: str) -> None:
        """Open ``url`` in the page."""
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def pump(self) -> None:
        """Take in the events the page sent since the last command (console lines, responses)."""
        self.evaluate("0")

    def text(self) -> str:
        """The page's rendered text (``document.body.innerText``)."""
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def wait_for_text(self, *needles: str, timeout: float | None = None) -> str:
        """Poll the rendered text until it contains every needle; return it.

        Raises:
            BrowserError: Not all of them appeared within the timeout (the error names the missing ones).
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            text = self.text()
            missing = [needle for needle in needles if needle not in text]
            if not missing:
                return text
            if time.monotonic() > deadline:
                raise BrowserError(
                    f"page never showed {missing}; it shows: {' '.join(text.split())[:1500]}; "
                    f"console: {self.console[-10:]}"
                )
            time.sleep(0.25)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG of the page (the whole scrollable page by default)."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            metrics = self.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
            width = max(int(size.get("width", 0)), self.width)
            height = max(int(size.get("height", 0)), self.height)
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
