"""The promote stage on the example fleet repo with real git and a bare remote.

Each test clones a sandbox with the real clone stage and a chart bump, then
records in the inventory what the cluster-side stages (validate, performance
test, teardown) would have recorded, so promote's own rules are tested without
a cluster: the whole lifecycle runs in tests/integration/test_promote_github.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.config import load_config
from sandbox.context import SandboxContext
from sandbox.demo import demo_request, prepare_demo
from sandbox.errors import ConflictError
from sandbox.models import SandboxStatus, Stage
from sandbox.redaction import register_secret
from sandbox.stages.clone import clone
from sandbox.stages.promote import PromotionRefusedError, promote
from sandbox.stages.register import register, validate_request
from sandbox.wiring import build_drivers, open_inventory

BRANCH = "OPS-1-bump-podinfo"
SANDBOX = "sandbox-demo"


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(remote), *args], capture_output=True, text=True, check=True).stdout


class Harness:
    """A demo fleet (bare remote, fleet.yaml), a cloned sandbox, and a way to push to main."""

    def __init__(self, root: Path, hosting: dict[str, Any] | None = None, *, change: bool = True) -> None:
        self.root = root
        self.config_path = prepare_demo(root / "demo", development=False)
        if hosting is not None:
            data = yaml.safe_load(self.config_path.read_text())
            data["drivers"]["git_hosting"] = hosting
            self.config_path.write_text(yaml.safe_dump(data))
        self.config = load_config(self.config_path)
        self.remote = root / "demo" / "remote.git"
        self.progress: list[str] = []
        request = demo_request(self.config_path)
        if not change:
            request.change = None
        validated = validate_request(self.config, request)
        inventory = open_inventory(self.config)
        record = register(self.config, inventory, validated, resume=False)
        self.ctx = SandboxContext(
            config=self.config,
            inventory=inventory,
            drivers=build_drivers(self.config),
            record=record,
            progress=self.progress.append,
        )
        self.ctx.inventory.stage_completed(
            SANDBOX, record.lifecycle_id, Stage.clone, clone(self.ctx, request.change).model_dump(mode="json")
        )
        self.main_before = self.tip("main")

    def tip(self, branch: str) -> str:
        return git(self.remote, "rev-parse", branch).strip()

    def record(self, stage: Stage, summary: str, details: dict[str, Any]) -> None:
        self.ctx.inventory.stage_completed(
            SANDBOX,
            self.ctx.record.lifecycle_id,
            stage,
            {"stage": stage.value, "summary": summary, "details": details},
        )

    def validated_and_torn_down(self) -> None:
        self.record(Stage.validate, "7 Flux objects Ready; 0 deprecation finding(s), none removed", {"passed": True})
        self.record(
            Stage.performance_test,
            "smoke: 1200 req/s, p95 5.1 ms, 0 failures",
            {"change_percent": {"requests_per_second": -2.5, "p95_ms": 4.0}},
        )
        self.record(Stage.teardown, f"{SANDBOX} torn down", {"destroyed": True})
        self.ctx.inventory.update(SANDBOX, status=SandboxStatus.destroyed)
        self.ctx.refresh()

    def push_to_main(self, path: str, edit: Any) -> str:
        work = self.root / "other-engineer"
        tool = self.ctx.drivers.git
        if not work.exists():
            tool.clone(str(self.remote), work)
        tool.fetch(work)
        tool.checkout(work, "main")
        tool.reset_hard(work, "origin/main")
        file = work / path
        file.write_text(edit(file.read_text()))
        sha = tool.commit_all(work, f"someone else changes {path}")
        tool.push(work, "main")
        assert sha is not None
        return sha


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.ctx.inventory.close()


def test_promotion_pushes_exactly_the_sandbox_change_and_opens_a_pull_request(harness: Harness) -> None:
    harness.validated_and_torn_down()
    dev_sync = git(harness.remote, "show", "main:clusters/development/flux-system/gotk-sync.yaml")
    result = promote(harness.ctx)
    assert git(harness.remote, "diff", "--name-only", f"main...{BRANCH}").split() == ["clusters/development/apps.yaml"]
    diff = git(harness.remote, "diff", f"main...{BRANCH}")
    assert '-      podinfo_version: "6.7.1"' in diff and '+      podinfo_version: "6.7.2"' in diff
    changed = [line for line in diff.splitlines() if line.startswith(("+", "-")) and line[:3] not in ("+++", "---")]
    assert changed == [
        '-      podinfo_version: "6.7.1" # chart version this cluster runs',
        '+      podinfo_version: "6.7.2" # chart version this cluster runs',
    ]
    assert git(harness.remote, "show", f"{BRANCH}:clusters/development/flux-system/gotk-sync.yaml") == dev_sync
    tree = git(harness.remote, "ls-tree", "-r", "--name-only", BRANCH)
    assert f"clusters/{SANDBOX}/" not in tree
    assert harness.tip("main") == harness.main_before  # the default branch never moves
    assert git(harness.remote, "log", "-1", "--format=%s", BRANCH).strip() == f"OPS-1: promote {SANDBOX} to development"
    pr_file = harness.config.state_dir / "pull-requests" / "1.json"
    pr = json.loads(pr_file.read_text())
    assert (pr["head"], pr["base"], pr["title"]) == (BRANCH, "main", "OPS-1: bump podinfo")
    body = pr["body"]
    assert "### Changes in `clusters/development/`" in body and "- `apps.yaml`: +1 -1" in body
    assert '+      podinfo_version: "6.7.2"' in body
    assert "passed: 7 Flux objects Ready" in body
    assert "smoke: 1200 req/s" in body and "| requests_per_second | -2.5% |" in body and "| p95_ms | +4.0% |" in body
    assert result.details["pull_request"]["number"] == 1
    assert harness.ctx.inventory.get(SANDBOX).pull_request_url == pr["url"]


def test_the_body_carries_the_objects_validation_read_and_says_when_the_load_went_to_the_stand_in(
    harness: Harness,
) -> None:
    """The body used to quote only the validation's one-line count: not which objects, at which revision, in which
    state, as the sandbox's cluster reported them; nor that a real cluster's figures came from the stand-in."""
    harness.validated_and_torn_down()
    head = "a" * 40
    report = {
        "sandbox": SANDBOX,
        "branch": BRANCH,
        "commit": head,
        "readiness_checked": True,
        "readiness": [
            {
                "object": "Kustomization/flux-system/flux-system",
                "ready": True,
                "reason": "ReconciliationSucceeded",
                "message": f"Applied revision: {BRANCH}@sha1:{head}",
            },
            {
                "object": "HelmRelease/podinfo/podinfo",
                "ready": True,
                "reason": "InstallSucceeded",
                "message": "Helm install succeeded for release podinfo/podinfo.v1\nwith chart podinfo@6.7.2",
            },
        ],
    }
    harness.record(Stage.validate, "validation of sandbox-demo passed: 2/2 Flux objects Ready", {
        "passed": True, "report": report,
    })  # fmt: skip
    harness.record(Stage.performance_test, "smoke: 900 req/s, p95 2.0 ms, 0 failures; gates passed", {"stand_in": True})
    promote(harness.ctx)
    body = json.loads((harness.config.state_dir / "pull-requests" / "1.json").read_text())["body"]
    validation = body.split("### Validation\n", 1)[1].split("### Performance", 1)[0]
    assert f"Flux objects on the sandbox's cluster at `{BRANCH}` commit `{head}`:" in validation
    assert (
        f"- `Kustomization/flux-system/flux-system`: Ready: ReconciliationSucceeded: "
        f"Applied revision: {BRANCH}@sha1:{head}\n"
    ) in validation
    assert (
        "- `HelmRelease/podinfo/podinfo`: Ready: InstallSucceeded: "
        "Helm install succeeded for release podinfo/podinfo.v1 with chart podinfo@6.7.2\n"
    ) in validation
    performance = body.split("### Performance\n", 1)[1]
    assert performance.startswith("smoke: 900 req/s")
    assert "Load target: the local stand-in, not the sandbox" in performance


def test_a_secret_in_a_controllers_message_does_not_reach_the_pull_request(harness: Harness) -> None:
    """The objects' messages are the cluster's text: a fetch error quoting a credential was redacted when the
    validation's result was recorded (the inventory redacts what it stores), and the body is made from that record."""
    secret = "ghp_promote-body-secret-7f3a"
    register_secret(secret)
    harness.validated_and_torn_down()
    report = {
        "branch": BRANCH,
        "readiness_checked": True,
        "readiness": [
            {
                "object": "GitRepository/flux-system/flux-system",
                "ready": True,
                "reason": "Succeeded",
                "message": f"fetched from https://git:{secret}@git.example.test/fleet.git",
            }
        ],
    }
    harness.record(Stage.validate, "validation passed", {"passed": True, "report": report})
    promote(harness.ctx)
    body = json.loads((harness.config.state_dir / "pull-requests" / "1.json").read_text())["body"]
    assert "GitRepository/flux-system/flux-system" in body
    assert secret not in body


