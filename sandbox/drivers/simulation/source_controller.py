"""The simulated source-controller: GitRepository, OCIRepository and HelmRepository.

A GitRepository's ref is resolved on its remote (a local repository only:
``file://`` URLs and absolute paths) and the commit exported as its artifact;
an OCIRepository whose URL is the configured registry's, with an OCI image
layout standing in for it (``drivers.registry.layout_dir``), reads the pushed
artifact from that layout (tag or semver range resolved on its tags, the Flux
content layer unpacked); any other OCIRepository's tag or range is resolved
on the tags of the configured fleet remote (a stand-in for a registry); a
HelmRepository only needs a URL. A source re-resolves its ref every
``SOURCE_POLL_SECONDS`` (new commits and tags are picked up).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox.drivers.oci_layout import OciLayoutRegistry, extract_content
from sandbox.drivers.registry import RegistryError
from sandbox.drivers.simulation.apimachinery import Key, timestamp
from sandbox.drivers.simulation.apiserver import SimulatedApiServer
from sandbox.drivers.simulation.reconciling import (
    FLUX_FINALIZER,
    FLUX_NAMESPACE,
    ReconcileFailure,
    deleting,
    ensure_flux_finalizer,
    report_ready,
    requested_at,
    settled,
)
from sandbox.drivers.simulation.settings import SimulationSettings
from sandbox.drivers.simulation.sources import (
    RemoteRefs,
    SourceError,
    artifact_digest,
    export_commit,
    list_remote,
    local_repository,
)
from sandbox.errors import InvalidInputError

log = logging.getLogger(__name__)


#: How often a source re-resolves its ref (new commits and tags are picked up).
SOURCE_POLL_SECONDS = 1.0


def _secret_missing(server: SimulatedApiServer, obj: Mapping[str, Any]) -> str | None:
    secret_ref = (obj.get("spec") or {}).get("secretRef") or {}
    name = secret_ref.get("name")
    namespace = obj["metadata"]["namespace"]
    if name and server.get(("", "Secret", namespace, str(name))) is None:
        return f"failed to get secret '{namespace}/{name}': secrets \"{name}\" not found"
    return None


def _poll_due(server: SimulatedApiServer, obj: Mapping[str, Any]) -> bool:
    record = server.internal(obj)
    return (
        record.get("polledGeneration") != obj["metadata"].get("generation")
        or record.get("polledRequest") != requested_at(obj)
        or server.now - float(record.get("polledAt", 0.0)) >= SOURCE_POLL_SECONDS
        or server.now < float(record.get("polledAt", 0.0))  # a clock set back
    )


def _resolve_semver(constraint: str, tags: list[str]) -> str | None:
    try:
        from sandbox import versions
    except ImportError as exc:  # pragma: no cover - sandbox.versions ships with the product
        raise SourceError(f"semver range {constraint!r} cannot be resolved: sandbox.versions is unavailable") from exc
    try:
        return versions.resolve(constraint, tags)
    except InvalidInputError as exc:
        raise SourceError(f"invalid semver range {constraint!r}: {exc}") from None


def _oci_tag_by_semver(url: str, constraint: str, tags: list[str]) -> str:
    """The tag an OCIRepository's semver range picks, or its failure in source-controller's words.

    source-controller v1.9 (``getArtifactRef``): ``ReadOperationFailed``, "failed to determine the artifact tag
    for '<url>': no match found for semver: <range>" (or "semver '<range>' parse error: …"), as
    tests/real/test_flux_semver_oracle.py sees on a real cluster.
    """
    unable = f"failed to determine the artifact tag for '{url}'"
    try:
        from sandbox import versions

        tag = versions.resolve(constraint, tags)
    except InvalidInputError as exc:
        raise ReconcileFailure("ReadOperationFailed", f"{unable}: semver '{constraint}' parse error: {exc}") from None
    if tag is None:
        raise ReconcileFailure("ReadOperationFailed", f"{unable}: no match found for semver: {constraint}")
    return tag


def _resolve_git_ref(refs: RemoteRefs, ref: Mapping[str, Any], url: str) -> tuple[str, str]:
    """``(revision, sha)`` of a GitRepository's ``spec.ref`` on its remote."""
    unable = f"unable to clone '{url}'"
    if ref.get("commit"):
        sha = str(ref["commit"])
        branch = ref.get("branch")
        return (f"{branch}@sha1:{sha}" if branch else f"sha1:{sha}"), sha
    if ref.get("name"):
        name = str(ref["name"])
        short = name.removeprefix("refs/heads/").removeprefix("refs/tags/")
        found = refs.branches.get(short) if not name.startswith("refs/tags/") else None
        sha = found or refs.tags.get(short) or ""
        if not sha:
            raise SourceError(f'{unable}: couldn\'t find remote ref "{name}"')
        return f"{name}@sha1:{sha}", sha
    if ref.get("semver"):
        tag = _resolve_semver(str(ref["semver"]), list(refs.tags))
        if tag is None:
            raise SourceError(f"{unable}: no match found for semver: {ref['semver']}")
        return f"{tag}@sha1:{refs.tags[tag]}", refs.tags[tag]
    if ref.get("tag"):
        tag = str(ref["tag"])
        if tag not in refs.tags:
            raise SourceError(f'{unable}: couldn\'t find remote ref "refs/tags/{tag}"')
        return f"{tag}@sha1:{refs.tags[tag]}", refs.tags[tag]
    branch = str(ref.get("branch") or "master")
    if branch not in refs.branches:
        raise SourceError(f'{unable}: couldn\'t find remote ref "refs/heads/{branch}"')
    return f"{branch}@sha1:{refs.branches[branch]}", refs.branches[branch]


