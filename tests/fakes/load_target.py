"""A loopback HTTP server for load tests, whose slowness a test can change while it runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: TargetServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        with self.server.lock:
            self.server.requests += 1
            self.server.paths.add(self.path)
        if self.server.delay_seconds:
            time.sleep(self.server.delay_seconds)  # the service time being measured
        status = 500 if self.path.startswith("/fail") else 200
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base class name
        return


class TargetServer(ThreadingHTTPServer):
    """The server; set :attr:`delay_seconds` to inject a slowdown."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay_seconds = 0.0
        self.requests = 0
        self.paths: set[str] = set()
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet when a load generator drops its connections as it stops."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/``."""
        return f"http://127.0.0.1:{self.server_address[1]}/"


@contextmanager
def running_target(delay_seconds: float = 0.0) -> Iterator[TargetServer]:
    """Serve on a free loopback port until the block ends."""
    server = TargetServer()
    server.delay_seconds = delay_seconds
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
