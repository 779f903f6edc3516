"""The performance-test stage: run a scenario's load, compare it with the baseline.

The stage measures and judges; it does not store the run (the ``performance_sandbox`` flow records
it in :mod:`sandbox.perf.store` once the sandbox is torn down) and a failed gate
does not fail the stage: the verdict is in the result, and the flow decides.

Where the load goes (:mod:`sandbox.perf.target`): the scenario's ``target_url``,
or the sandbox's Service or Ingress it names. On a simulated cluster without
either, a local stand-in target on loopback (:func:`sandbox.drivers.load.local_target`):
a simulated cluster has no network endpoint, so its "ingress" is a small HTTP
server with the configured service time (``performance.local_target_delay_ms``).
A real cluster without a target refuses the stage (one line saying what to set).
The load generator is built in :mod:`sandbox.wiring`.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.config import FleetConfig
from sandbox.context import SandboxContext
from sandbox.drivers.load import LoadGenerator, local_target
from sandbox.errors import ConfigError
from sandbox.models import Stage, StageResult
from sandbox.perf.compare import Comparison, compare, render_table
from sandbox.perf.scenario import LoadOverrides, ScenarioSettings, resolve_scenario
from sandbox.perf.store import PerfStore
from sandbox.perf.target import NO_TARGET, load_target
from sandbox.redaction import redact_url
from sandbox.wiring import build_job_load_generator, build_load_generator


def reports_dir(config: FleetConfig, run_id: str) -> Path:
    """``<state_dir>/<performance.reports_dir>/<run_id>``: the run's chart and load files."""
    return config.state_dir / config.performance.reports_dir / run_id


def preflight(config: FleetConfig, settings: ScenarioSettings) -> None:
    """Refuse, before anything is created, a scenario that cannot run with this configuration.

    Raises:
        ConfigError: The kubernetes-job generator on the simulated cluster (it runs no
            pods), without an image, or without a target URL reachable in the cluster;
            a real cluster with no target named (never the local stand-in there).
    """
    if settings.generator != "kubernetes-job":
        if (
            config.drivers.cluster.type != "simulated"
            and not config.performance.stand_in_on_real_clusters
            and not (settings.target_url or settings.target_service or settings.target_ingress)
        ):
            raise ConfigError(NO_TARGET.format(settings.scenario))
        return
    if config.drivers.cluster.type == "simulated":
        raise ConfigError(
            "the kubernetes-job load generator needs a real cluster (the simulated cluster runs no pods); "
            "use drivers.load_generator.type http or locust"
        )
    if not config.drivers.load_generator.job.image:
        raise ConfigError("drivers.load_generator.job.image is required for the kubernetes-job load generator")
    if not settings.target_url and not settings.target_service:
        raise ConfigError("the kubernetes-job load generator needs a target_url reachable from inside the cluster")


def performance_test(
    ctx: SandboxContext, *, scenario: str | None = None, overrides: LoadOverrides | None = None
) -> StageResult:
    """Run a scenario's load against the sandbox and compare it with the scenario's baseline.

    Args:
        ctx: The sandbox.
        scenario: Scenario name (``performance.default_scenario`` when ``None``).
        overrides: Per-run changes (users, duration, spawn rate, target, generator).

    Returns:
        The stage result; ``details`` holds ``run_id``, ``scenario``, ``settings``,
        ``metrics``, ``baseline`` (run id, metrics, settings, or ``None``),
        ``comparison``, ``passed`` and ``change_percent``.
    """
    config = ctx.config
    settings = resolve_scenario(config, scenario, overrides)
    run_id = ctx.record.lifecycle_id
    with PerfStore(config.inventory_url) as store:
        baseline = store.baseline(settings.scenario, ctx.record.source_env)
    workdir = reports_dir(config, run_id) / "load"
    load: LoadGenerator
    if settings.generator == "kubernetes-job":
        kubeconfig = ctx.kubeconfig() if config.drivers.cluster.type == "kubernetes" else None
        load = build_job_load_generator(config, ctx.cluster(), kubeconfig=kubeconfig, progress=ctx.progress)
    else:
        load = build_load_generator(config, settings, workdir=workdir)
    against = f"run {baseline.run_id}" if baseline else f"none accepted from {ctx.record.source_env} yet"
    ctx.progress(
        f"scenario {settings.scenario}: {settings.generator}, {settings.users} users, "
        f"{settings.duration_seconds:g}s; baseline: {against}"
    )
    named = load_target(config, settings, ctx.cluster() if settings.target_service or settings.target_ingress else None)
    stand_in = False
    if named is not None:
        target = named
        if not settings.target_url:
            ctx.progress(f"load target: {redact_url(target)} (from the sandbox's cluster)")
        metrics = load.run(
            target,
            users=settings.users,
            duration_seconds=settings.duration_seconds,
            spawn_rate=settings.spawn_rate,
        )
    else:
        # On a real cluster the stand-in takes the sandbox's place (by explicit choice): the results say so.
        stand_in = config.drivers.cluster.type != "simulated"
        with local_target(delay_seconds=settings.local_target_delay_ms / 1000) as url:
            target = url.rstrip("/") + settings.path
            if stand_in:
                ctx.progress(
                    "load target: the local stand-in, not the sandbox (performance.stand_in_on_real_clusters): "
                    f"{target}"
                )
            else:
                ctx.progress(f"load target: local stand-in for the sandbox ingress at {target}")
            metrics = load.run(
                target,
                users=settings.users,
                duration_seconds=settings.duration_seconds,
                spawn_rate=settings.spawn_rate,
            )
    current = metrics.model_dump()
    comparison: Comparison = compare(
        current,
        baseline.metrics if baseline else None,
        config.performance,
        baseline_run_id=baseline.run_id if baseline else None,
    )
    if baseline is not None:
        differences = settings.comparable_with(baseline.settings)
        if differences:
            comparison.notes.append(f"settings differ from the baseline's ({'; '.join(differences)})")
    for line in render_table(comparison, config.performance.max_error_rate).splitlines():
        ctx.progress(line)
    verdict = "gates passed" if comparison.passed else f"gates FAILED: {'; '.join(comparison.failures)}"
    return StageResult(
        stage=Stage.performance_test,
        summary=(
            f"{settings.scenario}: {metrics.requests_per_second:.0f} req/s, p95 {metrics.p95_ms:.1f} ms, "
            f"{metrics.failures} failures; {verdict}"
        ),
        details={
            "run_id": run_id,
            "scenario": settings.scenario,
            # The environment the baseline comes from: the chart's title and the published comparison name it.
            "source_env": ctx.record.source_env,
            "settings": settings.model_dump(),
            "target": redact_url(target),
            "stand_in": stand_in,
            "metrics": current,
            "baseline": (
                {"run_id": baseline.run_id, "metrics": baseline.metrics, "settings": baseline.settings}
                if baseline
                else None
            ),
            "comparison": comparison.model_dump(),
            "passed": comparison.passed,
            "change_percent": comparison.change_percent(),
        },
    )