def _fetch_git(server: SimulatedApiServer, settings: SimulationSettings, obj: Mapping[str, Any]) -> None:
    spec = obj.get("spec") or {}
    url = str(spec.get("url") or "")
    repository = local_repository(url)
    if repository is None:
        raise ReconcileFailure(
            "GitOperationFailed",
            f"failed to checkout and determine revision: unable to clone '{url}': the simulated "
            "source-controller reaches only local repositories (file:// URLs or absolute paths)",
        )
    try:
        refs = list_remote(settings.git, repository, settings.simulation_dir)
        revision, sha = _resolve_git_ref(refs, spec.get("ref") or {}, url)
        directory = export_commit(settings.git, repository, sha, settings.artifacts_dir)
    except SourceError as exc:
        raise ReconcileFailure("GitOperationFailed", f"failed to checkout and determine revision: {exc}") from None
    _store_artifact(server, obj, "gitrepository", revision, directory, artifact_digest(sha))


def _fetch_oci(server: SimulatedApiServer, settings: SimulationSettings, obj: Mapping[str, Any]) -> None:
    spec = obj.get("spec") or {}
    url = str(spec.get("url") or "")
    if not url.startswith("oci://"):
        raise ReconcileFailure("URLInvalid", f"URL must be in format 'oci://<domain>/<org>/<repo>': {url!r}")
    layout = settings.oci_layouts.get(url.rstrip("/"))
    if layout is not None:
        _fetch_oci_layout(server, settings, obj, url, layout)
        return
    if not settings.oci_git_remote:
        raise ReconcileFailure(
            "OCIArtifactPullFailed",
            f"failed to determine artifact digest for '{url}': the simulated OCI registry publishes nothing "
            "(no fleet repository remote configured)",
        )
    repository = local_repository(settings.oci_git_remote) or Path(settings.oci_git_remote)
    ref = spec.get("ref") or {}
    try:
        refs = list_remote(settings.git, repository, settings.simulation_dir)
        if ref.get("digest"):
            raise SourceError(f"digest {ref['digest']}: digest references are not supported by the simulated registry")
        if ref.get("semver"):
            tag = _oci_tag_by_semver(url, str(ref["semver"]), list(refs.tags))
        else:
            tag = str(ref.get("tag") or "latest")
            if tag not in refs.tags:
                raise SourceError(f"{url}:{tag}: MANIFEST_UNKNOWN: manifest unknown")
        sha = refs.tags[tag]
        root = export_commit(settings.git, repository, sha, settings.artifacts_dir)
    except SourceError as exc:
        raise ReconcileFailure(
            "OCIArtifactPullFailed", f"failed to determine the artifact for '{url}': {exc}"
        ) from None
    content = (root / settings.oci_artifact_path).resolve()
    if not content.is_dir():
        raise ReconcileFailure(
            "OCIArtifactPullFailed",
            f"failed to pull artifact from '{url}:{tag}': the tag has no {settings.oci_artifact_path}/ directory",
        )
    digest = artifact_digest(sha, settings.oci_artifact_path)
    _store_artifact(server, obj, "ocirepository", f"{tag}@{digest}", content, digest)


def _fetch_oci_layout(
    server: SimulatedApiServer, settings: SimulationSettings, obj: Mapping[str, Any], url: str, layout: Path
) -> None:
    """Pull an OCIRepository's artifact from the OCI image layout standing in for its registry.

    As source-controller does: the tag (or the newest tag the semver range admits) is
    resolved on the registry's tags, the manifest read, and the Flux content layer
    unpacked; the revision is ``<tag>@<manifest digest>``.
    """
    spec = obj.get("spec") or {}
    ref = spec.get("ref") or {}
    registry = OciLayoutRegistry(url, layout)
    try:
        if ref.get("digest"):
            raise SourceError(f"digest {ref['digest']}: digest references are not supported by the simulated registry")
        if ref.get("semver"):
            tag = _oci_tag_by_semver(url, str(ref["semver"]), registry.list_tags())
        else:
            tag = str(ref.get("tag") or "latest")
        manifest = registry.get_manifest(tag)
        if manifest is None:
            raise SourceError(f"{url}:{tag}: MANIFEST_UNKNOWN: manifest unknown")
        destination = settings.artifacts_dir / f"oci-{manifest.digest.partition(':')[2][:40]}"
        if not destination.is_dir():
            content = registry.pull_content(tag)
            staging = settings.artifacts_dir / f".{destination.name}-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            extract_content(content, staging)
            try:
                staging.rename(destination)
            except OSError:
                if not destination.is_dir():
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (SourceError, RegistryError) as exc:
        raise ReconcileFailure("OCIArtifactPullFailed", f"failed to pull artifact from '{url}': {exc}") from None
    _store_artifact(server, obj, "ocirepository", f"{tag}@{manifest.digest}", destination, manifest.digest)


