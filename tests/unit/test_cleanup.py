"""The cleanup's core: what it finds and how it resolves it (no Prefect; real git, SQLite and PostgreSQL).

Each test builds the demo fleet (a bare git remote), an inventory on SQLite or
on a real PostgreSQL server, and sandboxes with simulated clusters; orphaned
terraform states need the terraform binary and are covered by
``tests/integration/test_cleanup_flow.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from cli.cleanup_cmd import report_lines
from sandbox.cleanup import (
    CleanupAction,
    CleanupActionKind,
    CleanupKind,
    CleanupReport,
    delete_orphan_branch,
    plan_cleanup,
    propose_directory_removal,
    reconcile_record,
    still_due,
)
from sandbox.config import FleetConfig
from sandbox.demo import prepare_demo
from sandbox.errors import ConflictError
from sandbox.inventory import Inventory, utcnow
from sandbox.models import SandboxKind, SandboxStatus
from sandbox.wiring import Drivers, build_drivers, open_inventory, sandbox_state_dir
from tests.cleanup_support import add_sandbox, checkout, make_fleet, push_sandbox_branch, remote_branches, remote_tree
from tests.pg_server import inventory_url, postgres_server, postgres_url  # noqa: F401

Env = tuple[FleetConfig, Inventory, Drivers]


@pytest.fixture(scope="module")
def fleet_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo fleet, made once per module and copied by each test."""
    workdir = tmp_path_factory.mktemp("fleet-template") / "fleet"
    prepare_demo(workdir)
    return workdir


@pytest.fixture
def env(tmp_path: Path, inventory_url: str, fleet_template: Path) -> Iterator[Env]:  # noqa: F811
    config = make_fleet(tmp_path / "fleet", inventory_url, template=fleet_template)
    inventory = open_inventory(config)
    try:
        yield config, inventory, build_drivers(config)
    finally:
        inventory.close()


def targets(plan_actions: list[CleanupAction]) -> list[tuple[str, str, str]]:
    return sorted((a.kind.value, a.action.value, a.target) for a in plan_actions)


def test_expired_sandboxes_are_planned_unless_kept_busy_or_destroyed(env: Env) -> None:
    config, inventory, drivers = env
    add_sandbox(config, inventory, "sb-expired")
    add_sandbox(config, inventory, "sb-failed", status=SandboxStatus.failed, cluster=False)
    add_sandbox(config, inventory, "sb-kept", keep=True)
    add_sandbox(config, inventory, "sb-alive", expires_in=timedelta(hours=5))
    add_sandbox(config, inventory, "sb-gone", status=SandboxStatus.destroyed, cluster=False)
    # Expired, but a lifecycle is creating it right now: left for the next run.
    add_sandbox(config, inventory, "sb-busy", status=SandboxStatus.creating, updated_at=utcnow())
    before = [r.model_dump() for r in inventory.list()]
    plan = plan_cleanup(config, inventory, drivers, run_id="r1", dry_run=True)
    assert targets(plan.actions) == [
        ("expired", "teardown", "sb-expired"),
        ("expired", "teardown", "sb-failed"),
    ]
    assert (plan.protected_expired, plan.busy, plan.warnings) == (1, ["sb-busy"], [])
    expired = next(a for a in plan.actions if a.target == "sb-expired")
    # 0.1/h; assumed noticed 168 h after its expiry, one hour ago: 167 h saved.
    assert (expired.hourly_cost, expired.estimated_saving) == (0.1, 16.7)
    # Planning changed nothing.
    assert [r.model_dump() for r in inventory.list()] == before
    assert inventory.cleanup_actions(run_id="r1") == []


