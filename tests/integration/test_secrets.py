"""Secrets never appear in logs, artifacts, exceptions, results, the inventory or the repository.

The demo lifecycle runs with known secret values seeded where the product takes
them — the git credentials Flux reads the repository with, the GitHub token
pull requests are opened with (first a token GitHub rejects, then the right
one), a registry password — and the cluster credential the cluster module makes
(its ``cluster_token`` output, the kubeconfig token of a real cluster). The fake
GitHub quotes the request's ``Authorization`` header in its error bodies, as a
misbehaving proxy does. Then every output is searched for them: the CLI's stdout
and stderr, the flow runs' logs, states, parameters, task runs and artifacts read
back from the Prefect API, the persisted task results, the inventory database
file, every file of the state directory except the intended secret stores
(terraform state, the clusters themselves), the fleet remote's whole history and
the pull request.

``test_no_secret_leaves_through_a_failure`` drives failing paths with every kind
of secret the product holds seeded (GitHub token, registry password, Flux's git
token and SSH key, an application stack's token, a kubeconfig's token and client
key): a terraform whose apply fails printing them, a registry that echoes the
basic-auth header in its 401. It searches the same places, and the Prefect
server's database file itself.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sandbox.demo import DEMO_SANDBOX, prepare_demo
from tests.fakes.github_api_server import GitHubApiServer, running_github_api
from tests.integration.reliability_support import cli_env, edit_config
from tests.integration.sandbox_cli import BIN, error_line
from tests.integration.secret_scan import file_texts, leaks, prefect_database_text, remote_history

pytestmark = pytest.mark.integration

GIT_TOKEN = "fleet-git-token-4f9c2d7a1b8e"
GITHUB_TOKEN = "ghp_seededAcceptedToken0123456789abcdef"
REJECTED_GITHUB_TOKEN = "ghp_seededRejectedToken9876543210fedcba"
REGISTRY_PASSWORD = "registry-password-7d1e0c3b55"


#: A terraform that runs the real one, keeping a copy of the state after each apply
#: (``SNAPSHOT_DIR``: the test reads the cluster's credential there, since teardown
#: deletes the state's backup) and, with ``LEAK_ON_APPLY``, failing the apply after
#: it ran by printing the secrets of its environment and the kubeconfig it output,
#: as a crashing provider that dumps its environment does.
_TERRAFORM_SHIM = """#!/bin/sh
'{real}' "$@"
rc=$?
if [ "$1" = apply ] && [ -n "$SNAPSHOT_DIR" ]; then
  for state in terraform.tfstate terraform.tfstate.d/*/terraform.tfstate; do
    if [ -f "$state" ]; then cp "$state" "$SNAPSHOT_DIR/$(date +%s%N).json"; fi
  done
fi
if [ "$1" = apply ] && [ -n "$LEAK_ON_APPLY" ]; then
  echo "Error: plugin crashed: $GITHUB_TOKEN $FLEET_GIT_TOKEN $FLEET_REGISTRY_PASSWORD $SHOP_TOKEN" >&2
  printf '%s\\n' "$FLEET_GIT_SSH_KEY" >&2
  '{real}' output -raw kubeconfig | grep -E 'token:|client-key-data:' >&2
  exit 1
fi
exit $rc
"""


def terraform_shim(directory: Path) -> Path:
    """Write :data:`_TERRAFORM_SHIM` into ``directory``; its path."""
    real = shutil.which("terraform")
    assert real, "terraform must be installed for the integration tests"
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "terraform"
    shim.write_text(_TERRAFORM_SHIM.format(real=real), encoding="utf-8")
    shim.chmod(0o755)
    return shim


@dataclass
class Run:
    workdir: Path
    outputs: list[subprocess.CompletedProcess[str]]
    github: GitHubApiServer
    results: Path


def _sandbox(
    workdir: Path, api_url: str, results: Path, github_token: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = cli_env(
        api_url,
        FLEET_GIT_TOKEN=GIT_TOKEN,
        GITHUB_TOKEN=github_token,
        FLEET_REGISTRY_PASSWORD=REGISTRY_PASSWORD,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(results),
        SNAPSHOT_DIR=str(workdir / "state-snapshots"),
    )
    return subprocess.run(
        [str(BIN / "sandbox"), *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def run(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("secrets")
    config = prepare_demo(workdir)
    results = workdir / "results"
    (workdir / "state-snapshots").mkdir()
    with running_github_api(remote=workdir / "remote.git", token=GITHUB_TOKEN, echo_authorization=True) as github:
        edit_config(
            config,
            drivers={
                "git_hosting": {"type": "github", "api_url": github.url, "repository": "example-org/fleet-infra"},
                "cluster": {"simulation": {"readiness_delay_seconds": 0.05}},
                "load_generator": {"duration_seconds": 1},
                "terraform": {"binary": str(terraform_shim(workdir / "bin"))},
            },
        )
        demo = ("demo", "--workdir", str(workdir))
        rejected = _sandbox(workdir, prefect_server, results, REJECTED_GITHUB_TOKEN, *demo)
        accepted = _sandbox(workdir, prefect_server, results, GITHUB_TOKEN, *demo)
        listing = [
            _sandbox(workdir, prefect_server, results, GITHUB_TOKEN, "list", "--config", str(config), *extra)
            for extra in ((), ("--output", "json"))
        ]
        yield Run(workdir, [rejected, accepted, *listing], github, results)


def _cluster_token(workdir: Path) -> str:
    """The cluster credential the module made, from the copies of the terraform state the shim kept.

    The sandbox's own state no longer has it (destroyed), nor has a backup (teardown deletes it).
    """
    snapshots = sorted((workdir / "state-snapshots").glob("*.json"))
    for snapshot in snapshots:
        state = json.loads(snapshot.read_text())
        for resource in state.get("resources", []):
            if resource.get("type") == "terraform_data" and resource.get("name") == "cluster":
                attributes = resource["instances"][0]["attributes"]
                if (attributes.get("input") or {}).get("value", {}).get("name") == DEMO_SANDBOX:
                    return str(attributes["id"])
    raise AssertionError(f"no cluster of {DEMO_SANDBOX} in the terraform state copies {snapshots}")


def _flow_run_ids(outputs: list[subprocess.CompletedProcess[str]]) -> list[str]:
    marker = "flow run 'sandbox-lifecycle' ("
    return [o.stdout.split(marker, 1)[1].split(")", 1)[0] for o in outputs if marker in o.stdout]


def _prefect_texts(flow_run_ids: list[str]) -> dict[str, list[str]]:
    """What the Prefect API holds about the flow runs: logs, states, parameters, task runs, artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    ids: list[Any] = list(flow_run_ids)
    texts: dict[str, list[str]] = {"logs": [], "flow runs": [], "task runs": [], "artifacts": []}
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200)
        offset = len(logs)
        while True:  # page through every log line
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200, offset=offset
            )
            if not page:
                break
            logs += page
            offset += len(page)
        texts["logs"] = [log.message for log in logs]
        for flow_run_id in ids:
            flow_run = client.read_flow_run(flow_run_id)
            texts["flow runs"].append(flow_run.model_dump_json())
        runs_filter = FlowRunFilter(id=FlowRunFilterId(any_=ids))
        texts["task runs"] = [t.model_dump_json() for t in client.read_task_runs(flow_run_filter=runs_filter)]
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
        texts["artifacts"] = [a.model_dump_json() for a in artifacts]
    return texts


def _files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        parts = set(path.parts)
        # The intended secret stores: terraform state, and the (simulated) clusters, which
        # hold the git credentials Flux reads the repository with.
        if path.name.startswith("terraform.tfstate") or "simulated-cluster" in parts:
            continue
        yield path


def test_no_secret_in_any_output(run: Run) -> None:
    rejected, accepted, *_ = run.outputs
    assert rejected.returncode == 1 and "Bad credentials" in error_line(rejected.stderr)
    # The host quoted the header: the product repeats its answer with the token masked.
    assert "request had Authorization: Bearer ***" in error_line(rejected.stderr)
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    secrets = {
        "git credentials": GIT_TOKEN,
        "GitHub token": GITHUB_TOKEN,
        "rejected GitHub token": REJECTED_GITHUB_TOKEN,
        "registry password": REGISTRY_PASSWORD,
        "cluster token": _cluster_token(run.workdir),
    }
    places: dict[str, list[str]] = {
        "CLI output": [o.stdout + o.stderr for o in run.outputs],
        **_prefect_texts(_flow_run_ids(run.outputs)),
        "task results": [p.read_bytes().decode("utf-8", "replace") for p in run.results.rglob("*") if p.is_file()],
        "inventory": [(run.workdir / "state" / "inventory.db").read_bytes().decode("utf-8", "replace")],
        "state files": [p.read_bytes().decode("utf-8", "replace") for p in _files(run.workdir / "state")],
        "fleet remote": [
            subprocess.run(
                ["git", "--git-dir", str(run.workdir / "remote.git"), "log", "--all", "-p", "--format=%H %s%n%b"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        ],
        "pull requests": [json.dumps(pr) for pr in run.github.pulls.values()],
    }
    # Each place holds what it should (a search of nothing would prove nothing).
    assert len(places["logs"]) > 50 and places["artifacts"] and places["task results"]
    assert places["pull requests"] and "promote sandbox-demo" in places["fleet remote"][0]
    found = [
        f"{secret} in {place}"
        for place, texts in places.items()
        for secret, value in secrets.items()
        if any(value in text for text in texts)
    ]
    assert not found, found


# -- failing paths -----------------------------------------------------------------------------

SSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBseededFleetDeployKeyBodyLine2OfTheKey0123456789abcdefABCD\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
SHOP_TOKEN = "shop-stack-read-token-6b0e9a4d71"
KUBE_TOKEN = "kube-admin-token-0f3a9c5e7b1d2468"
KUBE_CLIENT_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKseededKubeconfigClientKeyMaterial0123456789abcdefgh\n"
    "-----END RSA PRIVATE KEY-----\n"
)
REGISTRY_USER = "fleet-publisher"


def _kubeconfig_module() -> str:
    """A cluster-module file outputting a (sensitive) kubeconfig with a token and a client key."""
    key_data = base64.b64encode(KUBE_CLIENT_KEY.encode()).decode()
    return f"""output "kubeconfig" {{
  sensitive = true
  value     = <<-EOT
    apiVersion: v1
    kind: Config
    clusters:
    - name: sandbox
      cluster: {{server: "https://127.0.0.1:6443"}}
    users:
    - name: admin
      user:
        token: {KUBE_TOKEN}
        client-key-data: {key_data}
    contexts:
    - name: sandbox
      context: {{cluster: sandbox, user: admin}}
    current-context: sandbox
  EOT
}}
"""


class _EchoingRegistry(BaseHTTPRequestHandler):
    """An OCI registry that refuses every credential, quoting the Authorization header it got (401)."""

    def _refuse(self) -> None:
        body = json.dumps(
            {
                "errors": [
                    {
                        "code": "UNAUTHORIZED",
                        "message": f"authentication required (got Authorization: {self.headers.get('Authorization')})",
                    }
                ]
            }
        ).encode()
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="fleet"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = _refuse  # noqa: N815 - http.server's names

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        return


@dataclass
class Failures:
    workdir: Path
    outputs: dict[str, subprocess.CompletedProcess[str]]
    results: Path
    secrets: dict[str, str]
    seeded: str  # the commit the test pushed (its module holds the kubeconfig): not the product's doing


@pytest.fixture(scope="module")
def failures(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Failures]:
    workdir = tmp_path_factory.mktemp("secret-failures")
    config = prepare_demo(workdir, development=False)
    # The cluster module also outputs a kubeconfig (as a real cluster module does).
    checkout = workdir / "module-checkout"
    subprocess.run(["git", "clone", "-q", str(workdir / "remote.git"), str(checkout)], check=True, capture_output=True)
    (checkout / "infra" / "cluster" / "kubeconfig.tf").write_text(_kubeconfig_module(), encoding="utf-8")
    for args in (("add", "--all"), ("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "kubeconfig")):
        subprocess.run(["git", *args], cwd=checkout, check=True, capture_output=True)
    subprocess.run(["git", "push", "-q", "origin", "main"], cwd=checkout, check=True, capture_output=True)
    seeded = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=checkout, check=True, capture_output=True, text=True
    ).stdout.strip()
    registry = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingRegistry)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    results = workdir / "results"
    with running_github_api(remote=workdir / "remote.git", token=GITHUB_TOKEN, echo_authorization=True) as github:
        edit_config(
            config,
            drivers={
                "git_hosting": {"type": "github", "api_url": github.url, "repository": "example-org/fleet-infra"},
                "terraform": {"binary": str(terraform_shim(workdir / "bin"))},
                "registry": {
                    "url": f"oci://127.0.0.1:{registry.server_address[1]}/fleet/platform",
                    "insecure": True,
                    "auth": "basic",
                    "layout_dir": None,  # the echoing registry, not the demo's OCI layout on disk
                },
            },
            validation={
                "application_stacks": [
                    {
                        "name": "shop",
                        "url": "https://git.example.test/shop.git",
                        "branch": "main",
                        "path": "./deploy",
                        "credentials_env": "SHOP_TOKEN",
                    }
                ]
            },
        )
        env = cli_env(
            prefect_server,
            GITHUB_TOKEN=GITHUB_TOKEN,
            FLEET_GIT_TOKEN=GIT_TOKEN,
            FLEET_GIT_SSH_KEY=SSH_KEY,
            FLEET_REGISTRY_USERNAME=REGISTRY_USER,
            FLEET_REGISTRY_PASSWORD=REGISTRY_PASSWORD,
            SHOP_TOKEN=SHOP_TOKEN,
            PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(results),
        )

        def sandbox(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(BIN / "sandbox"), *args, "--config", str(config)],
                capture_output=True,
                text=True,
                env={**env, **extra},
                timeout=600,
                check=False,
            )

        outputs = {
            # terraform's apply fails printing the environment's secrets and the kubeconfig it made.
            "terraform": sandbox("create", "sandbox-leak", "--ticket", "OPS-7", "--summary", "leak", LEAK_ON_APPLY="1"),
            # the registry refuses the credentials, quoting the basic-auth header.
            "registry": sandbox("release", "--version", "1.2.4", "--no-propose-range"),
        }
        registry.shutdown()
        basic = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
        secrets = {
            "GitHub token": GITHUB_TOKEN,
            "git credentials": GIT_TOKEN,
            "registry password": REGISTRY_PASSWORD,
            "registry basic auth": basic,
            "application stack token": SHOP_TOKEN,
            "SSH key": SSH_KEY.splitlines()[1],
            "SSH key, second line": SSH_KEY.splitlines()[2],
            "kubeconfig token": KUBE_TOKEN,
            "kubeconfig client key": KUBE_CLIENT_KEY.splitlines()[1],
            "kubeconfig client key data": base64.b64encode(KUBE_CLIENT_KEY.encode()).decode(),
        }
        yield Failures(workdir, outputs, results, secrets, seeded)


def test_no_secret_leaves_through_a_failure(failures: Failures) -> None:
    terraform, registry = failures.outputs["terraform"], failures.outputs["registry"]
    # Each path failed the way it should, and what the outside system said is still there, masked.
    assert terraform.returncode == 1, terraform.stderr[-3000:]
    assert "plugin crashed: *** *** *** ***" in error_line(terraform.stderr), error_line(terraform.stderr)
    assert registry.returncode == 1, registry.stderr[-3000:]
    assert "got Authorization: Basic ***" in error_line(registry.stderr), error_line(registry.stderr)
    state = failures.workdir / "state"
    places: dict[str, list[str]] = {
        "CLI output": [o.stdout + o.stderr for o in failures.outputs.values()],
        "Prefect's database": [prefect_database_text()],
        "task results": file_texts(failures.results),
        "inventory": [(state / "inventory.db").read_bytes().decode("utf-8", "replace")],
        "state files": file_texts(state, skip=("simulated-cluster",)),
        "fleet remote": [remote_history(failures.workdir / "remote.git", after=failures.seeded)],
    }
    assert places["Prefect's database"][0] and places["inventory"]
    found = leaks(failures.secrets, places)
    assert not found, found
