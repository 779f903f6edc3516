"""``sandbox perf``'s request building: everything is checked before a flow starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cli.perf_cmd import _key_values, _read_change, build_request
from sandbox.config import FleetConfig
from sandbox.errors import InvalidInputError
from sandbox.perf.scenario import LoadOverrides, ScaleOverride


@pytest.fixture
def config() -> FleetConfig:
    return FleetConfig.model_validate(
        {
            "fleet_repo": {"remote": "remote.git"},
            "environments": {
                "production": {
                    "cluster_dir": "clusters/production",
                    "tracking": {"type": "tag", "tag": "1.2.3"},
                    "terraform": {"module": "infra/cluster", "variables": {"node_count": 3}},
                }
            },
            "performance": {"scenarios": {"smoke": {}, "peak": {"users": 50}}},
        }
    )


def change_file(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "change.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_full_request(config: FleetConfig, tmp_path: Path) -> None:
    change = _read_change(
        change_file(
            tmp_path,
            {
                "message": "more replicas",
                "edits": [
                    {"file": "apps.yaml", "kind": "Kustomization", "name": "apps", "path": ["spec", "x"], "value": "2"}
                ],
            },
        )
    )
    request = build_request(
        config,
        tmp_path / "fleet.yaml",
        source_env="production",
        scenario="peak",
        load=LoadOverrides(users=8, duration_seconds=3),
        scale=_key_values(["node_count=6", "node_size=xlarge"], "--scale"),
        change=change,
        ttl="6h",
    )
    assert request.config_path == str((tmp_path / "fleet.yaml").resolve())
    assert isinstance(request.scale, ScaleOverride)
    assert request.terraform_overrides() == {"node_count": "6", "node_size": "xlarge"}
    assert request.change is not None and request.change.edits[0].value == "2"
    assert (request.scenario, request.load.users, request.ttl) == ("peak", 8, "6h")


def test_the_source_scale_by_default(config: FleetConfig, tmp_path: Path) -> None:
    request = build_request(
        config,
        tmp_path / "fleet.yaml",
        source_env="production",
        scenario=None,
        load=LoadOverrides(),
        scale={},
        change=None,
        ttl=None,
    )
    assert request.scale == "source" and request.terraform_overrides() == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source_env": "qa"}, "unknown environment 'qa'"),
        ({"scenario": "soak"}, "unknown performance scenario 'soak'"),
        ({"ttl": "forever"}, "invalid duration 'forever'"),
        ({"ttl": "90d"}, "longer than the maximum"),
        ({"load": LoadOverrides(generator="kubernetes-job")}, "simulated cluster runs no pods"),
    ],
)
def test_invalid_requests(config: FleetConfig, tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "source_env": "production",
        "scenario": None,
        "load": LoadOverrides(),
        "scale": {},
        "change": None,
        "ttl": None,
    }
    arguments.update(kwargs)
    with pytest.raises(InvalidInputError, match=message):
        build_request(config, tmp_path / "fleet.yaml", **arguments)  # type: ignore[arg-type]


def test_invalid_change_files(config: FleetConfig, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read"):
        _read_change(tmp_path / "missing.yaml")
    with pytest.raises(InvalidInputError, match="message: Field required"):
        _read_change(change_file(tmp_path, {"edits": []}))
    outside = _read_change(
        change_file(
            tmp_path,
            {"message": "m", "edits": [{"file": "../x.yaml", "kind": "K", "name": "n", "path": ["a"], "value": "v"}]},
        )
    )
    with pytest.raises(InvalidInputError, match="must be inside the sandbox directory"):
        build_request(
            config,
            tmp_path / "fleet.yaml",
            source_env="production",
            scenario=None,
            load=LoadOverrides(),
            scale={},
            change=outside,
            ttl=None,
        )
    with pytest.raises(InvalidInputError, match="is not KEY=VALUE"):
        _key_values(["node-count=3"], "--scale")
