"""Bad input and broken surroundings: a one-line cause, the right exit code, a failed flow run, nothing left.

Three groups (with the eight cases of ``test_demo_lifecycle.py`` well over forty):

* invalid requests — names, protected and unknown environments, TTLs, versions,
  overrides, tickets: ``sandbox create`` exits 2 on one line before any flow
  runs, and the lifecycle flow given the same request (as the Prefect UI would
  start it) fails with the same cause before the sandbox's lock even exists;
* broken surroundings — malformed YAML and missing parts in the fleet repo, a
  missing terraform or git, an unreachable remote, rejected credentials, an
  unreachable or full inventory: the flow run fails with the cause (exit 2 for
  an unusable repository, 1 for a failed operation) and leaves no branch, no
  state, no inventory row, and the lock released;
* other commands and the configuration file.

The CLI runs in this process (``cli.main.run``, the console script's entry
point) except where the process itself must differ (a file-size limit).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import resource
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import prefect.main  # noqa: F401 - Prefect's console logging set up now, on the session's stderr
import pytest

from sandbox.config import load_config
from sandbox.demo import prepare_demo
from sandbox.inventory import Inventory, utcnow
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.locks import LOCK_PREFIX, NOTE_PREFIX
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus
from tests.conftest import EXAMPLE_REPO
from tests.integration.reliability_support import cli_env, edit_config, records, remote_branches
from tests.integration.sandbox_cli import BIN, error_line
from tests.pg_server import free_port

pytestmark = pytest.mark.integration

SECRET_PASSWORD = "s3cr3t-fleet-bot-password"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def cause(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""

    @property
    def flow_run_id(self) -> str | None:
        marker = "flow run 'sandbox-lifecycle' ("
        return self.stdout.split(marker, 1)[1].split(")", 1)[0] if marker in self.stdout else None


def run_cli(*args: str) -> CliResult:
    """``sandbox ARGS`` through the console script's entry point, in this process.

    What the CLI prints itself is captured; Prefect's console log lines go to the
    test's own stderr (Prefect's handler took its stream when it was imported).
    The environment is restored afterwards.
    """
    from cli.main import run

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli(prefect_server: str) -> Callable[..., CliResult]:
    """:func:`run_cli` against the session's Prefect server."""
    return run_cli


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's fleet repo, remote and fleet.yaml (no development cluster needed here)."""
    return prepare_demo(tmp_path_factory.mktemp("bad-input") / "fleet", development=False)


