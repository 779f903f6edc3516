"""The teardown through the real Kubernetes driver: what it sends to an API server, in which order.

The fake API server (``tests/fakes/kubeapi_server.py``) records every request. It runs
no controllers, so a small stand-in here does what Flux and the AWS load
balancer controller would: deleting a Kustomization deletes its inventory,
deleting a HelmRelease uninstalls what it rendered (the objects labelled with
its name), and an Ingress's load-balancer finalizer is released only while the
controllers' Kustomization exists, a moment (``LB_CLEANUP_SECONDS``) after the
Ingress started terminating, as deleting a cloud load balancer takes a while. It
changes the server's store directly, so the recorded requests are exactly the
driver's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.drivers.cluster import HELMRELEASE_API, KUSTOMIZATION_API, ObjectRef
from sandbox.drivers.kubernetes_cluster import KubernetesClusterDriver
from sandbox.errors import TeardownBlockedError
from sandbox.flux import inventory_refs
from sandbox.teardown import HELM_OWNER_LABEL, SUSPEND_REASON_ANNOTATION, teardown_cluster
from tests.fakes.kubeapi_server import FIXTURES_DIR, KubeApiServer, running_kubeapi_server, selector_matches

pytestmark = pytest.mark.integration

OBJECTS = FIXTURES_DIR / "objects" / "teardown-tiers.yaml"
KS = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations"
HR = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/podinfo/helmreleases"
CONTROLLERS = ObjectRef(KUSTOMIZATION_API, "Kustomization", "platform-controllers", "flux-system")
INGRESS = ObjectRef("networking.k8s.io/v1", "Ingress", "shared-entrypoint", "platform")
LB_FINALIZER = "ingress.k8s.aws/resources"
LB_CLEANUP_SECONDS = 0.3
HELM_RENDERED = ("/apis/apps/v1/deployments", "/api/v1/services", "/apis/networking.k8s.io/v1/ingresses")


def _key(ref: ObjectRef) -> tuple[str, str, str, str | None]:
    return ref.api_version, ref.kind, ref.name, ref.namespace


class StandInControllers:
    """Garbage collection by kustomize-/helm-controller and the load balancer controller's finalizer."""

    def __init__(self, server: KubeApiServer) -> None:
        self.server = server
        self.appliers = {ObjectRef.of(o): o for o in server.objects() if o["kind"] in ("Kustomization", "HelmRelease")}
        self._lb_deleted_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stand-in-controllers", daemon=True)

    def __enter__(self) -> StandInControllers:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        with self.server._changed:
            self.server._changed.notify_all()
        self._thread.join(timeout=5)

    def _get(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self.server.get_object(ref.api_version, ref.kind, ref.name, ref.namespace)

    def _delete(self, ref: ObjectRef) -> bool:
        obj = self._get(ref)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return False
        if obj["metadata"].get("finalizers"):
            self.server.patch_object(
                ref.api_version, ref.kind, ref.name, ref.namespace, {"metadata": {"deletionTimestamp": "now"}}
            )
        else:
            self.server.remove_object(ref.api_version, ref.kind, ref.name, ref.namespace)
        return True

    def _reconcile(self) -> bool:
        changed = False
        for ref, applier in self.appliers.items():
            if self._get(ref) is not None:
                continue
            if ref.kind == "Kustomization":
                children = inventory_refs(applier)
            else:
                children = [
                    ObjectRef.of(o)
                    for o in self.server.objects()
                    if selector_matches(f"{HELM_OWNER_LABEL}={ref.name}", o["metadata"].get("labels") or {})
                ]
            changed |= any([self._delete(child) for child in children])
        ingress = self._get(INGRESS)
        if ingress is not None and ingress["metadata"].get("deletionTimestamp") and self._get(CONTROLLERS):
            if self._lb_deleted_at is None:
                self._lb_deleted_at = time.monotonic() + LB_CLEANUP_SECONDS  # the cloud deletes the load balancer
            elif time.monotonic() >= self._lb_deleted_at:
                self.server.patch_object(*_key(INGRESS), {"metadata": {"finalizers": None}})
                changed = True
        return changed

    def _run(self) -> None:
        changes = self.server._changed
        with changes:
            while not self._stop.is_set():
                while self._reconcile():
                    pass
                # Woken by every change the driver makes, or when the load balancer is gone.
                due = self._lb_deleted_at - time.monotonic() if self._lb_deleted_at is not None else 1.0
                changes.wait(timeout=max(0.01, min(due, 1.0)))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KubeApiServer]:
    with running_kubeapi_server(tmp_path) as running:
        running.load_objects(OBJECTS)
        yield running


