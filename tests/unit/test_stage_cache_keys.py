"""The stages' and register's Prefect cache keys: one sandbox's, not one name's on the machine."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

from sandbox.demo import demo_config
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.models import SandboxKind, Stage
from tasks.common import StageRequest, stage_cache_key
from tasks.register import _per_flow_run


def _config(directory: Path) -> str:
    directory.mkdir(parents=True)
    path = directory / "fleet.yaml"
    path.write_text(yaml.safe_dump(demo_config(directory)), encoding="utf-8")
    return str(path)


def test_two_fleets_with_one_sandbox_name_do_not_share_cache_keys(tmp_path: Path) -> None:
    stage_keys, register_keys = set(), set()
    context = SimpleNamespace(task_run=SimpleNamespace(flow_run_id="run-1"))
    for fleet in ("one", "two"):
        config_path = _config(tmp_path / fleet)
        request = StageRequest(config_path=config_path, name="sandbox-a", lifecycle_id="abc123")
        stage_keys.add(stage_cache_key(Stage.clone)(context, {"request": request}))  # type: ignore[arg-type]
        lifecycle = LifecycleRequest(
            config_path=config_path,
            name="sandbox-a",
            source_env="development",
            kind=SandboxKind.platform,
            ticket="OPS-1",
            summary="x",
        )
        validated = {"request": lifecycle.model_dump()}
        register_keys.add(_per_flow_run(context, {"validated": validated}))  # type: ignore[arg-type]
    assert len(stage_keys) == 2 and len(register_keys) == 2
