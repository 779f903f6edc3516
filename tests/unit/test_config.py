from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sandbox.config import load_config
from sandbox.demo import demo_config
from sandbox.errors import ConfigError, InvalidInputError


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_demo_config_is_valid_and_resolves_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, demo_config(tmp_path)))
    assert config.remote_url == str(tmp_path / "remote.git")
    assert config.state_dir == tmp_path / "state"
    assert config.inventory_url == f"sqlite:///{tmp_path / 'state' / 'inventory.db'}"
    assert config.environments["staging"].tracking.range == "1.2.x"
    assert config.environments["production"].tracking.tag == "1.2.3"
    assert {"development", "staging", "production", "flux-system"} <= config.protected_names()


def test_unknown_environment_names_known_ones(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, demo_config(tmp_path)))
    with pytest.raises(
        InvalidInputError, match="unknown environment 'qa' \\(known: development, production, staging\\)"
    ):
        config.environment("qa")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("fleet_repo"), "fleet_repo: Field required"),
        (lambda d: d["environments"]["staging"]["tracking"].pop("range"), "tracking type 'semver' needs 'range'"),
        (
            lambda d: d["environments"]["development"]["tracking"].update(type="commit"),
            "environments.development.tracking.type",
        ),
        (lambda d: d["drivers"]["cluster"].update(type="kind"), "drivers.cluster.type"),
        (lambda d: d["sandbox"].update(colour="blue"), "sandbox.colour: Extra inputs are not permitted"),
        (lambda d: d["fleet_repo"].update(ticket_pattern="(["), "fleet_repo.ticket_pattern"),
    ],
)
def test_invalid_config_names_file_and_key(tmp_path: Path, mutate: object, message: str) -> None:
    data = demo_config(tmp_path)
    mutate(data)  # type: ignore[operator]
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "fleet_repo:\n  remote: [unclosed\n")
    with pytest.raises(ConfigError, match=r"fleet\.yaml: line \d+: not valid YAML"):
        load_config(path)


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        load_config(write(tmp_path, "- a\n- b\n"))
