"""The simulated controllers, and :func:`simulation_tick`, which runs them.

There are no background threads or processes: every call to the simulated
cluster first runs :func:`simulation_tick`, which lets every controller look at
the stored objects and act, round after round, until a round changes nothing
(a fixed point; the number of rounds is bounded). Time is the session's clock,
so readiness delays and polling intervals follow the wall clock (or a test's
clock).

Controllers:

* **Built in** (always running, like kube-controller-manager): the namespace
  controller empties a terminating namespace and then removes it; the CRD
  controller deletes a deleted CRD's custom objects before the CRD goes; the
  pvc-protection controller lets a deleted claim go once no Pod mounts it; the
  PV controller binds a PersistentVolume to its claim and marks it
  ``Released`` once the claim is gone, and pv-protection lets a deleted PV go
  once it is no longer Bound.
* **Flux** -- each only while its Deployment exists in ``flux-system``
  (applied from ``gotk-components.yaml``): ``source-controller``
  (GitRepository, OCIRepository, HelmRepository), ``kustomize-controller``
  (Kustomization; it applies CRDs and Namespaces first and, as Flux's staged
  apply does, waits up to the Kustomization's timeout for those CRDs to be
  Established before the rest) and ``helm-controller`` (HelmRelease). Without them Flux
  objects get no status at all, and their ``finalizers.fluxcd.io`` is never
  removed.
* **Custom-object controllers** (:class:`SimulatedController`), installed by a
  HelmRelease of their chart: active while such a release exists, is Ready and
  is not being deleted. An active controller puts its finalizer on the objects
  it reconciles and records the external resource it "creates" (a load
  balancer, a volume) as ``<simulation_dir>/external/<kind>-<namespace>-<name>.json``;
  when such an object is deleted it deletes the record and drops the finalizer.
  With no active controller the finalizer stays forever, and so does the record.
  A CSI driver's chart (:class:`VolumeProvisioner`) provisions instead: for a
  claim of its StorageClass it records the cloud volume and creates a PV
  ``pvc-<claim uid>`` holding ``external-provisioner.volume.kubernetes.io/finalizer``;
  once the claim is gone and the PV ``Released`` with reclaim policy
  ``Delete`` it deletes the record and then the PV. Uninstalled first, it
  leaves the released PV and the record behind -- a leaked volume.

Readiness: a Flux object reports ``Ready=Unknown`` (``Progressing``) until
``readiness_delay_seconds`` after its generation last changed (or after it
applied a new revision), then ``Ready=True`` or ``False`` with Flux's reasons.
An injected failure makes it report ``Ready=False`` with the injected reason
and message instead.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.drivers.simulation.apiserver import (
    CRD_CLEANUP_FINALIZER,
    CRD_GROUP,
    CRD_KIND,
    PV_PROTECTION_FINALIZER,
    PVC_PROTECTION_FINALIZER,
    Key,
    Manifest,
    SimulatedApiError,
    SimulatedApiServer,
    crd_condition,
    describe_key,
    key_of,
    key_to_str,
    split_api_version,
    str_to_key,
    timestamp,
)
from sandbox.drivers.simulation.charts import release_name, render_chart
from sandbox.drivers.simulation.kustomize import BuildError, build, check_variable_names
from sandbox.drivers.simulation.sources import (
    GitTools,
    RemoteRefs,
    SourceError,
    artifact_digest,
    export_commit,
    list_remote,
    local_repository,
)
from sandbox.errors import InvalidInputError

log = logging.getLogger(__name__)

FLUX_NAMESPACE = "flux-system"
FLUX_FINALIZER = "finalizers.fluxcd.io"
SOURCE_GROUP = "source.toolkit.fluxcd.io"
KUSTOMIZE_GROUP = "kustomize.toolkit.fluxcd.io"
HELM_GROUP = "helm.toolkit.fluxcd.io"
KS_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
KS_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
HELM_NAME_LABEL = "helm.toolkit.fluxcd.io/name"
HELM_NAMESPACE_LABEL = "helm.toolkit.fluxcd.io/namespace"
PRUNE_ANNOTATION = "kustomize.toolkit.fluxcd.io/prune"
RECONCILE_ANNOTATION = "kustomize.toolkit.fluxcd.io/reconcile"
REQUESTED_AT_ANNOTATION = "reconcile.fluxcd.io/requestedAt"

SOURCE_CONTROLLER = "source-controller"
KUSTOMIZE_CONTROLLER = "kustomize-controller"
HELM_CONTROLLER = "helm-controller"

#: How often a source re-resolves its ref (new commits and tags are picked up).
SOURCE_POLL_SECONDS = 1.0
#: How soon a failed reconciliation is retried.
RETRY_SECONDS = 1.0
#: Rounds of one tick before it stops looking for a fixed point.
MAX_ROUNDS = 60

_FLUX_KINDS = frozenset(
    {
        (SOURCE_GROUP, "GitRepository"),
        (SOURCE_GROUP, "OCIRepository"),
        (SOURCE_GROUP, "HelmRepository"),
        (KUSTOMIZE_GROUP, "Kustomization"),
        (HELM_GROUP, "HelmRelease"),
    }
)
_UNSUPPORTED_KUSTOMIZATION_FIELDS = (
    "patches",
    "patchesStrategicMerge",
    "patchesJson6902",
    "images",
    "components",
    "namePrefix",
    "nameSuffix",
)


# -- the custom-object controller catalog ---------------------------------------


@dataclass(frozen=True)
class ReconciledKind:
    """One kind of object a simulated controller reconciles.

    Attributes:
        group: The API group (``""`` for core).
        kind: The kind.
        matches: Tells, from the object's ``spec``, whether this controller handles it.
        finalizer: The finalizer the controller puts on the objects it handles.
        external_resource_kind: What it creates outside the cluster (``load-balancer``, ``volume``).
        status: The status the controller reports on a handled object, from the object (optional).
    """

    group: str
    kind: str
    matches: Callable[[Mapping[str, Any]], bool]
    finalizer: str
    external_resource_kind: str
    status: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class VolumeProvisioner:
    """A CSI driver's controller (with its external-provisioner sidecar): dynamic volume provisioning.

    For a claim of one of its StorageClasses it creates the cloud volume and a
    PersistentVolume ``pvc-<claim uid>`` bound to the claim, holding
    :data:`PROVISIONER_FINALIZER`. Once the claim is gone the PV is ``Released``;
    with reclaim policy ``Delete`` the provisioner deletes the cloud volume, then
    the PV. Only while it runs: with the driver uninstalled a released PV keeps
    its finalizer and the cloud volume leaks, as on a real cluster.

    Attributes:
        driver: The CSI driver name (``StorageClass.provisioner``, ``PV.spec.csi.driver``).
        storage_classes: StorageClass names it provisions for even when no
            StorageClass object exists (the chart's ``storageClasses`` values);
            a StorageClass whose ``provisioner`` is ``driver`` counts too.
        external_resource_kind: What it creates outside the cluster.
    """

    driver: str
    storage_classes: tuple[str, ...] = ()
    external_resource_kind: str = "volume"


@dataclass(frozen=True)
class SimulatedController:
    """A controller installed by a Helm chart that reconciles custom objects into external resources.

    Attributes:
        chart: The chart that installs it (a HelmRelease's ``spec.chart.spec.chart``).
        reconciles: The kinds it reconciles.
        provisions: The CSI drivers it runs (PersistentVolumes for claims).
    """

    chart: str
    reconciles: tuple[ReconciledKind, ...] = ()
    provisions: tuple[VolumeProvisioner, ...] = ()


def _hostname(obj: Mapping[str, Any], suffix: str) -> str:
    meta = obj.get("metadata") or {}
    digest = artifact_digest(str(meta.get("uid", "")))[7:17]
    return f"k8s-{meta.get('namespace', '')}-{meta.get('name', '')}-{digest}.{suffix}"[:253]


def _load_balancer_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"loadBalancer": {"ingress": [{"hostname": _hostname(obj, "elb.simulated.amazonaws.com")}]}}


DEFAULT_CONTROLLER_CATALOG: tuple[SimulatedController, ...] = (
    SimulatedController(
        chart="aws-load-balancer-controller",
        reconciles=(
            ReconciledKind(
                group="networking.k8s.io",
                kind="Ingress",
                matches=lambda spec: spec.get("ingressClassName") == "alb",
                finalizer="ingress.k8s.aws/resources",
                external_resource_kind="load-balancer",
                status=_load_balancer_status,
            ),
            ReconciledKind(
                group="",
                kind="Service",
                matches=lambda spec: spec.get("type") == "LoadBalancer",
                finalizer="service.k8s.aws/resources",
                # A Service gets a network load balancer; a distinct kind keeps
                # its record apart from an Ingress of the same name.
                external_resource_kind="network-load-balancer",
                status=_load_balancer_status,
            ),
        ),
    ),
    SimulatedController(
        chart="aws-ebs-csi-driver",
        provisions=(VolumeProvisioner(driver="ebs.csi.aws.com", storage_classes=("gp3",)),),
    ),
)


@dataclass(frozen=True)
class SimulationSettings:
    """What one simulated cluster session runs with.

    Attributes:
        simulation_dir: The cluster's directory.
        readiness_delay_seconds: How long a Flux object takes to become Ready.
        controller_catalog: The custom-object controllers charts install.
        oci_git_remote: The fleet repository whose tags the simulated OCI registry serves.
        oci_artifact_path: The directory of the fleet repository an OCI artifact holds.
        git: How git runs.
        volume_deletion_seconds: How long a CSI driver takes to delete the cloud
            volume of a released PersistentVolume (deletion is asynchronous: a
            volume is detached, then deleted).
    """

    simulation_dir: Path
    readiness_delay_seconds: float = 0.0
    controller_catalog: tuple[SimulatedController, ...] = DEFAULT_CONTROLLER_CATALOG
    oci_git_remote: str | None = None
    oci_artifact_path: str = "platform"
    git: GitTools = field(default_factory=GitTools)
    volume_deletion_seconds: float = 0.0

    @property
    def external_dir(self) -> Path:
        """Where external resources are recorded (outside the cluster, beside the terraform state)."""
        return self.simulation_dir / "external"

    @property
    def artifacts_dir(self) -> Path:
        """Where source artifacts are exported, one directory per commit."""
        return self.simulation_dir / "artifacts"


# -- helpers ----------------------------------------------------------------------


def object_key(obj: Mapping[str, Any]) -> Key:
    """The storage key of a stored object."""
    meta = obj["metadata"]
    return key_of(str(obj["apiVersion"]), str(obj["kind"]), meta.get("namespace"), str(meta["name"]))


def deleting(obj: Mapping[str, Any]) -> bool:
    """Whether the object has a ``deletionTimestamp``."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's ``Ready`` condition."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition
    return None


def flux_ready(obj: Mapping[str, Any] | None) -> bool:
    """Ready=True for the current generation, as Flux's dependency checks want it."""
    if obj is None:
        return False
    condition = ready_condition(obj)
    observed = (obj.get("status") or {}).get("observedGeneration")
    return bool(condition and condition.get("status") == "True" and observed == obj["metadata"].get("generation"))


def _flux_running(server: SimulatedApiServer, name: str) -> bool:
    deployment = server.get(("apps", "Deployment", FLUX_NAMESPACE, name))
    return deployment is not None and not deleting(deployment)


def _settled(server: SimulatedApiServer, obj: Mapping[str, Any], settings: SimulationSettings) -> bool:
    record = server.internal(obj)
    since = max(float(record.get("generationChangedAt", 0.0)), float(record.get("progressSince", 0.0)))
    return server.now >= since + settings.readiness_delay_seconds


def _report(
    server: SimulatedApiServer,
    key: Key,
    status_value: str,
    reason: str,
    message: str,
    *,
    final: bool,
    fields: Mapping[str, Any] | None = None,
) -> None:
    """Write an object's status: ``fields``, a Ready condition and (for final results) observedGeneration.

    An injected failure overrides the condition: ``Ready=False`` with its reason and message.
    """
    obj = server.get(key)
    if obj is None:
        return
    failure = server.failures().get(key_to_str(key))
    if failure:
        status_value, reason, message, final = "False", failure["reason"], failure["message"], True
    generation = obj["metadata"].get("generation", 1)
    status = copy.deepcopy(obj.get("status") or {})
    status.update(copy.deepcopy(dict(fields or {})))
    previous = ready_condition(obj)
    transition = (
        previous["lastTransitionTime"]
        if previous and previous.get("status") == status_value and previous.get("lastTransitionTime")
        else timestamp(server.now)
    )
    condition = {
        "type": "Ready",
        "status": status_value,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }
    others = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
    status["conditions"] = [condition, *others]
    if final:
        status["observedGeneration"] = generation
    requested = (obj["metadata"].get("annotations") or {}).get(REQUESTED_AT_ANNOTATION)
    if requested:
        status["lastHandledReconcileAt"] = requested
    server.write_status(key, status)


def _write_fields(server: SimulatedApiServer, key: Key, fields: Mapping[str, Any]) -> None:
    """Merge fields into an object's status, leaving its conditions as they are."""
    obj = server.get(key)
    if obj is not None:
        server.write_status(key, {**copy.deepcopy(obj.get("status") or {}), **copy.deepcopy(dict(fields))})


def _requested_at(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(REQUESTED_AT_ANNOTATION, ""))


def _ensure_finalizer(server: SimulatedApiServer, key: Key) -> Manifest | None:
    server.add_finalizer(key, FLUX_FINALIZER)
    return server.get(key)


def parse_duration(text: str | None, default: float) -> float:
    """Seconds of a Go duration (``1h0m0s``, ``10m``, ``30s``, ``500ms``); ``default`` when absent or invalid."""
    if not text:
        return default
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text).strip():
        return default
    return sum(float(number) * units[unit] for number, unit in parts)


def _format_duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"


# -- built-in controllers -----------------------------------------------------------


def _namespace_controller(server: SimulatedApiServer) -> None:
    for namespace in server.select("", "Namespace"):
        if not deleting(namespace):
            continue
        name = namespace["metadata"]["name"]
        content = server.in_namespace(name)
        for obj in content:
            server.delete(object_key(obj))
        if not server.in_namespace(name):
            server.finalize_namespace(("", "Namespace", "", name))


def _crd_controller(server: SimulatedApiServer) -> None:
    for crd in server.select(CRD_GROUP, CRD_KIND):
        if not deleting(crd):
            continue
        spec = crd.get("spec") or {}
        group, kind = str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))
        instances = server.select(group, kind) if group and kind else []
        for obj in instances:
            server.delete(object_key(obj))
        if not (server.select(group, kind) if group and kind else []):
            server.remove_finalizer(object_key(crd), CRD_CLEANUP_FINALIZER)