def _store_artifact(
    server: SimulatedApiServer,
    obj: Mapping[str, Any],
    kind_path: str,
    revision: str,
    directory: Path,
    digest: str,
) -> None:
    meta = obj["metadata"]
    record = server.internal(obj)
    previous = record.get("artifact") or {}
    if previous.get("revision") == revision and record.get("artifactDir") == str(directory):
        return
    tarball = f"{kind_path}/{meta['namespace']}/{meta['name']}/{digest.partition(':')[2][:40]}.tar.gz"
    server.set_internal(
        obj,
        "artifact",
        {
            "revision": revision,
            "digest": digest,
            "path": tarball,
            "url": f"http://source-controller.{FLUX_NAMESPACE}.svc.cluster.local./{tarball}",
            "lastUpdateTime": timestamp(server.now),
        },
    )
    server.set_internal(obj, "artifactDir", str(directory))
    log.debug("simulated source-controller: %s/%s has revision %s", meta["namespace"], meta["name"], revision)


def reconcile_source(server: SimulatedApiServer, settings: SimulationSettings, key: Key) -> None:
    obj = server.get(key)
    if obj is None:
        return
    if deleting(obj):
        server.remove_finalizer(key, FLUX_FINALIZER)  # the artifact storage is garbage-collected
        return
    obj = ensure_flux_finalizer(server, key)
    if obj is None or (obj.get("spec") or {}).get("suspend"):
        return
    kind = key[1]
    if kind == "HelmRepository":
        url = str((obj.get("spec") or {}).get("url") or "")
        if not url:
            report_ready(server, key, "False", "URLInvalid", "spec.url is required", final=True)
            return
        if settled(server, obj, settings):
            revision = artifact_digest(url)
            report_ready(
                server,
                key,
                "True",
                "Succeeded",
                f"stored artifact: revision '{revision}'",
                final=True,
                fields={"artifact": {"revision": revision, "digest": revision, "url": url}, "url": url},
            )
        else:
            report_ready(server, key, "Unknown", "Progressing", "building artifact", final=False)
        return
    missing_secret = _secret_missing(server, obj)
    if missing_secret:
        server.set_internal(obj, "failure", ["AuthenticationFailed", missing_secret])
        server.set_internal(obj, "polledAt", 0.0)
    elif _poll_due(server, obj):
        try:
            if kind == "GitRepository":
                _fetch_git(server, settings, obj)
            else:
                _fetch_oci(server, settings, obj)
            server.set_internal(obj, "failure", None)
        except ReconcileFailure as failure:
            server.set_internal(obj, "failure", [failure.reason, failure.message])
        server.set_internal(obj, "polledAt", server.now)
        server.set_internal(obj, "polledGeneration", obj["metadata"].get("generation"))
        server.set_internal(obj, "polledRequest", requested_at(obj))
    record = server.internal(obj)
    artifact = record.get("artifact")
    fields = {"artifact": artifact} if artifact else {}
    if record.get("failure"):
        reason, message = record["failure"]
        report_ready(server, key, "False", reason, message, final=True, fields=fields)
    elif artifact and settled(server, obj, settings):
        report_ready(
            server,
            key,
            "True",
            "Succeeded",
            # source-controller's words: an OCIRepository's revision is a digest, a GitRepository's a revision.
            f"stored artifact for {'digest' if kind == 'OCIRepository' else 'revision'} '{artifact['revision']}'",
            final=True,
            fields=fields,
        )
    elif artifact:
        report_ready(
            server,
            key,
            "Unknown",
            "Progressing",
            f"building artifact: new revision '{artifact['revision']}'",
            final=False,
        )


def source_artifact(server: SimulatedApiServer, source: Mapping[str, Any]) -> tuple[str, Path] | None:
    """``(revision, directory)`` of a source's stored artifact."""
    artifact = (source.get("status") or {}).get("artifact")
    directory = server.internal(source).get("artifactDir")
    if not artifact or not directory or not Path(directory).is_dir():
        return None
    return str(artifact["revision"]), Path(directory)
