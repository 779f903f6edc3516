"""Custom-object controllers: the ones a HelmRelease of their chart installs.

The catalog of them is in :mod:`sandbox.drivers.simulation.settings`. A
controller is active while such a release exists, is Ready and is not being
deleted. An active controller puts its finalizer on the objects it reconciles
and records the external resource it "creates" (a load balancer, a volume) as
``<simulation_dir>/external/<kind>-<namespace>-<name>.json``; when such an
object is deleted it deletes the record and drops the finalizer. With no
active controller the finalizer stays forever, and so does the record.

A CSI driver's chart (:class:`~sandbox.drivers.simulation.settings.VolumeProvisioner`)
provisions instead: for a claim of its StorageClass it records the cloud volume
and creates a PV ``pvc-<claim uid>`` holding :data:`PROVISIONER_FINALIZER`;
once the claim is gone and the PV ``Released`` with reclaim policy ``Delete``
it deletes the record and then the PV. Uninstalled first, it leaves the
released PV and the record behind -- a leaked volume.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox.drivers.simulation.apimachinery import object_key, timestamp
from sandbox.drivers.simulation.apiserver import SimulatedApiServer
from sandbox.drivers.simulation.helm_controller import chart_of
from sandbox.drivers.simulation.reconciling import HELM_GROUP, deleting, flux_ready
from sandbox.drivers.simulation.settings import SimulatedController, SimulationSettings, VolumeProvisioner
from sandbox.drivers.simulation.sources import (
    artifact_digest,
)

log = logging.getLogger(__name__)


#: The external-provisioner's finalizer on the PVs it provisioned: removed once the cloud volume is deleted.
PROVISIONER_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
PROVISIONED_BY_ANNOTATION = "pv.kubernetes.io/provisioned-by"


def external_record_path(settings: SimulationSettings, kind: str, namespace: str, name: str) -> Path:
    """Where an external resource is recorded."""
    return settings.external_dir / f"{kind}-{namespace or 'cluster'}-{name}.json"


def _active_charts(server: SimulatedApiServer) -> set[str]:
    return {
        chart_of(release)
        for release in server.select(HELM_GROUP, "HelmRelease")
        if not deleting(release) and flux_ready(release)
    }


def run_custom_controllers(server: SimulatedApiServer, settings: SimulationSettings) -> None:
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
