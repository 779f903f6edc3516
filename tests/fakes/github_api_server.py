"""A fake GitHub REST API over HTTP, for checking what the GitHub hosting driver sends.

The product opens pull requests through :class:`~sandbox.drivers.git_hosting.GitHubHosting`;
no GitHub is reachable from the machines this project is built on, so the
driver (and the whole promotion, through the CLI) is checked against this
stand-in. It is a threaded :mod:`http.server` on ``127.0.0.1`` (a free port)
serving the subset the driver uses, shaped as GitHub answers:

* ``GET /repos/{owner}/{repo}/pulls`` with ``state``, ``head`` (``owner:branch``)
  and ``base`` filters, newest first;
* ``POST /repos/{owner}/{repo}/pulls`` (``title``, ``head``, ``base``, ``body``):
  ``201`` with the pull request; ``422 Validation Failed`` when an open pull
  request for the same head and base exists, when ``head`` or ``base`` is not
  a branch of the linked git remote, or when there are no commits between them;
* ``GET /repos/{owner}/{repo}/pulls/{number}``: the pull request or ``404``.

Every request needs ``Authorization: Bearer <token>`` (or ``token <token>``):
a wrong token gets ``401 Bad credentials``, none gets ``404 Not Found`` (as
GitHub answers for a private repository). Every request is recorded
(:attr:`GitHubApiServer.requests`) with its method, path, query, headers and
body. :meth:`GitHubApiServer.merge` marks a pull request merged (what a
reviewer's merge button does) and :meth:`GitHubApiServer.fail` makes the next
requests fail with a status, for retry tests.

With ``remote`` (a local bare repository), branches and commits are read from
it with git, so ``head.sha`` is the branch's real tip and unknown branches are
refused as GitHub refuses them.

With ``echo_authorization``, every 4xx/5xx answer's ``message`` quotes the
request's ``Authorization`` header, as a misbehaving proxy or an API gateway's
debug mode does: the client must never repeat such a body unredacted.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

#: A recognisable fake token: tests assert it never shows up in output, logs or files.
FAKE_GITHUB_TOKEN = "ghp_fakeTokenForTests0123456789abcdefDoNotLeak"

DOCS = "https://docs.github.com/rest/pulls/pulls"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as sent.

    Attributes:
        method: HTTP method, upper case.
        path: URL path without the query, percent-decoded.
        query: Query parameters (first value of each name).
        headers: Request headers with lower-cased names.
        body: The raw request body.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body else None


@dataclass
class _Failure:
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)


class _HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(remote: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "--git-dir", str(remote), *args], capture_output=True, text=True, check=False, timeout=30
    )


class GitHubApiServer:
    """The fake GitHub API (see the module docstring).

    Args:
        owner: The repository owner.
        repo: The repository name.
        token: The token every request must carry.
        remote: A local bare repository standing in for the repository's git data.
        login: The user the token belongs to.
        echo_authorization: Quote the request's Authorization header in every error's message.
    """

    def __init__(
        self,
        owner: str = "example-org",
        repo: str = "fleet-infra",
        *,
        token: str = FAKE_GITHUB_TOKEN,
        remote: Path | None = None,
        login: str = "fleet-bot",
        echo_authorization: bool = False,
    ) -> None:
        self.owner = owner
        self.echo_authorization = echo_authorization
        self.repo = repo
        self.token = token
        self.remote = remote
        self.login = login
        self.requests: list[RecordedRequest] = []
        self.pulls: dict[int, dict[str, Any]] = {}
        self._numbers = itertools.count(1)
        self._ids = itertools.count(1_000_001)
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._hidden: dict[int, int] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> GitHubApiServer:
        """Listen on a free loopback port in a background thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                return None

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

            def do_PATCH(self) -> None:
                server._handle(self, "PATCH")

            def do_PUT(self) -> None:
                server._handle(self, "PUT")

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> GitHubApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API base URL (what ``drivers.git_hosting.api_url`` is set to)."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def web_url(self) -> str:
        """The repository's web address as this server's pull requests link to it."""
        return f"{self.url}/web/{self.owner}/{self.repo}"

    # -- test hooks --------------------------------------------------------------

    def requests_to(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally filtered by method and exact path."""
        with self._lock:
            return [
                r for r in self.requests if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def fail(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (GitHub's JSON error body)."""
        with self._lock:
            self._failures.append(_Failure(status, times, dict(headers or {})))

    def hide_from_lists(self, number: int, times: int = 1) -> None:
        """Leave a pull request out of the next ``times`` list answers (GitHub's lists lag behind writes)."""
        with self._lock:
            self._hidden[number] = times

    def merge(self, number: int, merge_commit_sha: str) -> dict[str, Any]:
        """Mark a pull request merged as ``merge_commit_sha`` (what the merge button does)."""
        with self._lock:
            pr = self.pulls[number]
            pr.update(
                state="closed",
                merged=True,
                merged_at=_now(),
                closed_at=_now(),
                merge_commit_sha=merge_commit_sha,
                updated_at=_now(),
            )
            return dict(pr)

    # -- the API -----------------------------------------------------------------

    def _branch_sha(self, branch: str) -> str | None:
        if self.remote is None:
            return "0" * 40
        done = _git(self.remote, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
        return done.stdout.strip() if done.returncode == 0 else None

    def _commits_between(self, base_sha: str, head_sha: str) -> int:
        if self.remote is None:
            return 1
        done = _git(self.remote, "rev-list", "--count", f"{base_sha}..{head_sha}")
        return int(done.stdout.strip() or 0)

    def _repo_json(self) -> dict[str, Any]:
        return {
            "id": 4242,
            "name": self.repo,
            "full_name": f"{self.owner}/{self.repo}",
            "private": True,
            "owner": {"login": self.owner, "type": "Organization"},
            "html_url": self.web_url,
            "url": f"{self.url}/repos/{self.owner}/{self.repo}",
            "default_branch": "main",
        }

    def _ref_json(self, branch: str, sha: str) -> dict[str, Any]:
        return {
            "label": f"{self.owner}:{branch}",
            "ref": branch,
            "sha": sha,
            "user": {"login": self.owner},
            "repo": self._repo_json(),
        }

    @staticmethod
    def _validation_failed(*errors: dict[str, Any]) -> _HttpError:
        return _HttpError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            {"message": "Validation Failed", "errors": list(errors), "documentation_url": DOCS, "status": "422"},
        )

    def _create(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise _HttpError(HTTPStatus.BAD_REQUEST, {"message": "Problems parsing JSON", "status": "400"})
        for name in ("head", "base"):
            if not body.get(name):
                raise self._validation_failed({"resource": "PullRequest", "field": name, "code": "missing_field"})
        if not body.get("title"):
            raise self._validation_failed({"resource": "PullRequest", "field": "title", "code": "missing_field"})
        head, base = str(body["head"]), str(body["base"])
        branch = head.split(":", 1)[1] if ":" in head else head
        head_sha, base_sha = self._branch_sha(branch), self._branch_sha(base)
        if head_sha is None:
            raise self._validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if base_sha is None:
            raise self._validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
        for pr in self.pulls.values():
            if pr["state"] == "open" and pr["head"]["ref"] == branch and pr["base"]["ref"] == base:
                raise self._validation_failed(
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"A pull request already exists for {self.owner}:{branch}.",
                    }
                )
        if self._commits_between(base_sha, head_sha) == 0:
            raise self._validation_failed(
                {"resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {branch}"}
            )
        number = next(self._numbers)
        api = f"{self.url}/repos/{self.owner}/{self.repo}"
        pr = {
            "url": f"{api}/pulls/{number}",
            "id": next(self._ids),
            "node_id": f"PR_kwDO{number:08d}",
            "html_url": f"{self.web_url}/pull/{number}",
            "diff_url": f"{self.web_url}/pull/{number}.diff",
            "number": number,
            "state": "open",
            "locked": False,
            "title": str(body["title"]),
            "body": body.get("body"),
            "user": {"login": self.login, "type": "Bot"},
            "created_at": _now(),
            "updated_at": _now(),
            "closed_at": None,
            "merged_at": None,
            "merge_commit_sha": None,
            "draft": bool(body.get("draft", False)),
            "head": self._ref_json(branch, head_sha),
            "base": self._ref_json(base, base_sha),
            "merged": False,
            "mergeable": None,
            "comments": 0,
            "commits": self._commits_between(base_sha, head_sha),
        }
        self.pulls[number] = pr
        return HTTPStatus.CREATED, pr

    def _list(self, query: dict[str, str]) -> tuple[int, Any]:
        state = query.get("state", "open")
        head = query.get("head")
        base = query.get("base")
        found = []
        for pr in sorted(self.pulls.values(), key=lambda p: -int(p["number"])):
            if self._hidden.get(pr["number"], 0) > 0:
                self._hidden[pr["number"]] -= 1
                continue
            if state != "all" and pr["state"] != state:
                continue
            if head is not None and pr["head"]["label"] != head:
                continue
            if base is not None and pr["base"]["ref"] != base:
                continue
            found.append({k: v for k, v in pr.items() if k not in ("merged", "mergeable", "comments", "commits")})
        return HTTPStatus.OK, found

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        prefix = f"/repos/{self.owner}/{self.repo}/pulls"
        if not path.startswith(f"/repos/{self.owner}/{self.repo}"):
            raise _HttpError(HTTPStatus.NOT_FOUND, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
        if path == prefix and method == "GET":
            return self._list(query)
        if path == prefix and method == "POST":
            try:
                data = json.loads(body or b"null")
            except ValueError:
                data = None  # refused below, as GitHub refuses a body that is not an object
            return self._create(data)
        rest = path.removeprefix(prefix + "/")
        if path.startswith(prefix + "/") and rest.isdigit() and method == "GET":
            pr = self.pulls.get(int(rest))
            if pr is not None:
                return HTTPStatus.OK, pr
        raise _HttpError(HTTPStatus.NOT_FOUND, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})

    def _authorised(self, headers: dict[str, str]) -> None:
        value = headers.get("authorization")
        if value is None:
            # GitHub hides private repositories from anonymous callers.
            raise _HttpError(HTTPStatus.NOT_FOUND, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
        scheme, _, token = value.partition(" ")
        if scheme.lower() not in ("bearer", "token") or token != self.token:
            raise _HttpError(
                HTTPStatus.UNAUTHORIZED,
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"},
            )

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = RecordedRequest(
            method=method,
            path=unquote(parts.path),
            query={k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        extra: dict[str, str] = {}
        with self._lock:
            self.requests.append(request)
            failure = self._failures[0] if self._failures else None
            if failure is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.pop(0)
            try:
                if failure is not None:
                    extra = failure.headers
                    raise _HttpError(failure.status, {"message": HTTPStatus(failure.status).phrase})
                self._authorised(request.headers)
                status, payload = self._route(method, request.path, request.query, body)
            except _HttpError as exc:
                status, payload = exc.status, dict(exc.body)
                if self.echo_authorization:
                    sent = request.headers.get("authorization")
                    payload["message"] = f"{payload.get('message', '')} (request had Authorization: {sent})"
        data = json.dumps(payload).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("X-GitHub-Api-Version-Selected", "2022-11-28")
        handler.send_header("X-RateLimit-Limit", "5000")
        handler.send_header("X-RateLimit-Remaining", extra.pop("x-ratelimit-remaining", "4999"))
        for name, value in extra.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


@contextmanager
def running_github_api(**options: Any) -> Iterator[GitHubApiServer]:
    """Start a :class:`GitHubApiServer` and stop it afterwards."""
    server = GitHubApiServer(**options).start()
    try:
        yield server
    finally:
        server.stop()