def failed_flow_run_message(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
    assert run.state is not None and run.state.is_failed(), run.state
    return run.state.message or ""


def lock_state(name: str) -> tuple[int, bool] | None:
    """(active slots, holder note present) of sandbox ``name``'s locks in any fleet, ``None`` if none was created.

    Any fleet: some cases here have a configuration that cannot be read, so no fleet id.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limits = [
            limit
            for limit in client.read_global_concurrency_limits(limit=200)
            if limit.name.startswith(LOCK_PREFIX) and limit.name.endswith(f":{name}")
        ]
        if not limits:
            return None
        note = re.compile(rf"{NOTE_PREFIX}[0-9a-f]{{12}}-{re.escape(name)}")
        notes = [v for v in client.read_variables(limit=200) if note.fullmatch(v.name)]
        return sum(limit.active_slots for limit in limits), bool(notes)


def assert_nothing_left(config_path: Path, name: str, remotes: list[Path], *, inventory: bool = True) -> None:
    config = load_config(config_path)
    state = config.state_dir / "sandboxes" / name
    assert not state.exists(), sorted(str(p) for p in state.rglob("*"))
    assert not list(config.state_dir.rglob("terraform.tfstate*")) if config.state_dir.exists() else True
    if inventory and (config.state_dir / "inventory.db").exists():
        assert name not in [r.name for r in records(config)]
    for remote in remotes:
        assert remote_branches(remote) == {"main"}, remote


# -- invalid requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    id: str
    message: str
    name: str = "sandbox-x"
    source_env: str = "development"
    kind: str = "platform"
    ticket: str | None = "OPS-5"
    summary: str | None = "try something"
    ttl: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)

    def args(self, config: Path) -> list[str]:
        args = ["create", self.name, "--from", self.source_env, "--kind", self.kind, "--config", str(config)]
        if self.ticket is not None:
            args += ["--ticket", self.ticket]
        if self.summary is not None:
            args += ["--summary", self.summary]
        if self.ttl is not None:
            args += ["--ttl", self.ttl]
        for key, value in self.overrides.items():
            args += ["--override", f"{key}={value}"]
        return args

    def request(self, config: Path) -> LifecycleRequest:
        return LifecycleRequest(
            config_path=str(config),
            name=self.name,
            source_env=self.source_env,
            kind=SandboxKind(self.kind),
            ticket=self.ticket,
            summary=self.summary,
            ttl=self.ttl,
            overrides=self.overrides,
        )


REQUESTS = [
    Request("name-uppercase", "invalid sandbox name 'Sandbox-A'", name="Sandbox-A"),
    Request("name-dot-dot", "invalid sandbox name 'a..b'", name="a..b"),
    Request("name-too-long", "is 41 characters long (at most 40)", name="s" * 41),
    Request("name-empty", "sandbox name is empty", name=""),
    Request("name-leading-digit", "invalid sandbox name '1sandbox'", name="1sandbox"),
    Request("name-trailing-dash", "invalid sandbox name 'sandbox-'", name="sandbox-"),
    Request("name-slash", "invalid sandbox name 'team/sandbox'", name="team/sandbox"),
    Request("name-staging", "'staging' is a long-lived or protected environment", name="staging"),
    Request("name-development", "'development' is a long-lived or protected environment", name="development"),
    Request("name-flux-system", "'flux-system' is a long-lived or protected environment", name="flux-system"),
    Request("env-empty", "unknown environment ''", source_env=""),
    Request("env-wrong-case", "unknown environment 'Production'", source_env="Production"),
    Request("env-platform-from-staging", "platform sandboxes clone development", source_env="staging"),
    Request("ttl-zero", "invalid duration '0h': must be longer than zero", ttl="0h"),
    Request("ttl-negative", "invalid duration '-1h'", ttl="-1h"),
    Request("ttl-no-unit", "invalid duration '1h30'", ttl="1h30"),
    Request("ttl-over-max", "ttl 90d is longer than the maximum 30d", ttl="90d"),
    Request("ttl-empty", "invalid duration ''", ttl=""),
    Request("version-word", "invalid Kubernetes version 'banana'", overrides={"kubernetes_version": "banana"}),
    Request("version-major-only", "invalid Kubernetes version 'v1'", overrides={"kubernetes_version": "v1"}),
    Request("nodes-zero", "invalid override node_count='0'", overrides={"node_count": "0"}),
    Request("override-reserved", "'cluster_name' is set by fleet-sandbox itself", overrides={"cluster_name": "x"}),
    Request("override-bad-key", "invalid terraform variable name '1bad'", overrides={"1bad": "3"}),
    Request("ticket-missing", "platform sandboxes need --ticket and --summary", ticket=None),
    Request("ticket-lowercase", "does not match the ticket pattern", ticket="ops-5"),
    Request("summary-no-words", "summary '!!!' has no letters or digits", summary="!!!"),
    Request("branch-too-long", "is longer than 100 characters", summary="word " * 30),
]


@pytest.mark.parametrize("case", REQUESTS, ids=[c.id for c in REQUESTS])
def test_invalid_request_refused_before_anything_exists(
    case: Request, base: Path, cli: Callable[..., CliResult]
) -> None:
    from flows.lifecycle import sandbox_lifecycle

    result = cli(*case.args(base))
    assert result.code == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and case.message in result.stderr, result.stderr
    assert result.flow_run_id is None  # refused before a flow run
    # The same request started as a flow run (the Prefect UI's way) fails with the same cause.
    state = sandbox_lifecycle(request=case.request(base), resume=False, return_state=True)
    assert state.is_failed()
    assert case.message in failed_flow_run_message(str(state.state_details.flow_run_id))
    assert_nothing_left(base, case.name or "_", [base.parent / "remote.git"])
    if case.name:
        assert lock_state(case.name) is None  # checked before the lock: no limit for a bad name


def test_override_without_value_is_a_usage_error(base: Path, cli: Callable[..., CliResult]) -> None:
    result = cli(
        "create", "sandbox-x", "--ticket", "OPS-5", "--summary", "x", "--override", "novalue", "--config", str(base)
    )
    assert (result.code, result.stderr) == (2, "sandbox: error: --override 'novalue' is not KEY=VALUE\n")


def test_unknown_kind_is_a_usage_error(base: Path, cli: Callable[..., CliResult]) -> None:
    result = cli("create", "sandbox-x", "--kind", "banana", "--config", str(base))
    assert result.code == 2 and result.stderr.count("\n") == 1 and "'banana' is not one of" in result.stderr


# -- broken surroundings --------------------------------------------------------------------------


class _RejectingGitServer(BaseHTTPRequestHandler):
    """A git HTTP server that refuses every credential (401), as a host does for a revoked token."""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="fleet"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        return


@pytest.fixture(scope="module")
def rejecting_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingGitServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)


def derived_remote(base: Path, where: Path, change: Callable[[Path], None]) -> Path:
    """A new bare fleet remote: the base remote's main with ``change`` committed."""
    checkout, remote = where / "checkout", where / "remote.git"
    git(where, "clone", "--quiet", str(base.parent / "remote.git"), checkout.name)
    change(checkout)
    git(checkout, "add", "--all")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "broken")
    git(where, "clone", "--quiet", "--bare", str(checkout), remote.name)
    return remote


