"""A ``local`` sandbox end to end: ``sandbox create`` reaches Ready with the real controllers, ``sandbox destroy``
leaves no process, port or data directory.

The example fleet's ``local`` environment (sandbox.demo.prepare_local_demo): each sandbox provisions its own local
cluster through ``infra/local-cluster`` with real terraform; the bootstrap installs Flux from ``clusters/local``;
the real source-controller fetches the sandbox branch from the demo remote served over smart HTTP on loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.demo import prepare_local_demo
from sandbox.localcluster.git_http import GitHttpServer
from sandbox.localcluster.ports import is_free, pick_ports
from sandbox.localcluster.processes import find_local_cluster_processes
from tests.integration.sandbox_cli import sandbox_cli
from tests.real.localstack import Kubectl, condition

pytestmark = pytest.mark.timeout(1500)

NAME = "sb-local"
TICKET = "OPS-77"


def _branch_head(remote: Path, branch: str) -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", f"refs/heads/{branch}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_local_sandbox_reaches_ready_and_is_destroyed_without_a_trace(
    prefect_server: str, kubectl: str, terraform: str, tmp_path: Path
) -> None:
    port = pick_ports(1)[0]
    config_path = prepare_local_demo(tmp_path / "fleet", sys.executable, port)
    config = str(config_path)
    cluster_dir = config_path.parent / "state" / "sandboxes" / NAME / "terraform" / ".local-cluster"
    ports: set[int] = set()
    with GitHttpServer(config_path.parent, port=port):
        created = sandbox_cli(
            "create", NAME, "--config", config, "--from", "local", "--ticket", TICKET, "--summary", "real local",
            api_url=prefect_server, timeout=1200,
        )  # fmt: skip
        try:
            assert created.returncode == 0, created.stderr[-3000:]
            info = json.loads((cluster_dir / "cluster.json").read_text(encoding="utf-8"))
            ports = {p for roles in info["ports"].values() for p in roles.values()}
            k = Kubectl(kubectl, cluster_dir / "admin.kubeconfig")
            branch = json.loads(
                sandbox_cli("list", "--config", config, "--output", "json", api_url=prefect_server).stdout
            )
            record = next(item for item in branch if item["name"] == NAME)
            head = _branch_head(config_path.parent / "remote.git", record["branch"])
            kustomizations = k.json("-n", "flux-system", "kustomizations")["items"]
            assert {item["metadata"]["name"] for item in kustomizations} == {"flux-system", "platform-configs"}
            for item in kustomizations:
                assert condition(item, "Ready")["status"] == "True", item["status"]  # type: ignore[index]
                assert item["status"]["lastAppliedRevision"] == f"{record['branch']}@sha1:{head}"
            # Applied by the real kustomize-controller: its field manager owns what the platform configs made.
            namespace = k.json("namespace", "platform", "--show-managed-fields")
            managers = {entry["manager"] for entry in namespace["metadata"]["managedFields"]}
            assert "kustomize-controller" in managers
        finally:
            destroyed = sandbox_cli("destroy", NAME, "--config", config, api_url=prefect_server, timeout=900)
    assert destroyed.returncode == 0, destroyed.stderr[-3000:]
    assert find_local_cluster_processes(cluster_dir) == []
    assert not cluster_dir.exists()
    assert all(is_free(p) for p in ports)
