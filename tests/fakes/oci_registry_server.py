"""A fake OCI registry over HTTP, for checking what the registry driver uploads without a registry.

A threaded :mod:`http.server` on ``127.0.0.1`` (a free port), plain HTTP, no authentication, serving the subset
of the OCI distribution API the driver's push and read paths use, with the checks a real registry
(distribution's ``docker-registry``) makes:

* ``GET /v2/``;
* ``POST /v2/<repo>/blobs/uploads/`` (``202`` and a relative ``Location``), then
  ``PUT <location>?digest=<digest>`` with the blob: refused (``400 DIGEST_INVALID``) when the bytes do not
  hash to the digest;
* ``HEAD``/``GET /v2/<repo>/blobs/<digest>``;
* ``PUT /v2/<repo>/manifests/<tag>``: refused (``400 MANIFEST_BLOB_UNKNOWN``) when a blob it names was not
  uploaded to that repository; ``201`` with ``Docker-Content-Digest``;
* ``HEAD``/``GET /v2/<repo>/manifests/<tag or digest>``, ``GET /v2/<repo>/tags/list``.

Every request is recorded (:attr:`FakeOciRegistry.requests`: method and path).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_ROUTE = re.compile(
    r"/v2/(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)/"
    r"(?:blobs/uploads/(?P<upload>[0-9]*)|blobs/(?P<blob>sha256:[0-9a-f]{64})|manifests/(?P<ref>[^/]+)|tags/list)"
)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeOciRegistry:
    """What the fake holds: blobs and manifests per repository, and every request it got."""

    blobs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    manifests: dict[str, dict[str, bytes]] = field(default_factory=dict)
    media_types: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def manifest(self, repository: str, reference: str) -> dict[str, Any]:
        """A stored manifest, parsed."""
        return dict(json.loads(self.manifests[repository][reference]))


class _Server(ThreadingHTTPServer):
    state: FakeOciRegistry
    lock: threading.Lock
    uploads: itertools.count[int]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": code.lower().replace("_", " ")}]}).encode()
        self._answer(status, body, {"Content-Type": "application/json"})

    def _route(self) -> tuple[re.Match[str] | None, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        self.server.state.requests.append((self.command, parts.path))
        return _ROUTE.fullmatch(parts.path), parse_qs(parts.query)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if urlsplit(self.path).path == "/v2/":
            self.server.state.requests.append((self.command, "/v2/"))
            self._answer(200, b"{}", {"Content-Type": "application/json"})
            return
        route, _ = self._route()
        state = self.server.state
        if route is None:
            self._error(404, "NOT_FOUND")
            return
        repo = route["repo"]
        if route["blob"]:
            blob = state.blobs.get(repo, {}).get(route["blob"])
            if blob is None:
                self._error(404, "BLOB_UNKNOWN")
            else:
                self._answer(200, blob, {"Docker-Content-Digest": route["blob"]})
        elif route["ref"]:
            manifest = state.manifests.get(repo, {}).get(route["ref"])
            if manifest is None:
                self._error(404, "MANIFEST_UNKNOWN")
            else:
                media_type = state.media_types[_sha256(manifest)]
                self._answer(200, manifest, {"Docker-Content-Digest": _sha256(manifest), "Content-Type": media_type})
        elif repo in state.manifests:  # tags/list
            tags = [ref for ref in state.manifests[repo] if not ref.startswith("sha256:")]
            self._answer(200, json.dumps({"name": repo, "tags": tags}).encode(), {"Content-Type": "application/json"})
        else:
            self._error(404, "NAME_UNKNOWN")

    do_HEAD = do_GET  # noqa: N815 - http.server's name; _answer sends no body for HEAD

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        route, _ = self._route()
        if route is None or route["upload"] is None or route["upload"]:
            self._error(404, "NOT_FOUND")
            return
        self._body()
        location = f"/v2/{route['repo']}/blobs/uploads/{next(self.server.uploads)}"
        self._answer(202, b"", {"Location": location})

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        route, query = self._route()
        body = self._body()
        state = self.server.state
        if route is None:
            self._error(404, "NOT_FOUND")
            return
        repo = route["repo"]
        if route["upload"]:
            digest = (query.get("digest") or [""])[0]
            if _sha256(body) != digest:
                self._error(400, "DIGEST_INVALID")
                return
            with self.server.lock:
                state.blobs.setdefault(repo, {})[digest] = body
            self._answer(201, b"", {"Docker-Content-Digest": digest, "Location": f"/v2/{repo}/blobs/{digest}"})
        elif route["ref"]:
            try:
                manifest = json.loads(body)
                named = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
            except (ValueError, KeyError, TypeError):
                self._error(400, "MANIFEST_INVALID")
                return
            if any(digest not in state.blobs.get(repo, {}) for digest in named):
                self._error(400, "MANIFEST_BLOB_UNKNOWN")
                return
            digest = _sha256(body)
            with self.server.lock:
                state.media_types[digest] = self.headers.get("Content-Type") or ""
                stored = state.manifests.setdefault(repo, {})
                stored[route["ref"]] = stored[digest] = body
            self._answer(201, b"", {"Docker-Content-Digest": digest})
        else:
            self._error(404, "NOT_FOUND")


@contextmanager
def fake_oci_registry() -> Iterator[FakeOciRegistry]:
    """A fake registry serving on a free loopback port until the block ends."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = FakeOciRegistry(port=int(server.server_address[1]))
    server.lock = threading.Lock()
    server.uploads = itertools.count(1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