def _append(path: str, text: str) -> Callable[[Path], None]:
    def change(checkout: Path) -> None:
        target = checkout / path
        target.write_text(target.read_text() + text)

    return change


@dataclass(frozen=True)
class Surroundings:
    id: str
    code: int
    message: str
    config: dict[str, Any] = field(default_factory=dict)
    repo_change: Callable[[Path], None] | None = None
    create: tuple[str, ...] = ("--ticket", "OPS-5", "--summary", "broken surroundings")
    inventory_readable: bool = True


SURROUNDINGS = [
    Surroundings(
        "repo-malformed-yaml-in-cluster-dir",
        2,
        "fleet repository: clusters/development/apps.yaml: line",
        repo_change=_append("clusters/development/apps.yaml", "\n  bad: [unclosed\n"),
    ),
    Surroundings(
        "repo-malformed-yaml-in-app",
        2,
        "fleet repository: apps/podinfo/release.yaml: line",
        repo_change=_append("apps/podinfo/release.yaml", "\n\tindented: with a tab\n"),
    ),
    Surroundings(
        "repo-without-clusters",
        2,
        "the fleet repository has no clusters/ directory on main",
        repo_change=lambda checkout: shutil.rmtree(checkout / "clusters"),
    ),
    Surroundings(
        "repo-without-the-environment",
        2,
        "environment 'qa' has no directory clusters/qa/",
        config={
            "environments": {
                "qa": {
                    "cluster_dir": "clusters/qa",
                    "tracking": {"type": "tag", "tag": "1.2.3"},
                    "terraform": {"module": "infra/cluster", "variables": {"kubernetes_version": "1.31"}},
                }
            }
        },
        create=("--kind", "performance", "--from", "qa"),
    ),
    Surroundings(
        "repo-without-the-module",
        2,
        "terraform module 'infra/eks' not found in the fleet repository",
        config={"environments": {"development": {"terraform": {"module": "infra/eks"}}}},
    ),
    Surroundings(
        "remote-without-default-branch", 2, "has no branch 'trunk'", config={"fleet_repo": {"default_branch": "trunk"}}
    ),
    Surroundings(
        "terraform-missing",
        1,
        "/opt/none/terraform is not installed or not on PATH (setting drivers.terraform.binary)",
        config={"drivers": {"terraform": {"binary": "/opt/none/terraform"}}},
    ),
    Surroundings(
        "git-missing",
        1,
        "/opt/none/git is not installed or not on PATH (setting drivers.git.binary)",
        config={"drivers": {"git": {"binary": "/opt/none/git"}}},
    ),
    Surroundings(
        "remote-path-missing",
        1,
        "does not appear to be a git repository",
        config={"fleet_repo": {"remote": "/srv/git/no-such-fleet.git"}},
    ),
    Surroundings(
        "remote-refuses-connections",
        1,
        "cannot be read: git ls-remote",
        config={"fleet_repo": {"remote": "http://127.0.0.1:{closed_port}/fleet.git"}},
    ),
    Surroundings(
        "remote-rejects-credentials",
        1,
        "credentials rejected",
        config={"fleet_repo": {"remote": "{rejecting}/fleet.git"}},
    ),
    Surroundings(
        "inventory-unreachable",
        1,
        "inventory",
        config={"inventory": {"url": "postgresql+psycopg://fleet@127.0.0.1:{closed_port}/inventory"}},
        inventory_readable=False,
    ),
]


