"""What a simulated cluster session runs with, and the catalog of controllers Helm charts install.

A custom-object controller (:class:`SimulatedController`) is installed by a
HelmRelease of its chart; :mod:`sandbox.drivers.simulation.custom_controllers`
runs it while that release is Ready. The default catalog holds the AWS load
balancer controller (Ingresses of class ``alb``, ``LoadBalancer`` Services) and
the EBS CSI driver (claims of StorageClass ``gp3``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.drivers.simulation.sources import (
    GitTools,
    artifact_digest,
)


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
    :data:`~sandbox.drivers.simulation.custom_controllers.PROVISIONER_FINALIZER`.
    Once the claim is gone the PV is ``Released``; with reclaim policy ``Delete``
    the provisioner deletes the cloud volume, then the PV. Only while it runs:
    with the driver uninstalled a released PV keeps its finalizer and the cloud
    volume leaks, as on a real cluster.

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
        oci_layouts: OCI repository URL (``oci://host/path``) -> the OCI image layout
            directory holding its artifacts (``drivers.registry.layout_dir``): an
            OCIRepository of such a URL reads the pushed artifact from there. Other
            URLs are served from ``oci_git_remote``'s tags.
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
    oci_layouts: Mapping[str, Path] = field(default_factory=dict)
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
