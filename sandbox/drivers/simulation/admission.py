"""What the simulated API server does to an object it writes, as admission and the API's own rules do.

Schema checks (a CRD's storage version, a GitRepository's URL), the defaults
and finalizers a real cluster adds on create, a Secret's ``stringData`` folded
into ``data``, what ``metadata.generation`` tracks, when a deleted object may
go, and a CRD's status conditions.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from sandbox.drivers.simulation.apimachinery import (
    Key,
    Manifest,
    SimulatedApiError,
    split_api_version,
)
from sandbox.drivers.simulation.builtin_kinds import (
    CRD_GROUP,
    CRD_KIND,
)

CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
NAMESPACE_FINALIZER = "kubernetes"

#: Added on create by the StorageObjectInUseProtection admission plugin; the
#: pvc-protection / pv-protection controllers remove them once nothing uses the object.
PVC_PROTECTION_FINALIZER = "kubernetes.io/pvc-protection"
PV_PROTECTION_FINALIZER = "kubernetes.io/pv-protection"


def _is_namespace(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "Namespace" and obj.get("apiVersion") == "v1"


def has_finalizers(obj: Mapping[str, Any]) -> bool:
    """Whether anything still holds the object (a namespace's ``spec.finalizers`` count too)."""
    if (obj.get("metadata") or {}).get("finalizers"):
        return True
    return _is_namespace(obj) and bool((obj.get("spec") or {}).get("finalizers"))


def generation_body(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the generation tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def fold_string_data(body: dict[str, Any]) -> dict[str, Any]:
    """Fold a Secret's ``stringData`` into base64 ``data``, as the API server does on write."""
    string_data = body.pop("stringData", None)
    if string_data:
        data = dict(body.get("data") or {})
        for name, value in string_data.items():
            data[str(name)] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
        body["data"] = data
    if "type" not in body:
        body["type"] = "Opaque"
    return body


#: Flux's GitRepository CRD: ``spec.url`` must match this pattern (its OpenAPI schema).
GIT_REPOSITORY_URL_PATTERN = r"^(http|https|ssh)://.*$"


def _validate_crd(name: str, body: Mapping[str, Any]) -> None:
    """The apiextensions validation the simulation enforces: exactly one storage version.

    Raises:
        SimulatedApiError: The CRD is invalid (a real API server answers 422).
    """
    spec = body.get("spec") if isinstance(body.get("spec"), Mapping) else {}
    versions = spec.get("versions") if isinstance(spec, Mapping) else None
    invalid = f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: spec.versions'
    if not isinstance(versions, list) or not versions:
        raise SimulatedApiError(f"{invalid}: Required value: must have exactly one version marked as storage version")
    storage = [str(v.get("name")) for v in versions if isinstance(v, Mapping) and v.get("storage") is True]
    if len(storage) != 1:
        raise SimulatedApiError(
            f'{invalid}: Invalid value: "{",".join(storage)}": must have exactly one version marked as storage version'
        )


def validate_schema(key: Key, body: Mapping[str, Any]) -> None:
    """The schema rules the simulation enforces: a CRD's versions, a GitRepository's ``spec.url``.

    As Flux's CRD requires, the URL must be http, https or ssh -- except, in
    the simulation only, a ``file://`` URL or an absolute path: the simulated
    source-controller reads such a repository from disk (the demo's local
    remote), which a real cluster cannot. scp-style addresses and relative
    paths are refused as a real API server refuses them.

    Raises:
        SimulatedApiError: The object is invalid (a real API server answers 422).
    """
    if key[:2] == (CRD_GROUP, CRD_KIND):
        _validate_crd(key[3], body)
        return
    if key[:2] != ("source.toolkit.fluxcd.io", "GitRepository"):
        return
    url = (body.get("spec") or {}).get("url") if isinstance(body.get("spec"), Mapping) else None
    if not isinstance(url, str):
        return
    # Kubernetes' ``$`` is the end of the text; Python's ``match`` would also accept a final newline.
    exact = GIT_REPOSITORY_URL_PATTERN.removeprefix("^").removesuffix("$")
    if re.fullmatch(exact, url) or url.startswith("file://") or url.startswith("/"):
        return
    raise SimulatedApiError(
        f'GitRepository.source.toolkit.fluxcd.io "{key[3]}" is invalid: spec.url: Invalid value: "{url}": '
        f"spec.url in body should match '{GIT_REPOSITORY_URL_PATTERN}'"
    )


def crd_condition(crd: Mapping[str, Any], condition: str) -> str | None:
    """The status (``"True"``, ``"False"``, ...) of a CRD's condition, or ``None`` when it has none."""
    for entry in (crd.get("status") or {}).get("conditions") or []:
        if entry.get("type") == condition:
            return str(entry.get("status"))
    return None


def crd_status(*, established: bool, conflict: str | None = None) -> dict[str, Any]:
    """A CRD's status as the apiextensions controllers write it."""
    if conflict:
        names = {"type": "NamesAccepted", "status": "False", "reason": "NameConflict", "message": conflict}
    else:
        names = {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"}
    if established:
        state = {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
        }
    else:
        state = {"type": "Established", "status": "False", "reason": "Installing", "message": "the CRD is installing"}
    return {"conditions": [names, state]}


def defaults_on_create(obj: Manifest) -> None:
    """Fields a real API server fills in on create."""
    group, _ = split_api_version(obj["apiVersion"])
    kind = obj["kind"]
    if group == "" and kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", [NAMESPACE_FINALIZER])
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif group == CRD_GROUP and kind == CRD_KIND:
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if CRD_CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CRD_CLEANUP_FINALIZER)
        obj["status"] = crd_status(established=True)
    elif group == "" and kind == "Service":
        obj.setdefault("spec", {}).setdefault("type", "ClusterIP")
    elif group == "" and kind == "PersistentVolumeClaim":
        _add_finalizer_on_create(obj, PVC_PROTECTION_FINALIZER)
        obj["status"] = {"phase": "Pending"}
    elif group == "" and kind == "PersistentVolume":
        _add_finalizer_on_create(obj, PV_PROTECTION_FINALIZER)
        # The API server's default for a PV created without one (dynamic
        # provisioners set it from the StorageClass, usually Delete).
        obj.setdefault("spec", {}).setdefault("persistentVolumeReclaimPolicy", "Retain")
        obj["status"] = {"phase": "Pending"}


def _add_finalizer_on_create(obj: Manifest, finalizer: str) -> None:
    finalizers = obj["metadata"].setdefault("finalizers", [])
    if finalizer not in finalizers:
        finalizers.append(finalizer)
