from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sandbox.config import load_config
from sandbox.demo import demo_config
from sandbox.errors import ConfigError, InvalidInputError


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "fleet.yaml"
    tmp_path.mkdir(parents=True, exist_ok=True)
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
        (
            lambda d: d["drivers"]["cluster"].update(teardown_timeout_seconds=0),
            "drivers.cluster.teardown_timeout_seconds: Input should be greater than 0",
        ),
        (
            lambda d: d["drivers"]["cluster"].update(ready_timeout_seconds=-5),
            "drivers.cluster.ready_timeout_seconds: Input should be greater than 0",
        ),
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


# -- the URL Flux fetches the fleet repository from -------------------------------------------

KNOWN_HOSTS = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"


def kubernetes_config(tmp_path: Path, **fleet_repo: str) -> dict[str, object]:
    data: dict[str, object] = demo_config(tmp_path)
    data["fleet_repo"] = {"remote": "remote.git", **fleet_repo}
    data["drivers"]["cluster"]["type"] = "kubernetes"  # type: ignore[index]
    return data


@pytest.mark.parametrize(
    ("fleet_repo", "message"),
    [
        (
            {},
            "fleet_repo.remote (used as fleet_repo.flux_url when unset): 'remote.git' is a local path, which Flux "
            "on a real cluster cannot fetch",
        ),
        ({"flux_url": "/srv/git/fleet.git"}, "fleet_repo.flux_url: '/srv/git/fleet.git' is a local path"),
        ({"flux_url": "file:///srv/git/fleet.git"}, "fleet_repo.flux_url: 'file:///srv/git/fleet.git' is not an http"),
        (
            {"remote": "git@github.com:example-org/fleet-infra.git"},
            "fleet_repo.remote (used as fleet_repo.flux_url when unset): 'git@github.com:example-org/fleet-infra.git' "
            "is an scp-style address, which Flux's GitRepository refuses "
            "(spec.url must match ^(http|https|ssh)://.*$); use 'ssh://git@github.com/example-org/fleet-infra.git'",
        ),
        (
            {"flux_url": "git@github.com:example-org/fleet-infra.git"},
            "fleet_repo.flux_url: 'git@github.com:example-org/fleet-infra.git' is an scp-style address",
        ),
        (
            {"flux_url": "ssh://git@github.com/example-org/fleet-infra.git"},
            "drivers.git.known_hosts: required for the ssh fleet URL",
        ),
    ],
)
def test_a_real_cluster_needs_a_flux_url_flux_accepts(tmp_path: Path, fleet_repo: dict[str, str], message: str) -> None:
    path = write(tmp_path, kubernetes_config(tmp_path, **fleet_repo))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value) and "Value error" not in str(error.value)


def test_flux_url_defaults_to_an_acceptable_remote_and_known_hosts_reads_a_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, kubernetes_config(tmp_path, remote="https://github.com/org/fleet.git")))
    assert config.flux_url == "https://github.com/org/fleet.git"
    (tmp_path / "known_hosts").write_text(KNOWN_HOSTS)
    data = kubernetes_config(tmp_path, flux_url="ssh://git@github.com/org/fleet.git")
    data["drivers"]["git"] = {"known_hosts": "known_hosts"}  # type: ignore[index]
    config = load_config(write(tmp_path, data))
    assert (config.flux_url, config.remote_url) == ("ssh://git@github.com/org/fleet.git", str(tmp_path / "remote.git"))
    assert config.known_hosts() == KNOWN_HOSTS
    assert config.fleet_urls == {"ssh://git@github.com/org/fleet.git", str(tmp_path / "remote.git")}
    data["drivers"]["git"] = {"known_hosts": KNOWN_HOSTS.strip()}  # type: ignore[index]
    assert load_config(write(tmp_path, data)).known_hosts() == KNOWN_HOSTS
    data["drivers"]["git"] = {"known_hosts": "absent_known_hosts"}  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"drivers\.git\.known_hosts: .*absent_known_hosts cannot be read"):
        load_config(write(tmp_path, data))


def test_the_simulated_cluster_keeps_a_local_fleet_path(tmp_path: Path) -> None:
    # The simulated source-controller reads the repository from disk (the demo's bare remote).
    config = load_config(write(tmp_path, demo_config(tmp_path)))
    assert config.flux_url == str(tmp_path / "remote.git")
    assert config.checked_flux_url(config.flux_url, "fleet_repo.flux_url") == config.flux_url


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(b"# \xff\n" + yaml.safe_dump(demo_config(tmp_path)).encode())
    with pytest.raises(ConfigError, match=r"fleet.yaml: not UTF-8 text \(byte 2\)"):
        load_config(path)


def test_the_fleet_id_tells_fleets_apart_and_workers_of_one_fleet_agree(tmp_path: Path) -> None:
    """Same remote and inventory: one fleet (a team's workers); credentials in the URLs do not count."""
    one = load_config(write(tmp_path / "one", demo_config(tmp_path / "one")))
    two = load_config(write(tmp_path / "two", demo_config(tmp_path / "two")))
    assert len(one.fleet_id) == 12 and one.fleet_id != two.fleet_id

    def team_worker(directory: Path, user: str) -> str:
        data = demo_config(directory)
        data["fleet_repo"]["remote"] = f"https://{user}:tok-{user}@git.example.com/org/fleet.git"  # type: ignore[index]
        data["inventory"] = {"url": f"postgresql+psycopg://{user}:pw-{user}@db.example.com/inventory"}
        return load_config(write(directory, data)).fleet_id

    assert team_worker(tmp_path / "w1", "alice") == team_worker(tmp_path / "w2", "bob")
