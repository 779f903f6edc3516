"""Fault injection: ``sandbox demo --workdir DIR`` killed (SIGKILL) at every stage boundary and inside every stage.

One work directory, one chain of runs: run 1 is killed at point 1, run 2 resumes
and is killed at point 2, …, run 15 finishes the lifecycle. Each of the 14 points
is therefore a real crash followed by a real resume, and every resume must skip
what was completed before the crash, complete what the crash interrupted and
take over the dead run's lock at once. (A fresh directory per point would repeat
the same stages 14 times over for no more coverage; the chain keeps the matrix
within about two minutes on two cores.)

The kill comes from outside, the way a lost machine or an OOM kill comes: the test
reads the log lines Prefect prints and kills the whole process group the moment
a line appears — a stage's completion line for a boundary, the first progress
line of a stage's task for "inside". Nothing in the product knows.

At the end: every stage completed exactly once (``executions == 1`` in ``sandbox
list --output json``), one terraform apply created the cluster, one branch, one
pull request, one inventory record, and nothing left behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.config import load_config
from sandbox.demo import DEMO_SANDBOX, prepare_demo
from sandbox.locks import lock_name, note_name
from sandbox.models import STAGE_ORDER, Stage, StageStatus
from tests.integration.reliability_support import (
    KilledRun,
    cli_env,
    edit_config,
    records,
    remote_branches,
    run_until,
    terraform_calls,
    write_terraform_shim,
)
from tests.integration.sandbox_cli import BIN, sandbox_cli

# Fifteen real runs in a chain, all in the module's fixture: about two minutes on two
# idle cores, much longer on a loaded machine; the default 300 s is per test and
# would cut the chain (and fail all 18 tests at once) when CPUs are shared.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

BRANCH = "OPS-1-bump-podinfo"
_DONE = r"(executed|already completed|cached)"


@dataclass(frozen=True)
class Point:
    """Where a run is killed: just before ``stage`` starts, or inside it."""

    stage: Stage
    inside: bool

    @property
    def label(self) -> str:
        return f"{'inside' if self.inside else 'before'}-{self.stage.value}"

    @property
    def pattern(self) -> re.Pattern[str]:
        if self.inside:
            # The first line the stage's task logs itself: the stage is under way.
            return re.compile(rf"Task run '{re.escape(self.stage.value)}-[0-9a-f]+' - (?!Finished in state)")
        index = STAGE_ORDER.index(self.stage)
        if index == 0:
            return re.compile(r"Task run 'register-[0-9a-f]+' - Finished in state Completed")
        previous = STAGE_ORDER[index - 1].value
        return re.compile(rf"Flow run '[^']+' - stage {re.escape(previous)}: {_DONE}")

    @property
    def completed_before(self) -> list[Stage]:
        """The stages certainly completed when the run is killed here."""
        return list(STAGE_ORDER[: STAGE_ORDER.index(self.stage)])


POINTS = [Point(stage, inside) for stage in STAGE_ORDER for inside in (False, True)]


@dataclass
class Matrix:
    workdir: Path
    config_path: Path
    terraform_log: Path
    kills: list[KilledRun]
    snapshots: list[dict[str, tuple[str, int]]]  # after each kill: stage -> (status, executions)
    record_counts: list[int]
    final: subprocess.CompletedProcess[str]

    def next_stderr(self, index: int) -> str:
        """What the run after kill ``index`` printed (the final run after the last kill)."""
        if index + 1 < len(self.kills):
            return "\n".join(self.kills[index + 1].stderr)
        return self.final.stderr


@pytest.fixture(scope="module")
def matrix(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    workdir = tmp_path_factory.mktemp("fault-matrix")
    config_path = prepare_demo(workdir)
    shim, log = write_terraform_shim(workdir / "bin")
    edit_config(
        config_path,
        drivers={
            "terraform": {"binary": str(shim)},
            "cluster": {"simulation": {"readiness_delay_seconds": 0.05}},
            "load_generator": {"duration_seconds": 1},
        },
    )
    kills: list[KilledRun] = []
    snapshots: list[dict[str, tuple[str, int]]] = []
    counts: list[int] = []
    for point in POINTS:
        run = run_until(["demo", "--workdir", str(workdir)], point.pattern, api_url=prefect_server, point=point.label)
        kills.append(run)
        found = records(config_path)
        counts.append(len(found))
        snapshots.append({s.name.value: (s.status.value, s.executions) for r in found for s in r.stages})
    final = subprocess.run(
        [str(BIN / "sandbox"), "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env=cli_env(prefect_server),
        timeout=300,
        check=False,
    )
    return Matrix(workdir, config_path, log, kills, snapshots, counts, final)


@pytest.mark.parametrize("point", POINTS, ids=[p.label for p in POINTS])
def test_killed_at_point_then_resumed(matrix: Matrix, point: Point) -> None:
    index = POINTS.index(point)
    run = matrix.kills[index]
    assert run.killed, f"{point.label}: the trigger never appeared (exit {run.returncode}): {run.stderr[-5:]}"
    # The crash left one record and no stage done twice.
    assert matrix.record_counts[index] == 1
    snapshot = matrix.snapshots[index]
    assert all(executions <= 1 for _, executions in snapshot.values()), snapshot
    for stage in point.completed_before:
        assert snapshot[stage.value] == (StageStatus.completed.value, 1), (stage, snapshot)
    # The next run took over the dead run's lock at once ...
    following = matrix.next_stderr(index)
    assert re.search(
        rf"taking over the lock of sandbox '{DEMO_SANDBOX}' from .*: its process \d+ on .* is gone", following
    )
    # ... and ran none of the stages completed before the crash again.
    executed_again = {
        stage.value
        for stage in point.completed_before
        if re.search(rf"Flow run '[^']+' - stage {re.escape(stage.value)}: executed", following)
    }
    assert not executed_again, f"{point.label}: {executed_again} executed again after the crash"


def test_resumed_lifecycle_completed_every_stage_once(matrix: Matrix, prefect_server: str) -> None:
    assert matrix.final.returncode == 0, matrix.final.stderr[-3000:]
    listing = sandbox_cli("list", "--config", str(matrix.config_path), "--output", "json", api_url=prefect_server)
    assert listing.returncode == 0, listing.stderr
    [entry] = json.loads(listing.stdout)
    assert (entry["name"], entry["status"]) == (DEMO_SANDBOX, "destroyed")
    assert [(s["name"], s["status"], s["executions"]) for s in entry["stages"]] == [
        (stage.value, "completed", 1) for stage in STAGE_ORDER
    ]


def test_one_terraform_apply_created_the_cluster(matrix: Matrix) -> None:
    sandbox_workdir = str(matrix.workdir / "state" / "sandboxes" / DEMO_SANDBOX / "terraform")
    calls = [c for c in terraform_calls(matrix.terraform_log) if c.cwd == sandbox_workdir and c.returncode == 0]
    applies = [c for c in calls if c.subcommand == "apply"]
    assert [(c.added, c.changed, c.destroyed) for c in applies if c.added or c.changed or c.destroyed] == [(2, 0, 0)]
    assert len([c for c in calls if c.subcommand == "destroy"]) == 1


def test_one_branch_one_pull_request_one_record(matrix: Matrix) -> None:
    assert remote_branches(matrix.workdir / "remote.git") == {"main", BRANCH}
    pull_requests = [json.loads(p.read_text()) for p in (matrix.workdir / "state" / "pull-requests").glob("*.json")]
    assert [(pr["head"], pr["base"]) for pr in pull_requests] == [(BRANCH, "main")]
    assert [r.name for r in records(matrix.config_path)] == [DEMO_SANDBOX]


def test_nothing_leaked(matrix: Matrix) -> None:
    config = load_config(matrix.config_path)
    state = config.state_dir / "sandboxes" / DEMO_SANDBOX
    assert not (state / "simulated-cluster").exists(), "the simulated cluster (and its external resources) remain"
    assert not (state / "teardown-pending.json").exists()
    listed = subprocess.run(
        ["terraform", "state", "list"],
        cwd=state / "terraform",
        env={**os.environ, "TF_WORKSPACE": DEMO_SANDBOX},
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0 and listed.stdout.strip() == "", listed.stdout + listed.stderr
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(lock_name(DEMO_SANDBOX, config.fleet_id)).active_slots == 0
        assert client.read_variable_by_name(note_name(DEMO_SANDBOX, config.fleet_id)) is None
