"""Rolling back a sandbox whose provision or bootstrap failed for good.

A failure that retrying cannot fix (a permanent error, or an unexpected one) in
the stages that *create* the sandbox leaves a half-made sandbox that costs money
and helps nobody, so the lifecycle flow undoes it (unless the run asked to keep
it with ``--keep-on-failure``):

1. the cluster is emptied in order and its infrastructure destroyed (the same
   idempotent code as the teardown stage), and the terraform workspace deleted;
2. the sandbox branch is deleted from the fleet remote, if this lifecycle pushed it;
3. the sandbox's local state (checkout, terraform working directory) is removed;
4. the record is marked ``rolled-back`` with the cause and moved to a fresh
   lifecycle id, so ``sandbox resume`` (or rerunning ``sandbox demo``) starts it
   over from provision. The finished stages keep their inventory rows and Prefect
   checkpoints under the old lifecycle id: nothing is rewritten, and a retry of
   the old flow run is refused (``tasks.common.run_stage``) instead of acting on
   a sandbox that no longer exists.

Each step is small and idempotent; a step that fails stops the rollback with the
record marked ``failed`` (what is left is listed in ``last_error``) for the
nightly cleanup or ``sandbox destroy`` to finish. A crash (SIGKILL) runs no
rollback at all: the nightly cleanup of expired sandboxes is the backstop.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from sandbox.context import SandboxContext
from sandbox.errors import SandboxError
from sandbox.models import SandboxStatus, Stage, StageStatus
from sandbox.stages.teardown import teardown

#: The stages whose lasting failure is rolled back: they create the sandbox.
ROLLBACK_STAGES = frozenset({Stage.provision, Stage.bootstrap})


def should_roll_back(stage: Stage, error: BaseException | None) -> bool:
    """Whether a failure of ``stage`` with ``error`` is rolled back (not retryable, in a creating stage)."""
    if stage not in ROLLBACK_STAGES or error is None:
        return False
    return not (isinstance(error, SandboxError) and error.retryable)


class RollbackReport(BaseModel):
    """What a rollback undid, and what it could not."""

    sandbox: str
    stage: Stage = Field(description="The stage whose failure was rolled back")
    cause: str = Field(description="The stage's one-line error")
    actions: list[str] = Field(default_factory=list, description="What was undone, in order")
    problems: list[str] = Field(default_factory=list, description="What could not be undone")
    record: Literal["rolled-back", "failed"] = Field(description="What became of the inventory record")

    @property
    def complete(self) -> bool:
        """Whether everything the sandbox had was removed."""
        return not self.problems

    def summary(self) -> str:
        """One line for the log."""
        if self.problems:
            return f"rollback of {self.sandbox} incomplete: {'; '.join(self.problems)}"
        done = "; ".join(self.actions) or "nothing had been created"
        return f"rolled back {self.sandbox} after {self.stage.value} failed: {done}; record {self.record}"


def _pushed_branch(ctx: SandboxContext) -> str | None:
    """The sandbox branch if this lifecycle's clone stage ran (and so may have pushed it)."""
    record = ctx.record
    clone = next((s for s in record.stages if s.name is Stage.clone), None)
    if not record.branch or clone is None or clone.status is StageStatus.pending:
        return None
    return record.branch


def _delete_branch(ctx: SandboxContext, branch: str) -> str | None:
    git = ctx.drivers.git
    sha = git.remote_branches(ctx.config.remote_url).get(branch)
    if sha is None:
        return None
    repo = ctx.ensure_checkout()
    git.delete_remote_branch_at(repo, branch, sha)
    return f"branch {branch} deleted from the fleet remote"


def keep_failed(ctx: SandboxContext, failed: Stage, cause: str) -> str:
    """Mark a sandbox whose creating stage failed for good but that the run keeps (``--keep-on-failure``).

    Returns:
        One line for the log.
    """
    name = ctx.record.name
    ctx.inventory.update(
        name,
        status=SandboxStatus.failed,
        failed_stage=failed.value,
        last_error=f"{failed.value} failed: {cause}; kept for debugging (--keep-on-failure)",
    )
    return f"kept {name} after {failed.value} failed (--keep-on-failure): remove it with 'sandbox destroy {name}'"


def roll_back(ctx: SandboxContext, failed: Stage, cause: str) -> RollbackReport:
    """Undo a sandbox whose ``failed`` stage could not complete (see the module docstring).

    Args:
        ctx: The sandbox.
        failed: The stage that failed (provision or bootstrap).
        cause: Its one-line error.

    Returns:
        What was undone; never raises for what could not be (listed in ``problems``).
    """
    record = ctx.refresh()
    name = record.name
    report = RollbackReport(sandbox=name, stage=failed, cause=cause, record="failed")
    ctx.progress(f"rolling back {name}: {failed.value} failed for good ({cause})")
    try:
        result = teardown(ctx)
        report.actions.append(result.summary.removeprefix(f"{name} "))
    except SandboxError as exc:
        report.problems.append(f"teardown: {exc}")
    record = ctx.refresh()
    if not report.problems:
        workdir = Path(record.terraform_workdir) if record.terraform_workdir else ctx.terraform_workdir
        workspace = record.terraform_workspace or name
        if (workdir / ".terraform").is_dir():
            try:
                ctx.drivers.terraform.delete_workspace(workdir, workspace)
                report.actions.append(f"terraform workspace {workspace} deleted")
            except SandboxError as exc:
                report.problems.append(f"terraform workspace {workspace}: {exc}")
    branch = _pushed_branch(ctx)
    if not report.problems and branch:
        try:
            deleted = _delete_branch(ctx, branch)
            if deleted:
                report.actions.append(deleted)
        except SandboxError as exc:
            report.problems.append(f"branch {branch}: {exc}")
    if not report.problems and ctx.state_dir.exists():
        shutil.rmtree(ctx.state_dir, ignore_errors=True)
        report.actions.append("local state removed")
    if report.problems:
        ctx.inventory.update(
            name,
            status=SandboxStatus.failed,
            failed_stage=failed.value,
            last_error=f"{failed.value} failed: {cause}; rollback incomplete: {'; '.join(report.problems)}",
        )
    else:
        ctx.inventory.update(
            name,
            status=SandboxStatus.rolled_back,
            lifecycle_id=uuid.uuid4().hex[:12],
            failed_stage=failed.value,
            last_error=f"{failed.value} failed: {cause}; rolled back ({'; '.join(report.actions)})",
        )
        report.record = "rolled-back"
    ctx.progress(report.summary())
    return report