def test_a_record_whose_infrastructure_is_gone_is_reconciled_after_the_grace(env: Env) -> None:
    config, inventory, drivers = env
    long_ago = utcnow() - timedelta(hours=3)
    add_sandbox(config, inventory, "sb-stale", expires_in=timedelta(days=2), cluster=False, updated_at=long_ago)
    add_sandbox(config, inventory, "sb-young", expires_in=timedelta(days=2), cluster=False, updated_at=utcnow())
    add_sandbox(config, inventory, "sb-running", expires_in=timedelta(days=2), updated_at=long_ago)
    plan = plan_cleanup(config, inventory, drivers, run_id="r2")
    assert targets(plan.actions) == [("stale-record", "reconcile-record", "sb-stale")]
    status, detail = reconcile_record(config, inventory, drivers, plan.actions[0], run_id="r2")
    assert (status, detail) == ("done", "record active -> destroyed (infrastructure already gone)")
    stale = inventory.get("sb-stale")
    assert stale.status is SandboxStatus.destroyed and stale.destroyed_at is not None
    assert "r2" in (stale.last_error or "")
    assert inventory.get("sb-young").status is SandboxStatus.active
    # Nothing left to do on the next run.
    assert plan_cleanup(config, inventory, drivers).actions == []


def test_reconciling_checks_the_infrastructure_again(env: Env) -> None:
    config, inventory, drivers = env
    add_sandbox(config, inventory, "sb-back", expires_in=timedelta(days=2), cluster=False)
    [action] = plan_cleanup(config, inventory, drivers).actions
    # A lifecycle provisioned it meanwhile.
    directory = sandbox_state_dir(config, "sb-back") / "simulated-cluster"
    directory.mkdir(parents=True)
    inventory.update("sb-back", cluster_endpoint=f"simulated://{directory}")
    with pytest.raises(ConflictError, match="exists again"):
        reconcile_record(config, inventory, drivers, action, run_id="r3")
    assert inventory.get("sb-back").status is SandboxStatus.active


def test_a_sandbox_extended_or_kept_after_planning_is_left_alone(env: Env) -> None:
    config, inventory, drivers = env
    add_sandbox(config, inventory, "sb-ext")
    add_sandbox(config, inventory, "sb-keep")
    plan = plan_cleanup(config, inventory, drivers)
    inventory.update("sb-ext", expires_at=utcnow() + timedelta(hours=24))
    inventory.update("sb-keep", keep=True)
    now = utcnow()
    verdicts = {a.target: still_due(inventory, a, now)[1] for a in plan.actions}
    assert verdicts["sb-ext"].startswith("extended since the plan was made")
    assert verdicts["sb-keep"] == "protected with --keep since the plan was made"


