"""The fleet repository over smart HTTP on loopback: a small WSGI host around ``git http-backend``.

Flux's source-controller fetches a GitRepository over ``http(s)://`` or ``ssh://`` only, so a local cluster
needs a git server. This one implements no git protocol itself: every request is handed to git's own CGI
program, ``git http-backend`` (run per request, the request body on its stdin, its CGI response parsed back),
behind :mod:`wsgiref`'s server in a background thread, bound to 127.0.0.1 only.

::

    with GitHttpServer(root) as server:       # root holds bare repositories, e.g. root/fleet.git
        url = server.url("fleet.git")         # http://127.0.0.1:<free port>/fleet.git

* Reads are open by default; with ``token`` every request needs HTTP basic auth with that password (any user
  name), which is what the product's ``flux-system`` secret carries for an http(s) fleet URL.
* Pushes over HTTP are refused unless ``allow_push`` (tests and the demo push to the bare repository's path).
* ``port=0`` (the default) binds a free port; a fixed port (e.g.
  :data:`sandbox.localcluster.endpoints.LOCAL_FLEET_PORT`, where the example's ``local`` environment expects
  the fleet repository) is bound or
  fails with :class:`~sandbox.localcluster.errors.PortsExhaustedError`.

``python -m sandbox.localcluster git-serve --root R [--port P]`` runs one in the foreground until SIGTERM.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import shutil
import socketserver
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from sandbox.errors import SandboxError, ToolNotFoundError
from sandbox.localcluster.errors import PortsExhaustedError
from sandbox.localcluster.ports import LOOPBACK
from sandbox.localcluster.processes import run_binary

#: Longest a single ``git http-backend`` run may take (a fetch of a big fleet repository on a loaded machine).
CGI_TIMEOUT_SECONDS = 300.0
_MAX_BODY_BYTES = 512 * 1024 * 1024

StartResponse = Callable[..., Any]


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # A restarted server must get its fixed port back even with connections in TIME_WAIT.
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    """Request handler that keeps an access log in memory instead of printing to stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log = getattr(self.server, "access_log", None)
        if log is not None:
            log.append(format % args)


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body: ``Content-Length`` bytes, or a ``Transfer-Encoding: chunked`` body decoded.

    (git sends large pushes chunked; :mod:`wsgiref` hands the raw stream over.)
    """
    stream = environ["wsgi.input"]
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = stream.readline(1024)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                while stream.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY_BYTES:
                raise ValueError("request body too large")
            chunks.append(stream.read(size))
            stream.readline(8)  # the CRLF after each chunk
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > _MAX_BODY_BYTES:
        raise ValueError("request body too large")
    return bytes(stream.read(length)) if length > 0 else b""


def parse_cgi_response(output: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Split a CGI program's output into ``(status line, headers, body)`` (``200 OK`` without a Status header)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = output.partition(separator)
        if found:
            break
    else:
        head, body = output, b""
    status = "200 OK"
    headers: list[tuple[str, str]] = []
    for raw in head.replace(b"\r\n", b"\n").split(b"\n"):
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            continue
        if name.strip().lower() == "status":
            status = value.strip()
        else:
            headers.append((name.strip(), value.strip()))
    return status, headers, body


class GitHttpServer:
    """Serves the bare repositories under ``root`` over smart HTTP on 127.0.0.1.

    Args:
        root: Directory holding the bare repositories (``GIT_PROJECT_ROOT``); every one is exported.
        port: Port to bind; 0 picks a free one.
        token: When set, the password every request must present (HTTP basic auth).
        allow_push: Accept ``git push`` over HTTP (``receive-pack``).
        git: The git executable.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        port: int = 0,
        token: str | None = None,
        allow_push: bool = False,
        git: str = "git",
    ) -> None:
        self.root = Path(root).absolute()
        self._requested_port = port
        self._token = token
        self._allow_push = allow_push
        self._git = git
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.access_log: deque[str] = deque(maxlen=200)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> GitHttpServer:
        """Bind and serve in a background thread; returns ``self``.

        Raises:
            ToolNotFoundError: git is not installed.
            PortsExhaustedError: The fixed port is taken.
        """
        if self._server is not None:
            return self
        if shutil.which(self._git) is None:
            raise ToolNotFoundError(f"{self._git} is not installed (git http-backend serves the repositories)")
        try:
            server = _Server((LOOPBACK, self._requested_port), _QuietHandler)
        except OSError as exc:
            raise PortsExhaustedError(f"cannot serve git on {LOOPBACK}:{self._requested_port}: {exc}") from exc
        server.set_app(self._app)
        server.access_log = self.access_log  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="git-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only while serving)."""
        if self._server is None:
            raise SandboxError("the git server is not running")
        return int(self._server.server_address[1])

    def url(self, repository: str) -> str:
        """``http://127.0.0.1:<port>/<repository>``."""
        return f"http://{LOOPBACK}:{self.port}/{repository.strip('/')}"

    # -- the WSGI application --------------------------------------------------

    def _authorized(self, environ: dict[str, Any]) -> tuple[bool, str]:
        if self._token is None:
            return True, ""
        header = str(environ.get("HTTP_AUTHORIZATION") or "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False, ""
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False, ""
        return hmac.compare_digest(password.encode(), self._token.encode()), user

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        ok, user = self._authorized(environ)
        if not ok:
            start_response(
                "401 Unauthorized", [("WWW-Authenticate", 'Basic realm="fleet-sandbox git"'), ("Content-Length", "0")]
            )
            return [b""]
        service = str(environ.get("QUERY_STRING") or "")
        path = str(environ.get("PATH_INFO") or "")
        if not self._allow_push and ("git-receive-pack" in service or path.endswith("/git-receive-pack")):
            message = b"pushes are not accepted here\n"
            start_response("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", str(len(message)))])
            return [message]
        try:
            body = _read_body(environ)
        except ValueError as exc:
            message = f"{exc}\n".encode()
            start_response("400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", str(len(message)))])
            return [message]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": str(environ.get("SERVER_PROTOCOL") or "HTTP/1.1"),
            "REQUEST_METHOD": str(environ.get("REQUEST_METHOD") or "GET"),
            "PATH_INFO": path,
            "QUERY_STRING": service,
            "CONTENT_TYPE": str(environ.get("CONTENT_TYPE") or ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": str(environ.get("REMOTE_ADDR") or LOOPBACK),
        }
        if user or self._allow_push:
            # http-backend accepts receive-pack only from an authenticated user (or with http.receivepack).
            env["REMOTE_USER"] = user or "fleet-sandbox"
        if environ.get("HTTP_GIT_PROTOCOL"):
            env["GIT_PROTOCOL"] = str(environ["HTTP_GIT_PROTOCOL"])  # protocol v2 negotiation
        if environ.get("HTTP_CONTENT_ENCODING"):
            env["HTTP_CONTENT_ENCODING"] = str(environ["HTTP_CONTENT_ENCODING"])  # gzip request bodies
        try:
            code, output, errors = run_binary(
                [self._git, "http-backend"], cwd=self.root, env=env, stdin=body, timeout=CGI_TIMEOUT_SECONDS
            )
        except SandboxError as exc:
            message = f"git http-backend failed: {exc}\n".encode()
            start_response("502 Bad Gateway", [("Content-Type", "text/plain"), ("Content-Length", str(len(message)))])
            return [message]
        status, headers, payload = parse_cgi_response(output)
        if code != 0 and not output:
            status, headers = "500 Internal Server Error", [("Content-Type", "text/plain")]
            payload = errors[-2000:]
        headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        headers.append(("Content-Length", str(len(payload))))
        start_response(status, headers)
        return [payload]
