"""Connecting a cluster from its module's terraform outputs (sandbox.wiring), for both driver types."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.config import FleetConfig, load_config
from sandbox.context import SandboxContext
from sandbox.drivers.kubernetes_cluster import KubernetesClusterDriver
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.drivers.terraform import TerraformOutput
from sandbox.errors import ConfigError, PermanentError, SandboxError
from sandbox.inventory import Inventory, utcnow
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus
from sandbox.wiring import (
    build_drivers,
    check_cluster_module_outputs,
    cluster_outputs,
    connect_cluster,
    kubeconfig_from_outputs,
)
from tests.fakes.kubeapi_server import write_kubeconfig

SECRET_TOKEN = "token-that-must-not-show-3b9e"


def _config(tmp_path: Path, cluster_type: str) -> FleetConfig:
    document = {
        "fleet_repo": {"remote": "remote.git", "flux_url": "https://git.example.test/fleet.git"},
        "environments": {
            "development": {
                "cluster_dir": "clusters/development",
                "tracking": {"type": "branch", "branch": "main"},
                "terraform": {"module": "infra/cluster"},
            }
        },
        "drivers": {"cluster": {"type": cluster_type}},
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return load_config(path)


def _kubeconfig(tmp_path: Path) -> str:
    return write_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:6443", SECRET_TOKEN).read_text()


def _outputs(**values: Any) -> dict[str, TerraformOutput]:
    return {
        name: TerraformOutput(value=value, sensitive=name in ("kubeconfig", "cluster_token"))
        for name, value in values.items()
    }


def test_the_kubernetes_driver_connects_with_the_modules_sensitive_kubeconfig(tmp_path: Path) -> None:
    config = _config(tmp_path, "kubernetes")
    outputs = _outputs(cluster_endpoint="https://127.0.0.1:6443", kubeconfig=_kubeconfig(tmp_path))

    cluster = connect_cluster(config, outputs)

    assert isinstance(cluster, KubernetesClusterDriver)
    assert SECRET_TOKEN in kubeconfig_from_outputs(config, outputs)


def test_the_kubeconfig_output_is_never_among_the_outputs_that_are_shown(tmp_path: Path) -> None:
    config = _config(tmp_path, "kubernetes")
    kubeconfig = _kubeconfig(tmp_path)
    # Even when a module forgot to mark it sensitive.
    outputs = {
        "cluster_endpoint": TerraformOutput(value="https://127.0.0.1:6443"),
        "kubeconfig": TerraformOutput(value=kubeconfig, sensitive=False),
    }

    assert cluster_outputs(config, outputs) == {"cluster_endpoint": "https://127.0.0.1:6443"}


@pytest.mark.parametrize(
    ("outputs", "problem"),
    [
        ({"cluster_endpoint": TerraformOutput(value="https://x")}, "has no 'kubeconfig' output"),
        ({"kubeconfig": TerraformOutput(value="", sensitive=True)}, "has no 'kubeconfig' output"),
        ({"kubeconfig": TerraformOutput(value="apiVersion: v1", sensitive=False)}, "mark it sensitive = true"),
    ],
)
def test_a_module_that_cannot_connect_the_kubernetes_driver_is_a_permanent_config_error(
    tmp_path: Path, outputs: dict[str, TerraformOutput], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        connect_cluster(_config(tmp_path, "kubernetes"), outputs)
    assert not caught.value.retryable
    assert "apiVersion" not in str(caught.value)  # never quotes the value


def test_the_plan_check_refuses_a_module_before_it_is_applied(tmp_path: Path) -> None:
    kubernetes = _config(tmp_path, "kubernetes")

    with pytest.raises(ConfigError, match="has no 'kubeconfig' output"):
        check_cluster_module_outputs(kubernetes, {"cluster_endpoint": False})
    with pytest.raises(ConfigError, match="mark it sensitive = true"):
        check_cluster_module_outputs(kubernetes, {"cluster_endpoint": False, "kubeconfig": False})
    check_cluster_module_outputs(kubernetes, {"cluster_endpoint": False, "kubeconfig": True})
    # The simulated driver connects from cluster_endpoint alone.
    check_cluster_module_outputs(_config(tmp_path, "simulated"), {"cluster_endpoint": False})


def test_the_simulated_driver_connects_from_the_endpoint_output(tmp_path: Path) -> None:
    config = _config(tmp_path, "simulated")
    (tmp_path / "sim").mkdir()  # what the module's apply creates
    endpoint = f"simulated://{tmp_path / 'sim'}"

    cluster = connect_cluster(config, _outputs(cluster_endpoint=endpoint, kubernetes_version="1.30"))

    assert isinstance(cluster, SimulatedCluster)
    assert cluster.server_version() == "1.30"
    with pytest.raises(ConfigError, match="not a simulated:// endpoint"):
        connect_cluster(config, _outputs(cluster_endpoint="https://10.0.0.1"))


# -- a sandbox's stages connect through its terraform state ------------------------------------


class _OutputsOnly:
    """A terraform driver that only answers ``outputs`` (what connecting needs), counting the calls."""

    def __init__(self, outputs: dict[str, TerraformOutput]) -> None:
        self._outputs = outputs
        self.calls: list[Path] = []

    def outputs(self, workdir: Path) -> dict[str, TerraformOutput]:
        self.calls.append(workdir)
        return self._outputs


@pytest.fixture
def inventory(tmp_path: Path) -> Iterator[Inventory]:
    inv = Inventory(f"sqlite:///{tmp_path / 'inventory.db'}")
    yield inv
    inv.close()


def _context(config: FleetConfig, inventory: Inventory, terraform: _OutputsOnly, **fields: Any) -> SandboxContext:
    now = utcnow()
    record = inventory.create(
        SandboxRecord(
            name="sb-kube",
            kind=SandboxKind.platform,
            source_env="development",
            lifecycle_id="lc1",
            status=SandboxStatus.active,
            created_at=now,
            expires_at=now + timedelta(hours=1),
            terraform_workdir=str(config.state_dir / "sandboxes" / "sb-kube" / "terraform"),
            **fields,
        )
    )
    drivers = build_drivers(config)
    drivers.terraform = terraform  # type: ignore[assignment]
    return SandboxContext(config=config, inventory=inventory, drivers=drivers, record=record)


def test_a_sandbox_stage_connects_from_its_terraform_state_once(tmp_path: Path, inventory: Inventory) -> None:
    config = _config(tmp_path, "kubernetes")
    kubeconfig = _kubeconfig(tmp_path)
    terraform = _OutputsOnly(_outputs(cluster_endpoint="https://127.0.0.1:6443", kubeconfig=kubeconfig))
    ctx = _context(config, inventory, terraform)

    cluster = ctx.cluster()

    assert isinstance(cluster, KubernetesClusterDriver)
    assert ctx.cluster() is cluster
    assert ctx.kubeconfig() == kubeconfig
    assert terraform.calls == [Path(ctx.record.terraform_workdir or "")]  # read once per stage
    assert kubeconfig not in repr(ctx) and SECRET_TOKEN not in repr(ctx)


def test_a_sandbox_without_a_provisioned_cluster_is_a_permanent_error(tmp_path: Path, inventory: Inventory) -> None:
    ctx = _context(_config(tmp_path, "kubernetes"), inventory, _OutputsOnly({}))

    with pytest.raises(PermanentError, match="no cluster_endpoint output") as caught:
        ctx.cluster()
    assert isinstance(caught.value, SandboxError) and not caught.value.retryable


def test_a_simulated_sandbox_connects_from_its_recorded_public_outputs_without_terraform(
    tmp_path: Path, inventory: Inventory
) -> None:
    (tmp_path / "sim").mkdir()
    terraform = _OutputsOnly({})
    ctx = _context(
        _config(tmp_path, "simulated"),
        inventory,
        terraform,
        cluster_endpoint=f"simulated://{tmp_path / 'sim'}",
        kubernetes_version="1.30",
    )

    cluster = ctx.cluster()

    assert isinstance(cluster, SimulatedCluster) and cluster.server_version() == "1.30"
    assert terraform.calls == []  # nothing secret to read: the record has what the simulation needs
