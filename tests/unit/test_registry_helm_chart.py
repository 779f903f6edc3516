"""Helm charts in OCI through the registry driver: laid out as ``helm push`` does, uploaded by the same code.

The uploads go to a fake registry over real HTTP (tests/fakes/oci_registry_server.py); the real tier pushes to
the Debian docker-registry and has the real source-controller read the chart (tests/real/test_local_oci_sources.py).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.config import RegistryConfig
from sandbox.drivers.oci_artifact import (
    FLUX_CONFIG_MEDIA_TYPE,
    FLUX_CONTENT_MEDIA_TYPE,
    HELM_CHART_CONTENT_MEDIA_TYPE,
    HELM_CONFIG_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE,
    FluxArtifact,
    HelmChartArtifact,
    build_flux_tarball,
    build_helm_chart_package,
    read_chart_metadata,
    tarball_entries,
    tarball_files,
)
from sandbox.drivers.registry import ArtifactExistsError, OrasRegistry, RegistryError
from sandbox.errors import PermanentError
from tests.fakes.oci_registry_server import FakeOciRegistry, fake_oci_registry

CREATED = "2026-01-01T00:00:00Z"
CHART_YAML = (
    "apiVersion: v2\nname: greeting\nversion: 0.1.0+build.7\ndescription: A ConfigMap\ntype: application\n"
    "appVersion: '1.0'\nx-unknown: dropped\n"
)
TEMPLATE = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
    "data:\n  greeting: {{ .Values.greeting }}\n"
)


def _chart(root: Path, chart_yaml: str = CHART_YAML) -> Path:
    chart = root / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(chart_yaml, encoding="utf-8")
    (chart / "values.yaml").write_text("greeting: hello\n", encoding="utf-8")
    (chart / "templates" / "configmap.yaml").write_text(TEMPLATE, encoding="utf-8")
    return chart


@pytest.fixture
def registry() -> Iterator[FakeOciRegistry]:
    with fake_oci_registry() as fake:
        yield fake


def _driver(fake: FakeOciRegistry, repository: str) -> OrasRegistry:
    return OrasRegistry(RegistryConfig(url=f"oci://{fake.host}/{repository}", insecure=True, timeout_seconds=10))


def test_a_chart_is_laid_out_as_helm_push_does(tmp_path: Path) -> None:
    chart = HelmChartArtifact(_chart(tmp_path), created=CREATED)
    assert (chart.name, chart.version, chart.tag) == ("greeting", "0.1.0+build.7", "0.1.0_build.7")
    # The packaged chart: every file under <name>/, as helm package writes it and helm's loader wants it.
    assert [entry.name for entry in tarball_entries(chart.layer)] == [
        "greeting",
        "greeting/Chart.yaml",
        "greeting/templates",
        "greeting/templates/configmap.yaml",
        "greeting/values.yaml",
    ]
    assert tarball_files(chart.layer)["greeting/templates/configmap.yaml"] == TEMPLATE.encode()
    # The config is the chart's metadata as helm marshals chart.Metadata: its field order, unknown keys dropped.
    assert list(json.loads(chart.config)) == ["name", "version", "description", "apiVersion", "appVersion", "type"]
    manifest = json.loads(chart.manifest)
    assert manifest["mediaType"] == OCI_MANIFEST_MEDIA_TYPE
    assert manifest["config"]["mediaType"] == HELM_CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [HELM_CHART_CONTENT_MEDIA_TYPE]
    assert manifest["annotations"] == {
        "org.opencontainers.image.title": "greeting",
        "org.opencontainers.image.version": "0.1.0+build.7",
        "org.opencontainers.image.created": CREATED,
        "org.opencontainers.image.description": "A ConfigMap",
    }
    # Reproducible: the same chart elsewhere, touched later, gives the same digest.
    again = _chart(tmp_path / "elsewhere")
    os.utime(again / "values.yaml", (1, 1))
    assert HelmChartArtifact(again, created=CREATED).digest == chart.digest


def test_the_flux_layout_is_unchanged_by_the_shared_packaging(tmp_path: Path) -> None:
    content = _chart(tmp_path)
    assert [entry.name for entry in tarball_entries(build_flux_tarball(content))] == [
        ".",
        "Chart.yaml",
        "templates",
        "templates/configmap.yaml",
        "values.yaml",
    ]
    manifest = json.loads(FluxArtifact(content, "file:///fleet", "v1@sha1:" + "a" * 40, CREATED).manifest)
    assert manifest["config"]["mediaType"] == FLUX_CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [FLUX_CONTENT_MEDIA_TYPE]


def test_a_chart_is_pushed_under_its_version_by_the_registry_api(tmp_path: Path, registry: FakeOciRegistry) -> None:
    chart = HelmChartArtifact(_chart(tmp_path), created=CREATED)
    driver = _driver(registry, "charts/greeting")
    pushed = driver.push_helm_chart(chart)
    assert (pushed.url, pushed.tag, pushed.digest) == (
        f"oci://{registry.host}/charts/greeting:0.1.0_build.7",
        "0.1.0_build.7",
        chart.digest,
    )
    assert registry.manifests["charts/greeting"]["0.1.0_build.7"] == chart.manifest
    assert registry.media_types[chart.digest] == OCI_MANIFEST_MEDIA_TYPE
    stored = registry.manifest("charts/greeting", "0.1.0_build.7")
    assert registry.blobs["charts/greeting"][stored["config"]["digest"]] == chart.config
    layer = registry.blobs["charts/greeting"][stored["layers"][0]["digest"]]
    assert gzip.decompress(layer) == gzip.decompress(chart.layer)
    # Read back through the same driver.
    assert driver.list_tags() == ["0.1.0_build.7"]
    read = driver.get_manifest("0.1.0_build.7")
    assert read is not None and read.config.media_type == HELM_CONFIG_MEDIA_TYPE and read.digest == chart.digest
    # A published version is never overwritten.
    with pytest.raises(ArtifactExistsError, match="already exists"):
        driver.push_helm_chart(chart)


def test_a_flux_artifact_still_goes_up_with_flux_media_types(tmp_path: Path, registry: FakeOciRegistry) -> None:
    artifact = FluxArtifact(_chart(tmp_path), "file:///fleet", "v1@sha1:" + "b" * 40, CREATED)
    pushed = _driver(registry, "fleet/platform").push_artifact("1.0.0", artifact)
    assert pushed.digest == artifact.digest
    stored = registry.manifest("fleet/platform", "1.0.0")
    assert stored["config"]["mediaType"] == FLUX_CONFIG_MEDIA_TYPE
    assert registry.blobs["fleet/platform"][stored["layers"][0]["digest"]] == artifact.layer


def test_a_chart_goes_only_to_the_repository_named_after_it(tmp_path: Path, registry: FakeOciRegistry) -> None:
    chart = HelmChartArtifact(_chart(tmp_path), created=CREATED)
    with pytest.raises(RegistryError, match=r"a chart named 'greeting' is pushed to a repository named after it"):
        _driver(registry, "charts/greetings").push_helm_chart(chart)
    assert registry.requests == []  # refused before anything was sent


@pytest.mark.parametrize(
    ("chart_yaml", "message"),
    [
        ("apiVersion: v1\nname: greeting\nversion: 0.1.0\n", "apiVersion must be v2"),
        ("apiVersion: v2\nname: Greeting_Chart\nversion: 0.1.0\n", "name 'Greeting_Chart' is not a chart name"),
        ("apiVersion: v2\nname: greeting\nversion: '0.1'\n", "version '0.1' is not a semantic version"),
        ("apiVersion: v2\nversion: 0.1.0\n", "name None is not a chart name"),
        ("- a list\n", "not a mapping"),
        ("apiVersion: v2\nname: a\nname: b\nversion: 0.1.0\n", r"not a readable Chart.yaml \(ConstructorError\)"),
    ],
)
def test_an_invalid_chart_is_refused_in_one_line_before_any_request(
    chart_yaml: str, message: str, tmp_path: Path, registry: FakeOciRegistry
) -> None:
    chart = HelmChartArtifact(_chart(tmp_path, chart_yaml), created=CREATED)
    with pytest.raises(PermanentError, match=message) as caught:
        _driver(registry, "charts/greeting").push_helm_chart(chart)
    assert "\n" not in str(caught.value)
    assert registry.requests == []


def test_a_chart_yaml_that_is_no_file_is_refused(tmp_path: Path) -> None:
    chart = _chart(tmp_path)
    (chart / "Chart.yaml").unlink()
    os.mkfifo(chart / "Chart.yaml")  # a read would block forever
    with pytest.raises(PermanentError, match=r"Chart.yaml: not a regular file \(a FIFO\); not read"):
        read_chart_metadata(chart)
    with pytest.raises(PermanentError, match=r"not a readable Chart.yaml \(FileNotFoundError\)"):
        _ = HelmChartArtifact(tmp_path / "missing", created=CREATED).layer
    with pytest.raises(PermanentError, match="no chart to package"):
        build_helm_chart_package(tmp_path / "missing", "greeting")
