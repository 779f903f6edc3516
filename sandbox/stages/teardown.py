"""The teardown stage: the cluster's Flux objects in order (:mod:`sandbox.teardown`), then ``terraform destroy``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from sandbox.context import SandboxContext
from sandbox.drivers.cluster import ObjectRef
from sandbox.errors import PermanentError, ProtectedEnvironmentError, TeardownBlockedError
from sandbox.models import SandboxStatus, Stage, StageResult
from sandbox.teardown import teardown_cluster

#: Objects a teardown deleted and waits for, kept beside the sandbox's state so
#: a rerun (after a crash or a blocked tier) waits for them before anything else.
TEARDOWN_PENDING_FILE = "teardown-pending.json"


def _pending_path(ctx: SandboxContext) -> Path:
    return ctx.state_dir / TEARDOWN_PENDING_FILE


def read_teardown_pending(ctx: SandboxContext) -> list[ObjectRef]:
    """What an earlier teardown attempt deleted and was still waiting for (empty if none)."""
    path = _pending_path(ctx)
    if not path.is_file():
        return []
    try:
        return [ObjectRef(**item) for item in json.loads(path.read_text(encoding="utf-8"))]
    except (ValueError, TypeError) as exc:
        raise PermanentError(f"{path} is not a list of objects: {exc}") from None


def _write_teardown_pending(ctx: SandboxContext, refs: list[ObjectRef]) -> None:
    path = _pending_path(ctx)
    if not refs:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([dataclasses.asdict(r) for r in refs], indent=2), encoding="utf-8")
    tmp.replace(path)


def teardown(ctx: SandboxContext, *, force: bool = False) -> StageResult:
    """Ordered teardown of the cluster's Flux objects, then ``terraform destroy``.

    Idempotent: a rerun waits for what an earlier attempt left terminating, deletes
    the tiers still there and destroys whatever state remains. Pending finalizers
    stop it (status ``teardown-blocked``, infrastructure untouched) unless ``force``.
    """
    record = ctx.record
    if record.name in ctx.config.protected_names():
        raise ProtectedEnvironmentError(f"{record.name!r} is a long-lived environment; it is never torn down")
    ctx.inventory.update(record.name, status=SandboxStatus.tearing_down)
    details: dict[str, Any] = {"forced": force}
    workdir = ctx.recorded_terraform_workdir
    tf = ctx.drivers.terraform
    cluster_exists = bool(record.cluster_endpoint) and (
        ctx.config.drivers.cluster.type != "simulated" or ctx.simulation_dir.is_dir()
    )
    done: list[str] = []
    if cluster_exists:
        try:
            report = teardown_cluster(
                ctx.cluster(),
                timeout_per_tier=ctx.config.drivers.cluster.teardown_timeout_seconds,
                force=force,
                reason=f"fleet-sandbox teardown of {record.name}",
                progress=ctx.progress,
                pending=read_teardown_pending(ctx),
                on_tracked=lambda refs: _write_teardown_pending(ctx, refs),
            )
        except TeardownBlockedError as exc:
            message = f"{exc}; the infrastructure was not destroyed (rerun once they clear, or use --force)"
            ctx.inventory.update(record.name, status=SandboxStatus.teardown_blocked, last_error=message)
            raise TeardownBlockedError(message) from None
        details["tiers"] = report.tiers
        details["placements"] = report.placements  # which rule put each object in its tier
        details["blocked"] = report.blocked
        # Deleted explicitly because Flux would have left them; volumes kept by their Retain policy.
        details["orphans"] = report.orphans
        details["kept_volumes"] = report.kept_volumes
        if report.tiers:
            done.append("tiers " + " -> ".join(f"{tier} ({len(refs)})" for tier, refs in report.tiers))
        if report.blocked:
            done.append(f"forced past pending finalizers on {'; '.join(report.blocked)}")
        if report.kept_volumes:
            done.append(f"volumes kept by their reclaim policy: {', '.join(report.kept_volumes)}")
    else:
        ctx.progress("no cluster to empty (never provisioned or already gone)")
    if (workdir / ".terraform").is_dir() and tf.has_state(workdir, record.terraform_workspace or record.name):
        variables = ctx.terraform_variables()
        if force:
            # Like an S3 bucket's force_destroy, the module only honours the
            # flag once it is in the state: apply it, then destroy.
            variables["force_destroy"] = True
            tf.apply(workdir, variables)
        tf.destroy(workdir, variables)
        ctx.progress(f"terraform destroy of {record.name}: done")
        details["destroyed"] = True
        done.append("terraform state destroyed")
    else:
        ctx.progress("terraform state is empty: nothing to destroy")
        details["destroyed"] = False
    _write_teardown_pending(ctx, [])
    ctx.inventory.update(record.name, status=SandboxStatus.destroyed, forced_destroy=force or record.forced_destroy)
    return StageResult(
        stage=Stage.teardown,
        summary=f"{record.name} torn down{' (forced)' if force else ''}: {'; '.join(done) or 'nothing left to do'}",
        details=details,
    )