def _fill(value: Any, **values: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, **values) for k, v in value.items()}
    if isinstance(value, str):
        for key, replacement in values.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    return value


@pytest.mark.parametrize("case", SURROUNDINGS, ids=[c.id for c in SURROUNDINGS])
def test_broken_surroundings_fail_the_flow_run_and_leave_nothing(
    case: Surroundings, base: Path, tmp_path: Path, cli: Callable[..., CliResult], rejecting_server: str
) -> None:
    config_path = tmp_path / "fleet.yaml"
    shutil.copy(base, config_path)
    remotes = [base.parent / "remote.git"]
    settings: dict[str, Any] = {"fleet_repo": {"remote": str(base.parent / "remote.git")}}
    if case.repo_change is not None:
        remote = derived_remote(base, tmp_path, case.repo_change)
        settings["fleet_repo"]["remote"] = str(remote)
        remotes.append(remote)
    edit_config(config_path, **settings)
    rejecting = rejecting_server.replace("://", f"://fleet-bot:{SECRET_PASSWORD}@")
    edit_config(config_path, **_fill(case.config, closed_port=str(free_port()), rejecting=rejecting))
    result = cli("create", "sandbox-x", *case.create, "--config", str(config_path))
    assert result.code == case.code, (result.stdout[-1500:], result.stderr[-3000:])
    assert result.cause.startswith("sandbox: error: ") and case.message in result.cause, result.cause
    assert "Traceback" not in result.stdout + result.stderr
    assert SECRET_PASSWORD not in result.stdout + result.stderr
    assert result.flow_run_id is not None, result.stdout
    assert case.message in failed_flow_run_message(result.flow_run_id)
    assert_nothing_left(config_path, "sandbox-x", remotes, inventory=case.inventory_readable)
    assert lock_state("sandbox-x") in (None, (0, False))  # released, no holder note left


#: The example fleet's local environment (a real local cluster; docs/local-cluster.md).
LOCAL_DIR = "clusters/local"


