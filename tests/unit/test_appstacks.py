"""The Flux objects that deploy an application stack onto a platform sandbox, and its configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import appstacks
from sandbox.config import ApplicationStack, FleetConfig, load_config
from sandbox.demo import demo_config
from sandbox.errors import ConfigError

FLEET = "ssh://git@github.com/example-org/fleet-infra"


def fleet_config(tmp_path: Path, stacks: list[dict[str, Any]]) -> FleetConfig:
    raw = demo_config(tmp_path)
    raw["fleet_repo"] = {"remote": FLEET}
    raw["validation"] = {"application_stacks": stacks}
    return FleetConfig.model_validate({**raw, "base_dir": tmp_path})


def test_a_stack_in_its_own_repository_gets_a_source_and_a_kustomization_named_after_it() -> None:
    stack = ApplicationStack(name="shop", url="https://git.example.com/shop.git", path="deploy", branch="release")
    source, kustomization = appstacks.stack_manifests(stack, url=stack.url or "", fleet_url=FLEET)
    assert source == {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {
            "name": "app-shop",
            "namespace": "flux-system",
            "labels": {"fleet-sandbox.io/application-stack": "shop"},
        },
        "spec": {"interval": "1m0s", "ref": {"branch": "release"}, "url": "https://git.example.com/shop.git"},
    }
    assert kustomization["metadata"]["annotations"] == {"fleet-sandbox.io/teardown-tier": "applications"}
    assert kustomization["spec"] == {
        "interval": "10m0s",
        "path": "./deploy",
        "prune": True,
        "wait": True,
        "sourceRef": {"kind": "GitRepository", "name": "app-shop"},
    }


def test_a_tag_and_a_target_namespace_are_passed_on() -> None:
    stack = ApplicationStack(
        name="shop", url="https://git.example.com/shop.git", path="./", tag="v2.1.0", target_namespace="shop"
    )
    source, kustomization = appstacks.stack_manifests(stack, url=stack.url or "", fleet_url=FLEET)
    assert source["spec"]["ref"] == {"tag": "v2.1.0"}
    assert "secretRef" not in source["spec"]
    assert (kustomization["spec"]["path"], kustomization["spec"]["targetNamespace"]) == ("./", "shop")


def test_a_token_becomes_the_stacks_own_credentials_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.common import application_stack_tokens

    monkeypatch.setenv("SHOP_READ_TOKEN", "ghp_shop-secret-token")
    config = fleet_config(
        tmp_path,
        [
            {
                "name": "shop",
                "url": "https://git.example.com/shop.git",
                "path": "deploy",
                "credentials_env": "SHOP_READ_TOKEN",
            },
            {"name": "open", "url": "https://git.example.com/open.git", "path": "deploy"},
        ],
    )
    tokens = application_stack_tokens(config)
    assert tokens == {"shop": "ghp_shop-secret-token"}
    secret, source, _, open_source, _ = appstacks.manifests_for(config, tokens)
    assert (secret["kind"], secret["metadata"]["name"], secret["metadata"]["namespace"]) == (
        "Secret",
        "app-shop-auth",
        "flux-system",
    )
    assert secret["stringData"] == {"username": "git", "password": "ghp_shop-secret-token"}
    assert source["spec"]["secretRef"] == {"name": "app-shop-auth"}
    assert "secretRef" not in open_source["spec"]
    # What deploying says names the stacks, never the token.
    said: list[str] = []

    class Recorder:
        def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
            return manifest

    appstacks.deploy(Recorder(), appstacks.manifests_for(config, tokens), said.append)  # type: ignore[arg-type]
    assert said and not any("ghp_" in line for line in said)


def test_a_stack_in_the_fleet_repository_reads_it_with_the_sandboxs_credentials(tmp_path: Path) -> None:
    config = fleet_config(tmp_path, [{"name": "legacy", "path": "teams/legacy"}])
    source, kustomization = appstacks.manifests_for(config)
    assert source["spec"]["url"] == FLEET
    assert source["spec"]["secretRef"] == {"name": "flux-system"}
    assert kustomization["spec"]["path"] == "./teams/legacy"
    assert appstacks.fleet_repo_paths(config) == ["teams/legacy"]


def test_a_stack_at_the_fleet_repositorys_root_is_deployed_but_not_scanned_as_a_whole(tmp_path: Path) -> None:
    config = fleet_config(tmp_path, [{"name": "everything", "path": "./"}])
    _, kustomization = appstacks.manifests_for(config)
    assert kustomization["spec"]["path"] == "./"
    assert appstacks.fleet_repo_paths(config) == []


def test_a_local_repository_path_resolves_against_fleet_yaml(tmp_path: Path) -> None:
    config = fleet_config(tmp_path, [{"name": "shop", "url": "repos/shop.git", "path": "deploy"}])
    [stack] = config.validation.application_stacks
    assert config.stack_url(stack) == str(tmp_path / "repos" / "shop.git")
    source, _ = appstacks.manifests_for(config)
    assert "secretRef" not in source["spec"]  # the fleet's credentials are not handed to another repository
    assert appstacks.fleet_repo_paths(config) == []


def test_deploy_applies_every_object_and_names_the_stacks() -> None:
    applied: list[str] = []
    said: list[str] = []

    class Recorder:
        def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
            applied.append(f"{manifest['kind']}/{manifest['metadata']['name']}")
            return manifest

    stacks = [ApplicationStack(name=n, url=f"https://git.example.com/{n}.git", path="deploy") for n in ("a", "b")]
    manifests = [m for s in stacks for m in appstacks.stack_manifests(s, url=s.url or "", fleet_url=FLEET)]
    assert appstacks.deploy(Recorder(), manifests, said.append) == ["a", "b"]  # type: ignore[arg-type]
    assert applied == ["GitRepository/app-a", "Kustomization/app-a", "GitRepository/app-b", "Kustomization/app-b"]
    assert said == [
        "application stack a: applied GitRepository and Kustomization flux-system/app-a (path ./deploy)",
        "application stack b: applied GitRepository and Kustomization flux-system/app-b (path ./deploy)",
    ]


@pytest.mark.parametrize(
    ("stacks", "message"),
    [
        ([{"name": "shop", "path": "deploy"}, {"name": "shop", "path": "other"}], "names must be unique: shop"),
        ([{"name": "shop", "path": "../outside"}], "must be a path inside the repository"),
        ([{"name": "shop", "path": "/abs"}], "must be a path inside the repository"),
        ([{"name": "Shop_1", "path": "deploy"}], "application_stacks.0.name"),
        ([{"name": "shop"}], "application_stacks.0.path"),
    ],
)
def test_bad_stack_configuration_is_refused_naming_the_field(
    tmp_path: Path, stacks: list[dict[str, Any]], message: str
) -> None:
    raw = demo_config(tmp_path)
    raw["validation"] = {"application_stacks": stacks}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def real_cluster_config(tmp_path: Path) -> dict[str, Any]:
    """The demo's configuration for real clusters, its fleet fetched over ssh."""
    raw: dict[str, Any] = demo_config(tmp_path)
    raw["fleet_repo"] = {"remote": FLEET}
    raw["drivers"]["cluster"]["type"] = "kubernetes"
    raw["drivers"]["git"] = {"known_hosts": "github.com ssh-ed25519 AAAAC3Nza"}
    return raw