def test_rerun_pushes_nothing_new_and_finds_the_pull_request(harness: Harness) -> None:
    harness.validated_and_torn_down()
    promote(harness.ctx)
    tip = harness.tip(BRANCH)
    again = promote(harness.ctx)
    assert harness.tip(BRANCH) == tip
    assert again.details["promoted"] == "earlier"
    assert again.details["pull_request"]["created"] is False
    assert len(list((harness.config.state_dir / "pull-requests").glob("*.json"))) == 1


@pytest.mark.parametrize("details", [None, {"passed": False}])
def test_refused_before_validation_passed(harness: Harness, details: dict[str, Any] | None) -> None:
    if details is not None:
        harness.record(Stage.validate, "failed", details)
    harness.record(Stage.teardown, "torn down", {})
    tip = harness.tip(BRANCH)
    with pytest.raises(PromotionRefusedError, match="has not passed validation; nothing promoted"):
        promote(harness.ctx)
    assert harness.tip(BRANCH) == tip
    assert not (harness.config.state_dir / "pull-requests").exists()


def test_refused_before_teardown(harness: Harness) -> None:
    harness.record(Stage.validate, "ok", {"passed": True})
    tip = harness.tip(BRANCH)
    with pytest.raises(PromotionRefusedError, match="is not torn down yet .*sandbox destroy sandbox-demo"):
        promote(harness.ctx)
    assert harness.tip(BRANCH) == tip


