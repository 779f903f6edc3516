"""Hostile input: what the fleet repository, the configuration or the worker's environment can make the product do.

One table (docs/security.md explains each row and the threat behind it). A row is
the input -- a change committed to the fleet remote, settings merged into
fleet.yaml, secrets in the worker's environment, and a ``sandbox`` command -- and
what must come of it:

* the exit code, and one line ``sandbox: error: <cause>`` naming the problem;
* nothing changed on disk: the fleet remotes' refs, the state directory (no
  sandbox state, no terraform state, no inventory row), the machine's own files,
  a local checkout the command was given;
* no secret anywhere: the worker's secrets and the machine's private key are not
  in stdout, stderr, the Prefect server's database, the inventory, the state
  files or the remotes' history.

Items 4-9 of issue 17 added rows (a registry's token realm, bounded reads, exact
names, collisions, exit codes; interrupts are in ``test_interrupts.py``, as they
need a real signal): a row needs only its input and its expectation. A row with
exit code 0 is a command that must succeed, saying ``message`` on stdout. The CLI
runs in this process (``run_cli`` of ``test_bad_input``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandbox.config import load_config
from sandbox.demo import prepare_demo
from sandbox.inventory import Inventory
from tests.hostile_registry import Recorder, hostile_servers
from tests.integration.reliability_support import edit_config, remote_branches
from tests.integration.secret_scan import (
    file_texts,
    flush_prefect_logs,
    leaks,
    prefect_database_text,
    remote_history,
)
from tests.integration.test_bad_input import CliResult, derived_remote, failed_flow_run_message, run_cli

pytestmark = pytest.mark.integration

#: The machine's own private key: a file of the worker's home that must never leave.
HOST_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQ\n"
    "hostileInputPlantedKeyMaterialThatMustNeverLeaveTheWorker0123456789abcdef\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)

#: Environment variables a row may set that hold settings, not secrets (named in errors on purpose).
NOT_SECRET = frozenset({"FLEET_SANDBOX_DEMO_DIR"})

#: The worker's secrets, in the environment variables fleet.yaml names by default.
SECRETS = {
    "GITHUB_TOKEN": "ghp_hostileInputGitHubToken0123456789abcd",
    "FLEET_GIT_TOKEN": "fleet-git-token-hostile-5e1c0b7d",
    "FLEET_REGISTRY_USERNAME": "fleet-bot",
    "FLEET_REGISTRY_PASSWORD": "registry-password-hostile-8a2f6c",
}

SANDBOX = "sandbox-x"


@dataclass(frozen=True)
class World:
    """Where a row runs: paths substituted into its command, config and expectations."""

    config: Path
    host: Path  # a directory of the machine, outside every repository, holding HOST_KEY
    checkout: Path  # a clone of the row's fleet remote (for commands on a local checkout)
    remotes: list[Path]
    state: Path  # the configuration's state directory (read before the row's settings, which may be refused)
    registry: str = ""  # host:port of the hostile registry (tests/hostile_registry.py)

    def fill(self, value: Any) -> Any:
        """``value`` with ``{config}``, ``{host}``, ``{checkout}`` and ``{registry}`` replaced, at any depth."""
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return type(value)(self.fill(v) for v in value)
        if isinstance(value, str):
            return value.format(config=self.config, host=self.host, checkout=self.checkout, registry=self.registry)
        return value


RepoChange = Callable[[Path, Path], None]


@dataclass(frozen=True)
class Hostile:
    """One row: an input and what must come of it.

    Attributes:
        id: The row's name (the test id, and its name in docs/security.md).
        command: ``sandbox`` arguments; ``{config}``, ``{checkout}``, ``{host}`` are filled in.
        code: The exit code.
        message: What the one error line must contain (placeholders filled in).
        repo_change: Made in a checkout of the fleet remote and committed to a new remote
            the row uses: ``change(checkout, host)``.
        config: Merged into fleet.yaml (placeholders filled in).
        env: Set in the worker's environment for the command (besides :data:`SECRETS`).
        stdout: What standard output must contain too, if anything.
        branches: Branches the row's remote has besides ``main`` (made by ``repo_change``),
            before and after the command.
        config_prefix: Bytes put before fleet.yaml's text (after ``config`` is merged).
        prepare: Made on the machine before the command (``prepare(world)``): what git
            cannot carry (FIFOs), or files outside every repository.

    A row with ``code`` 0 is a command that must succeed: ``message`` is then what
    its standard output must say, and nothing may be on stderr.
    """

    id: str
    command: tuple[str, ...]
    code: int
    message: str
    repo_change: RepoChange | None = None
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    stdout: str | None = None
    branches: frozenset[str] = frozenset()
    config_prefix: bytes = b""
    prepare: Callable[[World], None] | None = None


def _commit_link(path: str, target: str) -> RepoChange:
    """A change replacing ``path`` (file or directory) with a symbolic link to ``target`` (``{host}`` filled in)."""

    def change(checkout: Path, host: Path) -> None:
        link = checkout / path
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        else:
            link.unlink(missing_ok=True)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target.format(host=host), link)

    return change


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, capture_output=True, check=True
    )


def _commit_file(path: str, text: str = "kind: Namespace\n") -> RepoChange:
    """A change adding ``path`` on ``main``."""

    def change(checkout: Path, host: Path) -> None:
        target = checkout / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    return change


def _another_sandboxs_branch(branch: str, sandbox: str) -> RepoChange:
    """A change leaving ``branch`` holding ``clusters/<sandbox>/`` (main gets an unrelated file)."""

    def change(checkout: Path, host: Path) -> None:
        _git(checkout, "checkout", "--quiet", "-b", branch)
        shutil.copytree(checkout / "clusters" / "development", checkout / "clusters" / sandbox)
        _git(checkout, "add", "--all")
        _git(checkout, "commit", "--quiet", "-m", f"sandbox {sandbox}")
        _git(checkout, "checkout", "--quiet", "main")
        (checkout / "NOTES.md").write_text("another sandbox is being worked on\n")

    return change


def _manifests(directory: Path) -> None:
    """A directory to scan: a FIFO named like a manifest, a huge manifest, an ordinary one."""
    directory.mkdir()
    os.mkfifo(directory / "pipe.yaml")
    (directory / "huge.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n" + "# padding\n" * 1000)
    (directory / "ok.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n")


BRANCH = "OPS-5-hostile-input"  # the branch CREATE's ticket and summary make

CREATE = ("create", SANDBOX, "--ticket", "OPS-5", "--summary", "hostile input", "--config", "{config}")

#: A registry reached over the network (plain HTTP) instead of the demo's OCI image layout
#: (``layout_dir``), which would answer from disk and never meet the registry under test.
_NETWORK_REGISTRY: dict[str, Any] = {"insecure": True, "layout_dir": None}


ROWS = [
    # -- item 1: no host file leaves through a checkout -------------------------------------------
    Hostile(
        "cluster-dir-links-to-a-host-directory",
        CREATE,
        2,
        "clusters/development is a symbolic link to {host}, outside the fleet repository; refused",
        repo_change=_commit_link("clusters/development", "{host}"),
    ),
    Hostile(
        "manifest-links-to-a-host-key",
        CREATE,
        2,
        "clusters/development/deploy-key.yaml is a symbolic link to {host}/id_ed25519, outside the fleet repository",
        repo_change=_commit_link("clusters/development/deploy-key.yaml", "{host}/id_ed25519"),
    ),
    Hostile(
        "built-path-links-to-a-host-key",
        CREATE,
        2,
        "apps/podinfo/key.yaml is a symbolic link to {host}/id_ed25519, outside the fleet repository",
        repo_change=_commit_link("apps/podinfo/key.yaml", "{host}/id_ed25519"),
    ),
    Hostile(
        "terraform-module-links-outside",
        CREATE,
        2,
        "infra/cluster/leak.tf is a symbolic link to {host}/id_ed25519, outside the fleet repository",
        repo_change=_commit_link("infra/cluster/leak.tf", "{host}/id_ed25519"),
    ),
    Hostile(
        "relative-link-climbs-out",
        CREATE,
        2,
        "clusters/development/up.yaml is a symbolic link to ../../../../../../../../../../../../etc/hostname",
        repo_change=_commit_link("clusters/development/up.yaml", "../../../../../../../../../../../../etc/hostname"),
    ),
    Hostile(
        "local-clone-of-a-linked-cluster-dir",
        ("clone", "--repo", "{checkout}", "--from", "development", "--name", SANDBOX, "--branch", "OPS-5-x"),
        2,
        "clusters/development is a symbolic link to {host}, outside the fleet repository; refused",
        repo_change=_commit_link("clusters/development", "{host}"),
    ),
    Hostile(
        "check-reports-the-link",
        ("check", "--repo", "{checkout}", "--config", "{config}"),
        1,
        "1 fleet policy violation(s) in {checkout}",
        repo_change=_commit_link("clusters/development/deploy-key.yaml", "{host}/id_ed25519"),
        stdout="clusters/development/deploy-key.yaml: links-inside: symbolic link to {host}/id_ed25519",
    ),
    Hostile(
        "scan-refuses-the-link",
        ("scan", "{checkout}/clusters"),
        1,
        "development/deploy-key.yaml is a symbolic link to {host}/id_ed25519, outside the scanned directory",
        repo_change=_commit_link("clusters/development/deploy-key.yaml", "{host}/id_ed25519"),
    ),
    # -- item 2: no secret sent in clear text --------------------------------------------------------
    Hostile(
        "github-token-over-plain-http",
        CREATE,
        2,
        "drivers.git_hosting.api_url http://api.github.example.test is plain HTTP: refusing to send credentials",
        config={
            "drivers": {
                "git_hosting": {
                    "type": "github",
                    "api_url": "http://api.github.example.test",
                    "repository": "example-org/fleet-infra",
                }
            }
        },
    ),
    Hostile(
        "registry-password-over-plain-http",
        ("release", "plan", "--config", "{config}"),
        2,
        "the registry oci://registry.example.test/fleet/platform is plain HTTP: refusing to send credentials",
        config={"drivers": {"registry": {**_NETWORK_REGISTRY, "url": "oci://registry.example.test/fleet/platform"}}},
    ),
    Hostile(
        "remote-credentials-over-plain-http",
        CREATE,
        2,
        "fleet_repo.remote http://***@git.example.test/fleet.git is plain HTTP: refusing to send credentials",
        config={"fleet_repo": {"remote": "http://fleet-bot:remote-password-hostile-3d9e@git.example.test/fleet.git"}},
        env={"REMOTE_PASSWORD": "remote-password-hostile-3d9e"},
    ),
    # -- item 6: names are exact (``$`` also matches before a trailing newline) -----------------------
    Hostile(
        "sandbox-name-with-a-trailing-newline",
        ("create", "abc\n", "--ticket", "OPS-5", "--summary", "hostile input", "--config", "{config}"),
        2,
        "invalid sandbox name 'abc\\n': use lowercase letters, digits and '-'",
    ),
    Hostile(
        "clone-name-with-a-trailing-newline",
        ("clone", "--repo", "{checkout}", "--from", "development", "--name", "x\n", "--branch", "OPS-5-x"),
        2,
        "invalid sandbox name 'x\\n'",
    ),
    Hostile(
        "clone-branch-with-a-trailing-newline",
        ("clone", "--repo", "{checkout}", "--from", "development", "--name", SANDBOX, "--branch", "OPS-5-x\n"),
        2,
        "branch 'OPS-5-x\\n' does not follow <ticket>-<summary>",
    ),
    # -- item 9: the contract's exit codes ------------------------------------------------------------
    Hostile(
        "huge-ttl",
        (*CREATE, "--ttl", "99999999999999d"),
        2,
        "invalid duration '99999999999999d': too long (at most 999999999 days)",
    ),
    Hostile(
        "extend-by-a-huge-ttl",
        ("extend", SANDBOX, "--ttl", "99999999999999d", "--config", "{config}"),
        2,
        "invalid duration '99999999999999d': too long",
    ),
    Hostile("demo-workdir-is-a-file", ("demo", "--workdir", "{config}"), 2, "--workdir {config} is not a directory"),
    # Set through the environment, the error names the variable, not an option the user never typed.
    Hostile(
        "demo-workdir-from-the-environment-is-a-file",
        ("demo",),
        2,
        "FLEET_SANDBOX_DEMO_DIR /etc/passwd is not a directory",
        env={"FLEET_SANDBOX_DEMO_DIR": "/etc/passwd"},
    ),
    Hostile(
        "demo-workdir-cannot-be-made",
        ("demo", "--workdir", "{config}/demo"),
        2,
        "--workdir {config}/demo cannot be written: Not a directory",
    ),
    Hostile(
        "demo-workdir-is-not-a-demo",
        ("demo", "--workdir", "{checkout}"),
        2,
        "--workdir {checkout} is not empty and not a demo directory (no .fleet-sandbox-demo): "
        "give a new or empty directory",
    ),
    Hostile(
        "fleet-yaml-not-utf-8",
        ("list", "--config", "{config}"),
        2,
        "{config}: not UTF-8 text (byte 2)",
        config_prefix=b"# \xff\xfe latin-1 comment\n",
    ),
    # -- item 4: registry credentials only where they belong ----------------------------------------
    Hostile(
        "registry-token-realm-on-another-port",
        ("release", "plan", "--config", "{config}"),
        1,
        "registry {registry}: refusing to send the registry credentials to the token realm http://127.0.0.1:",
        config={"drivers": {"registry": {**_NETWORK_REGISTRY, "url": "oci://{registry}/fleet/platform"}}},
    ),
    # -- item 5: reading is bounded ----------------------------------------------------------------
    Hostile(
        "scan-names-a-fifo-and-a-huge-file",
        ("scan", "{host}/manifests", "--max-file-bytes", "2048"),
        0,
        "pipe.yaml: not a regular file (a FIFO); not read",
        prepare=lambda world: _manifests(world.host / "manifests"),
        stdout="huge.yaml: larger than 2048 bytes; not read",
    ),
    Hostile(
        "scan-a-link-to-dev-zero",
        ("scan", "{host}/zero.yaml"),
        0,
        "zero.yaml: not a regular file (a character device); not read",
        prepare=lambda world: (world.host / "zero.yaml").symlink_to("/dev/zero"),
    ),
    Hostile(
        "scan-a-directory-with-a-link-to-dev-zero",
        ("scan", "{host}"),
        1,
        "zero.yaml is a symbolic link to /dev/zero, outside the scanned directory; refused",
        prepare=lambda world: (world.host / "zero.yaml").symlink_to("/dev/zero"),
    ),
    Hostile(
        "config-is-dev-zero",
        ("list", "--config", "/dev/zero"),
        2,
        "/dev/zero: not a regular file (a character device); refused",
    ),
    Hostile(
        "config-is-a-fifo",
        ("list", "--config", "{host}/fleet.yaml"),
        2,
        "{host}/fleet.yaml: not a regular file (a FIFO); refused",
        prepare=lambda world: os.mkfifo(world.host / "fleet.yaml"),
    ),
    Hostile(
        "config-alias-bomb",
        ("list", "--config", "{config}"),
        2,
        "not valid YAML: more than 100000 values once its aliases are expanded (an alias bomb?); refused",
        config_prefix=(
            'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
            + "".join(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 10))
        ).encode(),
    ),
    Hostile(
        "config-duplicate-key",
        ("list", "--config", "{config}"),
        2,
        "not valid YAML: duplicate key 'fleet_repo' (first at line 1)",
        config_prefix=b"fleet_repo: {remote: /srv/elsewhere.git}\n",
    ),
    Hostile(
        "config-too-large",
        ("list", "--config", "{config}"),
        2,
        "{config}: larger than 1048576 bytes; refused",
        config_prefix=b"#" + b" padding" * 140_000 + b"\n",
    ),
    # -- item 7: collisions caught before anything is created ---------------------------------------
    Hostile(
        "branch-already-on-the-remote",
        CREATE,
        1,
        f"branch '{BRANCH}' already exists on the fleet remote; choose another --ticket or --summary",
        repo_change=_another_sandboxs_branch(BRANCH, "sandbox-other"),
        branches=frozenset({BRANCH}),
    ),
    Hostile(
        "sandbox-directory-already-in-the-repository",
        CREATE,
        1,
        f"clusters/{SANDBOX}/ already exists on main of the fleet repository; choose another sandbox name",
        repo_change=_commit_file(f"clusters/{SANDBOX}/namespace.yaml"),
    ),
    Hostile(
        "unknown-override-key",
        (*CREATE, "--override", "kubernetes_verison=1.31"),
        2,
        "unknown override 'kubernetes_verison': the terraform module infra/cluster takes "
        "force_destroy, kubernetes_version, node_count, node_size, region",
    ),
    Hostile(
        "local-clone-onto-another-sandboxs-branch",
        ("clone", "--repo", "{checkout}", "--from", "development", "--name", SANDBOX, "--branch", BRANCH),
        1,
        f"branch '{BRANCH}' is sandbox 'sandbox-other''s (clusters/sandbox-other/); choose another --branch",
        repo_change=_another_sandboxs_branch(BRANCH, "sandbox-other"),
        branches=frozenset({BRANCH}),
    ),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's fleet repo, remote and fleet.yaml (no development cluster needed here)."""
    return prepare_demo(tmp_path_factory.mktemp("hostile") / "fleet", development=False)


