"""The terraform variables a sandbox is provisioned and destroyed with."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from sandbox.config import FleetConfig, load_config
from sandbox.context import SandboxContext
from sandbox.inventory import Inventory, utcnow
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus
from sandbox.wiring import build_drivers

CONFIG = """\
fleet_repo: {remote: remote.git}
environments:
  development:
    cluster_dir: clusters/development
    tracking: {type: branch, branch: main}
    terraform:
      module: infra/cluster
      variables: {kubernetes_version: "1.31", node_count: 1, node_size: small}
  production:
    cluster_dir: clusters/production
    tracking: {type: tag, tag: 1.2.3}
    terraform:
      module: infra/cluster
      variables: {kubernetes_version: "1.31", node_count: 9, node_size: xlarge, region: eu-1}
"""


@pytest.fixture
def config(tmp_path: Path) -> FleetConfig:
    path = tmp_path / "fleet.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path)


@pytest.fixture
def inventory(config: FleetConfig) -> Iterator[Inventory]:
    inv = Inventory(config.inventory_url)
    yield inv
    inv.close()


def context(config: FleetConfig, inventory: Inventory, source_env: str, **fields: object) -> SandboxContext:
    now = utcnow()
    record = inventory.create(
        SandboxRecord.model_validate(
            {
                "name": "sandbox-a",
                "kind": SandboxKind.performance,
                "source_env": source_env,
                "lifecycle_id": "lc1",
                "status": SandboxStatus.creating,
                "created_at": now,
                "expires_at": now + timedelta(hours=1),
                **fields,
            }
        )
    )
    return SandboxContext(config=config, inventory=inventory, drivers=build_drivers(config), record=record)


def test_a_performance_sandbox_takes_the_source_environments_full_scale(
    config: FleetConfig, inventory: Inventory
) -> None:
    ctx = context(config, inventory, "production")
    assert ctx.terraform_variables() == {
        "kubernetes_version": "1.31",
        "node_count": 9,
        "node_size": "xlarge",
        "region": "eu-1",
        "cluster_name": "sandbox-a",
        "simulation_dir": str(ctx.simulation_dir),
    }


def test_overrides_come_last_and_the_sandbox_never_takes_the_environments_name(
    config: FleetConfig, inventory: Inventory
) -> None:
    ctx = context(config, inventory, "development", overrides={"kubernetes_version": "1.32", "node_count": "2"})
    variables = ctx.terraform_variables()
    assert (variables["kubernetes_version"], variables["node_count"], variables["node_size"]) == ("1.32", "2", "small")
    assert variables["cluster_name"] == "sandbox-a"
    assert Path(variables["simulation_dir"]).is_relative_to(config.state_dir / "sandboxes" / "sandbox-a")


def test_a_sandbox_starts_from_what_the_fleet_repository_records_for_its_environment(
    config: FleetConfig, inventory: Inventory, tmp_path: Path
) -> None:
    """What ``sandbox align`` merged (the environment's variables file) is what new sandboxes start from."""
    import json

    from sandbox.align import variables_file

    repo = tmp_path / "repo"
    recorded = repo / variables_file(config, "development")
    recorded.parent.mkdir(parents=True)
    recorded.write_text(json.dumps({"kubernetes_version": "1.32", "node_count": 2}), encoding="utf-8")
    ctx = context(config, inventory, "development", overrides={"node_count": "3"})
    variables = ctx.terraform_variables(repo)
    assert (variables["kubernetes_version"], variables["node_count"], variables["node_size"]) == ("1.32", "3", "small")
    assert ctx.terraform_variables()["kubernetes_version"] == "1.31"  # no checkout: fleet.yaml alone
