"""The performance flow's teardown outside a task (cancellation, crash hooks) runs as a stage task does."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

import tasks.performance
from sandbox.config import load_config
from sandbox.context import SandboxContext, Secrets
from sandbox.inventory import utcnow
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus, Stage, StageResult
from sandbox.wiring import open_inventory
from tasks.performance import teardown_without_task

NAME = "perf-development-0a1b2c3d"
LIFECYCLE = "0123456789ab"


def _fleet_yaml(tmp_path: Path) -> Path:
    document = {
        "fleet_repo": {"remote": "remote.git", "flux_url": "ssh://git@git.example.test/fleet.git"},
        "environments": {
            "development": {
                "cluster_dir": "clusters/development",
                "tracking": {"type": "branch", "branch": "main"},
                "terraform": {"module": "infra/cluster"},
            }
        },
        "validation": {"application_stacks": [{"name": "shop", "path": "./deploy", "credentials_env": "SHOP_TOKEN"}]},
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _register(config_path: Path) -> None:
    config = load_config(config_path)
    inventory = open_inventory(config)
    try:
        now = utcnow()
        inventory.create(
            SandboxRecord(
                name=NAME,
                kind=SandboxKind.performance,
                source_env="development",
                branch=f"perf-{NAME}",
                lifecycle_id=LIFECYCLE,
                status=SandboxStatus.active,
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
    finally:
        inventory.close()


def test_the_teardown_outside_a_task_gets_every_secret_a_stage_gets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = _fleet_yaml(tmp_path)
    _register(config_path)
    monkeypatch.setenv("FLEET_GIT_TOKEN", "git-token-for-flux-1f2e")
    monkeypatch.setenv("FLEET_GIT_SSH_KEY", "ssh-identity-for-flux-3d4c")
    monkeypatch.setenv("SHOP_TOKEN", "shop-stack-token-5b6a")
    seen: dict[str, Any] = {}

    def teardown(ctx: SandboxContext, **_: Any) -> StageResult:
        seen["secrets"] = ctx.secrets
        return StageResult(stage=Stage.teardown, summary=f"{ctx.record.name} torn down")

    monkeypatch.setattr(tasks.performance, "teardown", teardown)
    result = teardown_without_task(str(config_path), NAME, LIFECYCLE, logging.getLogger("test"))
    assert result is not None and result.summary == f"{NAME} torn down"
    assert seen["secrets"] == Secrets(
        git_token="git-token-for-flux-1f2e",
        application_stack_tokens={"shop": "shop-stack-token-5b6a"},
        git_ssh_identity="ssh-identity-for-flux-3d4c",
    )
    inventory = open_inventory(load_config(config_path))
    try:
        assert (inventory.stage_result(NAME, LIFECYCLE, Stage.teardown) or {})["summary"] == f"{NAME} torn down"
        # Done once: a second call finds the stage completed.
        assert teardown_without_task(str(config_path), NAME, LIFECYCLE, logging.getLogger("test")) is None
    finally:
        inventory.close()


def test_a_results_source_environment_comes_from_its_details_or_else_the_inventory(tmp_path: Path) -> None:
    config_path = _fleet_yaml(tmp_path)
    config = load_config(config_path)
    # The stage's details name it: the inventory is not read (the sandbox is not even in it).
    assert tasks.performance.result_source_env(config, NAME, {"source_env": "production"}) == "production"
    # A result checkpointed before the details carried it: the sandbox's record answers.
    _register(config_path)
    assert tasks.performance.result_source_env(config, NAME, {"scenario": "smoke"}) == "development"
