"""A sandbox lifecycle with ``drivers.cluster.type: kubernetes``, end to end.

``sandbox create`` and ``sandbox destroy`` run for real (CLI, Prefect, terraform,
git) with the real cluster driver. The cluster module is shaped like a managed
Kubernetes one: it outputs the endpoint and a *sensitive* kubeconfig, which
points at the fake API server of :mod:`tests.fakes.kubeapi_server`, with stand-in Flux
controllers (:mod:`tests.fakes.kubeapi_flux`) reconciling there. Every stage after
``terraform apply`` must reach the cluster through that kubeconfig, which must
appear nowhere but the terraform state.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
import yaml

from sandbox.config import load_config
from sandbox.demo import prepare_demo
from sandbox.wiring import open_inventory, sandbox_state_dir
from tests.conftest import FIXTURES
from tests.fakes.kubeapi_flux import FakeFluxControllers
from tests.fakes.kubeapi_server import FAKE_TOKEN, KubeApiServer, running_kubeapi_server
from tests.integration.sandbox_cli import error_line, sandbox_cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires_tool("terraform"),
]

MODULE = FIXTURES / "terraform" / "modules" / "kubeconfig_cluster"
KS_API = "kustomize.toolkit.fluxcd.io/v1"


@dataclass
class Fleet:
    config_path: Path
    remote: Path
    server: KubeApiServer
    api_url: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return sandbox_cli(*args, "--config", str(self.config_path), api_url=self.api_url)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _fleet_with_module(workdir: Path, kubeconfig: Path, *, module_dir: Path = MODULE) -> tuple[Path, Path]:
    """The demo's fleet repo with a kubeconfig-output cluster module on main, and a fleet.yaml using it."""
    config_path = prepare_demo(workdir, development=False)
    remote = workdir / "remote.git"
    checkout = workdir / "module-checkout"
    _git(workdir, "clone", "-q", str(remote), str(checkout))
    shutil.copytree(module_dir, checkout / "infra" / "kube-cluster")
    _git(checkout, "add", "infra/kube-cluster")
    _git(checkout, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "kube cluster module")
    _git(checkout, "push", "-q", "origin", "main")
    document = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    document["environments"]["development"]["terraform"] = {
        "module": "infra/kube-cluster",
        "variables": {"kubeconfig_path": str(kubeconfig), "kubernetes_version": "1.31", "node_count": 1},
    }
    # What the cluster's Flux fetches (the stand-in controllers read the local remote whatever the URL).
    document["fleet_repo"]["flux_url"] = "https://git.example.test/example-org/fleet-infra.git"
    document["drivers"]["cluster"].update(
        {"type": "kubernetes", "ready_timeout_seconds": 60, "teardown_timeout_seconds": 30}
    )
    config_path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return config_path, remote


@pytest.fixture
def fleet(prefect_server: str, tmp_path: Path) -> Iterator[Fleet]:
    with running_kubeapi_server(tmp_path) as server:
        assert server.kubeconfig_path is not None
        config_path, remote = _fleet_with_module(tmp_path / "fleet", server.kubeconfig_path)
        yield Fleet(config_path, remote, server, prefect_server)


def _files_outside_terraform_state(state_dir: Path) -> Iterator[Path]:
    for path in state_dir.rglob("*"):
        if path.is_file() and ".terraform" not in path.parts and "terraform.tfstate" not in path.name:
            yield path


