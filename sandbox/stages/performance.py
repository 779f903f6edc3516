"""The performance-test stage: run a scenario's load, compare it with the baseline.

The stage measures and judges; it does not store the run (the ``performance_sandbox`` flow records
it in :mod:`sandbox.perf.store` once the sandbox is torn down) and a failed gate
does not fail the stage: the verdict is in the result, and the flow decides.

Where the load goes: the scenario's ``target_url`` when set (a real sandbox's
ingress or service). Otherwise a local stand-in target on loopback
(:func:`sandbox.drivers.load.local_target`): a simulated cluster has no network
endpoint, so its "ingress" is a small HTTP server with the configured service
time (``performance.local_target_delay_ms``). The load generator is built in
:mod:`sandbox.wiring`.
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
from sandbox.redaction import redact_url
from sandbox.wiring import build_job_load_generator, build_load_generator


def reports_dir(config: FleetConfig, run_id: str) -> Path:
    """``<state_dir>/<performance.reports_dir>/<run_id>``: the run's chart and load files."""
    return config.state_dir / config.performance.reports_dir / run_id


def preflight(config: FleetConfig, settings: ScenarioSettings) -> None:
    """Refuse, before anything is created, a scenario that cannot run with this configuration.

    Raises:
        ConfigError: The kubernetes-job generator on the simulated cluster (it runs no
            pods), without an image, or without a target URL reachable in the cluster.
    """
    if settings.generator != "kubernetes-job":
        return
    if config.drivers.cluster.type == "simulated":
        raise ConfigError(
            "the kubernetes-job load generator needs a real cluster (the simulated cluster runs no pods); "
            "use drivers.load_generator.type http or locust"
        )
    if not config.drivers.load_generator.job.image:
        raise ConfigError("drivers.load_generator.job.image is required for the kubernetes-job load generator")
    if not settings.target_url:
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
    if settings.target_url:
        target = settings.target_url
        metrics = load.run(
            target,
            users=settings.users,
            duration_seconds=settings.duration_seconds,
            spawn_rate=settings.spawn_rate,
        )
    elif settings.generator == "kubernetes-job":
        raise ConfigError("the kubernetes-job load generator needs a target_url reachable from inside the cluster")
    else:
        with local_target(delay_seconds=settings.local_target_delay_ms / 1000) as url:
            target = url.rstrip("/") + settings.path
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
            "settings": settings.model_dump(),
            "target": redact_url(target),
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
