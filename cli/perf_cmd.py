"""``sandbox perf …``: performance sandboxes and their baselines.

Registered by ``cli/main.py`` through :func:`register`.

* ``sandbox perf --from ENV --scenario S [--users N] [--duration SECONDS]
  [--spawn-rate R] [--target-url URL] [--generator http|locust|kubernetes-job]
  [--scale KEY=VALUE ...] [--change FILE] [--ttl DURATION]`` — runs the
  ``performance-sandbox`` flow: clones ENV at its scale, loads it, tears it
  down, prints the comparison with the scenario's baseline and the chart's
  path. Exit 0 when every gate passed, 1 when a gate failed or a stage failed
  (the sandbox is torn down either way), 2 for invalid input.
* ``sandbox perf accept RUN`` — make a run the baseline of its scenario and source.
* ``sandbox perf list [--scenario S] [--from ENV] [--output text|json]`` — the runs, newest first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError

from cli.common import (
    EXIT_USAGE,
    ConfigOption,
    OutputOption,
    call_flow,
    check_output,
    echo,
    echo_json,
    fail,
    fail_from_flow,
    flow_run_line,
)
from cli.prefect_env import configure_prefect
from sandbox.config import FleetConfig, load_config
from sandbox.errors import InvalidInputError
from sandbox.lifecycle_request import SandboxChange
from sandbox.perf.compare import Comparison, render_table
from sandbox.perf.scenario import GeneratorType, LoadOverrides, PerformanceRequest, ScaleOverride, resolve_scenario
from sandbox.perf.store import PerfRun, PerfStore

perf_app = typer.Typer(
    name="perf",
    help="Performance sandboxes: load-test a short-lived clone of an environment against its baseline.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _key_values(items: list[str], flag: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise InvalidInputError(f"{flag} {item!r} is not KEY=VALUE (KEY a terraform variable name)")
        values[key] = value
    return values


def _read_change(path: Path) -> SandboxChange:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"--change {path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError:
        raise InvalidInputError(f"--change {path}: not valid YAML") from None
    try:
        return SandboxChange.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InvalidInputError(f"--change {path}: {where}: {first['msg']}") from None


def build_request(
    cfg: FleetConfig,
    config: Path,
    *,
    source_env: str,
    scenario: str | None,
    load: LoadOverrides,
    scale: dict[str, str],
    change: SandboxChange | None,
    ttl: str | None,
) -> PerformanceRequest:
    """The flow's parameters, checked against fleet.yaml before anything is created.

    Raises:
        InvalidInputError: Unknown environment or scenario, bad TTL or change file, or a
            load generator this configuration cannot run (ConfigError).
    """
    from sandbox.lifecycle_request import LifecycleRequest
    from sandbox.models import SandboxKind
    from sandbox.stages.performance import preflight
    from sandbox.stages.register import validate_request

    cfg.environment(source_env)
    preflight(cfg, resolve_scenario(cfg, scenario, load))
    validate_request(
        cfg,
        LifecycleRequest(
            config_path=str(config),
            name="perf-check",
            source_env=source_env,
            kind=SandboxKind.performance,
            ttl=ttl,
            overrides=scale,
            change=change,
        ),
    )
    return PerformanceRequest(
        config_path=str(config.resolve()),
        source_env=source_env,
        scenario=scenario,
        scale=ScaleOverride(variables=scale) if scale else "source",
        change=change,
        ttl=ttl,
        load=load,
    )


def print_run(run: PerfRun, max_error_rate: float) -> None:
    """The run, its comparison table, its verdict and its chart."""
    settings = run.settings
    echo(
        f"performance run {run.run_id}: scenario {run.scenario} against a clone of {run.source_env} "
        f"(sandbox {run.sandbox})"
    )
    echo(
        f"load: {settings.get('generator')}, {settings.get('users')} users, "
        f"{float(settings.get('duration_seconds') or 0):g}s"
    )
    if run.comparison is None:
        echo(f"no measurement ({run.status.value}{': ' + run.error if run.error else ''})")
        return
    comparison = Comparison.model_validate(run.comparison)
    echo(
        f"baseline: run {comparison.baseline_run_id}"
        if comparison.baseline_run_id
        else f"baseline: none accepted for {run.scenario} from {run.source_env} yet"
    )
    echo()
    echo(render_table(comparison, max_error_rate))
    echo()
    for note in comparison.notes:
        echo(f"note: {note}")
    if comparison.passed:
        echo("gates: passed")
    else:
        echo("gates: FAILED")
        for failure in comparison.failures:
            echo(f"  {failure}")
    if run.chart_path:
        echo(f"chart: {run.chart_path}")
    echo(f"accept as the baseline: sandbox perf accept {run.run_id}")


def _sandbox_status(cfg: FleetConfig, name: str) -> str:
    from sandbox.wiring import open_inventory

    inventory = open_inventory(cfg)
    try:
        record = inventory.find(name)
    finally:
        inventory.close()
    return record.status.value if record else "unknown"


def _run_perf_flow(cfg: FleetConfig, request: PerformanceRequest) -> None:
    configure_prefect(cfg.state_dir)
    from flows.performance import performance_sandbox

    state = call_flow(performance_sandbox, request=request)
    flow_run_id = state.state_details.flow_run_id
    echo(flow_run_line(performance_sandbox.name, state))
    with PerfStore(cfg.inventory_url) as store:
        runs = store.runs_for_flow_run(str(flow_run_id)) if flow_run_id else []
    if runs:
        run = runs[-1]
        print_run(run, cfg.performance.max_error_rate)
        echo(f"sandbox {run.sandbox}: {_sandbox_status(cfg, run.sandbox)}")
    if state.is_completed():
        return
    fail_from_flow(state)


@perf_app.callback(invoke_without_command=True)
def perf(
    ctx: typer.Context,
    source_env: Annotated[str, typer.Option("--from", help="Environment to clone (its topology and scale)")] = (
        "production"
    ),
    scenario: Annotated[str | None, typer.Option("--scenario", help="Load scenario from fleet.yaml")] = None,
    users: Annotated[int | None, typer.Option("--users", min=1, help="Concurrent users")] = None,
    duration: Annotated[float | None, typer.Option("--duration", min=0.001, help="Seconds of load")] = None,
    spawn_rate: Annotated[float | None, typer.Option("--spawn-rate", min=0.001, help="Users started per second")] = (
        None
    ),
    target_url: Annotated[str | None, typer.Option("--target-url", help="URL to load instead of the scenario's")] = (
        None
    ),
    generator: Annotated[
        str | None, typer.Option("--generator", help="http, locust or kubernetes-job instead of fleet.yaml's")
    ] = None,
    scale: Annotated[
        list[str], typer.Option("--scale", help="Terraform variable KEY=VALUE overriding the source's scale")
    ] = [],  # noqa: B006
    change: Annotated[
        Path | None, typer.Option("--change", help="YAML file with a configuration change to test (SandboxChange)")
    ] = None,
    ttl: Annotated[str | None, typer.Option("--ttl", help="Time to live, e.g. 12h (cleanup's backstop)")] = None,
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Clone an environment at its scale, run a load scenario, compare with the baseline, tear down."""
    if ctx.invoked_subcommand is not None:
        return
    if generator is not None and generator not in ("http", "locust", "kubernetes-job"):
        fail(f"--generator must be http, locust or kubernetes-job, not {generator!r}", EXIT_USAGE)
    cfg = load_config(config)
    kind: GeneratorType | None = generator  # type: ignore[assignment]
    load = LoadOverrides(
        users=users, spawn_rate=spawn_rate, duration_seconds=duration, target_url=target_url, generator=kind
    )
    request = build_request(
        cfg,
        config,
        source_env=source_env,
        scenario=scenario,
        load=load,
        scale=_key_values(scale, "--scale"),
        change=_read_change(change) if change else None,
        ttl=ttl,
    )
    _run_perf_flow(cfg, request)