def test_refused_when_development_changed_the_same_file(harness: Harness) -> None:
    harness.validated_and_torn_down()
    harness.push_to_main("clusters/development/apps.yaml", lambda t: t + "# a note from someone else\n")
    main_tip, tip = harness.tip("main"), harness.tip(BRANCH)
    with pytest.raises(ConflictError) as caught:
        promote(harness.ctx)
    message = str(caught.value)
    assert (
        "development changed on main since sandbox-demo was cut in files the sandbox also changed: apps.yaml" in message
    )
    assert "nothing pushed" in message
    assert (harness.tip(BRANCH), harness.tip("main")) == (tip, main_tip)
    assert not (harness.config.state_dir / "pull-requests").exists()


def test_development_changes_elsewhere_do_not_block(harness: Harness) -> None:
    harness.validated_and_torn_down()
    harness.push_to_main("clusters/development/platform.yaml", lambda t: t.replace("interval: 1m0s", "interval: 2m0s"))
    harness.push_to_main("clusters/development/flux-system/gotk-sync.yaml", lambda t: t + "# regenerated\n")
    promote(harness.ctx)
    # Against main's current tip, the branch still changes only apps.yaml: a clean merge.
    assert git(harness.remote, "diff", "--name-only", f"main...{BRANCH}").split() == ["clusters/development/apps.yaml"]
    merged = git(harness.remote, "merge-tree", "--write-tree", "main", BRANCH).split()[0]
    assert "interval: 2m0s" in git(harness.remote, "show", f"{merged}:clusters/development/platform.yaml")
    assert '"6.7.2"' in git(harness.remote, "show", f"{merged}:clusters/development/apps.yaml")


