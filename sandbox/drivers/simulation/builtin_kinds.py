"""The kinds a Kubernetes API server serves without a CustomResourceDefinition, and the API versions it removed.

Core (``v1``) and built-in groups with their scope, and a small table of API
versions removed from Kubernetes; the static scanner's full data
(:mod:`sandbox.deprecations`) is asked first.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sandbox.drivers.simulation.apimachinery import (
    parse_minor_version,
)
from sandbox.errors import InvalidInputError

CRD_GROUP = "apiextensions.k8s.io"
CRD_KIND = "CustomResourceDefinition"

#: API versions removed from Kubernetes: ``(apiVersion, kind) -> (removed in, replacement)``.
#: A small built-in table of the removals fleets still trip over, used when the
#: static scanner's full data (``sandbox.deprecations``) is unavailable or silent.
REMOVED_APIS: dict[tuple[str, str], tuple[str, str]] = {
    ("extensions/v1beta1", "Deployment"): ("1.16", "apps/v1"),
    ("extensions/v1beta1", "DaemonSet"): ("1.16", "apps/v1"),
    ("extensions/v1beta1", "ReplicaSet"): ("1.16", "apps/v1"),
    ("extensions/v1beta1", "NetworkPolicy"): ("1.16", "networking.k8s.io/v1"),
    ("extensions/v1beta1", "PodSecurityPolicy"): ("1.16", "policy/v1beta1"),
    ("extensions/v1beta1", "Ingress"): ("1.22", "networking.k8s.io/v1"),
    ("apps/v1beta1", "Deployment"): ("1.16", "apps/v1"),
    ("apps/v1beta1", "StatefulSet"): ("1.16", "apps/v1"),
    ("apps/v1beta2", "Deployment"): ("1.16", "apps/v1"),
    ("apps/v1beta2", "StatefulSet"): ("1.16", "apps/v1"),
    ("apps/v1beta2", "DaemonSet"): ("1.16", "apps/v1"),
    ("apps/v1beta2", "ReplicaSet"): ("1.16", "apps/v1"),
    ("networking.k8s.io/v1beta1", "Ingress"): ("1.22", "networking.k8s.io/v1"),
    ("networking.k8s.io/v1beta1", "IngressClass"): ("1.22", "networking.k8s.io/v1"),
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"): ("1.22", "apiextensions.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRole"): ("1.22", "rbac.authorization.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding"): ("1.22", "rbac.authorization.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1beta1", "Role"): ("1.22", "rbac.authorization.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1beta1", "RoleBinding"): ("1.22", "rbac.authorization.k8s.io/v1"),
    ("batch/v1beta1", "CronJob"): ("1.25", "batch/v1"),
    ("policy/v1beta1", "PodSecurityPolicy"): ("1.25", ""),
    ("policy/v1beta1", "PodDisruptionBudget"): ("1.25", "policy/v1"),
    ("discovery.k8s.io/v1beta1", "EndpointSlice"): ("1.25", "discovery.k8s.io/v1"),
    ("events.k8s.io/v1beta1", "Event"): ("1.25", "events.k8s.io/v1"),
    ("autoscaling/v2beta1", "HorizontalPodAutoscaler"): ("1.25", "autoscaling/v2"),
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler"): ("1.26", "autoscaling/v2"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema"): ("1.26", "flowcontrol.apiserver.k8s.io/v1"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "PriorityLevelConfiguration"): (
        "1.26",
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    ("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema"): ("1.29", "flowcontrol.apiserver.k8s.io/v1"),
    ("flowcontrol.apiserver.k8s.io/v1beta2", "PriorityLevelConfiguration"): (
        "1.29",
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    ("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema"): ("1.32", "flowcontrol.apiserver.k8s.io/v1"),
    ("flowcontrol.apiserver.k8s.io/v1beta3", "PriorityLevelConfiguration"): (
        "1.32",
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    ("storage.k8s.io/v1beta1", "CSIStorageCapacity"): ("1.27", "storage.k8s.io/v1"),
}


CORE_NAMESPACED_KINDS = frozenset(
    {
        "ConfigMap",
        "Endpoints",
        "Event",
        "LimitRange",
        "PersistentVolumeClaim",
        "Pod",
        "PodTemplate",
        "ReplicationController",
        "ResourceQuota",
        "Secret",
        "Service",
        "ServiceAccount",
    }
)


CORE_CLUSTER_KINDS = frozenset({"Namespace", "Node", "PersistentVolume", "ComponentStatus"})


BUILTIN_GROUPS = frozenset(
    {
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "extensions",
        "flowcontrol.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)


BUILTIN_CLUSTER_SCOPED = frozenset(
    {
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("extensions", "PodSecurityPolicy"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("networking.k8s.io", "IngressClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("policy", "PodSecurityPolicy"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "VolumeAttachment"),
    }
)


@functools.lru_cache(maxsize=512)
def _removal(api_version: str, kind: str) -> tuple[str, str] | None:
    """``(removed in, replacement)`` of a Kubernetes API version, or None when it is not removed.

    The static scanner's data (``sandbox.deprecations``) is the full table and is
    asked first; the small built-in :data:`REMOVED_APIS` answers when it is not
    available or does not know the API. Flux's own API versions are left to the
    CRDs (``spec.versions``): their removal depends on the Flux release, not on
    the Kubernetes version.
    """
    try:
        from sandbox import deprecations

        entry = deprecations.load_data().lookup(api_version, kind)
    except (ImportError, InvalidInputError):
        entry = None
    if entry is not None and entry.component == "kubernetes":
        return (entry.removed_in, entry.replacement or "") if entry.removed_in else None
    return REMOVED_APIS.get((api_version, kind))


def removed_api(api_version: str, kind: str, kubernetes_version: tuple[int, int]) -> str | None:
    """The refusal message when ``api_version``/``kind`` is removed at ``kubernetes_version``, else None."""
    entry = _removal(api_version, kind)
    if entry is None:
        return None
    removed_in, replacement = entry
    if kubernetes_version < parse_minor_version(removed_in):
        return None
    advice = f"; use {replacement}" if replacement else "; it has no replacement"
    return f'no matches for kind "{kind}" in version "{api_version}" (removed in Kubernetes {removed_in}{advice})'


#: The labels of the simulated cluster's one node (a local cluster's kwok node carries these too). There is no
#: scheduler, kubelet or pod in the simulation; a workload's pods are taken as scheduled and ready at once unless
#: their ``nodeSelector`` asks for a label this node lacks.
SIMULATED_NODE_LABELS: dict[str, str] = {
    "kubernetes.io/os": "linux",
    "kubernetes.io/arch": "amd64",
    "kubernetes.io/hostname": "simulated-node-0",
}

#: Workload kinds whose health (kstatus, as Flux's health checks read it) depends on their pods being scheduled.
WORKLOAD_KINDS = frozenset({("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet")})


def pods_schedulable(workload: Mapping[str, Any]) -> bool:
    """Whether the simulated node can run a workload's pods (its pod template's ``nodeSelector`` matches).

    A Deployment whose pods cannot be scheduled never becomes available: Flux's health check reports it
    ``InProgress`` until the Kustomization's timeout (proven on a real cluster by
    tests/conformance/test_simulated_vs_real.py::test_readiness_names_a_deployment_that_never_becomes_available).
    """
    template = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    selector = template.get("nodeSelector") or {}
    return all(SIMULATED_NODE_LABELS.get(str(key)) == str(value) for key, value in selector.items())