@perf_app.command("accept")
def accept(
    run_id: Annotated[str, typer.Argument(help="The run to make the baseline (see `sandbox perf list`)")],
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Make a run the baseline of its scenario and source environment."""
    cfg = load_config(config)
    with PerfStore(cfg.inventory_url) as store:
        previous = None
        run = store.find(run_id)
        if run is not None:
            previous = store.baseline(run.scenario, run.source_env)
        accepted = store.accept(run_id)
    echo(
        f"run {accepted.run_id} is the baseline of {accepted.scenario} from {accepted.source_env}"
        + (f" (was run {previous.run_id})" if previous and previous.run_id != accepted.run_id else "")
    )


@perf_app.command("list")
def list_runs(
    scenario: Annotated[str | None, typer.Option("--scenario", help="Only this scenario")] = None,
    source_env: Annotated[str | None, typer.Option("--from", help="Only runs against this environment")] = None,
    output: OutputOption = "text",
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Performance runs, newest first, with their status and whether they are a baseline."""
    check_output(output)
    cfg = load_config(config)
    with PerfStore(cfg.inventory_url) as store:
        runs = store.list(scenario=scenario, source_env=source_env)
        baselines = {
            (r.scenario, r.source_env): b.run_id
            for r in runs
            if (b := store.baseline(r.scenario, r.source_env)) is not None
        }
    if output == "json":
        echo_json(
            [
                {
                    **run.model_dump(mode="json", exclude={"settings", "comparison"}),
                    "baseline": baselines.get((run.scenario, run.source_env)) == run.run_id,
                }
                for run in runs
            ]
        )
        return
    if not runs:
        echo("no performance runs")
        return
    echo(
        f"{'RUN':<14} {'SCENARIO':<12} {'FROM':<12} {'STATUS':<10} {'CREATED':<21} {'P95 MS':>8} {'REQ/S':>8} BASELINE"
    )
    for run in runs:
        metrics = run.metrics or {}
        is_baseline = baselines.get((run.scenario, run.source_env)) == run.run_id
        echo(
            f"{run.run_id:<14} {run.scenario:<12} {run.source_env:<12} {run.status.value:<10} "
            f"{run.created_at.strftime('%Y-%m-%dT%H:%M:%SZ'):<21} "
            f"{float(metrics.get('p95_ms') or 0):>8.1f} {float(metrics.get('requests_per_second') or 0):>8.1f} "
            f"{'yes' if is_baseline else ''}"
        )


def register(app: typer.Typer) -> None:
    """Add ``sandbox perf``, ``sandbox perf accept`` and ``sandbox perf list`` to the command line."""
    app.add_typer(perf_app, name="perf")
