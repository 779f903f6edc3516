"""The ``sandbox`` command line (see docs/cli.md for the contract).

Commands validate their input before anything is created, run the same flows
as the Prefect UI, and end with exit 0 (success), 1 (a failed operation) or 2
(invalid input), printing a one-line cause and never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    ConfigOption,
    OutputOption,
    check_output,
    echo,
    echo_json,
    error_line,
    fail,
    run_flow,
)
from cli.prefect_env import configure_prefect
from sandbox.config import FleetConfig, load_config
from sandbox.errors import SandboxError
from sandbox.hardening import harden_process
from sandbox.models import SandboxKind, Stage

app = typer.Typer(
    name="sandbox",
    help="Sandbox clusters and change promotion for a Flux fleet repository.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
)

#: The environment variable that sets ``sandbox demo --workdir``.
DEMO_DIR_VARIABLE = "FLEET_SANDBOX_DEMO_DIR"
DEFAULT_DEMO_DIR = Path(__file__).resolve().parents[1] / ".demo"
DEFAULT_LOCAL_DEMO_DIR = Path(__file__).resolve().parents[1] / ".demo-local"


def _config(path: Path) -> FleetConfig:
    config = load_config(path)
    configure_prefect(config.state_dir)
    return config


def _print_report(report: Any) -> None:
    width = max(len(s.stage.value) for s in report.stages) if report.stages else 10
    for outcome in report.stages:
        echo(f"  {outcome.stage.value:<{width}}  {outcome.outcome:<17}  {outcome.summary}")


@app.command()
def demo(
    ctx: typer.Context,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            envvar=DEMO_DIR_VARIABLE,
            help="Where the demo's repo, remote and state live (default .demo, .demo-local)",
        ),
    ] = None,
    cluster: Annotated[
        str,
        typer.Option(
            "--cluster",
            help="simulated (fast, no Go needed) or local (real Kubernetes and Flux on this machine: make toolchain)",
        ),
    ] = "simulated",
) -> None:
    """Run the whole lifecycle on embedded defaults (rerun: resume, or nothing left to do)."""
    if cluster not in ("simulated", "local"):
        raise typer.BadParameter(f"--cluster must be simulated or local, not {cluster!r}")
    from sandbox.demo import claim_demo_workdir, demo_request, prepare_demo

    # An error about the directory names what the user set: the option, or the environment variable.
    # (typer carries its own click: its ParameterSource enum is compared by name.)
    source = ctx.get_parameter_source("workdir")
    from_env = getattr(source, "name", None) == "ENVIRONMENT"
    label = DEMO_DIR_VARIABLE if from_env else "--workdir"
    if cluster == "local":
        _demo_local(workdir or DEFAULT_LOCAL_DEMO_DIR, label)
        return
    config_path = prepare_demo(claim_demo_workdir(workdir or DEFAULT_DEMO_DIR, label))  # a foreign directory: refused
    config = _config(config_path)
    request = demo_request(config_path)
    echo(f"demo: fleet repo remote {config.remote_url}, config {config_path}")
    echo(f"demo: sandbox {request.name} from {request.source_env}, branch {request.ticket}-bump-podinfo")
    from flows.lifecycle import sandbox_lifecycle

    report = run_flow(sandbox_lifecycle, request=request, resume=True)
    _print_report(report)


def _demo_local(workdir: Path, label: str) -> None:
    """The demo on real local clusters: the remote served over smart HTTP while the lifecycle runs."""
    from urllib.parse import urlsplit

    from sandbox import toolchain
    from sandbox.demo import claim_demo_workdir, local_demo_request, prepare_local_demo
    from sandbox.localcluster.endpoints import LOCAL_FLEET_PORT
    from sandbox.localcluster.git_http import GitHttpServer
    from sandbox.localcluster.ports import is_free, pick_ports

    for binary in ("etcd", "kube-apiserver", "kwok", "source-controller", "kustomize-controller"):
        toolchain.locate(binary)  # ToolNotFoundError naming it (make toolchain) before anything is written
    workdir = claim_demo_workdir(workdir, label)  # a foreign directory is refused untouched
    config_file = workdir.resolve() / "fleet.yaml"
    port = LOCAL_FLEET_PORT if is_free(LOCAL_FLEET_PORT) else pick_ports(1)[0]
    if config_file.exists():  # a rerun serves the remote where the clusters already fetch it
        port = urlsplit(_config(config_file).flux_url).port or port
    config_path = prepare_local_demo(workdir, sys.executable, port)
    config = _config(config_path)
    request = local_demo_request(config_path)
    from flows.lifecycle import sandbox_lifecycle

    with GitHttpServer(config_path.parent, port=port):
        echo(f"demo: fleet repo remote {config.remote_url}, served to Flux at {config.flux_url}, config {config_path}")
        echo(f"demo: sandbox {request.name} from {request.source_env} on its own local cluster (infra/local-cluster)")
        report = run_flow(sandbox_lifecycle, request=request, resume=True)
    _print_report(report)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Sandbox name")],
    source_env: Annotated[str, typer.Option("--from", help="Environment to clone")] = "development",
    ticket: Annotated[str | None, typer.Option("--ticket", help="Ticket id, e.g. OPS-1")] = None,
    summary: Annotated[str | None, typer.Option("--summary", help="Short summary for the branch")] = None,
    kind: Annotated[SandboxKind, typer.Option("--kind", help="platform or performance")] = SandboxKind.platform,
    ttl: Annotated[str | None, typer.Option("--ttl", help="Time to live, e.g. 72h")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Protect from the nightly cleanup")] = False,
    keep_on_failure: Annotated[
        bool, typer.Option("--keep-on-failure", help="Keep what was created if provision or bootstrap fails")
    ] = False,
    override: Annotated[list[str], typer.Option("--override", help="Terraform variable override KEY=VALUE")] = [],  # noqa: B006
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Start a sandbox lifecycle: provision, clone, bootstrap and validate (then work in its branch).

    One run per sandbox: a concurrent create or resume of the same name exits 1 naming
    the run that holds it. A lasting failure of provision or bootstrap is rolled back
    unless --keep-on-failure.
    """
    from sandbox.lifecycle_request import LifecycleRequest
    from sandbox.preflight import check_request

    cfg = _config(config)
    overrides = {}
    for item in override:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--override {item!r} is not KEY=VALUE", EXIT_USAGE)
        overrides[key] = value
    request = LifecycleRequest(
        config_path=str(config.resolve()),
        name=name,
        source_env=source_env,
        kind=kind,
        ticket=ticket,
        summary=summary,
        ttl=ttl,
        keep=keep,
        keep_on_failure=keep_on_failure,
        overrides=overrides,
        stop_after=Stage.validate if kind is SandboxKind.platform else None,
    )
    check_request(cfg, request)  # refuse bad input before anything exists (the flow checks it again)
    from flows.lifecycle import sandbox_lifecycle

    report = run_flow(sandbox_lifecycle, request=request, resume=False)
    _print_report(report)