@pytest.mark.parametrize(
    ("stack", "message"),
    [
        (
            {"url": "ssh://git@github.com/example-org/shop.git", "credentials_env": "SHOP_READ_TOKEN"},
            "a token authenticates over https only, and Flux reads 'ssh://git@github.com/example-org/shop.git' "
            "over ssh with a key; give the repository's https:// URL",
        ),
        ({"credentials_secret_block": "fleet-read-token"}, f"Flux reads {FLEET!r} over ssh with a key"),
        (
            {"url": "ssh://git@github.com/example-org/shop.git"},
            "the sandbox holds an ssh key for the fleet repository only, not for "
            "'ssh://git@github.com/example-org/shop.git'; give the repository's https:// URL "
            "(with credentials_secret_block or credentials_env if it is private)",
        ),
    ],
)
def test_a_real_cluster_refuses_an_ssh_stack_it_holds_no_key_for(
    tmp_path: Path, stack: dict[str, str], message: str
) -> None:
    raw = real_cluster_config(tmp_path)
    raw["validation"] = {"application_stacks": [{"name": "shop", "path": "deploy", **stack}]}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    error = str(refused.value)
    assert error.startswith(f"{path}: validation.application_stacks.0 (shop): ") and message in error
    assert "\n" not in error
    # Checked again where the GitRepository is made (a configuration changed after loading).
    raw["validation"] = {"application_stacks": [{"name": "shop", "path": "deploy"}]}
    config = FleetConfig.model_validate({**raw, "base_dir": tmp_path})
    config.validation.application_stacks[0] = ApplicationStack.model_validate(
        {"name": "shop", "path": "deploy", **stack}
    )
    with pytest.raises(ConfigError, match=r"^validation\.application_stacks\.0 \(shop\): "):
        appstacks.manifests_for(config)


