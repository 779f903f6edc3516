"""Git hosting: opening pull requests.

* :class:`LocalGitHosting` records pull requests as JSON files next to the
  sandbox state. It is the twin used when no git host is configured (the demo,
  offline tests) and prints the compare link a person would open.
* :class:`GitHubHosting` speaks the GitHub REST API subset used here
  (``GET/POST /repos/{owner}/{repo}/pulls``) with a token from a Prefect Secret
  block or the environment. The token never appears in errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx
from pydantic import BaseModel

from sandbox.errors import PermanentError, RetryableError


class PullRequest(BaseModel):
    """An opened pull request."""

    number: int
    url: str
    head: str
    base: str
    title: str
    created: bool = True


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


class LocalGitHosting:
    """Pull requests recorded in a directory (no git host configured).

    Args:
        directory: Where pull requests are written as ``<n>.json``.
        web_url: Base URL for the compare link, if the repository has a web UI.
    """

    def __init__(self, directory: Path, web_url: str | None = None) -> None:
        self.directory = directory
        self.web_url = web_url

    def open_pull_request(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        """Record a pull request (idempotent per head branch)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.directory.glob("*.json"), key=lambda p: int(p.stem))
        for path in existing:
            data = json.loads(path.read_text())
            if data["head"] == head and data["state"] == "open":
                return PullRequest(**{k: data[k] for k in ("number", "url", "head", "base", "title")}, created=False)
        number = int(existing[-1].stem) + 1 if existing else 1
        url = (
            f"{self.web_url.rstrip('/')}/compare/{base}...{head}"
            if self.web_url
            else f"{self.directory / f'{number}.json'}"
        )
        record = {
            "number": number,
            "url": url,
            "head": head,
            "base": base,
            "title": title,
            "body": body,
            "state": "open",
        }
        (self.directory / f"{number}.json").write_text(json.dumps(record, indent=2))
        return PullRequest(number=number, url=url, head=head, base=base, title=title)


class GitHubHosting:
    """Pull requests through the GitHub REST API.

    Args:
        api_url: API base, ``https://api.github.com`` or a GitHub Enterprise URL.
        repository: ``owner/name``.
        token: API token (from a Secret block or the environment).
        timeout: Seconds per request.
    """

    def __init__(self, api_url: str, repository: str, token: str, timeout: float = 30.0) -> None:
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

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise GitHostingUnavailableError(f"git host unreachable: {type(exc).__name__}") from None
        if response.status_code in (429, 502, 503, 504) or (
            response.status_code == 403 and response.headers.get("x-ratelimit-remaining") == "0"
        ):
            raise GitHostingUnavailableError(f"git host busy: HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                message = response.json().get("message", "")
            except ValueError:
                message = response.text[:200]
            raise GitHostingError(f"{method} {path}: HTTP {response.status_code} {message}")
        return response

    def open_pull_request(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        """Open a pull request, or return the open one for ``head`` (idempotent)."""
        pulls = f"/repos/{self.repository}/pulls"
        open_prs = self._request("GET", pulls, params={"head": f"{self._owner}:{head}", "state": "open"}).json()
        if open_prs:
            pr = open_prs[0]
            return PullRequest(
                number=pr["number"], url=pr["html_url"], head=head, base=base, title=pr["title"], created=False
            )
        pr = self._request("POST", pulls, json={"title": title, "head": head, "base": base, "body": body}).json()
        return PullRequest(number=pr["number"], url=pr["html_url"], head=head, base=base, title=title)


__all__ = [
    "GitHosting",
    "GitHostingError",
    "GitHostingUnavailableError",
    "GitHubHosting",
    "LocalGitHosting",
    "PullRequest",
]
