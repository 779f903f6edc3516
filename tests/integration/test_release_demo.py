"""The whole release path on the demo's embedded defaults, with no registry server.

``sandbox release plan`` used to fail on the demo configuration ("registry
registry.example.com unreachable"). The demo now keeps that registry as an OCI image
layout directory: the release's tag and Flux artifact go there, staging's range picks
the new release up (a simulated cluster's OCIRepository reads the pushed artifact),
and production moves only by an approved pull request.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sandbox.config import load_config
from sandbox.demo import DEMO_REGISTRY_URL, prepare_demo
from sandbox.drivers.cluster import ObjectRef
from sandbox.drivers.git import GitCli
from sandbox.drivers.oci_artifact import FLUX_CONFIG_MEDIA_TYPE, FLUX_CONTENT_MEDIA_TYPE
from sandbox.drivers.oci_layout import OciLayoutRegistry
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.wiring import oci_layouts
from tests.integration.sandbox_cli import sandbox_cli

pytestmark = pytest.mark.integration

SOURCE_API = "source.toolkit.fluxcd.io/v1"


def _staging_source_revision(config_path: Path, simulation_dir: Path) -> str:
    """What a simulated staging cluster's OCIRepository (semver 1.2.x) pulls now."""
    config = load_config(config_path)
    (simulation_dir / "external").mkdir(parents=True)  # what the cluster module creates at apply
    cluster = SimulatedCluster(simulation_dir, oci_git_remote=config.remote_url, oci_layouts=oci_layouts(config))
    checkout = simulation_dir.parent / f"{simulation_dir.name}-checkout"
    GitCli().clone(config.remote_url, checkout)  # main: the example repository as the demo pushed it
    for doc in yaml.safe_load_all((checkout / "clusters/staging/flux-system/gotk-components.yaml").read_text()):
        if doc:
            cluster.apply(doc)
    for doc in yaml.safe_load_all((checkout / "clusters/staging/platform.yaml").read_text()):
        if doc and doc.get("kind") == "OCIRepository":
            cluster.apply(doc)
    source = cluster.get(ObjectRef(SOURCE_API, "OCIRepository", "platform", "flux-system"))
    assert source is not None, "no OCIRepository"
    return str((source.get("status") or {}).get("artifact", {}).get("revision", ""))


def test_the_release_path_runs_on_the_demo_defaults(tmp_path: Path, prefect_server: str) -> None:
    config_path = prepare_demo(tmp_path / "demo", development=False)
    config = "--config", str(config_path)
    layout = OciLayoutRegistry(DEMO_REGISTRY_URL, tmp_path / "demo" / "registry")
    assert layout.list_tags() == ["1.2.3"]  # the demo's first release, published by the demo

    plan = sandbox_cli("release", "plan", *config, api_url=prefect_server)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert f"release 1.2.3 (published) in {DEMO_REGISTRY_URL}" in plan.stdout
    assert _staging_source_revision(config_path, tmp_path / "cluster-a").startswith("1.2.3@sha256:")

    published = sandbox_cli("release", *config, api_url=prefect_server)
    assert published.returncode == 0, published.stderr[-2000:]
    assert f"release 1.2.4 tagged and published: {DEMO_REGISTRY_URL}:1.2.4" in published.stdout
    assert "staging: range 1.2.x moves 1.2.3 -> 1.2.4" in published.stdout
    manifest = layout.get_manifest("1.2.4")
    assert manifest is not None and manifest.config.media_type == FLUX_CONFIG_MEDIA_TYPE
    assert [layer.media_type for layer in manifest.layers] == [FLUX_CONTENT_MEDIA_TYPE]
    # Staging's range picks the release up from the pushed artifact.
    assert _staging_source_revision(config_path, tmp_path / "cluster-b") == f"1.2.4@{manifest.digest}"

    production = sandbox_cli(
        "release", "promote-production", "--version", "1.2.4", "--approve", "--reason", "demo",
        *config, api_url=prefect_server,
    )  # fmt: skip
    assert production.returncode == 0, production.stderr[-2000:]
    assert "approved flow run" in production.stdout
    assert "clusters/production/platform.yaml spec.ref.tag 1.2.3 -> 1.2.4" in production.stdout
