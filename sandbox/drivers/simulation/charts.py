"""The simulated chart catalog: what "installing" any Helm chart renders.

Charts are not downloaded (no network here); every chart renders the same
small set of objects from its values, enough for the objects that matter to a
teardown -- the ones controllers attach finalizers and external resources to:

* always a ``Deployment`` named after the release and a ``Service``
  (``values.service.type``, ``ClusterIP`` by default);
* ``values.ingress.enabled`` -> a ``networking.k8s.io/v1`` ``Ingress`` with
  ``spec.ingressClassName: values.ingress.className``;
* ``values.persistence.enabled`` -> a ``PersistentVolumeClaim`` with
  ``storageClassName: values.persistence.storageClass``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

Manifest = dict[str, Any]

#: Longest Helm release name.
MAX_RELEASE_NAME = 53


def release_name(name: str, target_namespace: str | None, release: str | None = None) -> str:
    """The Helm release name helm-controller uses: ``spec.releaseName`` or ``[targetNamespace-]name``.

    Names over 53 characters are shortened with a hash, as helm-controller does.
    """
    if release:
        return release
    composed = f"{target_namespace}-{name}" if target_namespace else name
    if len(composed) <= MAX_RELEASE_NAME:
        return composed
    digest = hashlib.sha256(composed.encode("utf-8")).hexdigest()[:12]
    return f"{composed[: MAX_RELEASE_NAME - 13]}-{digest}"


def _values(values: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = values.get(name)
    return section if isinstance(section, Mapping) else {}


def render_chart(
    chart: str,
    version: str,
    release: str,
    namespace: str,
    values: Mapping[str, Any],
) -> list[Manifest]:
    """The objects the simulated chart renders for a release.

    Args:
        chart: The chart's name.
        version: The chart version.
        release: The release name (objects are named after it).
        namespace: Where the release installs.
        values: The release's values.
    """
    labels = {
        "app.kubernetes.io/name": chart,
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"{chart}-{version}".replace("+", "_")[:63],
    }
    annotations = {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}
    selector = {"app.kubernetes.io/name": chart, "app.kubernetes.io/instance": release}

    def metadata() -> Manifest:
        return {"name": release, "namespace": namespace, "labels": dict(labels), "annotations": dict(annotations)}

    replicas = values.get("replicaCount", 1)
    service = _values(values, "service")
    objects: list[Manifest] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(),
            "spec": {
                "replicas": replicas if isinstance(replicas, int) else 1,
                "selector": {"matchLabels": dict(selector)},
                "template": {
                    "metadata": {"labels": dict(selector)},
                    "spec": {"containers": [{"name": chart, "image": f"simulated.local/charts/{chart}:{version}"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(),
            "spec": {
                "type": str(service.get("type") or "ClusterIP"),
                "selector": dict(selector),
                "ports": [{"name": "http", "port": int(service.get("port") or 80), "targetPort": "http"}],
            },
        },
    ]
    ingress = _values(values, "ingress")
    if ingress.get("enabled"):
        spec: Manifest = {
            "defaultBackend": {"service": {"name": release, "port": {"number": int(service.get("port") or 80)}}}
        }
        if ingress.get("className"):
            spec = {"ingressClassName": str(ingress["className"]), **spec}
        objects.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata(), "spec": spec})
    persistence = _values(values, "persistence")
    if persistence.get("enabled"):
        claim: Manifest = {
            "accessModes": [str(persistence.get("accessMode") or "ReadWriteOnce")],
            "resources": {"requests": {"storage": str(persistence.get("size") or "8Gi")}},
        }
        if persistence.get("storageClass"):
            claim["storageClassName"] = str(persistence["storageClass"])
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata(), "spec": claim})
    return objects