#: The external-provisioner's finalizer on the PVs it provisioned: removed once the cloud volume is deleted.
PROVISIONER_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
PROVISIONED_BY_ANNOTATION = "pv.kubernetes.io/provisioned-by"


def _claim_in_use(server: SimulatedApiServer, claim: Mapping[str, Any]) -> bool:
    """Whether a Pod (not finished) mounts the claim, as the pvc-protection controller checks."""
    meta = claim["metadata"]
    for pod in server.select("", "Pod"):
        if pod["metadata"].get("namespace") != meta.get("namespace"):
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            if (volume.get("persistentVolumeClaim") or {}).get("claimName") == meta["name"]:
                return True
    return False


def _pvc_protection_controller(server: SimulatedApiServer) -> None:
    for claim in server.select("", "PersistentVolumeClaim"):
        if deleting(claim) and not _claim_in_use(server, claim):
            server.remove_finalizer(object_key(claim), PVC_PROTECTION_FINALIZER)


def _bound_claim(server: SimulatedApiServer, volume: Mapping[str, Any]) -> Manifest | None:
    """The claim a PV's ``spec.claimRef`` names, if it still exists (same uid)."""
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    if not ref.get("name"):
        return None
    claim = server.get(("", "PersistentVolumeClaim", str(ref.get("namespace", "")), str(ref["name"])))
    if claim is None or (ref.get("uid") and claim["metadata"].get("uid") != ref["uid"]):
        return None
    return claim