def _digest(root: Path) -> dict[str, str]:
    """Every entry below ``root``: files by content hash, links by target (for before/after comparisons)."""
    found: dict[str, str] = {}
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _refs(remote: Path) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(remote), "show-ref"], capture_output=True, text=True, check=False
    ).stdout


def _state(world: World) -> dict[str, str]:
    """The state directory without the inventory database (opening it creates it; its rows are checked apart)."""
    return {k: v for k, v in _digest(world.state).items() if not k.startswith("inventory.db")}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def hostile_registry() -> Iterator[tuple[Recorder, Recorder]]:
    """A registry on loopback whose 401 names a token realm on another port (which records what reaches it)."""
    with hostile_servers() as (registry, elsewhere):
        registry.realm = f"http://127.0.0.1:{elsewhere.server_address[1]}/token"
        yield registry, elsewhere


@pytest.fixture
def world(row: Hostile, base: Path, tmp_path: Path, hostile_registry: tuple[Recorder, Recorder]) -> World:
    host = tmp_path / "host-home" / ".ssh"
    host.mkdir(parents=True)
    (host / "id_ed25519").write_text(HOST_KEY)
    config = tmp_path / "fleet.yaml"
    shutil.copy(base, config)
    remotes = [base.parent / "remote.git"]
    remote = remotes[0]
    if row.repo_change is not None:
        change = row.repo_change
        remote = derived_remote(base, tmp_path, lambda checkout: change(checkout, host))
        remotes.append(remote)
    edit_config(config, fleet_repo={"remote": str(remote)})
    checkout = tmp_path / "local-checkout"
    subprocess.run(["git", "clone", "--quiet", str(remote), str(checkout)], check=True, capture_output=True)
    made = World(
        config=config,
        host=host,
        checkout=checkout,
        remotes=remotes,
        state=load_config(config).state_dir,
        registry=f"127.0.0.1:{hostile_registry[0].server_address[1]}",
    )
    if row.config:
        edit_config(config, **made.fill(row.config))
    if row.config_prefix:
        config.write_bytes(row.config_prefix + config.read_bytes())
    if row.prepare is not None:
        row.prepare(made)
    return made


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Hostile:
    row: Hostile = request.param
    return row


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS], indirect=True)
def test_hostile_input(
    row: Hostile, world: World, prefect_server: str, hostile_registry: tuple[Recorder, Recorder]
) -> None:
    before = {
        "remotes": [_refs(r) for r in world.remotes],
        "state": _state(world),
        "host": _digest(world.host.parent),
        "checkout": _digest(world.checkout),
    }
    with _environment({**SECRETS, **row.env}):
        result: CliResult = run_cli(*world.fill(row.command))
    # The exit code, and one line naming the problem.
    assert result.code == row.code, (result.stdout[-2000:], result.stderr[-3000:])
    if row.code == 0:
        assert result.stderr == "", result.stderr
        assert world.fill(row.message) in result.stdout, result.stdout
    else:
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.cause.startswith("sandbox: error: "), result.cause
        assert world.fill(row.message) in result.cause, result.cause
    assert "Traceback" not in result.stdout + result.stderr
    if row.stdout is not None:
        assert world.fill(row.stdout) in result.stdout, result.stdout
    if result.flow_run_id is not None:
        assert world.fill(row.message) in failed_flow_run_message(result.flow_run_id)
    # Nothing changed on disk.
    after = {
        "remotes": [_refs(r) for r in world.remotes],
        "state": _state(world),
        "host": _digest(world.host.parent),
        "checkout": _digest(world.checkout),
    }
    assert after == before
    assert remote_branches(world.remotes[0]) == {"main"}
    assert all(remote_branches(r) == {"main", *row.branches} for r in world.remotes[1:])
    state = world.state
    if (state / "inventory.db").exists():
        inventory = Inventory(f"sqlite:///{state / 'inventory.db'}")
        try:
            assert SANDBOX not in [r.name for r in inventory.list()]
        finally:
            inventory.close()
    # No secret anywhere.
    flush_prefect_logs()
    secrets = {
        name: value
        for name, value in {**SECRETS, **row.env}.items()
        if not name.endswith("_USERNAME") and name not in NOT_SECRET
    }
    secrets["the machine's private key"] = HOST_KEY.splitlines()[2]
    basic = f"{SECRETS['FLEET_REGISTRY_USERNAME']}:{SECRETS['FLEET_REGISTRY_PASSWORD']}"
    secrets["the registry's basic auth"] = base64.b64encode(basic.encode()).decode()
    found = leaks(
        secrets,
        {
            "stdout": [result.stdout],
            "stderr": [result.stderr],
            "Prefect's database": [prefect_database_text()],
            "the state directory": file_texts(state),
            "the remotes": [remote_history(r) for r in world.remotes],
        },
    )
    assert not found, found
    assert hostile_registry[1].seen == []  # nothing ever reached the realm on another port