@pytest.fixture
def driver(server: KubeApiServer) -> Iterator[KubernetesClusterDriver]:
    assert server.kubeconfig_path is not None
    with KubernetesClusterDriver(server.kubeconfig_path) as cluster:
        yield cluster


def _mutations(server: KubeApiServer) -> list[tuple[str, str, Any]]:
    return [
        (r.method, r.path, r.json() if r.method == "PATCH" else None)
        for r in server.api_requests()
        if r.method in ("PATCH", "DELETE")
    ]


def test_suspend_unsuspend_then_delete_by_tier_and_wait_with_watches(
    server: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    with StandInControllers(server):
        report = teardown_cluster(driver, timeout_per_tier=10, reason="teardown of sandbox-a")

    assert [tier for tier, _ in report.tiers] == ["applications", "custom-objects", "controllers"]
    assert report.unsuspended == ["Kustomization/flux-system/apps"]
    assert _mutations(server) == [
        # 1. the root is suspended with a reason, so nothing self-heals ...
        (
            "PATCH",
            f"{KS}/flux-system",
            {
                "metadata": {"annotations": {SUSPEND_REASON_ANNOTATION: "teardown of sandbox-a"}},
                "spec": {"suspend": True},
            },
        ),
        # 2. ... a suspended child is resumed, or its deletion would skip garbage collection ...
        ("PATCH", f"{KS}/apps", {"spec": {"suspend": False}}),
        # 3. ... then the tiers by annotation: applications (the unannotated apps too),
        # custom objects, controllers. The nested apps-extras goes with its parent.
        ("DELETE", f"{HR}/podinfo", None),
        ("DELETE", f"{KS}/apps", None),
        ("DELETE", f"{KS}/platform-configs", None),
        ("DELETE", f"{KS}/platform-controllers", None),
    ]
    patches = server.requests_to("PATCH")
    assert {p.content_type for p in patches} == {"application/merge-patch+json"}
    deletes = server.requests_to("DELETE")
    assert all(d.json()["propagationPolicy"] == "Background" for d in deletes)

    # What a HelmRelease rendered is found by helm-controller's labels.
    selector = "helm.toolkit.fluxcd.io/name=podinfo,helm.toolkit.fluxcd.io/namespace=podinfo"
    for path in HELM_RENDERED:
        listed = [r for r in server.requests_to("GET", path) if r.param("watch") is None]
        assert selector in [r.param("labelSelector") for r in listed], path

    # Each tier is waited for with watches from a list's resourceVersion, never by polling lists.
    watches = [r for r in server.api_requests() if r.method == "GET" and r.param("watch") in ("true", "1")]
    watched = {r.path for r in watches}
    assert {"/apis/kustomize.toolkit.fluxcd.io/v1/kustomizations", "/apis/networking.k8s.io/v1/ingresses"} <= watched
    for watch in watches:
        assert watch.param("allowWatchBookmarks") == "true"
        assert watch.param("resourceVersion")
        assert 0 < float(watch.param("timeoutSeconds") or 0) <= 30

    left = [
        (o["kind"], o["metadata"]["name"]) for o in server.objects() if o["kind"] in ("Kustomization", "HelmRelease")
    ]
    assert left == [("Kustomization", "flux-system")]
    assert server.get_object(*_key(INGRESS)) is None


def test_controllers_deleted_too_early_leave_the_finalizer_pending_and_stop_the_teardown(
    server: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    # Mis-annotated: the controllers go with the applications.
    server.patch_object(
        *_key(CONTROLLERS), {"metadata": {"annotations": {"fleet-sandbox.io/teardown-tier": "applications"}}}
    )
    with StandInControllers(server), pytest.raises(TeardownBlockedError) as blocked:
        teardown_cluster(driver, timeout_per_tier=0.5)

    assert str(blocked.value) == (
        "teardown blocked in tier custom-objects: finalizers pending on "
        f"Ingress/platform/shared-entrypoint ({LB_FINALIZER})"
    )
    ingress = server.get_object(*_key(INGRESS))
    assert ingress is not None and ingress["metadata"]["finalizers"] == [LB_FINALIZER]
    assert ingress["metadata"].get("deletionTimestamp")
    deleted = [path.rsplit("/", 1)[-1] for method, path, _ in _mutations(server) if method == "DELETE"]
    assert deleted == ["podinfo", "apps", "platform-controllers", "platform-configs"]
    assert server.get_object(HELMRELEASE_API, "HelmRelease", "podinfo", "podinfo") is None
