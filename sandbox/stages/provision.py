"""The provision stage: create the sandbox cluster with terraform."""

from __future__ import annotations

from collections.abc import Callable

from sandbox import fleetrepo
from sandbox.context import SandboxContext
from sandbox.drivers.terraform import PlanSummary
from sandbox.models import Stage, StageResult
from sandbox.wiring import check_cluster_module_outputs, cluster_outputs


def provision(ctx: SandboxContext, *, on_plan: Callable[[PlanSummary], None] | None = None) -> StageResult:
    """Create the sandbox cluster with terraform (per-sandbox working dir and workspace).

    Args:
        ctx: The sandbox.
        on_plan: Shown the plan before it is applied (the Prefect task publishes it
            as an artifact); the plan is logged either way.
    """
    env = ctx.config.environment(ctx.record.source_env)
    repo = ctx.ensure_checkout()
    module_dir = fleetrepo.module_dir(repo, env.terraform.module)
    tf = ctx.drivers.terraform
    workdir = ctx.terraform_workdir
    tf.prepare(workdir, module_dir, workspace=ctx.record.name)
    variables = ctx.terraform_variables(repo)
    plan = tf.plan(workdir, variables)
    # Before anything is created: a module that cannot give the driver a cluster is refused now.
    check_cluster_module_outputs(ctx.config, plan.outputs)
    ctx.progress(f"terraform plan for {ctx.record.name}: {plan.summary_line()}")
    for line in plan.resource_lines():
        ctx.progress(f"  {line}")
    if on_plan is not None:
        on_plan(plan)
    outputs = tf.apply(workdir, variables, plan=plan)  # exactly the plan shown above
    public = cluster_outputs(ctx.config, outputs)
    ctx.inventory.update(
        ctx.record.name,
        terraform_workdir=str(workdir),
        terraform_workspace=ctx.record.name,
        cluster_endpoint=str(public.get("cluster_endpoint", "")),
        kubernetes_version=str(public.get("kubernetes_version", "")),
    )
    ctx.refresh()
    ctx.use_cluster_outputs(outputs)
    version = ctx.cluster().server_version()  # smoke check: the API answers
    ctx.progress(f"cluster {ctx.record.name} is up (Kubernetes {version})")
    return StageResult(
        stage=Stage.provision,
        summary=f"cluster {ctx.record.name} provisioned ({plan.summary_line()}); Kubernetes {version}",
        details={"outputs": public, "plan": plan.summary_line(), "variables": sorted(variables)},
    )
