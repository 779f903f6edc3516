"""OCI artifacts the registry driver pushes, built here byte for byte: Flux artifacts and Helm charts.

A Flux OCI artifact (:class:`FluxArtifact`), as ``flux push artifact`` makes it, is an OCI image manifest
(``application/vnd.oci.image.manifest.v1+json``) with

* a config blob of media type ``application/vnd.cncf.flux.config.v1+json``
  (go-containerregistry's config of an empty image with one layer; Flux never reads it),
* exactly one layer ``application/vnd.cncf.flux.content.v1.tar+gzip``: a gzipped tar of
  the *contents* of the pushed directory, and
* manifest annotations ``org.opencontainers.image.source`` (the repository URL),
  ``org.opencontainers.image.revision`` (``<tag>@sha1:<commit>``) and
  ``org.opencontainers.image.created`` (RFC 3339, UTC).

The tarball follows Flux's ``build``: a depth-first walk with each directory's
entries sorted by name, starting with the root entry ``.``; names relative to the
directory; only directories and regular files (symlinks and devices are skipped);
uid/gid 0, no user or group names, zero modification times. Two deliberate extras make
it reproducible across machines: file modes are normalised (0755 for directories and
executables, 0644 otherwise, so the checkout's umask does not leak in) and the gzip
header carries no name and no time. The same directory therefore always gives the
same layer digest.

A Helm chart in OCI (:class:`HelmChartArtifact`) is laid out as ``helm package`` and
``helm push`` do: config ``application/vnd.cncf.helm.config.v1+json`` (the chart's
metadata as JSON), one layer ``application/vnd.cncf.helm.chart.content.v1.tar+gzip``
(the packaged chart: the same reproducible tarball, its files under ``<name>/``),
tagged with the chart's version in a repository named after the chart, so an OCI
``HelmRepository`` serves it. No helm CLI is needed.

Both have the same shape (one config blob, one layer): :mod:`sandbox.drivers.registry`
uploads them through the same code.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import semver
import yaml

from sandbox.bounded import FileRefusedError, load_yaml_document, read_bounded
from sandbox.errors import PermanentError

#: Media types of a Flux OCI artifact (fluxcd/pkg/oci constants).
OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
FLUX_CONFIG_MEDIA_TYPE = "application/vnd.cncf.flux.config.v1+json"
FLUX_CONTENT_MEDIA_TYPE = "application/vnd.cncf.flux.content.v1.tar+gzip"
#: Media types of a Helm chart in OCI (helm.sh/helm/v4/pkg/registry constants).
HELM_CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_CONTENT_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"

#: OpenContainers annotations Flux writes on the manifest.
SOURCE_ANNOTATION = "org.opencontainers.image.source"
REVISION_ANNOTATION = "org.opencontainers.image.revision"
CREATED_ANNOTATION = "org.opencontainers.image.created"
#: OpenContainers annotations helm writes on a chart's manifest (besides created and source).
TITLE_ANNOTATION = "org.opencontainers.image.title"
VERSION_ANNOTATION = "org.opencontainers.image.version"
DESCRIPTION_ANNOTATION = "org.opencontainers.image.description"

_DIR_MODE = 0o755
_FILE_MODE = 0o644
_EXEC_MODE = 0o755
# go-containerregistry writes the zero time.Time for an empty image's config and history.
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
# Helm's chart naming convention (lower case letters, digits, dashes): also a valid last
# path segment of an OCI repository, which helm pushes the chart to.
_CHART_NAME_RE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
#: Cap on a Chart.yaml read (a real one is a few hundred bytes).
MAX_CHART_YAML_BYTES = 64 * 1024
# The fields of helm's chart.Metadata in its declaration order: its JSON is the config blob.
_HELM_METADATA_FIELDS = (
    "name",
    "home",
    "sources",
    "version",
    "description",
    "keywords",
    "maintainers",
    "icon",
    "apiVersion",
    "condition",
    "tags",
    "appVersion",
    "deprecated",
    "annotations",
    "kubeVersion",
    "dependencies",
    "type",
)


# -- the artifacts --------------------------------------------------------------------


def sha256_digest(data: bytes) -> str:
    """The OCI digest (``sha256:<hex>``) of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _entries(root: Path, top: str = ".") -> Iterator[tuple[str, Path, bool]]:
    """(archive name, path, is_dir) in Go ``filepath.Walk`` order: depth first, names sorted.

    ``top`` names the root entry; below it names are relative to ``root`` (``.``, Flux's
    layout) or start with ``top/`` (any other ``top``: a Helm chart's ``<name>/``).
    """
    yield top, root, True

    def walk(directory: Path, prefix: str) -> Iterator[tuple[str, Path, bool]]:
        for name in sorted(os.listdir(directory)):
            path = directory / name
            mode = os.lstat(path).st_mode
            archive_name = f"{prefix}{name}"
            if stat.S_ISDIR(mode):
                yield archive_name, path, True
                yield from walk(path, f"{archive_name}/")
            elif stat.S_ISREG(mode):
                yield archive_name, path, False
            # Anything else (symlinks, sockets, devices) is skipped, as Flux does.

    yield from walk(root, "" if top == "." else f"{top}/")


