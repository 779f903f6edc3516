"""The Flux install manifests for a local cluster: a ``gotk-components.yaml`` built from the toolchain.

What ``flux install`` applies on a cloud cluster, for the controllers the toolchain builds, in its order:
the ``flux-system`` Namespace, the controllers' **real** CustomResourceDefinitions (the toolchain's data files,
taken from each controller's Go module at the pinned version), the ResourceQuota and NetworkPolicies, one
ServiceAccount per controller, Flux's ClusterRoles and ClusterRoleBindings (``crd-controller`` for the toolkit
APIs, ``cluster-reconciler`` = ``cluster-admin`` for kustomize-controller and helm-controller, the aggregated
``flux-edit``/``flux-view``), the Services and the Deployments, labelled as Flux labels them.

The Deployments follow each controller's ``config/manager/deployment.yaml`` at its pinned version plus what
flux2's kustomization adds (``--events-addr``, ``GOMAXPROCS``/``GOMEMLIMIT``, the critical priority class and
the Linux node selector), with image ``ghcr.io/fluxcd/<controller>:<version>``. On a local cluster kwok runs
their pods as fakes and :mod:`sandbox.localcluster.supervisor` runs the binaries on the host while a pod is
ready; on any other cluster these would be the real controllers.

Nothing here reads the network or runs anything. :func:`render` needs the CRD files (``make toolchain``);
:func:`render_documents` takes them as arguments (tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sandbox import toolchain

Manifest = dict[str, Any]

NAMESPACE = "flux-system"
#: The flux2 release whose controllers the toolchain builds (docs/toolchain.md: Flux 2.9; helm-controller is one
#: patch older, v1.6.2, because the proxy refuses v1.6.3's Helm fork).
FLUX_DISTRIBUTION = "v2.9.4"
#: The controllers, in ``flux install``'s order.
CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller", "notification-controller")
TOOLKIT_GROUPS = (
    "source.toolkit.fluxcd.io",
    "kustomize.toolkit.fluxcd.io",
    "helm.toolkit.fluxcd.io",
    "notification.toolkit.fluxcd.io",
    "image.toolkit.fluxcd.io",
)
_EVENTS_ADDR = f"--events-addr=http://notification-controller.{NAMESPACE}.svc.cluster.local./"


def _labels(component: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/instance": NAMESPACE,
        "app.kubernetes.io/part-of": "flux",
        "app.kubernetes.io/version": FLUX_DISTRIBUTION,
    }
    if component:
        labels = {"app.kubernetes.io/component": component, **labels}
    return labels


def _meta(
    name: str, *, namespaced: bool = True, component: str | None = None, extra: Mapping[str, str] | None = None
) -> Manifest:
    meta: Manifest = {"name": name}
    if namespaced:
        meta["namespace"] = NAMESPACE
    meta["labels"] = {**_labels(component), **(extra or {})}
    return meta


def _crds(component: str, documents: Sequence[Mapping[str, Any]]) -> list[Manifest]:
    crds: list[Manifest] = []
    for document in documents:
        if not document or document.get("kind") != "CustomResourceDefinition":
            continue
        crd = dict(document)
        metadata = dict(crd.get("metadata") or {})
        metadata["labels"] = {**dict(metadata.get("labels") or {}), **_labels(component)}
        crd["metadata"] = metadata
        crds.append(crd)
    return sorted(crds, key=lambda c: str(c["metadata"]["name"]))


def _policies() -> list[Manifest]:
    # flux2 manifests/policies: the quota lets the critical priority class be used in flux-system; the
    # network policies (inert without a network plugin) are part of the install all the same.
    quota: Manifest = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(f"critical-pods-{NAMESPACE}"),
        "spec": {
            "hard": {"pods": "1000"},
            "scopeSelector": {
                "matchExpressions": [
                    {
                        "operator": "In",
                        "scopeName": "PriorityClass",
                        "values": ["system-node-critical", "system-cluster-critical"],
                    }
                ]
            },
        },
    }
    egress: Manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("allow-egress"),
        "spec": {
            "egress": [{}],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
        },
    }
    scraping: Manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("allow-scraping"),
        "spec": {
            "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 8080, "protocol": "TCP"}]}],
            "podSelector": {},
            "policyTypes": ["Ingress"],
        },
    }
    webhooks: Manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("allow-webhooks"),
        "spec": {
            "ingress": [{"from": [{"namespaceSelector": {}}]}],
            "podSelector": {"matchLabels": {"app": "notification-controller"}},
            "policyTypes": ["Ingress"],
        },
    }
    return [quota, egress, scraping, webhooks]


def _rbac() -> list[Manifest]:
    # flux2 manifests/rbac (controller.yaml, reconciler.yaml, edit.yaml, view.yaml) for these controllers.
    crd_controller: Manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(f"crd-controller-{NAMESPACE}", namespaced=False),
        "rules": [
            *({"apiGroups": [group], "resources": ["*"], "verbs": ["*"]} for group in TOOLKIT_GROUPS),
            {
                "apiGroups": [""],
                "resources": ["namespaces", "secrets", "configmaps", "serviceaccounts"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            },
            {"apiGroups": [""], "resources": ["configmaps/status"], "verbs": ["get", "update", "patch"]},
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            },
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        ],
    }
    edit: Manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(
            f"flux-edit-{NAMESPACE}",
            namespaced=False,
            extra={
                "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                "rbac.authorization.k8s.io/aggregate-to-edit": "true",
            },
        ),
        "rules": [
            {
                "apiGroups": list(TOOLKIT_GROUPS),
                "resources": ["*"],
                "verbs": ["create", "delete", "deletecollection", "patch", "update"],
            }
        ],
    }
    view: Manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(
            f"flux-view-{NAMESPACE}",
            namespaced=False,
            extra={
                "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                "rbac.authorization.k8s.io/aggregate-to-view": "true",
            },
        ),
        "rules": [{"apiGroups": list(TOOLKIT_GROUPS), "resources": ["*"], "verbs": ["get", "list", "watch"]}],
    }

    def subjects(names: Sequence[str]) -> list[Manifest]:
        return [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE} for name in names]

    reconciler: Manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(f"cluster-reconciler-{NAMESPACE}", namespaced=False),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": subjects(("kustomize-controller", "helm-controller")),
    }
    controller_binding: Manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(f"crd-controller-{NAMESPACE}", namespaced=False),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"crd-controller-{NAMESPACE}",
        },
        "subjects": subjects(CONTROLLERS),
    }
    return [crd_controller, edit, view, reconciler, controller_binding]


def _service(name: str, selector: str, target: str, component: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, component=component, extra={"control-plane": "controller"}),
        "spec": {
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target}],
            "selector": {"app": selector},
            "type": "ClusterIP",
        },
    }


def _deployment(name: str, version: str) -> Manifest:
    """A controller's Deployment (config/manager/deployment.yaml at the pinned version + flux2's patches)."""
    args = ["--watch-all-namespaces", "--log-level=info", "--log-encoding=json", "--enable-leader-election"]
    if name != "notification-controller":
        args.insert(0, _EVENTS_ADDR)
    ports = [
        {"containerPort": 8080, "name": "http-prom", "protocol": "TCP"},
        {"containerPort": 9440, "name": "healthz", "protocol": "TCP"},
    ]
    env: list[Manifest] = [
        {"name": "RUNTIME_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    mounts = [{"mountPath": "/tmp", "name": "temp"}]
    volumes: list[Manifest] = [{"emptyDir": {}, "name": "temp"}]
    readiness: Manifest = {"httpGet": {"path": "/readyz", "port": "healthz"}}
    grace = {"kustomize-controller": 60, "helm-controller": 600}.get(name, 10)
    requests = {"cpu": "50m" if name == "source-controller" else "100m", "memory": "64Mi"}
    strategy: Manifest | None = None
    if name == "source-controller":
        args += ["--storage-path=/data", "--storage-adv-addr=source-controller.$(RUNTIME_NAMESPACE).svc.cluster.local."]
        ports.insert(0, {"containerPort": 9090, "name": "http", "protocol": "TCP"})
        env.append({"name": "TUF_ROOT", "value": "/tmp/.sigstore"})
        mounts = [{"mountPath": "/data", "name": "data"}, {"mountPath": "/tmp", "name": "tmp"}]
        volumes = [{"emptyDir": {}, "name": "data"}, {"emptyDir": {}, "name": "tmp"}]
        readiness = {"httpGet": {"path": "/", "port": "http"}}
        strategy = {"type": "Recreate"}
    if name == "notification-controller":
        ports[:0] = [
            {"containerPort": 9090, "name": "http", "protocol": "TCP"},
            {"containerPort": 9292, "name": "http-webhook", "protocol": "TCP"},
        ]
    # flux2's kustomization sets the Go runtime's limits from the container's.
    env += [
        {
            "name": "GOMAXPROCS",
            "valueFrom": {"resourceFieldRef": {"containerName": "manager", "resource": "limits.cpu"}},
        },
        {
            "name": "GOMEMLIMIT",
            "valueFrom": {"resourceFieldRef": {"containerName": "manager", "resource": "limits.memory"}},
        },
    ]
    container: Manifest = {
        "args": args,
        "env": env,
        "image": f"ghcr.io/fluxcd/{name}:{version}",
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "healthz"}},
        "name": "manager",
        "ports": ports,
        "readinessProbe": readiness,
        "resources": {"limits": {"cpu": "1000m", "memory": "1Gi"}, "requests": requests},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    spec: Manifest = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {
                "annotations": {"prometheus.io/port": "8080", "prometheus.io/scrape": "true"},
                "labels": {"app": name},
            },
            "spec": {
                "containers": [container],
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "priorityClassName": "system-cluster-critical",
                "securityContext": {"fsGroup": 1337},
                "serviceAccountName": name,
                "terminationGracePeriodSeconds": grace,
                "volumes": volumes,
            },
        },
    }
    if strategy is not None:
        spec = {**spec, "strategy": strategy}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, component=name, extra={"control-plane": "controller"}),
        "spec": spec,
    }


def render_documents(versions: Mapping[str, str], crds: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Manifest]:
    """The install's objects, in apply order.

    Args:
        versions: Each controller's version (``v1.9.4``), by name.
        crds: Each controller's CRD documents, by name.
    """
    documents: list[Manifest] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(NAMESPACE, namespaced=False)}
    ]
    for name in CONTROLLERS:
        documents += _crds(name, crds.get(name, ()))
    documents += _policies()
    documents += [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, component=name)} for name in CONTROLLERS
    ]
    documents += _rbac()
    documents += [
        _service("notification-controller", "notification-controller", "http", "notification-controller"),
        _service("source-controller", "source-controller", "http", "source-controller"),
        _service("webhook-receiver", "notification-controller", "http-webhook", "notification-controller"),
    ]
    documents += [_deployment(name, versions[name]) for name in CONTROLLERS]
    return documents


def header(versions: Mapping[str, str], keys: Mapping[str, str]) -> str:
    """The comment block on top of the rendered file (what it was built from; the staleness test reads it)."""
    components = ", ".join(f"{name} {versions[name]}" for name in CONTROLLERS)
    built = " ".join(f"{name}={keys[name]}" for name in CONTROLLERS)
    return (
        "# Flux install for a local cluster (fleet-sandbox). DO NOT EDIT: generated by\n"
        "# scripts/render_local_flux.py from toolchain/components.json and the toolchain's CRD files\n"
        "# (sandbox/localcluster/flux_install.py).\n"
        f"# Flux Version: {FLUX_DISTRIBUTION}\n"
        f"# Components: {components}\n"
        f"# Toolchain: {built}\n"
    )


def dump(documents: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML, each document after ``---`` (deterministic: keys in the order built)."""
    parts = [yaml.safe_dump(dict(doc), sort_keys=False, width=100_000, default_flow_style=False) for doc in documents]
    return "".join(f"---\n{part}" for part in parts)