def test_full_disk_for_the_inventory(base: Path, tmp_path: Path, prefect_server: str) -> None:
    """The inventory cannot grow (a file-size limit stands in for a full disk): exit 1, nothing left.

    The limit lets every smaller file this run writes through (the largest is a file of
    the fleet repository checked out by the preflight) but not the inventory's journal.
    """
    config_path = tmp_path / "fleet.yaml"
    shutil.copy(base, config_path)
    # The local environment's Flux install (a 250 KB gotk-components.yaml, as Flux commits it) would
    # need a limit the inventory's journal fits under; this sandbox comes from development, so the
    # test's remote leaves that directory out and every file the run writes stays small.
    remote = derived_remote(base, tmp_path, lambda checkout: shutil.rmtree(checkout / LOCAL_DIR))
    edit_config(config_path, fleet_repo={"remote": str(remote)})
    Inventory(load_config(config_path).inventory_url).close()  # the database exists, as on a used machine
    largest = max(
        p.stat().st_size
        for p in EXAMPLE_REPO.rglob("*")
        if p.is_file() and not p.is_relative_to(EXAMPLE_REPO / LOCAL_DIR)
    )
    limit = max(largest, 4096) + 512
    assert limit < 8 * 1024, "the example repository outgrew this test's file-size limit"

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead

    result = subprocess.run(
        [
            str(BIN / "sandbox"),
            "create",
            "sandbox-full",
            "--ticket",
            "OPS-5",
            "--summary",
            "x",
            "--config",
            str(config_path),
        ],
        capture_output=True,
        text=True,
        env=cli_env(prefect_server),
        preexec_fn=limited,  # only sets a limit and a signal disposition
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    cause = error_line(result.stderr)
    assert cause.startswith("sandbox: error: inventory error: "), cause
    flow_run_id = result.stdout.split("flow run 'sandbox-lifecycle' (", 1)[1].split(")", 1)[0]
    assert "inventory error" in failed_flow_run_message(flow_run_id)
    assert_nothing_left(config_path, "sandbox-full", [base.parent / "remote.git"])
    assert records(config_path) == []


# -- other commands and the configuration file ----------------------------------------------------


def _active_record(config_path: Path, name: str) -> None:
    now = utcnow()
    inventory = Inventory(load_config(config_path).inventory_url)
    try:
        inventory.create(
            SandboxRecord(
                name=name,
                kind=SandboxKind.platform,
                source_env="development",
                lifecycle_id="0123456789ab",
                status=SandboxStatus.active,
                created_at=now,
                expires_at=now,
                branch="OPS-5-existing",
            )
        )
    finally:
        inventory.close()


@dataclass(frozen=True)
class Command:
    id: str
    args: tuple[str, ...]
    code: int
    message: str
    config_text: str | None = None  # replaces fleet.yaml
    existing: str | None = None  # a sandbox recorded beforehand


COMMANDS = [
    Command("resolve-invalid-range", ("resolve", "--range", ">>1.2", "--tags", "1.2.3"), 2, "invalid semver range"),
    Command("release-invalid-version", ("release", "--version", "1.2"), 2, "invalid release version '1.2'"),
    Command("scan-invalid-k8s-version", ("scan", ".", "--k8s-version", "banana"), 1, "invalid Kubernetes version"),
    Command(
        "extend-invalid-ttl",
        ("extend", "sandbox-y", "--ttl", "forever"),
        2,
        "invalid duration 'forever'",
        existing="sandbox-y",
    ),
    Command("resume-unknown", ("resume", "sandbox-none"), 1, "no sandbox named 'sandbox-none'"),
    Command("destroy-unknown", ("destroy", "sandbox-none"), 1, "no sandbox named 'sandbox-none'"),
    Command("promote-protected", ("promote", "production"), 2, "'production' is a long-lived or protected environment"),
    Command(
        "create-existing",
        ("create", "sandbox-y", "--ticket", "OPS-5", "--summary", "again"),
        1,
        "sandbox 'sandbox-y' already exists (status active); use 'sandbox resume sandbox-y'",
        existing="sandbox-y",
    ),
    Command("config-missing", ("list",), 2, "no such configuration file", config_text=""),
    Command("config-not-yaml", ("list",), 2, "not valid YAML", config_text="fleet_repo: [\n"),
    Command("config-unknown-key", ("list",), 2, "bogus: Extra inputs are not permitted", config_text="+bogus: 1\n"),
    Command(
        "config-invalid-range",
        ("list",),
        2,
        "environments.staging.tracking.range: Value error, invalid semver range '1.2.x.y'",
        config_text="s/range: 1.2.x/range: 1.2.x.y/",
    ),
]


@pytest.mark.parametrize("case", COMMANDS, ids=[c.id for c in COMMANDS])
def test_other_commands_refuse_bad_input(
    case: Command, base: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    config_path = tmp_path / "fleet.yaml"
    text = base.read_text()
    if case.config_text is None or case.config_text.startswith("+"):
        config_path.write_text(text + (case.config_text or "")[1:])
    elif case.config_text.startswith("s/"):
        old, new = case.config_text[2:-1].split("/")
        assert old in text
        config_path.write_text(text.replace(old, new))
    elif case.config_text:
        config_path.write_text(case.config_text)
    if case.config_text is None:
        edit_config(config_path, fleet_repo={"remote": str(base.parent / "remote.git")})
    if case.existing:
        _active_record(config_path, case.existing)
    before = [(r.name, r.status, r.lifecycle_id) for r in records(config_path)] if case.config_text is None else []
    args = [a if a != "." else str(base.parent) for a in case.args]
    result = cli(*args, *([] if args[0] in ("resolve", "scan") else ["--config", str(config_path)]))
    assert result.code == case.code, (result.stdout[-1500:], result.stderr[-3000:])
    assert result.cause.startswith("sandbox: error: ") and case.message in result.cause, result.cause
    assert "Traceback" not in result.stdout + result.stderr
    if result.flow_run_id is not None:
        assert case.message in failed_flow_run_message(result.flow_run_id)
    else:
        assert result.stderr.count("\n") == 1, result.stderr
    if case.config_text is None:
        assert [(r.name, r.status, r.lifecycle_id) for r in records(config_path)] == before
        assert not (load_config(config_path).state_dir / "sandboxes").exists()
    assert remote_branches(base.parent / "remote.git") == {"main"}
