from __future__ import annotations

from typing import Any

from sandbox.drivers.cluster import HELMRELEASE_API, KUSTOMIZATION_API, ObjectRef
from sandbox.flux import inventory_refs, readiness
from sandbox.teardown import TIER_ANNOTATION, teardown_order


def flux(kind: str, name: str, tier: str | None = None, owner: str | None = "flux-system") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "flux-system"}
    if tier:
        meta["annotations"] = {TIER_ANNOTATION: tier}
    if owner:
        meta["labels"] = {"kustomize.toolkit.fluxcd.io/name": owner}
    api = KUSTOMIZATION_API if kind == "Kustomization" else HELMRELEASE_API
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": {}}


def test_custom_objects_before_controllers_and_root_never_deleted() -> None:
    objects = [
        flux("Kustomization", "flux-system", owner=None),
        flux("Kustomization", "platform-controllers", "controllers"),
        flux("Kustomization", "platform-configs", "custom-objects"),
        flux("Kustomization", "apps", "applications"),
        flux("HelmRelease", "unannotated"),
        flux("HelmRelease", "nested", "controllers", owner="platform-controllers"),
        flux("Kustomization", "typo", "controlers"),
    ]
    order = [(tier, [r.name for r in refs]) for tier, refs in teardown_order(objects)]
    assert order == [
        ("applications", ["unannotated", "apps", "typo"]),  # by ref: HelmReleases sort first
        ("custom-objects", ["platform-configs"]),
        ("controllers", ["platform-controllers"]),
    ]


def test_readiness_requires_current_generation() -> None:
    obj: dict[str, Any] = {
        "apiVersion": KUSTOMIZATION_API,
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system", "generation": 2},
        "status": {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}],
        },
    }
    state = readiness(obj)
    assert not state.ready and state.reason == "Progressing"
    obj["status"]["observedGeneration"] = 2
    assert readiness(obj).ready
    obj["status"]["conditions"][0].update(status="False", reason="BuildFailed", message="kustomization path not found")
    assert readiness(obj).line() == "Kustomization/flux-system/apps: BuildFailed: kustomization path not found"


def test_inventory_entries_become_refs() -> None:
    ks = {
        "status": {
            "inventory": {
                "entries": [
                    {"id": "platform_shared-entrypoint_networking.k8s.io_Ingress", "v": "v1"},
                    {"id": "_platform__Namespace", "v": "v1"},
                    {"id": "flux-system_aws_lb_helm.toolkit.fluxcd.io_HelmRelease", "v": "v2"},
                ]
            }
        }
    }
    assert inventory_refs(ks) == [
        ObjectRef("networking.k8s.io/v1", "Ingress", "shared-entrypoint", "platform"),
        ObjectRef("v1", "Namespace", "platform", None),
        ObjectRef("helm.toolkit.fluxcd.io/v2", "HelmRelease", "aws_lb", "flux-system"),
    ]