@app.command("list")
def list_sandboxes(
    output: OutputOption = "text",
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """The sandbox inventory."""
    from sandbox.wiring import open_inventory

    check_output(output)
    cfg = load_config(config)
    inventory = open_inventory(cfg)
    try:
        records = inventory.list()
    finally:
        inventory.close()
    from cli.list_view import list_entries, list_lines

    if output == "json":
        echo_json(list_entries(records, cfg))
        return
    for line in list_lines(records, cfg):
        echo(line)


def _sandbox_ref(cfg: FleetConfig, config: Path, name: str) -> Any:
    from flows.operations import SandboxRef
    from sandbox.naming import validate_sandbox_name
    from sandbox.wiring import open_inventory

    validate_sandbox_name(name, cfg.protected_names())
    inventory = open_inventory(cfg)
    try:
        record = inventory.get(name)
    finally:
        inventory.close()
    return SandboxRef(config_path=str(config.resolve()), name=name, lifecycle_id=record.lifecycle_id)


@app.command()
def destroy(
    name: Annotated[str, typer.Argument(help="Sandbox name")],
    force: Annotated[bool, typer.Option("--force", help="Destroy even while finalizers are pending")] = False,
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Ordered teardown (custom objects before controllers), then destroy the infrastructure."""
    cfg = _config(config)
    ref = _sandbox_ref(cfg, config, name)
    from flows.operations import sandbox_teardown

    outcomes = run_flow(sandbox_teardown, sandbox=ref, force=force)
    for o in outcomes:
        echo(f"  {o.stage.value}  {o.outcome}  {o.summary}")


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Sandbox name")],
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Copy the sandbox back to development (no gotk-sync.yaml), push, open a pull request."""
    cfg = _config(config)
    ref = _sandbox_ref(cfg, config, name)
    from flows.operations import sandbox_promote

    outcomes = run_flow(sandbox_promote, sandbox=ref)
    for o in outcomes:
        echo(f"  {o.stage.value}  {o.outcome}  {o.summary}")


@app.command()
def resume(
    name: Annotated[str, typer.Argument(help="Sandbox name")],
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Continue a lifecycle from its last completed stage to the end."""
    cfg = _config(config)
    ref = _sandbox_ref(cfg, config, name)
    from flows.operations import sandbox_resume

    report = run_flow(sandbox_resume, sandbox=ref)
    _print_report(report)


@app.command("clone")
def clone_command(
    repo: Annotated[Path, typer.Option("--repo", help="A local checkout of the fleet repository")],
    source_env: Annotated[str, typer.Option("--from", help="Environment directory to clone")],
    name: Annotated[str, typer.Option("--name", help="Sandbox name")],
    branch: Annotated[str | None, typer.Option("--branch", help="Create this <ticket>-<summary> branch")] = None,
) -> None:
    """The clone step alone on a local checkout (no gotk-sync.yaml; GitRepository retargeted to --branch)."""
    from sandbox import fleetrepo
    from sandbox.stages.clone import clone_local_checkout
    from sandbox.wiring import build_git

    if not (repo / ".git").exists():
        fail(f"{repo} is not a git checkout", EXIT_USAGE)
    environments = fleetrepo.discover_environments(repo)
    default_branch, ticket_pattern = "main", r"[A-Z][A-Z0-9]+-[0-9]+"
    # Without a fleet.yaml, the long-lived environments are the seed's three plus
    # every directory bootstrapped with its own gotk-sync.yaml.
    protected = {"development", "staging", "production"} | {
        env for env in environments if (repo / fleetrepo.cluster_dir(env) / fleetrepo.SYNC_FILE).exists()
    }
    config_file = repo / "fleet.yaml"
    if config_file.exists():
        cfg = load_config(config_file)
        default_branch, ticket_pattern = cfg.fleet_repo.default_branch, cfg.fleet_repo.ticket_pattern
        protected = cfg.protected_names()
    result = clone_local_checkout(
        build_git(),
        repo.resolve(),
        source_env=source_env,
        name=name,
        branch=branch,
        default_branch=default_branch,
        environments=environments,
        protected=protected,
        ticket_pattern=ticket_pattern,
        progress=echo,
    )
    if not result.noop:
        echo(f"committed {result.commit} on {result.branch}: clusters/{source_env} -> clusters/{name}")
        echo("no gotk-sync.yaml in the sandbox: bootstrap writes one for its own path and branch")


#: Command modules beside this one; each exposes ``register(app)``. A module not
#: written yet is skipped, but an import error inside a module that exists is not.
COMMAND_MODULES: tuple[str, ...] = (
    "cli.scan_cmd",  # scan
    "cli.release_cmd",  # release, release plan, resolve
    "cli.check_cmd",  # check, validate NAME
    "cli.watch_cmd",  # watch
    "cli.align_cmd",  # align
    "cli.cleanup_cmd",  # cleanup, extend
    "cli.perf_cmd",  # perf, perf accept
)


def _register_command_modules() -> None:
    for module_name in COMMAND_MODULES:
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(app)


_register_command_modules()


#: The exit code of a command interrupted by Ctrl-C (SIGINT): 128 + 2, as shells report it.
EXIT_INTERRUPTED = 130


def _note_interrupts() -> threading.Event:
    """Record that SIGINT arrived (still raising ``KeyboardInterrupt``, as Python's default handler does).

    Only from the main thread, where signal handlers live; elsewhere (tests calling
    :func:`run` from a thread) the event just stays clear.
    """
    seen = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return seen

    def on_sigint(signum: int, frame: Any) -> None:
        seen.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    return seen


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors, stable exit codes, no tracebacks, no secrets.

    The process is hardened first (:func:`sandbox.hardening.harden_process`):
    private files (umask 077) and redacted logs, whatever the caller's umask.
    """
    args = sys.argv[1:] if argv is None else argv
    harden_process()
    interrupted = _note_interrupts()
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        result = app(args=args, prog_name="sandbox", standalone_mode=False)
        if interrupted.is_set() and result == EXIT_INTERRUPTED:
            # typer turns a KeyboardInterrupt into a silent exit code 130: say why.
            raise KeyboardInterrupt
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print(error_line("aborted"), file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except typer.TyperException as exc:
        # Usage errors (unknown command or option, missing argument): exit 2.
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(error_line(message), file=sys.stderr)
        # `scan` keeps pluto's codes, where 2 and 3 mean findings: its usage errors are 1.
        sys.exit(EXIT_FAILED if args[:1] == ["scan"] else EXIT_USAGE)
    except SandboxError as exc:
        from cli.common import exit_code_for

        print(error_line(exc), file=sys.stderr)
        sys.exit(exit_code_for(exc))
    except KeyboardInterrupt:
        print(error_line("interrupted"), file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - never a traceback for users
        print(error_line(f"unexpected {type(exc).__name__}: {exc}"), file=sys.stderr)
        sys.exit(EXIT_FAILED)
    if isinstance(result, int) and not isinstance(result, bool):
        sys.exit(result)


if __name__ == "__main__":
    run()