def _reproducible_tar_gz(directory: Path, top: str) -> bytes:
    """The gzipped tar of ``directory`` (entries from :func:`_entries`), with neutral metadata."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path, is_dir in _entries(directory, top):
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if is_dir:
                info.type = tarfile.DIRTYPE
                info.mode = _DIR_MODE
                tar.addfile(info)
                continue
            executable = os.stat(path).st_mode & 0o111
            info.mode = _EXEC_MODE if executable else _FILE_MODE
            content = path.read_bytes()
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    compressed = io.BytesIO()
    # No file name and mtime 0 in the gzip header; level 6 is Go's default compression.
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue()


def build_flux_tarball(directory: Path) -> bytes:
    """Archive a directory's contents as the layer of a Flux artifact.

    Args:
        directory: The directory whose contents become the artifact's root.

    Returns:
        The gzipped tar: reproducible for the same file names, contents and executable bits.

    Raises:
        PermanentError: ``directory`` is not a directory.
    """
    if not directory.is_dir():
        raise PermanentError(f"{directory} is not a directory: nothing to package")
    return _reproducible_tar_gz(directory, ".")


def tarball_entries(content: bytes) -> list[tarfile.TarInfo]:
    """The entries of a Flux artifact layer, in archive order (for checks and tests)."""
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        return tar.getmembers()


def tarball_files(content: bytes) -> dict[str, bytes]:
    """Regular files of a Flux artifact layer: archive name -> content."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                files[member.name] = extracted.read() if extracted is not None else b""
    return files