def test_create_and_destroy_reach_the_cluster_through_the_modules_sensitive_kubeconfig(fleet: Fleet) -> None:
    with FakeFluxControllers(fleet.server, fleet.remote) as flux:
        created = fleet.cli("create", "kube-sb", "--from", "development", "--ticket", "OPS-40", "--summary", "kube")
        assert created.returncode == 0, created.stderr[-3000:]

        # Every request after provision went to the cluster with the module's credential.
        api = fleet.server.api_requests()
        assert api and all(r.headers.get("authorization") == f"Bearer {FAKE_TOKEN}" for r in api)
        applied = {(r.path.rsplit("/", 1)[-1]) for r in api if r.method == "PATCH"}
        assert {"flux-system", "source-controller", "kustomize-controller"} <= applied
        root = fleet.server.get_object(KS_API, "Kustomization", "flux-system", "flux-system")
        assert root is not None and root["spec"]["path"] == "./clusters/kube-sb"
        secret = fleet.server.get_object("v1", "Secret", "flux-system", "flux-system")
        assert secret is not None
        top_level = {o["metadata"]["name"] for o in fleet.server.objects() if o["kind"] == "Kustomization"} - {
            "flux-system"
        }
        assert top_level == {"platform-controllers", "platform-configs", "apps"}
        assert "validate" in created.stdout and "Traceback" not in created.stderr

        destroyed = fleet.cli("destroy", "kube-sb")
        assert destroyed.returncode == 0, destroyed.stderr[-3000:]
        assert flux.errors == []

    config = load_config(fleet.config_path)
    remaining = {o["metadata"]["name"] for o in fleet.server.objects() if o["kind"] == "Kustomization"}
    assert remaining == {"flux-system"}  # teardown deleted the sandbox's Kustomizations; the root stays suspended
    root = fleet.server.get_object(KS_API, "Kustomization", "flux-system", "flux-system")
    assert root is not None and root["spec"]["suspend"] is True
    inventory = open_inventory(config)
    try:
        record = inventory.get("kube-sb")
    finally:
        inventory.close()
    assert record.status.value == "destroyed"
    assert record.cluster_endpoint == fleet.server.url
    assert {s.name.value: s.status.value for s in record.stages if s.status.value != "pending"} == {
        "provision": "completed",
        "clone": "completed",
        "bootstrap": "completed",
        "validate": "completed",
        "teardown": "completed",
    }

    # The kubeconfig and its token appear nowhere: not in output, inventory or state files.
    kubeconfig_text = fleet.server.kubeconfig_path.read_text(encoding="utf-8")  # type: ignore[union-attr]
    for output in (created.stdout, created.stderr, destroyed.stdout, destroyed.stderr):
        assert FAKE_TOKEN not in output
    state_dir = sandbox_state_dir(config, "kube-sb")
    for path in [*_files_outside_terraform_state(state_dir), *_files_outside_terraform_state(config.state_dir)]:
        content = path.read_bytes()
        assert FAKE_TOKEN.encode() not in content, path
        assert kubeconfig_text.encode() not in content, path


def test_a_module_without_a_kubeconfig_output_fails_provision_at_once_and_is_not_retried(
    fleet: Fleet, tmp_path: Path
) -> None:
    # The same module, but its kubeconfig output is gone (a module written for another driver).
    bare = tmp_path / "module-without-kubeconfig"
    shutil.copytree(MODULE, bare)
    main_tf = bare / "main.tf"
    text = main_tf.read_text(encoding="utf-8")
    main_tf.write_text(text[: text.index('output "kubeconfig"')], encoding="utf-8")
    config_path, _ = _fleet_with_module(tmp_path / "other-fleet", fleet.server.kubeconfig_path, module_dir=bare)  # type: ignore[arg-type]

    result = sandbox_cli(
        "create", "kube-nokc", "--from", "development", "--ticket", "OPS-41", "--summary", "no kubeconfig",
        "--config", str(config_path), api_url=fleet.api_url, timeout=150,
    )  # fmt: skip

    assert result.returncode == 2, result.stdout  # a configuration error
    error = error_line(result.stderr)
    assert "no 'kubeconfig' output (drivers.cluster.kubeconfig_output)" in error, error
    assert "Traceback" not in result.stdout + result.stderr
    assert _provision_run_count(result.stdout + result.stderr) == 1  # a configuration error is never retried
    inventory = open_inventory(load_config(config_path))
    try:
        record = inventory.get("kube-nokc")
    finally:
        inventory.close()
    assert record.failed_stage == "provision"
    assert record.last_error is not None and error.removeprefix("sandbox: error: ") in record.last_error
    assert not fleet.server.api_requests()  # no cluster was ever contacted


def _provision_run_count(cli_output: str) -> int:
    """How many times the provision task of the flow run the CLI names ran (from the Prefect API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    match = re.search(r"flow run '[^']+' \(([0-9a-f-]{36})\)", cli_output)
    assert match, cli_output[-2000:]
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(match[1])])))
    [provision] = [t for t in task_runs if t.name.startswith("provision")]
    assert provision.state is not None and provision.state.is_failed()
    return provision.run_count
