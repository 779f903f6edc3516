"""Single-stage flows the CLI and the UI run on an existing sandbox: destroy, promote, resume."""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from flows.lifecycle import LifecycleReport, StageOutcome, run_stages, run_stages_with_summary
from sandbox.hardening import harden_process
from sandbox.lifecycle_request import config_path_field
from sandbox.models import STAGE_ORDER, Stage
from tasks.common import StageRequest
from tasks.watch import watch_landing_task


class SandboxRef(BaseModel):
    """An existing sandbox."""

    model_config = ConfigDict(title="Sandbox")

    config_path: str = config_path_field()
    name: str = Field(title="Sandbox name", description="Sandbox name, as `sandbox list` shows it")
    lifecycle_id: str = Field(title="Lifecycle id", description="Lifecycle id from the inventory (`sandbox list`)")


@flow(name="sandbox-teardown", flow_run_name="teardown-{sandbox.name}")
def sandbox_teardown(sandbox: SandboxRef, force: bool = False) -> list[StageOutcome]:
    """Ordered teardown of a sandbox, then its infrastructure.

    Args:
        sandbox: Which sandbox.
        force: Destroy the infrastructure even while finalizers are pending (recorded).
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    request = StageRequest(
        config_path=sandbox.config_path, name=sandbox.name, lifecycle_id=sandbox.lifecycle_id, force=force
    )
    return run_stages(request, [Stage.teardown])


@flow(name="sandbox-promote", flow_run_name="promote-{sandbox.name}")
def sandbox_promote(sandbox: SandboxRef) -> list[StageOutcome]:
    """Copy a validated, torn-down sandbox back to development and open a pull request.

    The last step, once the pull request merged: wait for development to apply
    the merged revision with every Kustomization and HelmRelease Ready (rerun the
    flow after the merge to watch it land).

    Args:
        sandbox: Which sandbox.
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    request = StageRequest(config_path=sandbox.config_path, name=sandbox.name, lifecycle_id=sandbox.lifecycle_id)
    outcomes = run_stages_with_summary(request, [Stage.promote])
    landing = watch_landing_task(request)
    outcomes.append(StageOutcome(stage=Stage.promote, outcome=landing.outcome, summary=landing.summary))
    return outcomes


@flow(name="sandbox-resume", flow_run_name="resume-{sandbox.name}")
def sandbox_resume(sandbox: SandboxRef) -> LifecycleReport:
    """Continue a lifecycle: every stage not yet completed runs, in order; the run's summary is published.

    Args:
        sandbox: Which sandbox.
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    request = StageRequest(config_path=sandbox.config_path, name=sandbox.name, lifecycle_id=sandbox.lifecycle_id)
    outcomes = run_stages_with_summary(request, list(STAGE_ORDER))
    return LifecycleReport(name=sandbox.name, lifecycle_id=sandbox.lifecycle_id, stages=outcomes)
