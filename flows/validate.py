"""``sandbox validate NAME`` as a flow: scan, fleet policy and live readiness of an existing sandbox.

A flow (not a bare function call) so every on-demand validation leaves a run, its
logs and its report artifact in Prefect's history, and can be run from the UI.
"""

from __future__ import annotations

from prefect import flow

from flows.operations import SandboxRef
from sandbox.hardening import harden_process
from sandbox.validation import ValidationFailedError, ValidationReport
from tasks.common import StageRequest
from tasks.validate import revalidate_task


@flow(name="sandbox-validate", flow_run_name="validate-{sandbox.name}")
def sandbox_validate(sandbox: SandboxRef) -> ValidationReport:
    """Validate an existing sandbox at its branch's head.

    Args:
        sandbox: Which sandbox.

    Returns:
        The report when it passed.

    Raises:
        ValidationFailedError: The sandbox failed (the run fails with one line per cause);
            the error carries the report.
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    request = StageRequest(config_path=sandbox.config_path, name=sandbox.name, lifecycle_id=sandbox.lifecycle_id)
    report = revalidate_task(request)
    if not report.passed:
        raise ValidationFailedError(report)
    return report