def test_github_without_token_prints_the_compare_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_TEST_GITHUB_TOKEN", raising=False)
    h = Harness(
        tmp_path,
        hosting={
            "type": "github",
            "api_url": "https://api.github.com",
            "repository": "example-org/fleet-infra",
            "token_env": "FLEET_TEST_GITHUB_TOKEN",
        },
    )
    try:
        h.validated_and_torn_down()
        result = promote(h.ctx)
    finally:
        h.ctx.inventory.close()
    url = f"https://github.com/example-org/fleet-infra/compare/main...{BRANCH}?expand=1"
    assert result.details["pull_request"]["manual"] is True
    assert url in result.summary and "no git-hosting token" in result.summary
    assert f"no git-hosting token: open the pull request {BRANCH} -> main at {url}" in h.progress


def test_a_sandbox_that_changed_nothing_opens_no_pull_request(tmp_path: Path) -> None:
    h = Harness(tmp_path, change=False)
    try:
        h.validated_and_torn_down()
        result = promote(h.ctx)
    finally:
        h.ctx.inventory.close()
    assert result.details["pull_request"] is None and "changed nothing" in result.summary
    assert git(h.remote, "diff", "--name-only", f"main...{BRANCH}") == ""
    assert f"clusters/{SANDBOX}/" not in git(h.remote, "ls-tree", "-r", "--name-only", BRANCH)
    assert not (h.config.state_dir / "pull-requests").exists()


def test_a_sandbox_of_a_canary_goes_back_to_the_canary_never_over_development(tmp_path: Path) -> None:
    """A sandbox cloned from the canary ``local`` used to be copied over ``clusters/development/``: development's
    Flux components, its ``kustomization.yaml`` and its applications replaced by the canary's (found on the real
    tier, tests/real/test_local_sandbox.py: a 270 kB diff)."""
    from sandbox.demo import LOCAL_DEMO_SANDBOX, local_demo_request, prepare_local_demo
    from sandbox.watch import watch_promotion

    config_path = prepare_local_demo(tmp_path / "demo", sys.executable, 19418)
    config = load_config(config_path)
    remote = tmp_path / "demo" / "remote.git"
    request = local_demo_request(config_path)
    inventory = open_inventory(config)
    record = register(config, inventory, validate_request(config, request), resume=False)
    ctx = SandboxContext(config=config, inventory=inventory, drivers=build_drivers(config), record=record)
    try:
        branch = record.branch or ""
        inventory.stage_completed(
            LOCAL_DEMO_SANDBOX, record.lifecycle_id, Stage.clone, clone(ctx, request.change).model_dump(mode="json")
        )
        for stage, details in ((Stage.validate, {"passed": True}), (Stage.teardown, {"destroyed": True})):
            inventory.stage_completed(
                LOCAL_DEMO_SANDBOX,
                record.lifecycle_id,
                stage,
                {"stage": stage.value, "summary": "ok", "details": details},
            )
        inventory.update(LOCAL_DEMO_SANDBOX, status=SandboxStatus.destroyed)
        ctx.refresh()
        promoted = promote(ctx)
        inventory.stage_completed(
            LOCAL_DEMO_SANDBOX, record.lifecycle_id, Stage.promote, promoted.model_dump(mode="json")
        )
        landing = watch_promotion(ctx)
    finally:
        inventory.close()
    assert git(remote, "diff", "--name-only", f"main...{branch}").split() == ["clusters/local/platform.yaml"]
    assert git(remote, "diff", f"main...{branch}", "--", "clusters/development/") == ""
    diff = git(remote, "diff", f"main...{branch}")
    assert "-  interval: 10m0s" in diff and '+  interval: "5m0s"' in diff
    assert git(remote, "log", "-1", "--format=%s", branch).strip() == f"OPS-2: promote {LOCAL_DEMO_SANDBOX} to local"
    body = json.loads((config.state_dir / "pull-requests" / "1.json").read_text())["body"]
    assert "back to `clusters/local/`" in body and "- `platform.yaml`: +1 -1" in body
    assert "`flux-system/gotk-sync.yaml` is never copied back: `clusters/local/` keeps its own." in body
    assert landing.outcome == "awaiting merge" and "'sandbox watch local'" in landing.summary