def test_a_real_cluster_reads_an_ssh_stack_in_the_fleet_repository_with_the_fleet_key(tmp_path: Path) -> None:
    raw = real_cluster_config(tmp_path)
    raw["validation"] = {
        "application_stacks": [
            {"name": "fleet-apps", "url": FLEET, "path": "apps"},
            {"name": "shop", "url": "https://git.example.com/shop.git", "path": "deploy", "credentials_env": "T"},
        ]
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    manifests = appstacks.manifests_for(config, tokens={"shop": "s3cr3t"})
    sources = {m["metadata"]["name"]: m["spec"] for m in manifests if m["kind"] == "GitRepository"}
    assert sources["app-fleet-apps"]["url"] == FLEET and sources["app-fleet-apps"]["secretRef"] == {
        "name": "flux-system"
    }
    assert sources["app-shop"]["secretRef"] == {"name": "app-shop-auth"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("../shop.git", "validation.application_stacks.0.url (shop): '/"),
        ("git@github.com:example-org/shop.git", "use 'ssh://git@github.com/example-org/shop.git'"),
    ],
)
def test_a_real_cluster_refuses_stack_urls_flux_cannot_fetch(tmp_path: Path, url: str, message: str) -> None:
    raw = real_cluster_config(tmp_path)
    raw["validation"] = {"application_stacks": [{"name": "shop", "url": url, "path": "deploy"}]}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    # Checked again where the GitRepository is made (a configuration changed after loading).
    raw["validation"] = {"application_stacks": [{"name": "shop", "path": "deploy"}]}
    config = FleetConfig.model_validate({**raw, "base_dir": tmp_path})
    config.validation.application_stacks[0].url = url
    with pytest.raises(ConfigError, match=r"^validation\.application_stacks\.0\.url \(shop\): "):
        appstacks.manifests_for(config)


def test_a_stack_in_the_fleet_repository_is_fetched_from_the_flux_url(tmp_path: Path) -> None:
    raw = demo_config(tmp_path)
    raw["fleet_repo"] = {"remote": "remote.git", "flux_url": "https://git.example.com/fleet.git"}
    raw["validation"] = {
        "application_stacks": [{"name": "default", "path": "apps"}, {"name": "named", "url": "remote.git", "path": "x"}]
    }
    config = FleetConfig.model_validate({**raw, "base_dir": tmp_path})
    sources = [m for m in appstacks.manifests_for(config) if m["kind"] == "GitRepository"]
    assert [s["spec"]["url"] for s in sources] == ["https://git.example.com/fleet.git"] * 2
    assert [s["spec"]["secretRef"] for s in sources] == [{"name": "flux-system"}] * 2
    assert appstacks.fleet_repo_paths(config) == ["apps", "x"]
