"""Git-hosting drivers: GitHub's REST API (against tests/fakes/github_api_server.py) and the local twin (real git)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.drivers.git import GitCli
from sandbox.drivers.git_hosting import (
    GitHostingError,
    GitHostingUnavailableError,
    GitHubHosting,
    LocalGitHosting,
    compare_url,
    github_web_url,
)
from tests.fakes.github_api_server import FAKE_GITHUB_TOKEN, GitHubApiServer, running_github_api

BRANCH = "OPS-7-bump-chart"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare remote with main and a branch one commit ahead of it."""
    tool = GitCli()
    bare, work = tmp_path / "remote.git", tmp_path / "work"
    tool.init_bare(bare)
    work.mkdir()
    tool.init_repo(work, str(bare))
    (work / "README.md").write_text("fleet\n")
    tool.commit_all(work, "init")
    tool.push(work, "main")
    tool.checkout(work, BRANCH, start="main")
    (work / "change.yaml").write_text("a: 1\n")
    tool.commit_all(work, "OPS-7: change")
    tool.push(work, BRANCH)
    return bare


@pytest.fixture
def github(remote: Path) -> Iterator[GitHubApiServer]:
    with running_github_api(remote=remote) as server:
        yield server


def hosting(server: GitHubApiServer, token: str = FAKE_GITHUB_TOKEN) -> GitHubHosting:
    return GitHubHosting(server.url, "example-org/fleet-infra", token, timeout=5)


def test_opens_a_pull_request_with_the_documented_request(github: GitHubApiServer, remote: Path) -> None:
    pr = hosting(github).open_pull_request(head=BRANCH, base="main", title="OPS-7: bump chart", body="the body")
    assert (pr.number, pr.head, pr.base, pr.created, pr.manual) == (1, BRANCH, "main", True, False)
    assert pr.url == f"{github.web_url}/pull/1"
    lookup, create = github.requests
    assert (lookup.method, lookup.path) == ("GET", "/repos/example-org/fleet-infra/pulls")
    assert lookup.query == {"head": f"example-org:{BRANCH}", "base": "main", "state": "open"}
    assert (create.method, create.path) == ("POST", "/repos/example-org/fleet-infra/pulls")
    assert create.json() == {"title": "OPS-7: bump chart", "head": BRANCH, "base": "main", "body": "the body"}
    for request in (lookup, create):
        assert request.headers["authorization"] == f"Bearer {FAKE_GITHUB_TOKEN}"
        assert request.headers["accept"] == "application/vnd.github+json"
        assert request.headers["x-github-api-version"] == "2022-11-28"
    assert github.pulls[1]["head"]["sha"] == git(remote, "rev-parse", BRANCH)


def test_rerun_finds_the_open_pull_request(github: GitHubApiServer) -> None:
    first = hosting(github).open_pull_request(head=BRANCH, base="main", title="t", body="b")
    again = hosting(github).open_pull_request(head=BRANCH, base="main", title="t", body="b")
    assert (again.number, again.url, again.created) == (first.number, first.url, False)
    assert len(github.requests_to("POST")) == 1


def test_422_already_exists_returns_the_existing_one(github: GitHubApiServer) -> None:
    first = hosting(github).open_pull_request(head=BRANCH, base="main", title="t", body="b")
    github.hide_from_lists(first.number)  # the list lags behind: the POST is refused with 422
    again = hosting(github).open_pull_request(head=BRANCH, base="main", title="t", body="b")
    assert (again.number, again.created) == (first.number, False)
    statuses = [r.method for r in github.requests]
    assert statuses == ["GET", "POST", "GET", "POST", "GET"]
    assert len(github.pulls) == 1


