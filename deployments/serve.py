"""``make serve``: a local Prefect server and every deployment of ``prefect.yaml`` served, for one engineer.

Not the ephemeral server the CLI starts for a single run: a real ``prefect server
start`` that stays up, so the UI keeps the history, the scheduler creates the
cleanup's and the performance sandbox's cron runs, and the deployments' run
forms start runs. One process serves every deployment (Prefect's runner, as
``prefect.serve``): no work pool or worker is needed on one machine; a team
deploys the same entries to a work pool instead (``docs/operations.md``).

::

    python -m deployments.serve [--port 4200] [--config fleet.yaml]

* The server's home (SQLite database, logs) is ``.fleet-sandbox/prefect`` in the
  project (``--home``); ``--database-url postgresql+asyncpg://...`` puts it on
  PostgreSQL. A server already answering on the port is used as it is.
* With ``--config`` (default ``fleet.yaml`` when it exists), the run forms offer
  the fleet's environments and scenarios as choices (``deployments.forms``), and
  task results go to ``<state_dir>/prefect-results`` like the CLI's, so a run
  started from the UI and one resumed from the CLI share checkpoints.
* Runs execute as subprocesses of this process, in the project directory.
  Stopping it (Ctrl-C or SIGTERM) pauses the schedules and stops the server it
  started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployments.spec import PREFECT_YAML, PROJECT_ROOT, DeploymentSpec, load_deployments
from sandbox.hardening import harden_process
from sandbox.redaction import redact

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

DEFAULT_HOME = PROJECT_ROOT / ".fleet-sandbox" / "prefect"
STARTUP_TIMEOUT_SECONDS = 180


class ServeError(Exception):
    """The server could not be started or the deployments not built."""


def server_answers(api_url: str) -> bool:
    """Whether a Prefect API answers its health check at ``api_url``."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:  # noqa: S310 - a local URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def server_environment(host: str, port: int, home: Path, database_url: str | None) -> dict[str, str]:
    """The environment of ``prefect server start``: address, home, database, no analytics.

    The UI is told its API's address too: it otherwise calls the default port's.
    """
    env = dict(os.environ)
    env["PREFECT_HOME"] = str(home)
    env["PREFECT_SERVER_API_HOST"] = host
    env["PREFECT_SERVER_API_PORT"] = str(port)
    env["PREFECT_UI_API_URL"] = f"http://{host}:{port}/api"
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)  # the server is not a client of another one
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    else:
        env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)  # the home's SQLite database
    return env


@contextlib.contextmanager
def local_server(
    host: str, port: int, home: Path, database_url: str | None = None, timeout: float = STARTUP_TIMEOUT_SECONDS
) -> Iterator[str]:
    """A ``prefect server start`` on ``host:port`` (or the one already there); yields its API URL.

    Raises:
        ServeError: The server exited or did not answer within ``timeout``.
    """
    api_url = f"http://{host}:{port}/api"
    if server_answers(api_url):
        yield api_url
        return
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    prefect = Path(sys.executable).with_name("prefect")
    argv = [str(prefect), "server", "start", "--host", host, "--port", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, the venv's own prefect
            argv, env=server_environment(host, port, home, database_url), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        while not server_answers(api_url):
            if process.poll() is not None:
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-1500:]
                raise ServeError(f"prefect server exited with {process.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise ServeError(f"prefect server did not answer on {api_url} within {timeout:.0f}s (see {log_path})")
            time.sleep(0.25)
        yield api_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def configure_client(api_url: str, home: Path, results_dir: Path, config_path: Path | None = None) -> None:
    """Point this process (and the runs it starts) at the server, before Prefect is imported.

    With ``config_path``, a run whose request names no fleet.yaml uses the served
    fleet's (``sandbox.lifecycle_request.CONFIG_ENV``): Prefect merges a run's
    parameters with the deployment's only at the top level, so a ``request``
    given without ``config_path`` cannot take it from the deployment's.
    """
    from sandbox.lifecycle_request import CONFIG_ENV

    if config_path is not None:
        os.environ[CONFIG_ENV] = str(config_path)
    os.environ["PREFECT_API_URL"] = api_url
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(results_dir))
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")


def schedules_of(spec: DeploymentSpec) -> list[Any]:
    """The spec's cron schedules as Prefect schedule objects."""
    from prefect.schedules import Cron

    return [
        Cron(schedule.cron, timezone=schedule.timezone, active=schedule.active, parameters=schedule.parameters)
        for schedule in spec.schedules
    ]


