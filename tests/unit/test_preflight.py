"""Checks before a sandbox exists: request values terraform would refuse late, and the fleet repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sandbox.config import load_config
from sandbox.demo import demo_config
from sandbox.errors import ConflictError, InvalidInputError, ToolNotFoundError
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.preflight import (
    FleetRepoError,
    check_checkout,
    check_collisions,
    check_request,
    module_variables,
    preflight,
)
from sandbox.redaction import redact_url
from tests.conftest import EXAMPLE_REPO


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(demo_config(tmp_path)), encoding="utf-8")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE_REPO, tmp_path / "repo"))


def request(config_path: Path, **fields: object) -> LifecycleRequest:
    base: dict[str, object] = {"config_path": str(config_path), "name": "sandbox-a", "ticket": "OPS-1", "summary": "x"}
    return LifecycleRequest.model_validate({**base, **fields})


@pytest.mark.parametrize(
    "overrides",
    [{"kubernetes_version": "1.32"}, {"node_count": "3"}, {"node_size": "large", "region": "eu-1"}],
)
def test_valid_overrides_pass(config_path: Path, overrides: dict[str, str]) -> None:
    validated = check_request(load_config(config_path), request(config_path, overrides=overrides))
    assert validated.branch == "OPS-1-x"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kubernetes_version": "1.31.2"}, "invalid Kubernetes version '1.31.2'"),
        ({"node_count": "two"}, "invalid override node_count='two'"),
        ({"simulation_dir": "/"}, "'simulation_dir' is set by fleet-sandbox itself"),
    ],
)
def test_overrides_terraform_would_refuse_late_are_refused_now(
    config_path: Path, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        check_request(load_config(config_path), request(config_path, overrides=overrides))


def test_the_example_repository_is_usable(config_path: Path, repo: Path) -> None:
    roots = check_checkout(load_config(config_path), repo, "development")
    assert "clusters/development" in roots and "apps/podinfo" in roots


def test_a_file_that_is_not_text_is_named(config_path: Path, repo: Path) -> None:
    (repo / "clusters" / "development" / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(FleetRepoError, match=r"clusters/development/binary.yaml: not UTF-8 text"):
        check_checkout(load_config(config_path), repo, "development")


def test_a_yaml_file_outside_what_the_environment_builds_is_not_its_problem(config_path: Path, repo: Path) -> None:
    (repo / "clusters" / "staging" / "broken.yaml").write_text("a: [unclosed\n")
    check_checkout(load_config(config_path), repo, "development")
    with pytest.raises(FleetRepoError, match=r"clusters/staging/broken.yaml: line 2: malformed YAML"):
        check_checkout(load_config(config_path), repo, "staging")


def test_a_module_without_terraform_files_is_refused(config_path: Path, repo: Path) -> None:
    for tf in (repo / "infra" / "cluster").glob("*.tf"):
        tf.unlink()
    with pytest.raises(FleetRepoError, match="terraform module 'infra/cluster' not found"):
        check_checkout(load_config(config_path), repo, "development")


def test_missing_tools_are_found_before_anything_else(tmp_path: Path) -> None:
    import yaml

    from sandbox.drivers.git import GitCli

    document = demo_config(tmp_path)
    document["drivers"]["terraform"] = {"binary": "no-such-terraform"}  # type: ignore[index]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(ToolNotFoundError, match="no-such-terraform is not installed"):
        preflight(load_config(path), request(path), GitCli())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bot:ghp_secret@github.com/org/fleet.git", "https://***@github.com/org/fleet.git"),
        ("ssh://git@github.com/org/fleet", "ssh://***@github.com/org/fleet"),
        ("/srv/git/fleet.git", "/srv/git/fleet.git"),
    ],
)
def test_credentials_in_remote_urls_are_never_shown(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# -- collisions, before terraform creates anything (issue 17 item 7) ------------------------------


def test_an_unknown_override_is_refused_naming_the_modules_variables(config_path: Path, repo: Path) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_checkout(load_config(config_path), repo, "development", {"kubernetes_verison": "1.31"})
    assert str(caught.value) == (
        "unknown override 'kubernetes_verison': the terraform module infra/cluster takes "
        "force_destroy, kubernetes_version, node_count, node_size, region"
    )
    check_checkout(load_config(config_path), repo, "development", {"kubernetes_version": "1.31"})


def test_the_modules_variables_are_its_declarations(tmp_path: Path) -> None:
    (tmp_path / "a.tf").write_text('variable "one" {}\n  variable  "two" {\n}\n# variable "three" {}\n')
    (tmp_path / "notes.md").write_text('variable "four" {}\n')
    assert module_variables(tmp_path) == {"one", "two"}


@pytest.mark.parametrize(
    ("remote", "in_use", "name", "message"),
    [
        ({"main", "OPS-1-x"}, {}, "sandbox-a", "branch 'OPS-1-x' already exists on the fleet remote"),
        ({"main"}, {"OPS-1-x": "sandbox-b"}, "sandbox-a", "branch 'OPS-1-x' belongs to sandbox 'sandbox-b'"),
        ({"main"}, {}, "development", "clusters/development/ already exists on main"),
    ],
)
def test_a_taken_branch_or_directory_is_refused(
    config_path: Path, repo: Path, remote: set[str], in_use: dict[str, str], name: str, message: str
) -> None:
    with pytest.raises(ConflictError, match=message):
        check_collisions(
            load_config(config_path), repo, name=name, branch="OPS-1-x", remote_branches=remote, branches_in_use=in_use
        )


def test_a_free_branch_and_directory_pass(config_path: Path, repo: Path) -> None:
    check_collisions(
        load_config(config_path),
        repo,
        name="sandbox-a",
        branch="OPS-1-x",
        remote_branches={"main", "OPS-2-y"},
        branches_in_use={"OPS-1-x": "sandbox-a", "OPS-2-y": "sandbox-b"},
    )