def toolchain_inputs(
    repo: Path = toolchain.REPO_ROOT, cache: Path | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Each controller's version and toolchain key (the hash in its cache file names), from the manifest alone."""
    known = toolchain.files(repo, cache)
    versions = {name: known[name].version for name in CONTROLLERS}
    keys = {name: known[f"{name}-crds"].path.name.rsplit("-", 1)[1].removesuffix(".yaml") for name in CONTROLLERS}
    return versions, keys


def render(repo: Path = toolchain.REPO_ROOT, cache: Path | None = None) -> str:
    """The whole ``gotk-components.yaml`` for a local cluster.

    Raises:
        ToolNotFoundError: A controller's CRD file is not built (``make toolchain``).
    """
    versions, keys = toolchain_inputs(repo, cache)
    crds = {
        name: list(yaml.safe_load_all(toolchain.locate(f"{name}-crds", repo, cache).read_text(encoding="utf-8")))
        for name in CONTROLLERS
    }
    return header(versions, keys) + dump(render_documents(versions, crds))


def read_header(text: str) -> dict[str, str]:
    """``{"Flux Version": ..., "Components": ..., "Toolchain": ...}`` from a rendered file's comment block."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        name, sep, value = line[1:].strip().partition(": ")
        if sep:
            found[name] = value
    return found