def concurrency_of(spec: DeploymentSpec) -> Any:
    """The spec's concurrency limit as ``to_deployment`` takes it."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    limit = spec.concurrency_limit
    if limit is None or isinstance(limit, int):
        return limit
    return ConcurrencyLimitConfig(
        limit=limit.limit, collision_strategy=ConcurrencyLimitStrategy(limit.collision_strategy)
    )


def served_parameters(parameters: dict[str, Any], schema: dict[str, Any], config_path: Path) -> dict[str, Any]:
    """A deployment's default parameters pointing at the served fleet's fleet.yaml.

    A ``config_path`` parameter, or the ``config_path`` of a model parameter given
    in ``parameters`` (the performance deployment's ``request``), is set to
    ``config_path``; scheduled runs use these parameters.
    """
    result = dict(parameters)
    properties = schema.get("properties") or {}
    definitions = schema.get("definitions") or {}
    if "config_path" in properties:
        result["config_path"] = str(config_path)
    for name, prop in properties.items():
        ref = str(prop.get("$ref", "")) if isinstance(prop, dict) else ""
        model = definitions.get(ref.rsplit("/", 1)[-1]) if ref else None
        if model and "config_path" in (model.get("properties") or {}) and isinstance(result.get(name), dict):
            result[name] = {**result[name], "config_path": str(config_path)}
    return result


def build_deployments(
    specs: list[DeploymentSpec],
    choices: dict[str, list[str]] | None = None,
    config_path: Path | None = None,
    patterns: dict[str, str] | None = None,
) -> list[RunnerDeployment]:
    """One runner deployment per spec, loaded with Prefect's entrypoint loader.

    Args:
        specs: The deployments of ``prefect.yaml``.
        choices: Field choices for the run forms (``deployments.forms.fleet_choices``), if any.
        config_path: The served fleet's fleet.yaml: the forms' default ``config_path``.
        patterns: Field patterns for the run forms (``deployments.forms.fleet_patterns``), if any.
    """
    from prefect.deployments.runner import RunnerDeployment
    from prefect.flows import Flow, load_flow_from_entrypoint
    from prefect.utilities.callables import ParameterSchema

    from deployments.forms import with_choices, with_titles

    deployments = []
    for spec in specs:
        flow: Flow[..., Any] = load_flow_from_entrypoint(f"{spec.entrypoint_path}:{spec.function_name}")
        deployment = RunnerDeployment.from_flow(
            flow,
            name=spec.name,
            description=spec.description,
            tags=spec.tags,
            parameters=spec.parameters or None,
            schedules=schedules_of(spec) or None,
            concurrency_limit=concurrency_of(spec),
            enforce_parameter_schema=spec.enforce_parameter_schema,
        )
        defaults = {"config_path": str(config_path)} if config_path else None
        schema, _ = with_choices(
            with_titles(deployment._parameter_openapi_schema.model_dump()), choices or {}, defaults, patterns
        )
        deployment._parameter_openapi_schema = ParameterSchema.model_validate(schema)
        if config_path:
            deployment.parameters = served_parameters(deployment.parameters, schema, config_path)
        deployments.append(deployment)
    return deployments


def serve_until_stopped(deployments: list[RunnerDeployment], limit: int | None = None) -> None:
    """Serve the deployments (as ``prefect.serve`` does) until Ctrl-C or SIGTERM.

    Prefect's runner answers SIGTERM by waiting on its own event loop from the
    signal handler, which never returns while that loop is the one interrupted;
    here SIGTERM takes the Ctrl-C path instead: the runner pauses the schedules
    and stops, and the caller stops the server it started.
    """
    import asyncio

    from prefect.runner import Runner

    class _Runner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            raise KeyboardInterrupt

    runner = _Runner(pause_on_shutdown=True, limit=limit)
    for deployment in deployments:
        runner.add_deployment(deployment)
    asyncio.run(runner.start())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deployments.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4200, help="server port (default 4200)")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="server home: database, logs")
    parser.add_argument("--database-url", default=None, help="server database (default SQLite in --home)")
    parser.add_argument("--config", type=Path, default=None, help="the fleet's fleet.yaml (default ./fleet.yaml)")
    parser.add_argument("--prefect-yaml", type=Path, default=PREFECT_YAML, help="deployments file")
    parser.add_argument("--only", action="append", default=None, help="serve only this deployment (repeatable)")
    parser.add_argument("--limit", type=int, default=None, help="runs at once (default: no limit)")
    return parser


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start (or reuse) the server, then serve the deployments until interrupted.

    SIGTERM stops it as Ctrl-C does from the start, not only once Prefect's
    runner has put its own handler in place: a SIGTERM while the server was
    starting or the deployments were being loaded and registered used to end
    this process at once, leaving the server it started running.

    The process is hardened first (umask 077, redacted logs): the flow runs it
    starts inherit the umask.
    """
    harden_process()
    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _serve(args)
    except KeyboardInterrupt:
        print("stopped before serving", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(args: argparse.Namespace) -> int:
    home = args.home.resolve()
    config_path = args.config or (Path("fleet.yaml") if Path("fleet.yaml").is_file() else None)
    config_path = config_path.resolve() if config_path else None
    prefect_yaml = args.prefect_yaml.resolve()
    os.chdir(PROJECT_ROOT)  # entrypoints are relative to the project
    try:
        specs = load_deployments(prefect_yaml)
        if args.only:
            unknown = sorted(set(args.only) - {spec.name for spec in specs})
            if unknown:
                raise ServeError(f"no deployment named {', '.join(unknown)} in {prefect_yaml}")
            specs = [spec for spec in specs if spec.name in args.only]
        choices = None
        patterns = None
        results_dir = home.parent / "prefect-results"
        if config_path is not None:
            from deployments.forms import fleet_choices, fleet_patterns
            from sandbox.config import load_config

            config = load_config(config_path)
            choices = fleet_choices(config)
            patterns = fleet_patterns(config)
            results_dir = config.state_dir / "prefect-results"
        with local_server(args.host, args.port, home, args.database_url) as api_url:
            configure_client(api_url, home, results_dir, config_path)
            deployments = build_deployments(specs, choices, config_path, patterns)
            print(f"serving {len(deployments)} deployment(s) on {api_url.removesuffix('/api')}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                serve_until_stopped(deployments, args.limit)
    except ServeError as exc:
        print(f"error: {redact(' '.join(str(exc).split()))}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line for config and entrypoint errors, no traceback
        from sandbox.errors import SandboxError

        if not isinstance(exc, SandboxError | OSError | ValueError):
            raise
        print(f"error: {redact(' '.join(str(exc).split()))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