def test_422_without_an_open_one_is_a_permanent_error(github: GitHubApiServer, remote: Path) -> None:
    with pytest.raises(GitHostingError, match="HTTP 422 Validation Failed: No commits between main and main"):
        hosting(github).open_pull_request(head="main", base="main", title="t", body="b")
    with pytest.raises(GitHostingError, match="HTTP 422 Validation Failed: head invalid"):
        hosting(github).open_pull_request(head="no-such-branch", base="main", title="t", body="b")


def test_bad_credentials_never_echo_the_token(github: GitHubApiServer) -> None:
    wrong = "ghp_wrongTokenValue0000000000000000000"
    with pytest.raises(GitHostingError) as caught:
        hosting(github, token=wrong).open_pull_request(head=BRANCH, base="main", title="t", body="b")
    assert "HTTP 401 Bad credentials" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)
    assert FAKE_GITHUB_TOKEN not in repr(hosting(github))


@pytest.mark.parametrize(
    ("status", "headers"), [(502, {}), (503, {}), (429, {}), (403, {"x-ratelimit-remaining": "0"})]
)
def test_busy_host_is_retryable(github: GitHubApiServer, status: int, headers: dict[str, str]) -> None:
    github.fail(status, headers=headers)
    with pytest.raises(GitHostingUnavailableError, match=f"HTTP {status}") as caught:
        hosting(github).open_pull_request(head=BRANCH, base="main", title="t", body="b")
    assert caught.value.retryable
    assert hosting(github).open_pull_request(head=BRANCH, base="main", title="t", body="b").number == 1


def test_unreachable_host_is_retryable(github: GitHubApiServer) -> None:
    client = hosting(github)
    github.stop()
    with pytest.raises(GitHostingUnavailableError, match="unreachable"):
        client.open_pull_request(head=BRANCH, base="main", title="t", body="b")


def test_merged_revision_once_merged(github: GitHubApiServer) -> None:
    client = hosting(github)
    pr = client.open_pull_request(head=BRANCH, base="main", title="t", body="b")
    assert client.merged_revision(pr) is None
    github.merge(pr.number, "f" * 40)
    assert client.merged_revision(pr) == "f" * 40
    assert github.requests[-1].path == f"/repos/example-org/fleet-infra/pulls/{pr.number}"


def test_local_hosting_records_and_reads_merges_from_the_remote(tmp_path: Path, remote: Path) -> None:
    tool = GitCli()
    local = LocalGitHosting(tmp_path / "prs", remote=remote, git=tool)
    pr = local.open_pull_request(head=BRANCH, base="main", title="OPS-7: x", body="body")
    assert local.open_pull_request(head=BRANCH, base="main", title="OPS-7: x", body="body").created is False
    record = json.loads((tmp_path / "prs" / "1.json").read_text())
    head_sha = git(remote, "rev-parse", BRANCH)
    assert (record["state"], record["head_sha"], record["body"]) == ("open", head_sha, "body")
    assert local.merged_revision(pr) is None
    subprocess.run(["git", "--git-dir", str(remote), "update-ref", "refs/heads/main", head_sha], check=True)
    assert local.merged_revision(pr) == head_sha
    assert json.loads((tmp_path / "prs" / "1.json").read_text())["state"] == "merged"


def test_manual_hosting_gives_the_compare_url(tmp_path: Path) -> None:
    local = LocalGitHosting(tmp_path / "prs", web_url="https://github.com/example-org/fleet-infra", manual=True)
    pr = local.open_pull_request(head="OPS-1-try", base="main", title="t", body="b")
    assert pr.manual
    assert pr.url == "https://github.com/example-org/fleet-infra/compare/main...OPS-1-try?expand=1"


def test_web_urls() -> None:
    assert github_web_url("https://api.github.com", "o/r") == "https://github.com/o/r"
    assert github_web_url("https://ghe.example.com/api/v3/", "o/r") == "https://ghe.example.com/o/r"
    assert (
        compare_url("https://github.com/o/r/", "main", "a/b") == "https://github.com/o/r/compare/main...a%2Fb?expand=1"
    )
