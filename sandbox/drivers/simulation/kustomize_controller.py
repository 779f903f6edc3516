"""The simulated kustomize-controller: Kustomization.

It builds the source artifact's path (:mod:`sandbox.drivers.simulation.kustomize`)
and applies CRDs and Namespaces first; as Flux's staged apply does, it waits up
to the Kustomization's timeout for those CRDs to be Established before the
rest. It records the inventory, prunes what left it (``spec.prune``), runs the
health checks (``wait``, ``healthChecks``) and, when a Kustomization is deleted,
deletes what it applied as its ``deletionPolicy`` says.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox.drivers.cluster import parse_inventory_id
from sandbox.drivers.simulation.admission import crd_condition
from sandbox.drivers.simulation.apimachinery import (
    Key,
    SimulatedApiError,
    describe_key,
    key_of,
    object_key,
    split_api_version,
)
from sandbox.drivers.simulation.apiserver import SimulatedApiServer
from sandbox.drivers.simulation.builtin_kinds import CRD_GROUP, CRD_KIND, WORKLOAD_KINDS, pods_schedulable
from sandbox.drivers.simulation.kustomize import BuildError, build, check_variable_names
from sandbox.drivers.simulation.reconciling import (
    FLUX_FINALIZER,
    HELM_GROUP,
    KUSTOMIZE_GROUP,
    RETRY_SECONDS,
    SOURCE_GROUP,
    ReconcileFailure,
    check_dependencies,
    deleting,
    describe_manifest,
    ensure_flux_finalizer,
    flux_ready,
    object_key_of_manifest,
    owned_by,
    ready_condition,
    report_ready,
    requested_at,
    settled,
    write_status_fields,
)
from sandbox.drivers.simulation.settings import SimulationSettings
from sandbox.drivers.simulation.source_controller import source_artifact
from sandbox.errors import InvalidInputError

log = logging.getLogger(__name__)


KS_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
KS_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
PRUNE_ANNOTATION = "kustomize.toolkit.fluxcd.io/prune"
RECONCILE_ANNOTATION = "kustomize.toolkit.fluxcd.io/reconcile"


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


def inventory_keys(obj: Mapping[str, Any]) -> list[tuple[Key, str]]:
    """``(key, version)`` of each entry of a Kustomization's ``status.inventory``."""
    found = []
    for entry in ((obj.get("status") or {}).get("inventory") or {}).get("entries") or []:
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


def _garbage_collect(server: SimulatedApiServer, owner: Mapping[str, Any], keys: list[Key]) -> list[str]:
    """Delete the objects a Kustomization applied (those still labelled as its own); what it deleted."""
    deleted = []
    for key in reversed(keys):
        obj = server.get(key)
        if obj is None or not owned_by(obj, KS_NAME_LABEL, KS_NAMESPACE_LABEL, owner):
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
        ReconcileFailure: BuildFailed or ReconciliationFailed, with Flux's kind of message.
        _CrdsInstalling: The CRDs it applied are not Established yet; nothing after them was applied.
    """
    spec = obj.get("spec") or {}
    meta = obj["metadata"]
    unsupported = [name for name in _UNSUPPORTED_KUSTOMIZATION_FIELDS if spec.get(name)]
    if unsupported:
        raise ReconcileFailure(
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
        raise ReconcileFailure(exc.reason, str(exc)) from None
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
                where = describe_manifest(manifest)
                raise ReconcileFailure("ReconciliationFailed", f"{where} dry-run failed: {exc}") from None
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
        elif (key[0], key[1]) in WORKLOAD_KINDS and not pods_schedulable(target):
            # Its pods stay Pending: kstatus reports the workload InProgress (no replica available).
            waiting.append(f"{describe_key(key)} status: 'InProgress'")
    return waiting


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
                and owned_by(target, KS_NAME_LABEL, KS_NAMESPACE_LABEL, obj)
            ]
            if terminating and server.now < float(record["finalizingSince"]) + timeout:
                return
    server.remove_finalizer(key, FLUX_FINALIZER)


def reconcile_kustomization(server: SimulatedApiServer, settings: SimulationSettings, key: Key) -> None:
    obj = server.get(key)
    if obj is None:
        return
    spec = obj.get("spec") or {}
    if deleting(obj):
        if FLUX_FINALIZER in (obj["metadata"].get("finalizers") or []):
            _finalize_kustomization(server, obj)
        return
    obj = ensure_flux_finalizer(server, key)
    if obj is None or spec.get("suspend"):
        return
    record = server.internal(obj)
    try:
        check_dependencies(server, obj, KUSTOMIZE_GROUP, "Kustomization")
        source_ref = spec.get("sourceRef") or {}
        source_kind = str(source_ref.get("kind", ""))
        source_namespace = str(source_ref.get("namespace") or key[2])
        source_name = str(source_ref.get("name", ""))
        if source_kind not in ("GitRepository", "OCIRepository"):
            raise ReconcileFailure(
                "ArtifactFailed",
                f"source kind {source_kind!r} is not supported by the simulated "
                "kustomize-controller (GitRepository or OCIRepository)",
            )
        source = server.get((SOURCE_GROUP, source_kind, source_namespace, source_name))
        if source is None:
            raise ReconcileFailure(
                "ArtifactFailed", f"Source '{source_kind}/{source_namespace}/{source_name}' not found"
            )
        artifact = source_artifact(server, source)
        if artifact is None:
            raise ReconcileFailure("ArtifactFailed", "Source artifact not found, retrying in 30s")
    except ReconcileFailure as failure:
        report_ready(server, key, "False", failure.reason, failure.message, final=True)
        return
    revision, artifact_dir = artifact
    attempt = f"{obj['metadata'].get('generation')}|{revision}|{requested_at(obj)}"
    missing = [k for k, _ in inventory_keys(obj) if server.get(k) is None]
    retry_due = server.now - float(record.get("attemptedAt", 0.0)) >= RETRY_SECONDS
    heal = bool(missing) and (not record.get("failure") or retry_due)
    timeout = _kustomization_timeout(spec)

    def report_installing(crds: _CrdsInstalling) -> None:
        message = crds.progress_message()
        report_ready(
            server, key, "Unknown", "Progressing", message, final=False, fields={"lastAttemptedRevision": revision}
        )

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
        except ReconcileFailure as failure:
            server.set_internal(obj, "failure", [failure.reason, failure.message])
        else:
            server.set_internal(obj, "failure", None)
            write_status_fields(server, key, {"inventory": {"entries": entries}, "lastAppliedRevision": revision})
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
        report_ready(server, key, "False", reason, message, final=True, fields=fields)
        return
    if not settled(server, obj, settings):
        report_ready(server, key, "Unknown", "Progressing", "Reconciliation in progress", final=False, fields=fields)
        return
    waiting = _unhealthy(server, obj)
    if waiting:
        elapsed = server.now - float(record.get("progressSince", server.now))
        if elapsed > timeout:
            report_ready(
                server,
                key,
                "False",
                "HealthCheckFailed",
                f"health check failed after {_format_duration(elapsed)}: timeout waiting for: [{', '.join(waiting)}]",
                final=True,
                fields=fields,
            )
        else:
            report_ready(
                server,
                key,
                "Unknown",
                "Progressing",
                f"Running health checks for revision {revision} with a timeout of {_format_duration(timeout)}",
                final=False,
                fields=fields,
            )
        return
    report_ready(
        server, key, "True", "ReconciliationSucceeded", f"Applied revision: {revision}", final=True, fields=fields
    )
