"""The nightly cleanup: find expired and orphaned sandboxes, and resolve each.

Prefect-free; ``tasks/cleanup.py`` and ``flows/cleanup.py`` run it. What is
looked for, and what is done about it:

================= ======================================================= ==========================
kind              found when                                              action
================= ======================================================= ==========================
expired           a record past its expiry, not destroyed, not ``keep``   ``teardown``: the normal
                                                                          teardown stage
orphan-state      a sandbox's terraform working dir
                  (``<state_dir>/sandboxes/<name>/terraform``) whose      ``adopt-and-teardown``: a
                  workspace ``<name>`` tracks resources, with no live     record is made (or reopened)
                  record                                                  then the teardown stage
stale-record      a live record whose infrastructure is gone (no         ``reconcile-record``: the
                  terraform state, no cluster), untouched for ``grace``   record says destroyed
orphan-branch     a fleet-remote branch adding a sandbox directory that  ``delete-branch`` (only
                  no record owns, or whose performance sandbox is         while it still points at
                  destroyed                                               the commit found)
orphan-directory  a sandbox directory on the default branch without a    ``propose-removal``: a pull
                  live record                                             request deleting it
orphan-processes  processes of a local cluster (found by their marker,    ``stop-processes``: stopped,
                  sandbox.localcluster.processes) under                   and the cluster directory
                  ``<state_dir>/sandboxes/<name>/`` with no live record   deleted (only if marked)
                  and no terraform state to tear them down with, or
                  whose cluster directory is gone (a flow SIGKILLed
                  mid-provision or mid-teardown)
================= ======================================================= ==========================

Never touched: sandboxes with ``keep``; records busy creating or tearing down
within ``cleanup.grace``; long-lived environments and protected names; branches
of destroyed *platform* sandboxes (they carry the change a pull request
promotes); directories bootstrapped to track the default branch (a long-lived
cluster missing from ``fleet.yaml``). Nothing is pushed to the default branch:
removing a directory from it goes through a pull request.

A sandbox directory (``clusters/<name>``) is recognised on a branch by what
the clone and bootstrap stages make: a valid sandbox name that is no
environment, absent from the default branch, with no ``flux-system/gotk-sync.yaml``
(cloned, not yet bootstrapped) or one whose GitRepository tracks that branch.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from sandbox import fleetrepo, paths
from sandbox.config import FleetConfig
from sandbox.cost import estimate_for_variables, estimated_saving, with_cost
from sandbox.drivers.terraform import public_outputs
from sandbox.errors import ConflictError, InvalidInputError, PermanentError, SandboxError
from sandbox.inventory import CleanupActionEntry, Inventory, utcnow
from sandbox.manifest_objects import load_mappings
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus
from sandbox.naming import parse_duration, validate_sandbox_name
from sandbox.progress import Progress, quiet
from sandbox.wiring import Drivers, sandbox_state_dir

#: Branches cleanup pushes to propose removing a directory from the default branch.
REMOVAL_BRANCH_PREFIX = "fleet-sandbox-cleanup/remove-"

#: Statuses in which a run is probably working on the sandbox right now.
BUSY_STATUSES = frozenset({SandboxStatus.creating, SandboxStatus.tearing_down})


class CleanupFailedError(PermanentError):
    """At least one cleanup action failed, or part of the scan could not be made."""


class CleanupKind(StrEnum):
    """What cleanup found."""

    expired = "expired"
    orphan_state = "orphan-state"
    stale_record = "stale-record"
    orphan_branch = "orphan-branch"
    orphan_directory = "orphan-directory"
    orphan_processes = "orphan-processes"


class CleanupActionKind(StrEnum):
    """What cleanup does about it."""

    teardown = "teardown"
    adopt_and_teardown = "adopt-and-teardown"
    reconcile_record = "reconcile-record"
    delete_branch = "delete-branch"
    propose_removal = "propose-removal"
    stop_processes = "stop-processes"


#: Actions that destroy infrastructure through the teardown stage.
TEARDOWN_ACTIONS = frozenset({CleanupActionKind.teardown, CleanupActionKind.adopt_and_teardown})


class CleanupAction(BaseModel):
    """One planned action on one target."""

    kind: CleanupKind
    action: CleanupActionKind
    target: str = Field(description="Sandbox name, branch or cluster directory")
    reason: str = Field(description="Why, in one line")
    hourly_cost: float | None = Field(default=None, description="Estimated cost per hour of what is destroyed")
    estimated_saving: float | None = Field(default=None, description="See sandbox.cost.estimated_saving")
    lifecycle_id: str | None = Field(default=None, description="teardown: the record's lifecycle")
    workdir: str | None = Field(default=None, description="adopt-and-teardown: the terraform working directory")
    sandbox_kind: SandboxKind | None = Field(default=None, description="adopt-and-teardown: the kind guessed")
    sha: str | None = Field(default=None, description="delete-branch: the tip found (deleted only if unchanged)")
    directory: str | None = Field(
        default=None, description="propose-removal: the repository path; stop-processes: the local cluster's directory"
    )


OutcomeStatus = Literal["planned", "done", "skipped", "failed"]


class CleanupOutcome(BaseModel):
    """How one action went."""

    action: CleanupAction
    status: OutcomeStatus
    detail: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


class CleanupPlan(BaseModel):
    """What a cleanup run will do."""

    run_id: str
    generated_at: datetime
    dry_run: bool
    concurrency: int
    currency: str
    actions: list[CleanupAction] = Field(default_factory=list)
    protected_expired: int = Field(default=0, description="Expired sandboxes left alone because of keep")
    busy: list[str] = Field(default_factory=list, description="Expired sandboxes left alone while a run works on them")
    warnings: list[str] = Field(default_factory=list, description="Parts of the scan that could not be made")


class CleanupReport(BaseModel):
    """What a cleanup run did (or, dry, would do)."""

    run_id: str
    generated_at: datetime
    dry_run: bool
    currency: str
    outcomes: list[CleanupOutcome] = Field(default_factory=list)
    protected_expired: int = 0
    busy: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, plan: CleanupPlan, outcomes: list[CleanupOutcome] | None = None) -> CleanupReport:
        """The report of ``plan``: its outcomes, or every action as planned (dry run)."""
        if outcomes is None:
            outcomes = [CleanupOutcome(action=a, status="planned") for a in plan.actions]
        return cls(
            run_id=plan.run_id,
            generated_at=plan.generated_at,
            dry_run=plan.dry_run,
            currency=plan.currency,
            outcomes=outcomes,
            protected_expired=plan.protected_expired,
            busy=plan.busy,
            warnings=plan.warnings,
        )

    def count(self, status: OutcomeStatus) -> int:
        """How many outcomes have ``status``."""
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[CleanupOutcome]:
        """The failed outcomes."""
        return [o for o in self.outcomes if o.status == "failed"]

    def estimated_saving(self) -> float:
        """Sum of the estimated savings of what was (dry: would be) destroyed."""
        wanted = {"planned"} if self.dry_run else {"done"}
        return round(sum(o.action.estimated_saving or 0.0 for o in self.outcomes if o.status in wanted), 2)

    def ok(self) -> bool:
        """No action failed and the whole scan was made."""
        return not self.failed and not self.warnings

    def failure_line(self) -> str:
        """One line naming what failed."""
        parts = [f"{o.action.action.value} {o.action.target}: {o.detail}" for o in self.failed]
        parts += [f"scan: {w}" for w in self.warnings]
        return f"cleanup {self.run_id}: {len(self.failed)} of {len(self.outcomes)} action(s) failed" + (
            f"; {'; '.join(parts)}" if parts else ""
        )

    def rows(self) -> list[dict[str, Any]]:
        """One plain row per outcome (the summary table artifact, ``--output json``)."""
        return [
            {
                "kind": o.action.kind.value,
                "target": o.action.target,
                "action": o.action.action.value,
                "status": o.status,
                "reason": o.action.reason,
                "detail": o.detail,
                "hourly_cost": o.action.hourly_cost,
                "estimated_saving": o.action.estimated_saving,
            }
            for o in self.outcomes
        ]

    def as_json(self) -> dict[str, Any]:
        """The ``sandbox cleanup --output json`` document."""
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "generated_at": self.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "currency": self.currency,
            "actions": self.rows(),
            "totals": {
                "planned": self.count("planned"),
                "done": self.count("done"),
                "skipped": self.count("skipped"),
                "failed": self.count("failed"),
                "estimated_saving": self.estimated_saving(),
            },
            "protected_expired": self.protected_expired,
            "busy": self.busy,
            "warnings": self.warnings,
        }

    def markdown(self) -> str:
        """A short Markdown summary (the artifact's description)."""
        verb = "would destroy or fix" if self.dry_run else "handled"
        lines = [
            f"**Sandbox cleanup {self.run_id}{' (dry run)' if self.dry_run else ''}**: {verb} {len(self.outcomes)} "
            f"target(s); done {self.count('done')}, skipped {self.count('skipped')}, failed {self.count('failed')}.",
            f"Estimated saving: {self.estimated_saving():.2f} {self.currency} (assumes a forgotten sandbox runs "
            "`cost.unnoticed_hours` past its expiry).",
        ]
        if self.protected_expired:
            lines.append(f"{self.protected_expired} expired sandbox(es) kept: protected with --keep.")
        if self.busy:
            lines.append(f"Left alone while a run works on them: {', '.join(self.busy)}.")
        lines += [f"Scan problem: {w}" for w in self.warnings]
        return "\n\n".join(lines)


# -- finding -------------------------------------------------------------------


def last_activity(record: SandboxRecord) -> datetime:
    """The last change of the record or one of its stages (its creation for old records)."""
    return record.updated_at or record.created_at


def terraform_location(config: FleetConfig, record: SandboxRecord) -> tuple[Path, str]:
    """The record's terraform working directory and workspace (the provision stage's convention by default)."""
    workdir = Path(record.terraform_workdir) if record.terraform_workdir else sandbox_state_dir(config, record.name)
    if not record.terraform_workdir:
        workdir = workdir / "terraform"
    return workdir, record.terraform_workspace or record.name


def infrastructure_present(config: FleetConfig, drivers: Drivers, record: SandboxRecord) -> bool:
    """Whether the sandbox's terraform workspace tracks resources or its (simulated) cluster exists."""
    workdir, workspace = terraform_location(config, record)
    if (workdir / ".terraform").is_dir() and drivers.terraform.has_state(workdir, workspace):
        return True
    endpoint = record.cluster_endpoint or ""
    return endpoint.startswith("simulated://") and Path(endpoint.removeprefix("simulated://")).is_dir()


def _saving(config: FleetConfig, hourly: float | None, now: datetime, expires_at: datetime | None) -> float | None:
    return estimated_saving(hourly, now=now, expires_at=expires_at, unnoticed_hours=config.cost.unnoticed_hours)


def _record_actions(
    config: FleetConfig, drivers: Drivers, records: list[SandboxRecord], now: datetime, plan: CleanupPlan
) -> None:
    grace = parse_duration(config.cleanup.grace)
    for record in records:
        if record.status is SandboxStatus.destroyed:
            continue
        expired = record.expires_at <= now
        if record.keep:
            plan.protected_expired += 1 if expired else 0
            continue
        recent = now - last_activity(record) < grace
        if expired:
            if record.status in BUSY_STATUSES and recent:
                plan.busy.append(record.name)
                continue
            costed = with_cost(config, record)
            plan.actions.append(
                CleanupAction(
                    kind=CleanupKind.expired,
                    action=CleanupActionKind.teardown,
                    target=record.name,
                    reason=f"expired {record.expires_at:%Y-%m-%dT%H:%M:%SZ} (status {record.status.value})",
                    hourly_cost=costed.hourly_cost,
                    estimated_saving=_saving(config, costed.hourly_cost, now, record.expires_at),
                    lifecycle_id=record.lifecycle_id,
                )
            )
            continue
        if recent:
            continue
        try:
            present = infrastructure_present(config, drivers, record)
        except SandboxError as exc:
            plan.warnings.append(f"could not check the infrastructure of {record.name}: {exc}")
            continue
        if not present:
            plan.actions.append(
                CleanupAction(
                    kind=CleanupKind.stale_record,
                    action=CleanupActionKind.reconcile_record,
                    target=record.name,
                    reason=f"record says {record.status.value} but no terraform state or cluster exists",
                    lifecycle_id=record.lifecycle_id,
                )
            )


def closest_environment(config: FleetConfig, outputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The environment whose terraform variables best match a state's outputs, and the differences.

    An orphaned state has no record saying where it was cloned from. The outputs
    of the cluster module (node size, count, version, ...) name the values it was
    applied with; the environment agreeing on most of them is taken, and the
    outputs that differ from it become the adopted record's overrides, so the
    destroy runs with the values the state was applied with. Variables a module
    neither takes from an environment nor outputs cannot be recovered (expose
    the ones a destroy depends on, such as a region, as outputs).
    """
    best_name, best_score = next(iter(config.environments)), -1
    for name, env in config.environments.items():
        variables = env.terraform.variables
        score = sum(1 for key, value in variables.items() if key in outputs and str(outputs[key]) == str(value))
        if score > best_score:
            best_name, best_score = name, score
    variables = config.environments[best_name].terraform.variables
    overrides = {
        key: outputs[key] for key, value in variables.items() if key in outputs and str(outputs[key]) != str(value)
    }
    return best_name, overrides


def _state_actions(
    config: FleetConfig,
    drivers: Drivers,
    by_name: dict[str, SandboxRecord],
    now: datetime,
    plan: CleanupPlan,
    remote_branches: set[str],
) -> None:
    root = config.state_dir / "sandboxes"
    if not root.is_dir():
        return
    tf = drivers.terraform
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        name = directory.name
        record = by_name.get(name)
        if record is not None and record.status is not SandboxStatus.destroyed:
            continue  # its own record accounts for it (expired, stale or alive)
        workdir = directory / "terraform"
        if not (workdir / ".terraform").is_dir():
            continue
        try:
            if not tf.has_state(workdir, name):
                continue
            outputs = public_outputs(tf.outputs(workdir))
        except SandboxError as exc:
            plan.warnings.append(f"could not read the terraform state in {workdir}: {exc}")
            continue
        source_env, overrides = closest_environment(config, outputs)
        variables = {**config.environments[source_env].terraform.variables, **overrides}
        hourly = estimate_for_variables(config, variables).hourly_cost
        why = "no record" if record is None else "its record says destroyed"
        plan.actions.append(
            CleanupAction(
                kind=CleanupKind.orphan_state,
                action=CleanupActionKind.adopt_and_teardown,
                target=name,
                reason=f"terraform workspace {name} in {workdir} tracks resources but {why}",
                hourly_cost=hourly,
                estimated_saving=_saving(config, hourly, now, None),
                workdir=str(workdir),
                sandbox_kind=SandboxKind.performance if f"perf-{name}" in remote_branches else SandboxKind.platform,
            )
        )


def _local_cluster_actions(
    config: FleetConfig, by_name: dict[str, SandboxRecord], now: datetime, plan: CleanupPlan
) -> None:
    """Local clusters whose processes run on with nothing left to stop them (see the table above)."""
    from sandbox.localcluster.processes import find_local_cluster_processes

    root = (config.state_dir / "sandboxes").resolve()
    adopted = {a.target for a in plan.actions if a.action in TEARDOWN_ACTIONS}
    directories: dict[Path, int] = {}
    for process in find_local_cluster_processes():
        directory = Path(process.cluster_dir)
        if root in directory.parents:
            directories[directory] = directories.get(directory, 0) + 1
    for directory, count in sorted(directories.items()):
        name = directory.relative_to(root).parts[0]
        record = by_name.get(name)
        if directory.is_dir():
            if name in adopted:
                continue  # its terraform state is torn down, and the stack's destroy stops them
            if record is not None and record.status is not SandboxStatus.destroyed:
                continue  # a live sandbox's cluster (an expired one is torn down through its record)
            why = "no record" if record is None else "its record says destroyed"
        else:
            why = "its cluster directory is gone"
        plan.actions.append(
            CleanupAction(
                kind=CleanupKind.orphan_processes,
                action=CleanupActionKind.stop_processes,
                target=name,
                reason=f"{count} process(es) of the local cluster in {directory} run on but {why}",
                directory=str(directory),
            )
        )


def stop_orphan_processes(config: FleetConfig, action: CleanupAction) -> tuple[OutcomeStatus, str]:
    """Stop an orphaned local cluster's processes and delete its directory (only a marked one)."""
    from sandbox.localcluster import control_plane
    from sandbox.localcluster.errors import NotALocalClusterError
    from sandbox.localcluster.processes import find_local_cluster_processes, terminate

    if action.directory is None:
        raise ValueError("stop-processes needs the cluster directory")
    directory = Path(action.directory)
    root = (config.state_dir / "sandboxes").resolve()
    if root not in directory.parents:
        raise InvalidInputError(f"{directory} is not a sandbox's local cluster under {root}; left alone")
    if directory.is_dir():
        try:
            stopped = control_plane.down(directory)
        except NotALocalClusterError as exc:  # its processes were stopped; the unmarked directory is kept
            return "done", f"stopped its processes; {exc}"
        return "done", f"stopped {len(stopped)} process(es); deleted {directory}"
    stopped = terminate(find_local_cluster_processes(directory))
    return "done", f"stopped {len(stopped)} process(es) (the directory was already gone)"


@contextlib.contextmanager
def cleanup_checkout(config: FleetConfig, drivers: Drivers) -> Iterator[Path]:
    """Cleanup's own checkout of the fleet repository, fetched, held under an exclusive lock."""
    base = config.state_dir / "cleanup"
    base.mkdir(parents=True, exist_ok=True)
    repo = base / "repo"
    with open(base / "repo.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (repo / ".git").is_dir():
                drivers.git.fetch(repo)
            else:
                if repo.exists():
                    shutil.rmtree(repo)  # a clone interrupted half-way
                drivers.git.clone(config.remote_url, repo)
            yield repo
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sync_branch(drivers: Drivers, repo: Path, rev: str, name: str) -> str | None:
    """The branch the GitRepository of ``clusters/<name>/flux-system/gotk-sync.yaml`` tracks at ``rev``.

    ``None`` when there is no such file; ``""`` when it names no branch.
    """
    text = drivers.git.show_file(repo, rev, f"{fleetrepo.cluster_dir(name)}/{fleetrepo.SYNC_FILE}")
    if text is None:
        return None
    try:
        documents = load_mappings(text)
    except yaml.YAMLError:
        return ""
    for doc in documents:
        if doc.get("kind") == "GitRepository":
            return str(((doc.get("spec") or {}).get("ref") or {}).get("branch") or "")
    return ""


def _sandbox_named(config: FleetConfig, name: str) -> bool:
    try:
        validate_sandbox_name(name, config.protected_names())
    except InvalidInputError:
        return False
    return True


def _repo_actions(
    config: FleetConfig,
    drivers: Drivers,
    by_name: dict[str, SandboxRecord],
    branches: dict[str, str],
    plan: CleanupPlan,
) -> None:
    default = config.fleet_repo.default_branch
    main_sha = branches.get(default)
    if main_sha is None:
        plan.warnings.append(f"the fleet remote has no {default!r} branch")
        return
    live = {name for name, r in by_name.items() if r.status is not SandboxStatus.destroyed}
    environment_dirs = set(config.environments) | {Path(env.cluster_dir).name for env in config.environments.values()}
    git = drivers.git
    with cleanup_checkout(config, drivers) as repo:
        main_dirs = set(git.list_tree(repo, main_sha, fleetrepo.CLUSTERS_DIR, directories=True))
        if config.cleanup.propose_directory_removal:
            for name in sorted(main_dirs - environment_dirs - live):
                if not _sandbox_named(config, name) or sync_branch(drivers, repo, main_sha, name) == default:
                    continue
                path = fleetrepo.cluster_dir(name)
                plan.actions.append(
                    CleanupAction(
                        kind=CleanupKind.orphan_directory,
                        action=CleanupActionKind.propose_removal,
                        target=path,
                        reason=f"sandbox directory {path}/ is on {default} without a live record",
                        directory=path,
                    )
                )
        if not config.cleanup.delete_orphan_branches:
            return
        for branch, sha in sorted(branches.items()):
            if branch == default or branch.startswith(REMOVAL_BRANCH_PREFIX):
                continue
            added = set(git.list_tree(repo, sha, fleetrepo.CLUSTERS_DIR, directories=True)) - main_dirs
            sandbox_dirs = sorted(
                name
                for name in added - environment_dirs
                if _sandbox_named(config, name) and sync_branch(drivers, repo, sha, name) in (None, branch)
            )
            if not sandbox_dirs:
                continue
            owners = [r for r in by_name.values() if r.branch == branch or r.name in sandbox_dirs]
            if any(r.status is not SandboxStatus.destroyed for r in owners):
                continue
            if any(r.kind is SandboxKind.platform for r in owners):
                continue  # carries a torn-down platform sandbox's change, for its pull request
            why = "no record owns it" if not owners else "its performance sandbox is destroyed"
            plan.actions.append(
                CleanupAction(
                    kind=CleanupKind.orphan_branch,
                    action=CleanupActionKind.delete_branch,
                    target=branch,
                    reason=f"branch adds {', '.join(f'clusters/{d}/' for d in sandbox_dirs)} and {why}",
                    sha=sha,
                )
            )


def plan_cleanup(
    config: FleetConfig,
    inventory: Inventory,
    drivers: Drivers,
    *,
    run_id: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Progress = quiet,
) -> CleanupPlan:
    """Find what the cleanup must do. Reads only; changes nothing.

    A part of the scan that fails (the fleet remote unreachable, a terraform
    error) is recorded in ``warnings`` and the rest goes on.
    """
    moment = now or utcnow()
    plan = CleanupPlan(
        run_id=run_id or uuid.uuid4().hex[:12],
        generated_at=moment,
        dry_run=dry_run,
        concurrency=config.cleanup.concurrency,
        currency=config.cost.currency,
    )
    records = inventory.list()
    by_name = {r.name: r for r in records}
    _record_actions(config, drivers, records, moment, plan)
    progress(f"inventory: {len(records)} record(s), {len(plan.actions)} to clean, {plan.protected_expired} protected")
    branches: dict[str, str] = {}
    try:
        branches = drivers.git.remote_branches(config.remote_url)
    except SandboxError as exc:
        plan.warnings.append(f"could not list the fleet remote's branches: {exc}")
    before = len(plan.actions)
    _state_actions(config, drivers, by_name, moment, plan, set(branches))
    progress(f"terraform states: {len(plan.actions) - before} orphaned")
    before = len(plan.actions)
    _local_cluster_actions(config, by_name, moment, plan)
    progress(f"local clusters: {len(plan.actions) - before} orphaned")
    if branches:
        before = len(plan.actions)
        try:
            _repo_actions(config, drivers, by_name, branches, plan)
        except SandboxError as exc:
            plan.warnings.append(f"could not scan the fleet remote: {exc}")
        progress(f"fleet remote: {len(plan.actions) - before} orphaned branch(es) or directory(ies)")
    return plan


# -- resolving -------------------------------------------------------------------


def still_due(inventory: Inventory, action: CleanupAction, now: datetime) -> tuple[SandboxRecord | None, str]:
    """Re-read an expired sandbox before tearing it down: ``(record, "")`` if still due, else why not."""
    record = inventory.find(action.target)
    if record is None:
        return None, "the record is gone"
    if record.status is SandboxStatus.destroyed:
        return None, "already destroyed"
    if record.keep:
        return None, "protected with --keep since the plan was made"
    if record.expires_at > now:
        return None, f"extended since the plan was made (now expires {record.expires_at:%Y-%m-%dT%H:%M:%SZ})"
    return record, ""


def adopt_orphan_state(
    config: FleetConfig, inventory: Inventory, drivers: Drivers, action: CleanupAction, *, run_id: str, now: datetime
) -> SandboxRecord:
    """Give an orphaned terraform state a record the teardown stage can work from.

    A new record (``adopted``; created and expiring now) is made, or a destroyed
    one reopened under a new lifecycle id. Cluster endpoint and overrides come
    from the state's outputs (see :func:`closest_environment`).

    Raises:
        ConflictError: A live record of that name appeared since the plan was made.
    """
    name = action.target
    workdir = Path(action.workdir or sandbox_state_dir(config, name) / "terraform")
    outputs = public_outputs(drivers.terraform.outputs(workdir))
    source_env, overrides = closest_environment(config, outputs)
    variables = {**config.environments[source_env].terraform.variables, **overrides}
    cost = estimate_for_variables(config, variables)
    fields: dict[str, Any] = {
        "kind": action.sandbox_kind or SandboxKind.platform,
        "source_env": source_env,
        "lifecycle_id": uuid.uuid4().hex[:12],
        "status": SandboxStatus.failed,
        "expires_at": now,
        "keep": False,
        "terraform_workdir": str(workdir),
        "terraform_workspace": name,
        "cluster_endpoint": str(outputs["cluster_endpoint"]) if outputs.get("cluster_endpoint") else None,
        "kubernetes_version": str(outputs["kubernetes_version"]) if outputs.get("kubernetes_version") else None,
        "overrides": overrides,
        "scale": cost.scale,
        "hourly_cost": cost.hourly_cost,
        "adopted": True,
        "last_error": f"orphaned terraform state adopted by cleanup {run_id}",
    }
    existing = inventory.find(name)
    if existing is None:
        return inventory.create(
            SandboxRecord(
                name=name,
                created_at=now,
                summary="orphaned terraform state adopted by cleanup",
                stages=[],
                **fields,
            )
        )
    if existing.status is not SandboxStatus.destroyed:
        raise ConflictError(f"sandbox {name!r} has a live record now (status {existing.status.value}); not adopted")
    return inventory.update(name, destroyed_at=None, **fields)


def reconcile_record(
    config: FleetConfig, inventory: Inventory, drivers: Drivers, action: CleanupAction, *, run_id: str
) -> tuple[OutcomeStatus, str]:
    """Mark a record whose infrastructure is gone as destroyed (checking again first)."""
    record = inventory.find(action.target)
    if record is None or record.status is SandboxStatus.destroyed:
        return "skipped", "already destroyed or gone"
    if infrastructure_present(config, drivers, record):
        raise ConflictError(f"the infrastructure of {record.name} exists again; record left as {record.status.value}")
    inventory.update(
        record.name,
        status=SandboxStatus.destroyed,
        last_error=f"cleanup {run_id}: no terraform state or cluster found; record reconciled to destroyed",
    )
    return "done", f"record {record.status.value} -> destroyed (infrastructure already gone)"


def delete_orphan_branch(config: FleetConfig, drivers: Drivers, action: CleanupAction) -> tuple[OutcomeStatus, str]:
    """Delete an orphaned sandbox branch on the fleet remote, only while it is at the commit found.

    The deleted tip is in the detail: ``git push origin <sha>:refs/heads/<branch>`` restores it
    while the remote still has the commit.
    """
    current = drivers.git.remote_branches(config.remote_url).get(action.target)
    if current is None:
        return "skipped", "already deleted"
    if current != action.sha:
        raise ConflictError(f"branch {action.target} moved since the plan ({action.sha} -> {current}); not deleted")
    with cleanup_checkout(config, drivers) as repo:
        drivers.git.delete_remote_branch_at(repo, action.target, current)
    return "done", f"deleted branch {action.target} at {current}"


def propose_directory_removal(
    config: FleetConfig, drivers: Drivers, action: CleanupAction
) -> tuple[OutcomeStatus, str]:
    """Push a branch deleting the orphaned directory from the default branch and open a pull request.

    Idempotent: an existing proposal branch is not rebuilt and the hosting driver
    returns the pull request already open for it.
    """
    path = action.directory or action.target
    name = Path(path).name
    default = config.fleet_repo.default_branch
    branch = f"{REMOVAL_BRANCH_PREFIX}{name}"
    git = drivers.git
    with cleanup_checkout(config, drivers) as repo:
        if git.rev_parse(repo, f"refs/remotes/origin/{branch}") is None:
            if name not in git.list_tree(repo, f"origin/{default}", fleetrepo.CLUSTERS_DIR, directories=True):
                return "skipped", f"{path}/ is no longer on {default}"
            git.checkout(repo, branch, start=f"origin/{default}")
            git.reset_hard(repo, f"origin/{default}")
            directory = paths.inside(repo, path)
            if directory.is_symlink():
                directory.unlink()  # a link (inside the checkout) is removed, never what it points at
            else:
                shutil.rmtree(directory)
            git.commit_all(repo, f"Remove orphaned sandbox directory {path}/ (fleet-sandbox cleanup)", [path])
            git.push(repo, branch)
    pr = drivers.hosting.open_pull_request(
        head=branch,
        base=default,
        title=f"Remove orphaned sandbox directory {path}/",
        body=(
            f"`{path}/` is on `{default}` but no live sandbox in the fleet-sandbox inventory owns it "
            "(a sandbox branch merged without promotion, or a record lost).\n\n"
            "Found by the nightly `cleanup_expired_sandboxes` flow. Close this pull request to keep the directory, "
            "and add the cluster to fleet.yaml if it is a long-lived environment."
        ),
    )
    return "done", f"pull request #{pr.number} removes {path}/: {pr.url}"


def outcome_entry(run_id: str, outcome: CleanupOutcome) -> CleanupActionEntry:
    """The inventory's audit entry for an outcome."""
    action = outcome.action
    return CleanupActionEntry(
        run_id=run_id,
        kind=action.kind.value,
        target=action.target,
        action=action.action.value,
        status=outcome.status,
        reason=action.reason,
        detail=outcome.detail,
        hourly_cost=action.hourly_cost,
        estimated_saving=action.estimated_saving if outcome.status == "done" else None,
        recorded_at=utcnow(),
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
    )


def report_from_entries(
    run_id: str, entries: list[CleanupActionEntry], *, dry_run: bool = False, currency: str = "USD"
) -> CleanupReport:
    """A report rebuilt from the inventory's audit entries of one run (what the CLI shows after a failure)."""
    statuses: dict[str, OutcomeStatus] = {"done": "done", "skipped": "skipped", "failed": "failed"}
    outcomes = [
        CleanupOutcome(
            action=CleanupAction(
                kind=CleanupKind(e.kind),
                action=CleanupActionKind(e.action),
                target=e.target,
                reason=e.reason or "",
                hourly_cost=e.hourly_cost,
                estimated_saving=e.estimated_saving,
            ),
            status=statuses.get(e.status, "failed"),
            detail=e.detail or "",
            started_at=e.started_at,
            finished_at=e.finished_at,
        )
        for e in entries
    ]
    generated = min((e.recorded_at for e in entries), default=utcnow())
    return CleanupReport(run_id=run_id, generated_at=generated, dry_run=dry_run, currency=currency, outcomes=outcomes)
