from __future__ import annotations

from typing import Any

from sandbox.drivers.cluster import HELMRELEASE_API, KUSTOMIZATION_API, ObjectRef
from sandbox.flux import inventory_refs, readiness
from sandbox.teardown import TIER_ANNOTATION, teardown_order, teardown_plan


def flux(
    kind: str,
    name: str,
    tier: str | None = None,
    owner: str | None = "flux-system",
    depends_on: tuple[str, ...] = (),
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "flux-system"}
    if tier:
        meta["annotations"] = {TIER_ANNOTATION: tier}
    if owner:
        meta["labels"] = {"kustomize.toolkit.fluxcd.io/name": owner}
    api = KUSTOMIZATION_API if kind == "Kustomization" else HELMRELEASE_API
    spec: dict[str, Any] = {"dependsOn": [{"name": d} for d in depends_on]} if depends_on else {}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def test_unannotated_objects_others_depend_on_are_deleted_after_their_dependents() -> None:
    """A controllers' Kustomization without the annotation used to go first, with the applications."""
    objects = [
        flux("Kustomization", "apps", depends_on=("infra-configs",)),
        flux("Kustomization", "infra-configs", depends_on=("infra-controllers",)),
        flux("Kustomization", "infra-controllers"),
        flux("Kustomization", "monitoring", "applications", depends_on=("infra-controllers",)),
        # The annotation wins even where the graph says otherwise.
        flux("Kustomization", "pinned", "applications"),
        flux("Kustomization", "uses-pinned", "custom-objects", depends_on=("pinned",)),
        flux("HelmRelease", "cert-manager"),
        flux("HelmRelease", "issuers", depends_on=("cert-manager",)),
    ]
    order = [(tier, [r.name for r in refs]) for tier, refs in teardown_order(objects)]
    assert order == [
        ("applications", ["issuers", "apps", "monitoring", "pinned"]),
        ("custom-objects", ["cert-manager", "infra-configs", "uses-pinned"]),
        ("controllers", ["infra-controllers"]),
    ]
    rules = {p.ref.name: (p.tier, p.rule) for p in teardown_plan(objects)}
    assert rules["pinned"] == ("applications", "annotation")
    assert rules["apps"] == ("applications", "default")
    assert rules["infra-configs"] == (
        "custom-objects",
        "dependsOn: after Kustomization/flux-system/apps",
    )
    assert rules["infra-controllers"][0] == "controllers"
    assert rules["infra-controllers"][1].startswith("dependsOn: after ")
    assert "Kustomization/flux-system/infra-configs" in rules["infra-controllers"][1]


def test_a_dependency_cycle_does_not_loop() -> None:
    objects = [flux("Kustomization", "a", depends_on=("b",)), flux("Kustomization", "b", depends_on=("a",))]
    assert {p.ref.name for p in teardown_plan(objects)} == {"a", "b"}


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
