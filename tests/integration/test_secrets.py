"""Secrets never appear in logs, artifacts, exceptions, results, the inventory or the repository.

The demo lifecycle runs with known secret values seeded where the product takes
them — the git credentials Flux reads the repository with, the GitHub token
pull requests are opened with (first a token GitHub rejects, then the right
one), a registry password — and the cluster credential the cluster module makes
(its ``cluster_token`` output, the kubeconfig token of a real cluster). Then every
output is searched for them: the CLI's stdout and stderr, the flow runs' logs,
states, parameters, task runs and artifacts read back from the Prefect API, the
persisted task results, the inventory database file, every file of the state
directory except the intended secret stores (terraform state, the clusters
themselves), the fleet remote's whole history and the pull request.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.demo import DEMO_SANDBOX, prepare_demo
from tests.fakes.github_api_server import GitHubApiServer, running_github_api
from tests.integration.reliability_support import cli_env, edit_config
from tests.integration.sandbox_cli import BIN, error_line

pytestmark = pytest.mark.integration

GIT_TOKEN = "fleet-git-token-4f9c2d7a1b8e"
GITHUB_TOKEN = "ghp_seededAcceptedToken0123456789abcdef"
REJECTED_GITHUB_TOKEN = "ghp_seededRejectedToken9876543210fedcba"
REGISTRY_PASSWORD = "registry-password-7d1e0c3b55"


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
    )
    return subprocess.run(
        [str(BIN / "sandbox"), *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def run(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("secrets")
    config = prepare_demo(workdir)
    results = workdir / "results"
    with running_github_api(remote=workdir / "remote.git", token=GITHUB_TOKEN) as github:
        edit_config(
            config,
            drivers={
                "git_hosting": {"type": "github", "api_url": github.url, "repository": "example-org/fleet-infra"},
                "cluster": {"simulation": {"readiness_delay_seconds": 0.05}},
                "load_generator": {"duration_seconds": 1},
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
    """The cluster credential the module made, from the terraform state's backup (its intended store)."""
    backups = list((workdir / "state" / "sandboxes" / DEMO_SANDBOX / "terraform").rglob("terraform.tfstate.backup"))
    for backup in backups:
        state = json.loads(backup.read_text())
        for resource in state.get("resources", []):
            if resource.get("type") == "terraform_data" and resource.get("name") == "cluster":
                return str(resource["instances"][0]["attributes"]["id"])
    raise AssertionError(f"no cluster in the terraform state backups {backups}")


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
