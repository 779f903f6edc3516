"""Issue 4's promotion acceptance, end to end: the real CLI, git, terraform and Prefect server,
pull requests against a local HTTP server speaking the GitHub API subset used.

One demo work directory goes through the whole story, in order:

1. ``sandbox demo`` configured with ``drivers.git_hosting.type: github``, the
   test server's URL and a token from the environment: the pull request is
   opened through the API (the request is checked) and the pushed branch holds
   exactly the sandbox's change in ``clusters/development/``.
2. A second sandbox (``sandbox create``; an engineer's commit on its branch):
   promote refuses while it is not torn down, and while development changed
   the same file on main (listing it), pushing nothing; without a token the
   compare URL is printed.
3. The first pull request merges; ``sandbox promote`` again watches development
   apply it (the promotion flow's last step), then ``sandbox watch development``;
   a broken chart version on main is named as stuck at the timeout.

The token never appears in any output, any file of the work directory (inventory,
results, state) or the Prefect server's logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from sandbox.demo import prepare_demo
from tests.fakes.github_api_server import FAKE_GITHUB_TOKEN, GitHubApiServer, running_github_api
from tests.integration.sandbox_cli import error_line

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
TOKEN_ENV = "FLEET_TEST_GITHUB_TOKEN"
BRANCH = "OPS-1-bump-podinfo"
BRANCH_B = "OPS-2-tune-platform"
PULLS = "/repos/example-org/fleet-infra/pulls"


@dataclass
class Story:
    workdir: Path
    config: Path
    remote: Path
    github: GitHubApiServer
    api_url: str
    outputs: list[str] = field(default_factory=list)

    def cli(self, *args: str, token: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        env["PREFECT_API_URL"] = self.api_url
        if token:
            env[TOKEN_ENV] = FAKE_GITHUB_TOKEN
        done = subprocess.run(
            [str(BIN / "sandbox"), *args], capture_output=True, text=True, env=env, timeout=600, check=False
        )
        self.outputs += [done.stdout, done.stderr]
        return done

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.remote), *args], capture_output=True, text=True, check=True
        ).stdout

    def commit_on(self, branch: str, path: str, old: str, new: str, message: str) -> str:
        """Another checkout commits to ``branch`` and pushes (an engineer, or a merge)."""
        work = self.workdir / f"engineer-{branch}"
        if not work.exists():
            subprocess.run(["git", "clone", "-q", str(self.remote), str(work)], check=True)
        run = lambda *a: subprocess.run(["git", "-C", str(work), *a], capture_output=True, text=True, check=True)  # noqa: E731
        run("fetch", "-q", "origin")
        run("checkout", "-q", "-B", branch, f"origin/{branch}")
        file = work / path
        text = file.read_text()
        assert old in text, (path, old)
        file.write_text(text.replace(old, new))
        run("-c", "user.name=eng", "-c", "user.email=eng@x", "commit", "-q", "-am", message)
        run("push", "-q", "origin", branch)
        return run("rev-parse", "HEAD").stdout.strip()


@pytest.fixture(scope="module")
def story(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    workdir = tmp_path_factory.mktemp("promote-github")
    config = prepare_demo(workdir)
    remote = workdir / "remote.git"
    with running_github_api(remote=remote) as github:
        data = yaml.safe_load(config.read_text())
        data["drivers"]["git_hosting"] = {
            "type": "github",
            "api_url": github.url,
            "repository": "example-org/fleet-infra",
            "token_env": TOKEN_ENV,
        }
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        yield Story(workdir, config, remote, github, prefect_server)


@pytest.fixture(scope="module")
def demo(story: Story) -> subprocess.CompletedProcess[str]:
    return story.cli("demo", "--workdir", str(story.workdir))


def test_demo_promotion_opens_the_pull_request_through_the_api(
    story: Story, demo: subprocess.CompletedProcess[str]
) -> None:
    assert demo.returncode == 0, demo.stderr[-3000:]
    url = f"{story.github.web_url}/pull/1"
    assert f"pull request #1 {BRANCH} -> main: {url}" in demo.stdout
    lookup, create = story.github.requests_to(path=PULLS)
    assert (lookup.method, lookup.query) == ("GET", {"head": f"example-org:{BRANCH}", "base": "main", "state": "open"})
    assert create.method == "POST"
    assert create.headers["authorization"] == f"Bearer {FAKE_GITHUB_TOKEN}"
    sent = create.json()
    assert (sent["head"], sent["base"]) == (BRANCH, "main")
    assert sent["title"].startswith("OPS-1:") and sent["title"] == "OPS-1: bump podinfo"
    body = sent["body"]
    # The diff of clusters/development/ ...
    assert "### Changes in `clusters/development/`" in body
    assert "1 file(s) changed, +1 -1 lines" in body and "- `apps.yaml`: +1 -1" in body
    assert '-      podinfo_version: "6.7.1"' in body and '+      podinfo_version: "6.7.2"' in body
    assert "gotk-sync.yaml` is never copied back" in body
    # ... the validation result ...
    validation = body.split("### Validation\n", 1)[1].split("\n", 1)[0]
    assert validation.startswith("passed: ") and "Flux objects Ready" in validation
    # ... and the performance comparison (the demo's first run has no baseline yet).
    performance = body.split("### Performance\n", 1)[1]
    assert performance.startswith("smoke: ") and "req/s" in performance
    assert (
        "No baseline to compare with yet." in performance or "| metric | change against the baseline |" in performance
    )
    assert story.github.pulls[1]["head"]["sha"] == story.git("rev-parse", BRANCH).strip()


def test_pushed_branch_holds_exactly_the_sandbox_change(story: Story, demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0
    assert story.git("diff", "--name-only", f"main...{BRANCH}").split() == ["clusters/development/apps.yaml"]
    diff = story.git("diff", f"main...{BRANCH}", "--", "clusters/development/")
    changed = [line for line in diff.splitlines() if line.startswith(("+", "-")) and line[:3] not in ("+++", "---")]
    assert changed == [
        '-      podinfo_version: "6.7.1" # chart version this cluster runs',
        '+      podinfo_version: "6.7.2" # chart version this cluster runs',
    ]
    sync = "clusters/development/flux-system/gotk-sync.yaml"
    assert story.git("show", f"{BRANCH}:{sync}") == story.git("show", f"main:{sync}")
    assert "clusters/sandbox-demo/" not in story.git("ls-tree", "-r", "--name-only", BRANCH)


@pytest.fixture(scope="module")
def second_sandbox(story: Story, demo: subprocess.CompletedProcess[str]) -> dict[str, subprocess.CompletedProcess[str]]:
    """sandbox-b: created, changed by an engineer, refused twice, torn down, promoted without a token."""
    assert demo.returncode == 0
    runs: dict[str, subprocess.CompletedProcess[str]] = {}
    config = str(story.config)
    runs["create"] = story.cli(
        "create",
        "sandbox-b",
        "--from",
        "development",
        "--ticket",
        "OPS-2",
        "--summary",
        "tune platform",
        "--config",
        config,
    )
    assert runs["create"].returncode == 0, runs["create"].stderr[-2000:]
    story.commit_on(BRANCH_B, "clusters/sandbox-b/platform.yaml", "interval: 10m0s", "interval: 5m0s", "OPS-2: tune")
    runs["branch_before"] = subprocess.CompletedProcess([], 0, story.git("rev-parse", BRANCH_B).strip(), "")
    runs["before_teardown"] = story.cli("promote", "sandbox-b", "--config", config, token=False)
    runs["branch_after_refusal"] = subprocess.CompletedProcess([], 0, story.git("rev-parse", BRANCH_B).strip(), "")
    runs["destroy"] = story.cli("destroy", "sandbox-b", "--config", config)
    assert runs["destroy"].returncode == 0, runs["destroy"].stderr[-2000:]
    # Someone changes the same file of development on main, then reverts it.
    story.commit_on("main", "clusters/development/platform.yaml", "interval: 10m0s", "interval: 15m0s", "tune dev")
    runs["conflict"] = story.cli("promote", "sandbox-b", "--config", config, token=False)
    runs["branch_after_conflict"] = subprocess.CompletedProcess([], 0, story.git("rev-parse", BRANCH_B).strip(), "")
    story.commit_on("main", "clusters/development/platform.yaml", "interval: 15m0s", "interval: 10m0s", "revert")
    runs["promote"] = story.cli("promote", "sandbox-b", "--config", config, token=False)
    return runs


def test_promote_refuses_before_teardown_pushing_nothing(
    story: Story, second_sandbox: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    refused = second_sandbox["before_teardown"]
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "sandbox-b is not torn down yet" in refused.stderr and "nothing promoted" in refused.stderr
    assert error_line(refused.stderr).startswith("sandbox: error: sandbox-b is not torn down yet")
    assert "Traceback" not in refused.stdout + refused.stderr
    assert second_sandbox["branch_after_refusal"].stdout == second_sandbox["branch_before"].stdout


def test_promote_refuses_when_development_changed_the_same_file(
    second_sandbox: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    refused = second_sandbox["conflict"]
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert (
        "development changed on main since sandbox-b was cut in files the sandbox also changed: platform.yaml"
        in refused.stderr
    )
    assert error_line(refused.stderr).startswith("sandbox: error: development changed on main")
    assert "nothing pushed" in refused.stderr and "Traceback" not in refused.stdout + refused.stderr
    assert second_sandbox["branch_after_conflict"].stdout == second_sandbox["branch_before"].stdout


def test_without_a_token_the_compare_url_is_printed(
    story: Story, second_sandbox: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    done = second_sandbox["promote"]
    assert done.returncode == 0, done.stderr[-2000:]
    compare = f"{story.github.url}/example-org/fleet-infra/compare/main...{BRANCH_B}?expand=1"
    assert f"to open at {compare} (no git-hosting token)" in done.stdout
    assert not [r for r in story.github.requests if r.json() and r.json().get("head") == BRANCH_B]
    assert story.git("diff", "--name-only", f"main...{BRANCH_B}").split() == ["clusters/development/platform.yaml"]
    # Not merged yet: the promotion's last step says how to watch it land.
    assert "awaiting merge" in done.stdout and "sandbox watch development" in done.stdout


@pytest.fixture(scope="module")
def merged(story: Story, second_sandbox: dict[str, subprocess.CompletedProcess[str]]) -> str:
    """Pull request #1 merges (a merge commit on main, as GitHub's button makes)."""
    work = story.workdir / "reviewer"
    subprocess.run(["git", "clone", "-q", str(story.remote), str(work)], check=True)
    git = lambda *a: subprocess.run(["git", "-C", str(work), *a], capture_output=True, text=True, check=True)  # noqa: E731
    git("-c", "user.name=rev", "-c", "user.email=rev@x", "merge", "-q", "--no-ff", f"origin/{BRANCH}", "-m", "Merge #1")
    git("push", "-q", "origin", "main")
    sha = git("rev-parse", "HEAD").stdout.strip()
    story.github.merge(1, sha)
    return sha


