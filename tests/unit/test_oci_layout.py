"""The OCI image layout that stands in for the demo's registry."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from sandbox.config import RegistryConfig
from sandbox.drivers.oci_artifact import (
    FLUX_CONFIG_MEDIA_TYPE,
    FLUX_CONTENT_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE,
    FluxArtifact,
    tarball_files,
)
from sandbox.drivers.oci_layout import OciLayoutRegistry, extract_content
from sandbox.drivers.registry import ArtifactExistsError, RegistryError
from sandbox.wiring import build_registry

URL = "oci://registry.example.com/fleet/platform"


def _artifact(tmp_path: Path, tag: str) -> FluxArtifact:
    content = tmp_path / f"content-{tag}"
    (content / "controllers").mkdir(parents=True)
    (content / "controllers" / "kustomization.yaml").write_text(f"# {tag}\n", encoding="utf-8")
    return FluxArtifact(
        directory=content, source="file:///fleet", revision=f"{tag}@sha1:{'a' * 40}", created="2026-01-01T00:00:00Z"
    )


def test_a_pushed_artifact_is_stored_as_a_registry_would_with_flux_media_types(tmp_path: Path) -> None:
    layout = tmp_path / "registry"
    registry = OciLayoutRegistry(URL, layout)
    assert registry.list_tags() == []
    artifact = _artifact(tmp_path, "1.2.3")
    pushed = registry.push_artifact("1.2.3", artifact)
    assert (pushed.url, pushed.digest) == (f"{URL}:1.2.3", artifact.digest)
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    [descriptor] = json.loads((layout / "index.json").read_text())["manifests"]
    assert descriptor["annotations"] == {"org.opencontainers.image.ref.name": "1.2.3"}
    assert (layout / "blobs" / "sha256" / artifact.digest.partition(":")[2]).read_bytes() == artifact.manifest
    manifest = registry.get_manifest("1.2.3")
    assert manifest is not None and manifest.media_type == OCI_MANIFEST_MEDIA_TYPE
    assert manifest.config.media_type == FLUX_CONFIG_MEDIA_TYPE
    assert [layer.media_type for layer in manifest.layers] == [FLUX_CONTENT_MEDIA_TYPE]
    assert manifest.revision == f"1.2.3@sha1:{'a' * 40}"
    assert tarball_files(registry.pull_content("1.2.3")) == {"controllers/kustomization.yaml": b"# 1.2.3\n"}
    registry.push_artifact("1.2.4", _artifact(tmp_path, "1.2.4"))
    assert OciLayoutRegistry(URL, layout).list_tags() == ["1.2.3", "1.2.4"]


def test_a_tag_is_never_overwritten_and_a_damaged_blob_is_refused(tmp_path: Path) -> None:
    registry = OciLayoutRegistry(URL, tmp_path / "registry")
    artifact = _artifact(tmp_path, "1.2.3")
    registry.push_artifact("1.2.3", artifact)
    with pytest.raises(ArtifactExistsError, match="already exists"):
        registry.push_artifact("1.2.3", _artifact(tmp_path, "other"))
    layer = registry.get_manifest("1.2.3").layers[0].digest  # type: ignore[union-attr]
    (tmp_path / "registry" / "blobs" / "sha256" / layer.partition(":")[2]).write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="does not match its digest"):
        registry.pull_content("1.2.3")


def test_the_configured_layout_is_the_registry_driver(tmp_path: Path) -> None:
    settings = RegistryConfig(url=URL, layout_dir=str(tmp_path / "registry"))
    assert isinstance(build_registry(settings), OciLayoutRegistry)


def test_unpacking_refuses_an_entry_that_leaves_the_artifact(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("../escape.yaml")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(RegistryError, match="leads outside the artifact"):
        extract_content(gzip.compress(raw.getvalue()), tmp_path / "out")
    assert not (tmp_path / "escape.yaml").exists()
