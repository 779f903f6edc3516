"""Git hosting: opening pull requests and noticing when they merge.

* :class:`LocalGitHosting` records pull requests as JSON files next to the
  sandbox state. It is the twin used when no git host is configured (the demo,
  offline tests): a pull request counts as merged once its head commit is
  reachable from the base branch of the (local) fleet remote. With
  ``manual=True`` it stands in for a real host we hold no token for: the URL it
  returns is the host's compare page, where a person opens the pull request.
* :class:`GitHubHosting` speaks the GitHub REST API subset used here
  (``GET/POST /repos/{owner}/{repo}/pulls``, ``GET /repos/{owner}/{repo}/pulls/{n}``)
  with a token from a Prefect Secret block or the environment. The token never
  appears in errors: it is registered for redaction (:mod:`sandbox.redaction`)
  when the driver is made, so a host (or a proxy) echoing the ``Authorization``
  header into an error body shows ``***``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, Field

from sandbox.drivers.git import GitDriver
from sandbox.errors import PermanentError, RetryableError
from sandbox.redaction import redact, register_secret


class PullRequest(BaseModel):
    """An opened pull request (or, with ``manual``, the page where a person opens it)."""

    number: int
    url: str
    head: str
    base: str
    title: str
    created: bool = True
    manual: bool = Field(
        default=False,
        description="Not opened on the host (no API token): url is the compare page to open it from",
    )


class GitHostingError(PermanentError):
    """The git host refused the request."""


class GitHostingUnavailableError(RetryableError):
    """The git host did not answer or asked us to slow down."""


@runtime_checkable
class GitHosting(Protocol):
    """Pull requests on the fleet repository's host."""

    def open_pull_request(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        """Open a pull request from ``head`` into ``base``, or return the open one for ``head``."""
        ...

    def merged_revision(self, pr: PullRequest) -> str | None:
        """The commit the base branch must contain once ``pr`` merged; ``None`` while it has not."""
        ...


def compare_url(web_url: str, base: str, head: str) -> str:
    """The host's page comparing ``head`` with ``base`` (GitHub's ``/compare/base...head``)."""
    return f"{web_url.rstrip('/')}/compare/{quote(base, safe='')}...{quote(head, safe='')}?expand=1"


def github_web_url(api_url: str, repository: str) -> str:
    """The repository's web address for a GitHub API base (github.com or an Enterprise server)."""
    parts = urlsplit(api_url.rstrip("/"))
    host = parts.netloc
    if host == "api.github.com":
        host = "github.com"
    path = parts.path
    if path.endswith("/api/v3"):  # GitHub Enterprise Server
        path = path[: -len("/api/v3")]
    return f"{parts.scheme}://{host}{path}/{repository}"


class LocalGitHosting:
    """Pull requests recorded in a directory.

    Args:
        directory: Where pull requests are written as ``<n>.json``.
        web_url: The repository's web address, for compare links.
        manual: Stand-in for a host we hold no token for (the compare link is
            what a person opens; ``web_url`` is then required).
        remote: The fleet remote, when it is a local repository: merges are
            read from it.
        git: The git driver used to read ``remote``.
    """

    def __init__(
        self,
        directory: Path,
        web_url: str | None = None,
        *,
        manual: bool = False,
        remote: Path | None = None,
        git: GitDriver | None = None,
    ) -> None:
        if manual and not web_url:
            raise ValueError("a manual pull request needs the repository's web URL")
        self.directory = directory
        self.web_url = web_url
        self.manual = manual
        self.remote = remote
        self.git = git

    def _records(self) -> list[tuple[Path, dict[str, Any]]]:
        if not self.directory.is_dir():
            return []
        paths = sorted(self.directory.glob("*.json"), key=lambda p: int(p.stem))
        return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in paths]

    def _remote_branches(self) -> dict[str, str]:
        if self.remote is None or self.git is None or not self.remote.is_dir():
            return {}
        return self.git.remote_branches(str(self.remote))

    def _pull_request(self, data: dict[str, Any], *, created: bool) -> PullRequest:
        return PullRequest(
            **{k: data[k] for k in ("number", "url", "head", "base", "title")},
            created=created,
            manual=bool(data.get("manual")),
        )

    def open_pull_request(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        """Record a pull request (idempotent per head branch)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        records = self._records()
        for _, data in records:
            if data["head"] == head and data["state"] == "open":
                return self._pull_request(data, created=False)
        number = int(records[-1][0].stem) + 1 if records else 1
        head_sha = self._remote_branches().get(head)
        # Several lifecycles promote at once (a team's workers): each number is
        # claimed by an exclusive link, as a host numbers pull requests one by one.
        while True:
            path = self.directory / f"{number}.json"
            record = {
                "number": number,
                "url": compare_url(self.web_url, base, head) if self.web_url else str(path),
                "head": head,
                "head_sha": head_sha,
                "base": base,
                "title": title,
                "body": body,
                "state": "open",
                "manual": self.manual,
            }
            tmp = self.directory / f".{number}.{os.getpid()}.{threading.get_ident()}.tmp"
            tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
            try:
                os.link(tmp, path)  # fails, never overwrites, when the number is taken
            except FileExistsError:
                number += 1
                continue
            finally:
                tmp.unlink()
            return self._pull_request(record, created=True)

    def merged_revision(self, pr: PullRequest) -> str | None:
        """The head commit once the base branch of the local remote contains it (recorded as merged)."""
        path = self.directory / f"{pr.number}.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("state") == "merged":
            return str(data["merged_revision"])
        branches = self._remote_branches()
        head_sha = branches.get(pr.head) or data.get("head_sha")
        base_sha = branches.get(pr.base)
        if not head_sha or not base_sha or self.git is None or self.remote is None:
            return None
        if not self.git.is_ancestor(self.remote, head_sha, base_sha):
            return None
        data.update(state="merged", merged_revision=head_sha)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return str(head_sha)


class GitHubHosting:
    """Pull requests through the GitHub REST API.

    Args:
        api_url: API base, ``https://api.github.com`` or a GitHub Enterprise URL.
        repository: ``owner/name``.
        token: API token (from a Secret block or the environment).
        timeout: Seconds per request.
    """

    def __init__(self, api_url: str, repository: str, token: str, timeout: float = 30.0) -> None:
        register_secret(token)
        self._client = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "fleet-sandbox",
            },
            timeout=timeout,
        )
        self.repository = repository
        self._owner = repository.split("/")[0]

    def __repr__(self) -> str:
        return f"GitHubHosting({str(self._client.base_url)!r}, {self.repository!r})"

    def _request(self, method: str, path: str, *, accept: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise GitHostingUnavailableError(f"git host unreachable: {type(exc).__name__}") from None
        if response.status_code in accept:
            return response
        if response.status_code in (429, 502, 503, 504) or (
            response.status_code == 403 and response.headers.get("x-ratelimit-remaining") == "0"
        ):
            raise GitHostingUnavailableError(f"git host busy: {method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise GitHostingError(f"{method} {path}: HTTP {response.status_code} {_error_message(response)}")
        return response

    def _open_for(self, head: str, base: str) -> dict[str, Any] | None:
        pulls = f"/repos/{self.repository}/pulls"
        found = self._request("GET", pulls, params={"head": f"{self._owner}:{head}", "base": base, "state": "open"})
        items = found.json()
        return items[0] if items else None

    def open_pull_request(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        """Open a pull request, or return the open one for ``head`` (idempotent).

        Raises:
            GitHostingError: The host refused it (bad credentials, unknown branch, no commits, ...).
            GitHostingUnavailableError: The host did not answer or rate-limited us (retryable).
        """
        existing = self._open_for(head, base)
        if existing is None:
            response = self._request(
                "POST",
                f"/repos/{self.repository}/pulls",
                accept=(422,),
                json={"title": title, "head": head, "base": base, "body": body},
            )
            if response.status_code != 422:
                pr = response.json()
                return PullRequest(number=pr["number"], url=pr["html_url"], head=head, base=base, title=pr["title"])
            # Opened meanwhile (an earlier attempt whose answer was lost): use it.
            existing = self._open_for(head, base)
            if existing is None:
                raise GitHostingError(f"POST /repos/{self.repository}/pulls: HTTP 422 {_error_message(response)}")
        return PullRequest(
            number=existing["number"],
            url=existing["html_url"],
            head=head,
            base=base,
            title=existing["title"],
            created=False,
        )

    def merged_revision(self, pr: PullRequest) -> str | None:
        """``merge_commit_sha`` once GitHub reports the pull request merged."""
        data = self._request("GET", f"/repos/{self.repository}/pulls/{pr.number}").json()
        if data.get("merged") and data.get("merge_commit_sha"):
            return str(data["merge_commit_sha"])
        return None


def _error_message(response: httpx.Response) -> str:
    """GitHub's ``message`` and the ``errors`` details of a failed response, on one line, redacted."""
    return redact(_error_text(response))


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return " ".join(response.text[:200].split())
    if not isinstance(data, dict):
        return ""
    details = []
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            details.append(str(error.get("message") or f"{error.get('field', '')} {error.get('code', '')}".strip()))
        else:
            details.append(str(error))
    message = str(data.get("message", ""))
    return f"{message}: {'; '.join(details)}" if details else message


__all__ = [
    "GitHosting",
    "GitHostingError",
    "GitHostingUnavailableError",
    "GitHubHosting",
    "LocalGitHosting",
    "PullRequest",
    "compare_url",
    "github_web_url",
]
