"""The controllers every cluster runs, as kube-controller-manager does (always, Flux or not).

The namespace controller empties a terminating namespace and then removes it;
the CRD controller deletes a deleted CRD's custom objects before the CRD goes;
the pvc-protection controller lets a deleted claim go once no Pod mounts it;
the PV controller binds a PersistentVolume to its claim and marks it
``Released`` once the claim is gone, and pv-protection lets a deleted PV go
once it is no longer Bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.drivers.simulation.admission import (
    CRD_CLEANUP_FINALIZER,
    PV_PROTECTION_FINALIZER,
    PVC_PROTECTION_FINALIZER,
)
from sandbox.drivers.simulation.apimachinery import Manifest, object_key
from sandbox.drivers.simulation.apiserver import SimulatedApiServer
from sandbox.drivers.simulation.builtin_kinds import CRD_GROUP, CRD_KIND
from sandbox.drivers.simulation.reconciling import deleting


def namespace_controller(server: SimulatedApiServer) -> None:
    for namespace in server.select("", "Namespace"):
        if not deleting(namespace):
            continue
        name = namespace["metadata"]["name"]
        content = server.in_namespace(name)
        for obj in content:
            server.delete(object_key(obj))
        if not server.in_namespace(name):
            server.finalize_namespace(("", "Namespace", "", name))


def crd_controller(server: SimulatedApiServer) -> None:
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


def pvc_protection_controller(server: SimulatedApiServer) -> None:
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


def pv_controller(server: SimulatedApiServer) -> None:
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