def test_orphaned_sandbox_branches_are_found_and_deleted_at_the_commit_found(env: Env, tmp_path: Path) -> None:
    config, inventory, drivers = env
    work = tmp_path / "work"
    # A clone that crashed before the inventory heard of it (no record at all).
    orphan_sha = push_sandbox_branch(config, work, "OPS-5-lost", "sb-lost")
    # A bootstrapped sandbox whose record was lost.
    push_sandbox_branch(config, work, "OPS-6-lost-too", "sb-lost-too", sync_branch="OPS-6-lost-too")
    # A performance sandbox that was destroyed: its branch is never promoted.
    push_sandbox_branch(config, work, "perf-sb-perf", "sb-perf", sync_branch="perf-sb-perf")
    add_sandbox(
        config, inventory, "sb-perf", status=SandboxStatus.destroyed, kind=SandboxKind.performance,
        branch="perf-sb-perf", cluster=False,
    )  # fmt: skip
    # Kept: a destroyed platform sandbox's branch (its pull request), a live sandbox's
    # branch, and a person's branch adding a long-lived cluster tracking main.
    push_sandbox_branch(config, work, "OPS-7-done", "sb-done", sync_branch="OPS-7-done")
    add_sandbox(config, inventory, "sb-done", status=SandboxStatus.destroyed, branch="OPS-7-done", cluster=False)
    push_sandbox_branch(config, work, "OPS-8-live", "sb-live", sync_branch="OPS-8-live")
    add_sandbox(config, inventory, "sb-live", expires_in=timedelta(days=1), branch="OPS-8-live")
    push_sandbox_branch(config, work, "add-qa-cluster", "qa", sync_branch="main")
    plan = plan_cleanup(config, inventory, drivers, run_id="r4")
    assert targets(plan.actions) == [
        ("orphan-branch", "delete-branch", "OPS-5-lost"),
        ("orphan-branch", "delete-branch", "OPS-6-lost-too"),
        ("orphan-branch", "delete-branch", "perf-sb-perf"),
    ]
    lost = next(a for a in plan.actions if a.target == "OPS-5-lost")
    assert lost.sha == orphan_sha and "no record owns it" in lost.reason
    assert "performance sandbox is destroyed" in next(a for a in plan.actions if a.target == "perf-sb-perf").reason

    # Somebody pushes to one branch after the plan: it is not deleted.
    repo = checkout(config, tmp_path / "late")
    drivers.git.checkout(repo, "OPS-6-lost-too")
    (repo / "clusters" / "sb-lost-too" / "note.txt").write_text("still needed\n")
    drivers.git.commit_all(repo, "keep working")
    drivers.git.push(repo, "OPS-6-lost-too")
    outcomes: dict[str, str] = {}
    for action in plan.actions:
        try:
            outcomes[action.target] = delete_orphan_branch(config, drivers, action)[0]
        except ConflictError as exc:
            outcomes[action.target] = f"refused: {exc}"
    assert outcomes["OPS-5-lost"] == outcomes["perf-sb-perf"] == "done"
    assert outcomes["OPS-6-lost-too"].startswith("refused: branch OPS-6-lost-too moved since the plan")
    assert set(remote_branches(config)) == {"main", "OPS-6-lost-too", "OPS-7-done", "OPS-8-live", "add-qa-cluster"}
    # Deleting again is a no-op.
    assert delete_orphan_branch(config, drivers, lost) == ("skipped", "already deleted")


def test_a_sandbox_directory_on_the_default_branch_gets_a_removal_pull_request(env: Env, tmp_path: Path) -> None:
    config, inventory, drivers = env
    work = tmp_path / "work"
    # A sandbox branch merged into main without promotion (its gotk-sync tracks the sandbox branch) ...
    push_sandbox_branch(config, work, "main", "sb-merged", sync_branch="OPS-3-merged")
    # ... and a cluster that tracks main but is missing from fleet.yaml: not a sandbox.
    push_sandbox_branch(config, work, "main", "edge", sync_branch="main")
    plan = plan_cleanup(config, inventory, drivers, run_id="r5")
    assert targets(plan.actions) == [("orphan-directory", "propose-removal", "clusters/sb-merged")]
    status, detail = propose_directory_removal(config, drivers, plan.actions[0])
    assert status == "done" and "pull request #1 removes clusters/sb-merged/" in detail
    branch = "fleet-sandbox-cleanup/remove-sb-merged"
    assert "sb-merged" not in remote_tree(config, branch) and "edge" in remote_tree(config, branch)
    assert "sb-merged" in remote_tree(config, "main")  # never pushed to the default branch
    # The next night proposes the same pull request, not another one.
    again = plan_cleanup(config, inventory, drivers).actions
    assert propose_directory_removal(config, drivers, again[0]) == ("done", detail)
    assert len(list((config.state_dir / "pull-requests").glob("*.json"))) == 1
    # The proposal branch itself is not mistaken for an orphaned sandbox branch.
    assert targets(again) == targets(plan.actions)


def test_an_unreachable_remote_is_a_warning_and_the_rest_is_planned(env: Env) -> None:
    config, inventory, drivers = env
    add_sandbox(config, inventory, "sb-expired")
    broken = config.model_copy(
        update={"fleet_repo": config.fleet_repo.model_copy(update={"remote": str(config.base_dir / "missing.git")})}
    )
    plan = plan_cleanup(broken, inventory, drivers)
    assert targets(plan.actions) == [("expired", "teardown", "sb-expired")]
    [warning] = plan.warnings
    assert warning.startswith("could not list the fleet remote's branches:")
    report = CleanupReport.of(plan)
    assert not report.ok() and report.count("planned") == 1


