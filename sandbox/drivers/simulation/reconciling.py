"""What the simulated Flux controllers share: API groups, the finalizer, the Ready condition, failures.

Readiness: a Flux object reports ``Ready=Unknown`` (``Progressing``) until
``readiness_delay_seconds`` after its generation last changed (or after it
applied a new revision), then ``Ready=True`` or ``False`` with Flux's reasons
(:func:`settled`, :func:`report_ready`). An injected failure makes it report
``Ready=False`` with the injected reason and message instead.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sandbox.drivers.simulation.apimachinery import Key, Manifest, key_of, key_to_str, timestamp
from sandbox.drivers.simulation.apiserver import SimulatedApiServer
from sandbox.drivers.simulation.settings import SimulationSettings

FLUX_NAMESPACE = "flux-system"
FLUX_FINALIZER = "finalizers.fluxcd.io"
SOURCE_GROUP = "source.toolkit.fluxcd.io"
KUSTOMIZE_GROUP = "kustomize.toolkit.fluxcd.io"
HELM_GROUP = "helm.toolkit.fluxcd.io"
REQUESTED_AT_ANNOTATION = "reconcile.fluxcd.io/requestedAt"

#: How soon a failed reconciliation is retried.
RETRY_SECONDS = 1.0


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


def settled(server: SimulatedApiServer, obj: Mapping[str, Any], settings: SimulationSettings) -> bool:
    record = server.internal(obj)
    since = max(float(record.get("generationChangedAt", 0.0)), float(record.get("progressSince", 0.0)))
    return server.now >= since + settings.readiness_delay_seconds


def report_ready(
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


def write_status_fields(server: SimulatedApiServer, key: Key, fields: Mapping[str, Any]) -> None:
    """Merge fields into an object's status, leaving its conditions as they are."""
    obj = server.get(key)
    if obj is not None:
        server.write_status(key, {**copy.deepcopy(obj.get("status") or {}), **copy.deepcopy(dict(fields))})


def requested_at(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(REQUESTED_AT_ANNOTATION, ""))


def ensure_flux_finalizer(server: SimulatedApiServer, key: Key) -> Manifest | None:
    server.add_finalizer(key, FLUX_FINALIZER)
    return server.get(key)


class ReconcileFailure(Exception):
    """A reconciliation failure: the Ready reason and message to report."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def owned_by(obj: Mapping[str, Any], name_label: str, namespace_label: str, owner: Mapping[str, Any]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return (
        labels.get(name_label) == owner["metadata"]["name"]
        and labels.get(namespace_label) == owner["metadata"]["namespace"]
    )


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


def describe_manifest(manifest: Mapping[str, Any]) -> str:
    meta = manifest.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{manifest.get('kind')}/{where}{meta.get('name')}"


def check_dependencies(server: SimulatedApiServer, obj: Mapping[str, Any], group: str, kind: str) -> None:
    namespace = obj["metadata"]["namespace"]
    for dependency in (obj.get("spec") or {}).get("dependsOn") or []:
        dep_namespace = str(dependency.get("namespace") or namespace)
        dep_name = str(dependency.get("name", ""))
        if not flux_ready(server.get((group, kind, dep_namespace, dep_name))):
            raise ReconcileFailure("DependencyNotReady", f"dependency '{dep_namespace}/{dep_name}' is not ready")
