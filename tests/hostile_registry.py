"""A hostile OCI registry on loopback: answers 401 naming whatever token realm a test sets.

Used by tests/unit/test_registry_realm.py and tests/integration/test_hostile_input.py
(issue 17 item 4). It is the attacker, so a few lines of ``http.server`` rather than
a real registry; it records every request it gets (path, ``Authorization`` header).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Recorder(ThreadingHTTPServer):
    realm: str = ""
    seen: list[tuple[str, str]]


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        auth = self.headers.get("Authorization") or ""
        self.server.seen.append((self.path, auth))
        if self.path.startswith("/token"):
            self._answer(200, {"token": "granted-token"})
        elif auth == "Bearer granted-token" and self.path.startswith("/v2/fleet/platform/tags/list"):
            self._answer(200, {"name": "fleet/platform", "tags": ["1.0.0"]})
        else:
            challenge = f'Bearer realm="{self.server.realm}",service="registry",scope="repository:fleet/platform:pull"'
            self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]}, {"Www-Authenticate": challenge})


@contextmanager
def hostile_servers() -> Iterator[tuple[Recorder, Recorder]]:
    """A registry and a token server elsewhere (another port), both recording every request."""
    made = []
    for _ in range(2):
        server = Recorder(("127.0.0.1", 0), _Handler)
        server.seen = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        made.append(server)
    try:
        yield made[0], made[1]
    finally:
        for server in made:
            server.shutdown()
            server.server_close()