def test_reports_render_rows_totals_and_json(env: Env) -> None:
    config, inventory, drivers = env
    add_sandbox(config, inventory, "sb-one")
    add_sandbox(config, inventory, "sb-two", keep=True)
    plan = plan_cleanup(config, inventory, drivers, run_id="r6", dry_run=True)
    document = CleanupReport.of(plan).as_json()
    assert [(a["target"], a["status"]) for a in document["actions"]] == [("sb-one", "planned")]
    assert document["totals"] == {"planned": 1, "done": 0, "skipped": 0, "failed": 0, "estimated_saving": 16.7}
    assert document["protected_expired"] == 1 and document["dry_run"] is True
    assert CleanupKind.expired.value == document["actions"][0]["kind"]
    assert CleanupActionKind.teardown.value == document["actions"][0]["action"]


def test_the_text_report_lists_each_action_and_only_counts_protected_ones(env: Env) -> None:
    config, inventory, drivers = env
    add_sandbox(config, inventory, "sb-one")
    add_sandbox(config, inventory, "sb-secret-keep", keep=True)
    lines = report_lines(CleanupReport.of(plan_cleanup(config, inventory, drivers, run_id="r7", dry_run=True)))
    assert lines[0] == "cleanup r7 (dry run: nothing changed): 1 action(s)"
    assert lines[1].split() == ["KIND", "TARGET", "ACTION", "STATUS", "COST/H", "SAVING", "DETAIL"]
    assert lines[2].split()[:6] == ["expired", "sb-one", "teardown", "planned", "0.10", "16.70"]
    assert lines[3].startswith("estimated saving: would save 16.70 USD")
    assert lines[4] == "1 expired sandbox(es) not cleaned: protected with --keep"
    assert not any("sb-secret-keep" in line for line in lines)
    assert report_lines(CleanupReport.of(plan_cleanup(config, inventory, drivers, run_id="r8")))[0].startswith(
        "cleanup r8: 1 action(s)"
    )


def test_a_killed_flows_local_cluster_processes_are_found_and_stopped(env: Env) -> None:
    from sandbox.cleanup import stop_orphan_processes
    from sandbox.localcluster import control_plane
    from sandbox.localcluster.processes import ProcessSpec, find_local_cluster_processes, spawn, terminate

    config, inventory, drivers = env
    sandboxes = config.state_dir / "sandboxes"

    def cluster(name: str) -> Path:
        # Where the infra/local-cluster stack puts it: inside the sandbox's terraform working directory.
        where = control_plane.prepare(sandboxes / name / "terraform" / ".local-cluster").root
        spawn(where, ProcessSpec("kube-apiserver", ("/bin/sleep", "300")))
        spawn(where, ProcessSpec("etcd", ("/bin/sleep", "300")))
        return where

    add_sandbox(config, inventory, "sb-live", expires_in=timedelta(days=2))
    live = cluster("sb-live")
    try:
        killed = cluster("sb-killed")  # SIGKILLed mid-provision: no record, no terraform state
        gone = cluster("sb-gone")  # SIGKILLed mid-teardown after its directory was deleted
        shutil.rmtree(gone)
        plan = plan_cleanup(config, inventory, drivers, run_id="r9")
        assert targets(plan.actions) == [
            ("orphan-processes", "stop-processes", "sb-gone"),
            ("orphan-processes", "stop-processes", "sb-killed"),
        ]
        reasons = {a.target: a.reason for a in plan.actions}
        assert "2 process(es)" in reasons["sb-killed"] and "no record" in reasons["sb-killed"]
        assert "its cluster directory is gone" in reasons["sb-gone"]
        for action in plan.actions:
            assert stop_orphan_processes(config, action)[0] == "done"
        assert find_local_cluster_processes(killed) == [] and not killed.exists()
        assert find_local_cluster_processes(gone) == []
        assert len(find_local_cluster_processes(live)) == 2  # a live sandbox's cluster is left alone
        assert plan_cleanup(config, inventory, drivers).actions == []
    finally:
        terminate(find_local_cluster_processes(live), grace=1.0)