def _image_manifest(
    config: bytes, config_media_type: str, layer: bytes, layer_media_type: str, annotations: Mapping[str, str]
) -> bytes:
    """An OCI image manifest of one config blob and one layer, serialised once so its digest is fixed."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": config_media_type, "size": len(config), "digest": sha256_digest(config)},
        "layers": [{"mediaType": layer_media_type, "size": len(layer), "digest": sha256_digest(layer)}],
        "annotations": dict(annotations),
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


class _OneLayerImage:
    """What an artifact of one config blob and one layer has: its manifest, serialised once, and its digest."""

    config_media_type: ClassVar[str]
    layer_media_type: ClassVar[str]

    @property
    def config(self) -> bytes:
        raise NotImplementedError

    @property
    def layer(self) -> bytes:
        raise NotImplementedError

    @property
    def annotations(self) -> dict[str, str]:
        raise NotImplementedError

    @cached_property
    def manifest(self) -> bytes:
        """The OCI image manifest, serialised once so its digest is fixed."""
        return _image_manifest(self.config, self.config_media_type, self.layer, self.layer_media_type, self.annotations)

    @property
    def digest(self) -> str:
        """The manifest digest (``sha256:...``)."""
        return sha256_digest(self.manifest)


@dataclass
class FluxArtifact(_OneLayerImage):
    """A directory packaged as a Flux OCI artifact (built lazily, once).

    Attributes:
        directory: The directory whose contents are packaged.
        source: ``org.opencontainers.image.source``: the source repository URL.
        revision: ``org.opencontainers.image.revision``: ``<tag>@sha1:<commit>``.
        created: ``org.opencontainers.image.created``: RFC 3339 UTC timestamp.
    """

    directory: Path
    source: str
    revision: str
    created: str

    config_media_type: ClassVar[str] = FLUX_CONFIG_MEDIA_TYPE
    layer_media_type: ClassVar[str] = FLUX_CONTENT_MEDIA_TYPE

    @cached_property
    def layer(self) -> bytes:
        """The content layer (gzipped tar)."""
        return build_flux_tarball(self.directory)

    @cached_property
    def config(self) -> bytes:
        """The config blob, as go-containerregistry writes it for Flux's empty image plus one layer."""
        diff_id = sha256_digest(gzip.decompress(self.layer))
        config = {
            "architecture": "",
            "created": _GO_ZERO_TIME,
            "history": [{"created": _GO_ZERO_TIME}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "config": {},
        }
        return json.dumps(config, separators=(",", ":")).encode()

    @property
    def annotations(self) -> dict[str, str]:
        """The manifest annotations."""
        return {
            CREATED_ANNOTATION: self.created,
            SOURCE_ANNOTATION: self.source,
            REVISION_ANNOTATION: self.revision,
        }


def build_helm_chart_package(directory: Path, name: str) -> bytes:
    """Package a chart directory as ``helm package`` does: its files under ``<name>/`` in a gzipped tar.

    The same neutral, reproducible metadata as :func:`build_flux_tarball` (helm's loader
    reads only names and contents). Every regular file goes in: ``.helmignore`` is not read.

    Raises:
        PermanentError: ``directory`` is not a directory.
    """
    if not directory.is_dir():
        raise PermanentError(f"{directory} is not a directory: no chart to package")
    return _reproducible_tar_gz(directory, name)


def read_chart_metadata(directory: Path) -> dict[str, Any]:
    """The ``Chart.yaml`` of a chart directory, checked as helm checks it before a push.

    Returns:
        Its fields, in the order of helm's ``chart.Metadata`` (unknown ones dropped, as helm does).

    Raises:
        PermanentError: No readable Chart.yaml, not YAML, not ``apiVersion: v2``, a name
            that is not a chart name, or a version that is not strict semver.
    """
    where = directory / "Chart.yaml"
    try:
        loaded = load_yaml_document(read_bounded(where, MAX_CHART_YAML_BYTES).decode("utf-8"))
    except FileRefusedError as exc:
        raise PermanentError(f"{where}: {exc.reason}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PermanentError(f"{where}: not a readable Chart.yaml ({type(exc).__name__})") from None
    if not isinstance(loaded, dict):
        raise PermanentError(f"{where}: not a mapping")
    name, version = loaded.get("name"), loaded.get("version")
    if loaded.get("apiVersion") != "v2":
        raise PermanentError(f"{where}: apiVersion must be v2 (a Helm 3+ chart)")
    if not isinstance(name, str) or not _CHART_NAME_RE.fullmatch(name):
        raise PermanentError(f"{where}: name {name!r} is not a chart name (lower case letters, digits, dashes)")
    if not isinstance(version, str) or not semver.Version.is_valid(version):
        raise PermanentError(f"{where}: version {version!r} is not a semantic version")
    return {key: loaded[key] for key in _HELM_METADATA_FIELDS if loaded.get(key) not in (None, "", [], {}, False)}


@dataclass
class HelmChartArtifact(_OneLayerImage):
    """A chart directory laid out as ``helm push`` stores it in an OCI registry (built lazily, once).

    Attributes:
        directory: The chart directory (``Chart.yaml``, ``values.yaml``, ``templates/``).
        created: ``org.opencontainers.image.created``: RFC 3339 UTC timestamp (helm stamps the push time;
            given here, the digest is reproducible).
    """

    directory: Path
    created: str

    config_media_type: ClassVar[str] = HELM_CONFIG_MEDIA_TYPE
    layer_media_type: ClassVar[str] = HELM_CHART_CONTENT_MEDIA_TYPE

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """The checked Chart.yaml (:func:`read_chart_metadata`)."""
        return read_chart_metadata(self.directory)

    @property
    def name(self) -> str:
        """The chart's name: the last segment of the repository it is pushed to."""
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        """The chart's version."""
        return str(self.metadata["version"])

    @property
    def tag(self) -> str:
        """The tag helm pushes the chart under: its version, ``+`` (not allowed in a tag) as ``_``."""
        return self.version.replace("+", "_")

    @cached_property
    def layer(self) -> bytes:
        """The packaged chart (``<name>-<version>.tgz`` as helm package writes it)."""
        return build_helm_chart_package(self.directory, self.name)

    @cached_property
    def config(self) -> bytes:
        """The chart's metadata as JSON, as helm writes the config blob (helm pull reads the chart's from it)."""
        return json.dumps(self.metadata, separators=(",", ":")).encode()

    @property
    def annotations(self) -> dict[str, str]:
        """The manifest annotations helm derives from the chart."""
        annotations = {TITLE_ANNOTATION: self.name, VERSION_ANNOTATION: self.version, CREATED_ANNOTATION: self.created}
        description = self.metadata.get("description")
        if isinstance(description, str) and description.strip():
            annotations[DESCRIPTION_ANNOTATION] = description
        return annotations


__all__ = [
    "CREATED_ANNOTATION",
    "DESCRIPTION_ANNOTATION",
    "FLUX_CONFIG_MEDIA_TYPE",
    "FLUX_CONTENT_MEDIA_TYPE",
    "HELM_CHART_CONTENT_MEDIA_TYPE",
    "HELM_CONFIG_MEDIA_TYPE",
    "MAX_CHART_YAML_BYTES",
    "OCI_MANIFEST_MEDIA_TYPE",
    "REVISION_ANNOTATION",
    "SOURCE_ANNOTATION",
    "TITLE_ANNOTATION",
    "VERSION_ANNOTATION",
    "FluxArtifact",
    "HelmChartArtifact",
    "build_flux_tarball",
    "build_helm_chart_package",
    "read_chart_metadata",
    "sha256_digest",
    "tarball_entries",
    "tarball_files",
]