def _pv_controller(server: SimulatedApiServer) -> None:
    """kube-controller-manager's PV binder and pv-protection controller (always running).

    A PV bound to an existing claim is ``Bound`` (and so is the claim); once the
    claim is gone it is ``Released`` -- what happens next is the reclaim
    policy's: ``Retain`` keeps PV and volume, ``Delete`` is left to the PV's
    provisioner (a CSI driver running in the cluster). pv-protection lets a
    deleted PV go once it is no longer Bound.
    """
    for volume in server.select("", "PersistentVolume"):
        key = object_key(volume)
        spec = volume.get("spec") or {}
        status = volume.get("status") or {}
        if spec.get("claimRef"):
            claim = _bound_claim(server, volume)
            if claim is not None and status.get("phase") != "Released":
                if status.get("phase") != "Bound":
                    server.write_status(key, {**status, "phase": "Bound"})
                claim_status = {
                    "phase": "Bound",
                    "accessModes": list(spec.get("accessModes") or []),
                    "capacity": dict(spec.get("capacity") or {}),
                }
                server.write_status(object_key(claim), {**(claim.get("status") or {}), **claim_status})
            elif claim is None and status.get("phase") != "Released":
                server.write_status(key, {**status, "phase": "Released"})
                server.set_internal(volume, "releasedAt", server.now)
        elif status.get("phase") == "Pending":
            server.write_status(key, {**status, "phase": "Available"})
        fresh = server.get(key)
        if fresh is not None and deleting(fresh) and (fresh.get("status") or {}).get("phase") != "Bound":
            server.remove_finalizer(key, PV_PROTECTION_FINALIZER)


# -- source-controller ----------------------------------------------------------------


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
        or record.get("polledRequest") != _requested_at(obj)
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
        raise _Failure(
            "GitOperationFailed",
            f"failed to checkout and determine revision: unable to clone '{url}': the simulated "
            "source-controller reaches only local repositories (file:// URLs or absolute paths)",
        )
    try:
        refs = list_remote(settings.git, repository, settings.simulation_dir)
        revision, sha = _resolve_git_ref(refs, spec.get("ref") or {}, url)
        directory = export_commit(settings.git, repository, sha, settings.artifacts_dir)
    except SourceError as exc:
        raise _Failure("GitOperationFailed", f"failed to checkout and determine revision: {exc}") from None
    _store_artifact(server, obj, "gitrepository", revision, directory, artifact_digest(sha))