def test_promotion_flow_watches_the_merge_land_on_development(story: Story, merged: str) -> None:
    done = story.cli("promote", "sandbox-demo", "--config", str(story.config))
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = [line for line in done.stdout.splitlines() if line.startswith("  promote  ")]
    assert first.startswith(("  promote  cached  ", "  promote  already completed  ")), first  # not promoted again
    assert second.startswith(f"  promote  landed  development: revision {merged[:12]} applied"), second
    assert story.github.requests_to("GET", f"{PULLS}/1")


def test_watch_development_reports_every_object_ready(story: Story, merged: str) -> None:
    done = story.cli("watch", "development", "--config", str(story.config), "--timeout", "60")
    assert done.returncode == 0, done.stderr
    tip = story.git("rev-parse", "main").strip()
    assert f"development: revision {tip[:12]} applied (Kustomization/flux-system/flux-system at main@sha1:{tip})" in (
        done.stdout
    )
    assert "  HelmRelease/podinfo/podinfo: " in done.stdout and "podinfo@6.7.2" in done.stdout
    again = story.cli("watch", "development", "--config", str(story.config), "--revision", merged[:8])
    assert again.returncode == 0, again.stderr


def test_watch_names_what_is_stuck(story: Story, merged: str) -> None:
    broken = story.commit_on(
        "main", "clusters/development/apps.yaml", '"6.7.2"', '"not-a-version"', "break the chart version"
    )
    done = story.cli("watch", "development", "--config", str(story.config), "--timeout", "4")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith(f"sandbox: error: development: revision {broken[:12]} has not landed after 4s: ")
    assert "HelmRelease/podinfo/podinfo: SourceNotReady: " in done.stderr and "not-a-version" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_token_never_leaks(
    story: Story, merged: str, second_sandbox: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    from prefect.client.orchestration import get_client

    assert story.outputs and not [o for o in story.outputs if FAKE_GITHUB_TOKEN in o]
    token = FAKE_GITHUB_TOKEN.encode()
    leaked = [p for p in story.workdir.rglob("*") if p.is_file() and not p.is_symlink() and token in p.read_bytes()]
    assert leaked == []
    with get_client(sync_client=True) as client:
        messages, offset = [], 0
        while batch := client.read_logs(limit=200, offset=offset):
            messages += [log.message for log in batch]
            offset += len(batch)
    assert messages and not [m for m in messages if FAKE_GITHUB_TOKEN in m]
    listing = story.cli("list", "--config", str(story.config), "--output", "json")
    entries = {e["name"]: e for e in json.loads(listing.stdout)}
    assert set(entries) == {"sandbox-demo", "sandbox-b"}
