"""Fleet-wide flows for the Prefect UI: the fleet at a glance, and the actions people took only on the CLI.

* ``fleet-status`` (scheduled, and on demand): a Markdown artifact under the
  stable key ``fleet-status`` with each long-lived environment's tracked ref,
  applied revision and Ready state, and each live sandbox's owner, kind, age,
  expiry and cost so far.
* ``sandbox-extend``: ``sandbox extend`` as a form (push the expiry out, keep it).
* ``performance-accept``: ``sandbox perf accept`` as a form.
"""

from __future__ import annotations

from prefect import flow

from sandbox.fleet_status import FleetStatus
from sandbox.hardening import harden_process
from tasks.fleet import ExtendRequest, accept_baseline_task, extend_task, fleet_status_task


@flow(name="fleet-status", log_prints=True)
def fleet_status(config_path: str = "fleet.yaml") -> FleetStatus:
    """Publish the fleet at a glance as the ``fleet-status`` artifact.

    Args:
        config_path: Path of fleet.yaml on the worker (a served deployment stores the served fleet's).
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    return fleet_status_task(config_path)


@flow(name="sandbox-extend", flow_run_name="extend-{request.name}", log_prints=True)
def sandbox_extend(request: ExtendRequest, config_path: str = "fleet.yaml") -> str:
    """Push a sandbox's expiry out and/or protect it from the nightly cleanup (``sandbox extend``).

    Args:
        request: The sandbox, how much longer it may live, and its protection.
        config_path: Path of fleet.yaml on the worker (a served deployment stores the served fleet's).
    """
    harden_process()
    return extend_task(config_path, request)


@flow(name="performance-accept", flow_run_name="accept-{run_id}", log_prints=True)
def performance_accept(run_id: str, config_path: str = "fleet.yaml") -> str:
    """Make a measured performance run the baseline of its scenario and source (``sandbox perf accept``).

    Args:
        run_id: The run, as the performance summary artifact or `sandbox perf list` shows it.
        config_path: Path of fleet.yaml on the worker (a served deployment stores the served fleet's).
    """
    harden_process()
    return accept_baseline_task(config_path, run_id)