def _fetch_oci(server: SimulatedApiServer, settings: SimulationSettings, obj: Mapping[str, Any]) -> None:
    spec = obj.get("spec") or {}
    url = str(spec.get("url") or "")
    if not url.startswith("oci://"):
        raise _Failure("URLInvalid", f"URL must be in format 'oci://<domain>/<org>/<repo>': {url!r}")
    if not settings.oci_git_remote:
        raise _Failure(
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
            resolved = _resolve_semver(str(ref["semver"]), list(refs.tags))
            if resolved is None:
                known = ", ".join(refs.tags) or "none"
                raise SourceError(f"no match found for semver: {ref['semver']} (tags: {known})")
            tag = resolved
        else:
            tag = str(ref.get("tag") or "latest")
            if tag not in refs.tags:
                raise SourceError(f"{url}:{tag}: MANIFEST_UNKNOWN: manifest unknown")
        sha = refs.tags[tag]
        root = export_commit(settings.git, repository, sha, settings.artifacts_dir)
    except SourceError as exc:
        raise _Failure("OCIArtifactPullFailed", f"failed to determine the artifact for '{url}': {exc}") from None
    content = (root / settings.oci_artifact_path).resolve()
    if not content.is_dir():
        raise _Failure(
            "OCIArtifactPullFailed",
            f"failed to pull artifact from '{url}:{tag}': the tag has no {settings.oci_artifact_path}/ directory",
        )
    digest = artifact_digest(sha, settings.oci_artifact_path)
    _store_artifact(server, obj, "ocirepository", f"{tag}@{digest}", content, digest)


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


class _CrdsInstalling(Exception):
    """Stage one applied, but some of its CRDs are not Established yet: stage two must wait."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names

    def progress_message(self) -> str:
        listed = ", ".join(f"CustomResourceDefinition/{name}" for name in self.names)
        return f"Reconciliation in progress: waiting for {listed} to be established"

    def timeout_message(self) -> str:
        # fluxcd/pkg/ssa WaitForSet's wording, as kustomize-controller reports it.
        listed = ", ".join(f"CustomResourceDefinition/{name} status: 'InProgress'" for name in self.names)
        return f"timeout waiting for: [{listed}]"


class _Failure(Exception):
    """A reconciliation failure: the Ready reason and message to report."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _reconcile_source(server: SimulatedApiServer, settings: SimulationSettings, key: Key) -> None:
    obj = server.get(key)
    if obj is None:
        return
    if deleting(obj):
        server.remove_finalizer(key, FLUX_FINALIZER)  # the artifact storage is garbage-collected
        return
    obj = _ensure_finalizer(server, key)
    if obj is None or (obj.get("spec") or {}).get("suspend"):
        return
    kind = key[1]
    if kind == "HelmRepository":
        url = str((obj.get("spec") or {}).get("url") or "")
        if not url:
            _report(server, key, "False", "URLInvalid", "spec.url is required", final=True)
            return
        if _settled(server, obj, settings):
            revision = artifact_digest(url)
            _report(
                server,
                key,
                "True",
                "Succeeded",
                f"stored artifact: revision '{revision}'",
                final=True,
                fields={"artifact": {"revision": revision, "digest": revision, "url": url}, "url": url},
            )
        else:
            _report(server, key, "Unknown", "Progressing", "building artifact", final=False)
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
        except _Failure as failure:
            server.set_internal(obj, "failure", [failure.reason, failure.message])
        server.set_internal(obj, "polledAt", server.now)
        server.set_internal(obj, "polledGeneration", obj["metadata"].get("generation"))
        server.set_internal(obj, "polledRequest", _requested_at(obj))
    record = server.internal(obj)
    artifact = record.get("artifact")
    fields = {"artifact": artifact} if artifact else {}
    if record.get("failure"):
        reason, message = record["failure"]
        _report(server, key, "False", reason, message, final=True, fields=fields)
    elif artifact and _settled(server, obj, settings):
        _report(
            server,
            key,
            "True",
            "Succeeded",
            f"stored artifact for revision '{artifact['revision']}'",
            final=True,
            fields=fields,
        )
    elif artifact:
        _report(
            server,
            key,
            "Unknown",
            "Progressing",
            f"building artifact: new revision '{artifact['revision']}'",
            final=False,
        )


def _source_artifact(server: SimulatedApiServer, source: Mapping[str, Any]) -> tuple[str, Path] | None:
    """``(revision, directory)`` of a source's stored artifact."""
    artifact = (source.get("status") or {}).get("artifact")
    directory = server.internal(source).get("artifactDir")
    if not artifact or not directory or not Path(directory).is_dir():
        return None
    return str(artifact["revision"]), Path(directory)


# -- kustomize-controller ----------------------------------------------------------------


def inventory_keys(obj: Mapping[str, Any]) -> list[tuple[Key, str]]:
    """``(key, version)`` of each entry of a Kustomization's ``status.inventory``."""
    found = []
    for entry in ((obj.get("status") or {}).get("inventory") or {}).get("entries") or []:
        # Imported here: sandbox.flux is the product's side, and must decode the ids this controller writes.
        from sandbox.flux import parse_inventory_id

        parsed = parse_inventory_id(str(entry.get("id", "")))
        if parsed is None:
            continue
        namespace, name, group, kind = parsed
        found.append(((group, kind, namespace, name), str(entry.get("v", "v1"))))
    return found


def _inventory_entry(obj: Mapping[str, Any]) -> dict[str, str]:
    """An inventory entry as Flux writes it: cli-utils object metadata, ``:`` in names escaped as ``__``."""
    group, version = split_api_version(str(obj["apiVersion"]))
    meta = obj["metadata"]
    name = str(meta["name"]).replace(":", "__")
    return {"id": f"{meta.get('namespace', '')}_{name}_{group}_{obj['kind']}", "v": version}


def _disabled(obj: Mapping[str, Any], annotation: str) -> bool:
    return ((obj["metadata"].get("annotations") or {}).get(annotation) or "").lower() == "disabled"


def _owned_by(obj: Mapping[str, Any], name_label: str, namespace_label: str, owner: Mapping[str, Any]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return (
        labels.get(name_label) == owner["metadata"]["name"]
        and labels.get(namespace_label) == owner["metadata"]["namespace"]
    )


def _garbage_collect(server: SimulatedApiServer, owner: Mapping[str, Any], keys: list[Key]) -> list[str]:
    """Delete the objects a Kustomization applied (those still labelled as its own); what it deleted."""
    deleted = []
    for key in reversed(keys):
        obj = server.get(key)
        if obj is None or not _owned_by(obj, KS_NAME_LABEL, KS_NAMESPACE_LABEL, owner):
            continue
        # Skipped by Flux's garbage collection: prune disabled, or reconciliation disabled.
        if _disabled(obj, PRUNE_ANNOTATION) or _disabled(obj, RECONCILE_ANNOTATION):
            continue
        server.delete(key)
        deleted.append(describe_key(key))
    return deleted


def _substitutions(server: SimulatedApiServer, obj: Mapping[str, Any]) -> dict[str, str] | None:
    post_build = (obj.get("spec") or {}).get("postBuild")
    if post_build is None:
        return None
    namespace = obj["metadata"]["namespace"]
    variables: dict[str, str] = {}
    for reference in post_build.get("substituteFrom") or []:
        kind, name = str(reference.get("kind", "")), str(reference.get("name", ""))
        if kind not in ("ConfigMap", "Secret"):
            raise BuildError(f"substituteFrom kind {kind!r} is not supported (ConfigMap or Secret)")
        source = server.get(("", kind, namespace, name))
        if source is None:
            if reference.get("optional"):
                continue
            resource = "configmaps" if kind == "ConfigMap" else "secrets"
            raise BuildError(f"substitute from '{kind}/{name}' error: {resource} \"{name}\" not found")
        if kind == "ConfigMap":
            variables.update({str(k): str(v) for k, v in (source.get("data") or {}).items()})
        else:
            for k, v in (source.get("data") or {}).items():
                variables[str(k)] = base64.b64decode(str(v)).decode("utf-8", "replace")
    variables.update({str(k): str(v) for k, v in (post_build.get("substitute") or {}).items()})
    check_variable_names(variables)
    return variables


def _stage(obj: Mapping[str, Any]) -> int:
    """Flux applies CRDs and Namespaces first, then everything else."""
    return 0 if obj.get("kind") in ("CustomResourceDefinition", "Namespace") else 1


def _kustomization_timeout(spec: Mapping[str, Any]) -> float:
    """spec.timeout, defaulting to spec.interval as kustomize-controller does."""
    return parse_duration(spec.get("timeout"), parse_duration(spec.get("interval"), 300.0))


def _not_established(server: SimulatedApiServer, names: list[str]) -> list[str]:
    """The CRDs among ``names`` that exist and are not Established yet (a deleted one is not waited for)."""
    waiting = []
    for name in names:
        crd = server.get((CRD_GROUP, CRD_KIND, "", name))
        if crd is not None and crd_condition(crd, "Established") != "True":
            waiting.append(name)
    return waiting


def _apply_kustomization(
    server: SimulatedApiServer, obj: Mapping[str, Any], artifact_dir: Path, revision: str
) -> list[dict[str, str]]:
    """Build and apply a Kustomization; the new inventory entries.

    Raises:
        _Failure: BuildFailed or ReconciliationFailed, with Flux's kind of message.
        _CrdsInstalling: The CRDs it applied are not Established yet; nothing after them was applied.
    """
    spec = obj.get("spec") or {}
    meta = obj["metadata"]
    unsupported = [name for name in _UNSUPPORTED_KUSTOMIZATION_FIELDS if spec.get(name)]
    if unsupported:
        raise _Failure(
            "BuildFailed",
            f"the simulated kustomize-controller does not support spec.{', spec.'.join(unsupported)}",
        )
    try:
        objects = build(
            artifact_dir,
            str(spec.get("path") or "./"),
            target_namespace=spec.get("targetNamespace") or None,
            namespaced=server.namespaced,
            substitute=_substitutions(server, obj),
        )
    except BuildError as exc:
        raise _Failure("BuildFailed", str(exc)) from None
    common = spec.get("commonMetadata") or {}
    owner_labels = {KS_NAME_LABEL: meta["name"], KS_NAMESPACE_LABEL: meta["namespace"]}
    for manifest in objects:
        manifest_meta = manifest["metadata"]
        manifest_meta["labels"] = {
            **(manifest_meta.get("labels") or {}),
            **(common.get("labels") or {}),
            **owner_labels,
        }
        if common.get("annotations"):
            manifest_meta["annotations"] = {**(manifest_meta.get("annotations") or {}), **common["annotations"]}
    for stage in (0, 1):
        batch = [m for m in objects if _stage(m) == stage]
        for manifest in batch:  # dry-run the whole stage first: nothing is applied when one object is refused
            try:
                server.apply(manifest, dry_run=True)
            except (SimulatedApiError, InvalidInputError) as exc:
                where = _describe_manifest(manifest)
                raise _Failure("ReconciliationFailed", f"{where} dry-run failed: {exc}") from None
        for manifest in batch:
            existing = server.get(object_key_of_manifest(server, manifest))
            # reconcile: disabled (on the manifest or the object in the cluster)
            # stops Flux changing an existing object; an absent one is created.
            if existing is not None and (
                _disabled(manifest, RECONCILE_ANNOTATION) or _disabled(existing, RECONCILE_ANNOTATION)
            ):
                continue
            server.apply(manifest)
        if stage == 0:
            # As kustomize-controller's staged apply: the CRDs must be served before
            # the objects of their kinds are dry-run, so it waits (up to spec.timeout)
            # instead of failing the objects with "no matches for kind".
            installing = _not_established(server, [m["metadata"]["name"] for m in batch if _is_crd(m)])
            if installing:
                raise _CrdsInstalling(installing)
    entries = sorted(
        (_inventory_entry(server.get(object_key_of_manifest(server, m)) or m) for m in objects), key=lambda e: e["id"]
    )
    if spec.get("prune"):
        new_keys = {object_key_of_manifest(server, m) for m in objects}
        stale = [key for key, _ in inventory_keys(obj) if key not in new_keys]
        deleted = _garbage_collect(server, obj, stale)
        if deleted:
            log.debug("simulated kustomize-controller: %s pruned %s", meta["name"], ", ".join(deleted))
    return entries


def _is_crd(manifest: Mapping[str, Any]) -> bool:
    return manifest.get("kind") == CRD_KIND and split_api_version(str(manifest.get("apiVersion", "")))[0] == CRD_GROUP


def object_key_of_manifest(server: SimulatedApiServer, manifest: Mapping[str, Any]) -> Key:
    """The key a manifest is stored under (namespace dropped for cluster-scoped kinds)."""
    meta = manifest["metadata"]
    namespaced = server.namespaced(str(manifest["apiVersion"]), str(manifest["kind"]))
    return key_of(
        str(manifest["apiVersion"]),
        str(manifest["kind"]),
        meta.get("namespace") if namespaced else None,
        str(meta["name"]),
    )


def _describe_manifest(manifest: Mapping[str, Any]) -> str:
    meta = manifest.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{manifest.get('kind')}/{where}{meta.get('name')}"


def _unhealthy(server: SimulatedApiServer, obj: Mapping[str, Any]) -> list[str]:
    """What a Kustomization with ``wait``/``healthChecks`` still waits for."""
    spec = obj.get("spec") or {}
    checks: list[Key] = []
    if spec.get("wait"):
        checks.extend(key for key, _ in inventory_keys(obj))
    for ref in spec.get("healthChecks") or []:
        checks.append(
            key_of(
                str(ref.get("apiVersion", "")),
                str(ref.get("kind", "")),
                ref.get("namespace") or None,
                str(ref.get("name", "")),
            )
        )
    waiting = []
    for key in checks:
        target = server.get(key)
        if target is None:
            waiting.append(f"{describe_key(key)} status: 'NotFound'")
        elif (key[0], key[1]) in _FLUX_KINDS and not flux_ready(target):
            condition = ready_condition(target)
            state = "InProgress" if condition is None or condition.get("status") == "Unknown" else "Failed"
            waiting.append(f"{describe_key(key)} status: '{state}'")
    return waiting


def _check_dependencies(server: SimulatedApiServer, obj: Mapping[str, Any], group: str, kind: str) -> None:
    namespace = obj["metadata"]["namespace"]
    for dependency in (obj.get("spec") or {}).get("dependsOn") or []:
        dep_namespace = str(dependency.get("namespace") or namespace)
        dep_name = str(dependency.get("name", ""))
        if not flux_ready(server.get((group, kind, dep_namespace, dep_name))):
            raise _Failure("DependencyNotReady", f"dependency '{dep_namespace}/{dep_name}' is not ready")


def deletes_inventory(obj: Mapping[str, Any]) -> bool:
    """Whether deleting a Kustomization deletes what it applied (kustomize-controller's finalizerShouldDeleteResources).

    Never for a suspended one; otherwise by ``spec.deletionPolicy``:
    ``MirrorPrune`` (the default) as ``spec.prune`` says, ``Delete`` and
    ``WaitForTermination`` always, ``Orphan`` never.
    """
    spec = obj.get("spec") or {}
    if spec.get("suspend"):
        return False
    policy = str(spec.get("deletionPolicy") or "MirrorPrune")
    if policy == "MirrorPrune":
        return bool(spec.get("prune"))
    return policy in ("Delete", "WaitForTermination")


def _finalize_kustomization(server: SimulatedApiServer, obj: Mapping[str, Any]) -> None:
    key = object_key(obj)
    spec = obj.get("spec") or {}
    keys = [k for k, _ in inventory_keys(obj)]
    if deletes_inventory(obj):
        deleted = _garbage_collect(server, obj, keys)
        if deleted:
            log.debug("simulated kustomize-controller: deleted %s: %s", describe_key(key), ", ".join(deleted))
        if spec.get("deletionPolicy") == "WaitForTermination":
            # The finalizer stays until the deleted objects are gone, up to
            # spec.timeout; then Flux logs an error and removes it anyway.
            record = server.internal(obj)
            if "finalizingSince" not in record:
                server.set_internal(obj, "finalizingSince", server.now)
                record = server.internal(obj)
            timeout = _kustomization_timeout(spec)
            terminating = [
                k
                for k in keys
                if (target := server.get(k)) is not None
                and deleting(target)
                and _owned_by(target, KS_NAME_LABEL, KS_NAMESPACE_LABEL, obj)
            ]
            if terminating and server.now < float(record["finalizingSince"]) + timeout:
                return
    server.remove_finalizer(key, FLUX_FINALIZER)


def _reconcile_kustomization(server: SimulatedApiServer, settings: SimulationSettings, key: Key) -> None:
    obj = server.get(key)
    if obj is None:
        return
    spec = obj.get("spec") or {}
    if deleting(obj):
        if FLUX_FINALIZER in (obj["metadata"].get("finalizers") or []):
            _finalize_kustomization(server, obj)
        return
    obj = _ensure_finalizer(server, key)
    if obj is None or spec.get("suspend"):
        return
    record = server.internal(obj)
    try:
        _check_dependencies(server, obj, KUSTOMIZE_GROUP, "Kustomization")
        source_ref = spec.get("sourceRef") or {}
        source_kind = str(source_ref.get("kind", ""))
        source_namespace = str(source_ref.get("namespace") or key[2])
        source_name = str(source_ref.get("name", ""))
        if source_kind not in ("GitRepository", "OCIRepository"):
            raise _Failure(
                "ArtifactFailed",
                f"source kind {source_kind!r} is not supported by the simulated "
                "kustomize-controller (GitRepository or OCIRepository)",
            )
        source = server.get((SOURCE_GROUP, source_kind, source_namespace, source_name))
        if source is None:
            raise _Failure("ArtifactFailed", f"Source '{source_kind}/{source_namespace}/{source_name}' not found")
        artifact = _source_artifact(server, source)
        if artifact is None:
            raise _Failure("ArtifactFailed", "Source artifact not found, retrying in 30s")
    except _Failure as failure:
        _report(server, key, "False", failure.reason, failure.message, final=True)
        return
    revision, artifact_dir = artifact
    attempt = f"{obj['metadata'].get('generation')}|{revision}|{_requested_at(obj)}"
    missing = [k for k, _ in inventory_keys(obj) if server.get(k) is None]
    retry_due = server.now - float(record.get("attemptedAt", 0.0)) >= RETRY_SECONDS
    heal = bool(missing) and (not record.get("failure") or retry_due)
    timeout = _kustomization_timeout(spec)

    def report_installing(crds: _CrdsInstalling) -> None:
        message = crds.progress_message()
        _report(server, key, "Unknown", "Progressing", message, final=False, fields={"lastAttemptedRevision": revision})

    installing = record.get("installing")
    if installing and installing["attempt"] != attempt:
        installing = None
    if installing and _not_established(server, installing["crds"]) and server.now - installing["since"] <= timeout:
        report_installing(_CrdsInstalling(installing["crds"]))
        return
    if installing or attempt != record.get("attempt") or heal or (record.get("failure") and retry_due):
        new_revision = attempt != record.get("attempt")
        try:
            entries = _apply_kustomization(server, obj, artifact_dir, revision)
        except _CrdsInstalling as crds:
            since = float(installing["since"]) if installing else server.now
            if server.now - since <= timeout:
                # The attempt is not recorded: it is applied again once the CRDs are Established.
                server.set_internal(obj, "installing", {"attempt": attempt, "crds": crds.names, "since": since})
                report_installing(crds)
                return
            server.set_internal(obj, "failure", ["ReconciliationFailed", crds.timeout_message()])
        except _Failure as failure:
            server.set_internal(obj, "failure", [failure.reason, failure.message])
        else:
            server.set_internal(obj, "failure", None)
            _write_fields(server, key, {"inventory": {"entries": entries}, "lastAppliedRevision": revision})
            if missing and not new_revision:
                log.debug(
                    "simulated kustomize-controller: %s re-applied %s",
                    describe_key(key),
                    ", ".join(describe_key(k) for k in missing),
                )
        server.set_internal(obj, "installing", None)
        server.set_internal(obj, "attempt", attempt)
        server.set_internal(obj, "attemptedAt", server.now)
        if new_revision:
            server.set_internal(obj, "progressSince", server.now)
    obj = server.get(key)
    if obj is None:
        return
    record = server.internal(obj)
    fields = {"lastAttemptedRevision": revision}
    if record.get("failure"):
        reason, message = record["failure"]
        _report(server, key, "False", reason, message, final=True, fields=fields)
        return
    if not _settled(server, obj, settings):
        _report(server, key, "Unknown", "Progressing", "Reconciliation in progress", final=False, fields=fields)
        return
    waiting = _unhealthy(server, obj)
    if waiting:
        elapsed = server.now - float(record.get("progressSince", server.now))
        if elapsed > timeout:
            _report(
                server,
                key,
                "False",
                "HealthCheckFailed",
                f"health check failed after {_format_duration(elapsed)}: timeout waiting for: [{', '.join(waiting)}]",
                final=True,
                fields=fields,
            )
        else:
            _report(
                server,
                key,
                "Unknown",
                "Progressing",
                f"Running health checks for revision {revision} with a timeout of {_format_duration(timeout)}",
                final=False,
                fields=fields,
            )
        return
    _report(server, key, "True", "ReconciliationSucceeded", f"Applied revision: {revision}", final=True, fields=fields)


# -- helm-controller -----------------------------------------------------------------------


def chart_of(release: Mapping[str, Any]) -> str:
    """The chart a HelmRelease installs (``spec.chart.spec.chart`` or ``spec.chartRef.name``)."""
    spec = release.get("spec") or {}
    chart_spec = (spec.get("chart") or {}).get("spec") or {}
    return str(chart_spec.get("chart") or (spec.get("chartRef") or {}).get("name") or "")


def _check_chart_version(version: str, helm_chart: str) -> None:
    improper = _Failure(
        "ArtifactFailed",
        f"HelmChart '{helm_chart}' is not ready: invalid chart reference: failed to get chart version for remote "
        f"reference: improper constraint: {version}",
    )
    if "${" in version:
        raise improper
    try:
        from sandbox import versions
    except ImportError:  # pragma: no cover - sandbox.versions ships with the product
        return
    try:
        versions.parse_constraint(version)
    except InvalidInputError:
        raise improper from None


def _uninstall(server: SimulatedApiServer, release: Mapping[str, Any]) -> None:
    for text in server.internal(release).get("rendered") or []:
        key = str_to_key(text)
        obj = server.get(key)
        if obj is not None and _owned_by(obj, HELM_NAME_LABEL, HELM_NAMESPACE_LABEL, release):
            server.delete(key)


def _reconcile_helmrelease(server: SimulatedApiServer, settings: SimulationSettings, key: Key) -> None:
    obj = server.get(key)
    if obj is None:
        return
    spec = obj.get("spec") or {}
    if deleting(obj):
        if FLUX_FINALIZER in (obj["metadata"].get("finalizers") or []):
            # helm-controller skips the uninstall of a suspended release: its objects stay.
            if not spec.get("suspend"):
                _uninstall(server, obj)
            server.remove_finalizer(key, FLUX_FINALIZER)
        return
    obj = _ensure_finalizer(server, key)
    if obj is None or spec.get("suspend"):
        return
    namespace, name = key[2], key[3]
    helm_chart = f"{namespace}/{namespace}-{name}"
    chart = chart_of(obj)
    chart_spec = (spec.get("chart") or {}).get("spec") or {}
    version = str(chart_spec.get("version") or "*")
    target_namespace = str(spec.get("targetNamespace") or namespace)
    release = release_name(name, spec.get("targetNamespace"), spec.get("releaseName"))
    try:
        _check_dependencies(server, obj, HELM_GROUP, "HelmRelease")
        if spec.get("chartRef"):
            source_ref = spec["chartRef"]
            source_kind = str(source_ref.get("kind", "OCIRepository"))
        else:
            source_ref = chart_spec.get("sourceRef") or {}
            source_kind = str(source_ref.get("kind", "HelmRepository"))
            if not chart:
                raise _Failure("InvalidChartReference", "spec.chart.spec.chart is required")
            _check_chart_version(version, helm_chart)
        source_namespace = str(source_ref.get("namespace") or namespace)
        source_name = str(source_ref.get("name", ""))
        source = server.get((SOURCE_GROUP, source_kind, source_namespace, source_name))
        if source is None:
            raise _Failure(
                "ArtifactFailed",
                f"HelmChart '{helm_chart}' is not ready: failed to get source: "
                f'{source_kind.lower()}s.{SOURCE_GROUP} "{source_name}" not found',
            )
        if not flux_ready(source):
            raise _Failure(
                "ArtifactFailed",
                f"HelmChart '{helm_chart}' is not ready: source '{source_kind}/{source_namespace}/{source_name}' "
                "is not ready",
            )
    except _Failure as failure:
        _report(server, key, "False", failure.reason, failure.message, final=True)
        return
    record = server.internal(obj)
    attempt = f"{obj['metadata'].get('generation')}|{chart}|{version}|{_requested_at(obj)}"
    retry_due = server.now - float(record.get("attemptedAt", 0.0)) >= RETRY_SECONDS
    history = list((obj.get("status") or {}).get("history") or [])
    action = "upgrade" if history else "install"
    if attempt != record.get("attempt") or (record.get("failure") and retry_due):
        values = spec.get("values") or {}
        rendered = render_chart(chart, version, release, target_namespace, values)
        owner_labels = {HELM_NAME_LABEL: name, HELM_NAMESPACE_LABEL: namespace}
        for manifest in rendered:
            manifest["metadata"]["labels"] = {**manifest["metadata"]["labels"], **owner_labels}
        try:
            for manifest in rendered:
                try:
                    server.apply(manifest, dry_run=True)
                except (SimulatedApiError, InvalidInputError) as exc:
                    raise _Failure(
                        f"{action.capitalize()}Failed",
                        f"Helm {action} failed for release {target_namespace}/{release} with chart "
                        f"{chart}@{version}: {_describe_manifest(manifest)}: {exc}",
                    ) from None
        except _Failure as failure:
            server.set_internal(obj, "failure", [failure.reason, failure.message])
        else:
            new_keys = [key_to_str(object_key_of_manifest(server, m)) for m in rendered]
            for manifest in rendered:
                server.apply(manifest)
            for text in record.get("rendered") or []:
                if text not in new_keys:
                    server.delete(str_to_key(text))
            version_number = (int(history[0].get("version", 0)) if history else 0) + 1
            for entry in history:
                entry["status"] = "superseded"
            snapshot = {
                "name": release,
                "namespace": target_namespace,
                "version": version_number,
                "status": "deployed",
                "chartName": chart,
                "chartVersion": version,
                "configDigest": artifact_digest(json.dumps(values, sort_keys=True)),
                "firstDeployed": history[-1]["firstDeployed"] if history else timestamp(server.now),
                "lastDeployed": timestamp(server.now),
            }
            server.set_internal(obj, "rendered", new_keys)
            server.set_internal(obj, "failure", None)
            server.set_internal(obj, "action", action)
            server.set_internal(obj, "progressSince", server.now)
            _write_fields(server, key, {"history": [snapshot, *history][:5], "lastAttemptedReleaseAction": action})
        server.set_internal(obj, "attempt", attempt)
        server.set_internal(obj, "attemptedAt", server.now)
    obj = server.get(key)
    if obj is None:
        return
    record = server.internal(obj)
    fields = {
        "lastAttemptedRevision": version,
        "lastAttemptedGeneration": obj["metadata"].get("generation"),
        "helmChart": helm_chart,
        "storageNamespace": namespace,
    }
    if record.get("failure"):
        reason, message = record["failure"]
        _report(server, key, "False", reason, message, final=True, fields=fields)
        return
    current_action = str(record.get("action", "install"))
    if not _settled(server, obj, settings):
        _report(
            server,
            key,
            "Unknown",
            "Progressing",
            f"Running '{current_action}' action with timeout of 5m0s",
            final=False,
            fields=fields,
        )
        return
    latest = ((obj.get("status") or {}).get("history") or [{}])[0]
    _report(
        server,
        key,
        "True",
        f"{current_action.capitalize()}Succeeded",
        f"Helm {current_action} succeeded for release {target_namespace}/{release}.v{latest.get('version', 1)} "
        f"with chart {chart}@{version}",
        final=True,
        fields=fields,
    )


# -- custom-object controllers ------------------------------------------------------------


def external_record_path(settings: SimulationSettings, kind: str, namespace: str, name: str) -> Path:
    """Where an external resource is recorded."""
    return settings.external_dir / f"{kind}-{namespace or 'cluster'}-{name}.json"


def _active_charts(server: SimulatedApiServer) -> set[str]:
    return {
        chart_of(release)
        for release in server.select(HELM_GROUP, "HelmRelease")
        if not deleting(release) and flux_ready(release)
    }


def _run_custom_controllers(server: SimulatedApiServer, settings: SimulationSettings) -> None:
    active = _active_charts(server)
    _run_provisioners(server, settings, active)
    for controller in settings.controller_catalog:
        if controller.chart not in active:
            continue  # not installed: its finalizers stay wherever they are
        for handled in controller.reconciles:
            for obj in server.select(handled.group, handled.kind):
                if not handled.matches(obj.get("spec") or {}):
                    continue
                key = object_key(obj)
                meta = obj["metadata"]
                record = external_record_path(
                    settings, handled.external_resource_kind, meta.get("namespace", ""), meta["name"]
                )
                if deleting(obj):
                    if handled.finalizer in (meta.get("finalizers") or []):
                        record.unlink(missing_ok=True)
                        log.debug(
                            "simulated %s: deleted %s %s", controller.chart, handled.external_resource_kind, record.stem
                        )
                        server.remove_finalizer(key, handled.finalizer)
                    continue
                server.add_finalizer(key, handled.finalizer)
                if not record.exists():
                    settings.external_dir.mkdir(parents=True, exist_ok=True)
                    record.write_text(
                        json.dumps(
                            {
                                "simulated": True,
                                "kind": handled.external_resource_kind,
                                "controller": controller.chart,
                                "object": {
                                    "apiVersion": obj["apiVersion"],
                                    "kind": obj["kind"],
                                    "namespace": meta.get("namespace"),
                                    "name": meta["name"],
                                    "uid": meta.get("uid"),
                                },
                                "createdAt": timestamp(server.now),
                            },
                            indent=2,
                        )
                        + "\n",
                        encoding="utf-8",
                    )
                    log.debug(
                        "simulated %s: created %s %s", controller.chart, handled.external_resource_kind, record.stem
                    )
                if handled.status is not None:
                    fresh = server.get(key)
                    if fresh is not None:
                        server.write_status(key, {**(fresh.get("status") or {}), **handled.status(fresh)})


def _provisioner_classes(server: SimulatedApiServer, provisioner: VolumeProvisioner) -> dict[str, str]:
    """Reclaim policy by StorageClass name, for the classes ``provisioner`` provisions."""
    classes = {name: "Delete" for name in provisioner.storage_classes}
    for storage_class in server.select("storage.k8s.io", "StorageClass"):
        if storage_class.get("provisioner") == provisioner.driver or storage_class["metadata"]["name"] in classes:
            classes[storage_class["metadata"]["name"]] = str(storage_class.get("reclaimPolicy") or "Delete")
    return classes


def _volume_record(settings: SimulationSettings, provisioner: VolumeProvisioner, claim_ref: Mapping[str, Any]) -> Path:
    # Named after the claim, as the CSI driver tags the cloud volume with it
    # (kubernetes.io/created-for/pvc/namespace and .../name).
    return external_record_path(
        settings, provisioner.external_resource_kind, str(claim_ref.get("namespace", "")), str(claim_ref["name"])
    )


def _provision(
    server: SimulatedApiServer,
    settings: SimulationSettings,
    controller: SimulatedController,
    provisioner: VolumeProvisioner,
    claim: Mapping[str, Any],
    reclaim_policy: str,
) -> None:
    meta = claim["metadata"]
    spec = claim.get("spec") or {}
    name = f"pvc-{meta['uid']}"
    if server.get(("", "PersistentVolume", "", name)) is not None:
        return
    claim_ref = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
    }
    record = _volume_record(settings, provisioner, claim_ref)
    handle = f"vol-{artifact_digest(str(meta['uid']))[7:24]}"
    settings.external_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(
        json.dumps(
            {
                "simulated": True,
                "kind": provisioner.external_resource_kind,
                "controller": controller.chart,
                "volumeHandle": handle,
                "persistentVolume": name,
                "object": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", **claim_ref},
                "createdAt": timestamp(server.now),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    server.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {PROVISIONED_BY_ANNOTATION: provisioner.driver},
                "finalizers": [PROVISIONER_FINALIZER],
            },
            "spec": {
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "capacity": {"storage": (spec.get("resources") or {}).get("requests", {}).get("storage", "1Gi")},
                "claimRef": claim_ref,
                "csi": {"driver": provisioner.driver, "volumeHandle": handle, "fsType": "ext4"},
                "persistentVolumeReclaimPolicy": reclaim_policy,
                "storageClassName": str(spec.get("storageClassName", "")),
                "volumeMode": "Filesystem",
            },
        }
    )
    log.debug("simulated %s: provisioned %s for %s/%s", controller.chart, name, meta["namespace"], meta["name"])


def _reclaim(
    server: SimulatedApiServer,
    settings: SimulationSettings,
    controller: SimulatedController,
    provisioner: VolumeProvisioner,
    volume: Mapping[str, Any],
) -> None:
    """Delete the cloud volume of a released PV with reclaim policy Delete, then the PV."""
    spec = volume.get("spec") or {}
    if spec.get("persistentVolumeReclaimPolicy") != "Delete":
        return  # Retain: kept by design, with its cloud volume
    if (volume.get("status") or {}).get("phase") != "Released":
        return  # still bound to its claim (even when the PV itself was deleted)
    since = float(server.internal(volume).get("releasedAt", server.now))
    if server.now < since + settings.volume_deletion_seconds:
        return  # the cloud volume is still being detached and deleted
    claim_ref = spec.get("claimRef") or {}
    if claim_ref.get("name"):
        _volume_record(settings, provisioner, claim_ref).unlink(missing_ok=True)
    key = object_key(volume)
    server.delete(key)
    server.remove_finalizer(key, PROVISIONER_FINALIZER)
    log.debug("simulated %s: deleted the volume of %s", controller.chart, volume["metadata"]["name"])


def _run_provisioners(server: SimulatedApiServer, settings: SimulationSettings, active: set[str]) -> None:
    for controller in settings.controller_catalog:
        if controller.chart not in active:
            continue  # not installed: released PVs keep its finalizer, their cloud volumes stay
        for provisioner in controller.provisions:
            classes = _provisioner_classes(server, provisioner)
            for claim in server.select("", "PersistentVolumeClaim"):
                class_name = str((claim.get("spec") or {}).get("storageClassName", ""))
                if class_name in classes and not deleting(claim):
                    _provision(server, settings, controller, provisioner, claim, classes[class_name])
            for volume in server.select("", "PersistentVolume"):
                if ((volume.get("spec") or {}).get("csi") or {}).get("driver") == provisioner.driver:
                    _reclaim(server, settings, controller, provisioner, volume)


# -- the tick ----------------------------------------------------------------------------------


def _round(server: SimulatedApiServer, settings: SimulationSettings) -> None:
    _namespace_controller(server)
    _crd_controller(server)
    _pvc_protection_controller(server)
    _pv_controller(server)
    if _flux_running(server, SOURCE_CONTROLLER):
        for kind in ("GitRepository", "OCIRepository", "HelmRepository"):
            for obj in server.select(SOURCE_GROUP, kind):
                _reconcile_source(server, settings, object_key(obj))
    if _flux_running(server, KUSTOMIZE_CONTROLLER):
        for obj in server.select(KUSTOMIZE_GROUP, "Kustomization"):
            _reconcile_kustomization(server, settings, object_key(obj))
    if _flux_running(server, HELM_CONTROLLER):
        for obj in server.select(HELM_GROUP, "HelmRelease"):
            _reconcile_helmrelease(server, settings, object_key(obj))
    _run_custom_controllers(server, settings)


def simulation_tick(server: SimulatedApiServer, settings: SimulationSettings, max_rounds: int = MAX_ROUNDS) -> int:
    """Run every simulated controller until a round changes nothing (at most ``max_rounds``).

    Returns:
        The number of rounds run.
    """
    for rounds in range(1, max_rounds + 1):
        before = server.resource_version
        _round(server, settings)
        if server.resource_version == before:
            return rounds
    log.warning("simulated cluster at %s: controllers still busy after %d rounds", settings.simulation_dir, max_rounds)
    return max_rounds


__all__ = [
    "DEFAULT_CONTROLLER_CATALOG",
    "FLUX_FINALIZER",
    "PROVISIONER_FINALIZER",
    "ReconciledKind",
    "SimulatedController",
    "SimulationSettings",
    "VolumeProvisioner",
    "chart_of",
    "deletes_inventory",
    "flux_ready",
    "inventory_keys",
    "simulation_tick",
]
