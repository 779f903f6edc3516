"""Teardown: the seed's "Deleting a Sandbox", made safe.

1. Suspend the root ``flux-system`` Kustomization (merge patch of
   ``spec.suspend`` with a reason annotation) so nothing self-heals.
2. Unsuspend every other Kustomization and HelmRelease: Flux skips garbage
   collection / helm uninstall when a *suspended* object is deleted, which
   would strand whatever it applied.
3. Delete the top-level Kustomizations and HelmReleases in tiers, by the
   annotation ``fleet-sandbox.io/teardown-tier`` where set, else by the
   dependency graph (``spec.dependsOn``): an unannotated object that others
   depend on (a controller's Kustomization) goes in the tier after the latest of
   its dependents, so it is deleted after them, not first with the applications;
   one nothing depends on is in the default tier. The teardown plan says which
   rule placed each object (:func:`teardown_plan`):

   ============== =====================================================
   tier            meaning
   ============== =====================================================
   applications    workloads holding custom objects (the default tier)
   custom-objects  platform objects reconciled by controllers
   controllers     the controllers themselves: deleted last
   ============== =====================================================

   Custom objects go before their controllers, so controllers are still
   running to clean external resources (load balancers, volumes) and drop
   the finalizers.

   Before the controllers tier goes, wait for the PersistentVolumes whose
   cloud volumes are being deleted: a dynamically provisioned PV is in no
   Flux inventory (the CSI driver created it for a claim), and once its
   claim is gone it is the CSI driver -- a controller -- that deletes the
   volume and then drops ``external-provisioner.volume.kubernetes.io/finalizer``.
   PVs with reclaim policy ``Retain`` keep their volume by design: reported,
   not waited for. What still holds a cloud resource at that point was never
   Flux's to delete -- claims bound to a ``Delete`` PV (a StatefulSet's volume
   claim templates, Helm's ``resource-policy: keep``, one applied by hand),
   Ingresses and ``LoadBalancer`` Services: it is deleted, reported and
   waited for, or its cloud volume or load balancer would outlive the cluster.
   After the controllers tier, a PV still being released (a claim of that
   tier, its CSI driver uninstalled beside it) blocks like a finalizer.
   Objects Flux leaves behind when their Kustomization is deleted
   (``spec.deletionPolicy: Orphan``, ``MirrorPrune`` without ``spec.prune``,
   or annotated ``kustomize.toolkit.fluxcd.io/prune: disabled`` or
   ``.../reconcile: disabled``) are deleted explicitly with their tier and
   reported: in a short-lived sandbox nothing is meant to outlive it, and an
   orphaned Ingress or claim would keep its load balancer or volume after
   its controller is gone.
4. After each tier, watch until everything the tier applied is gone; at the
   timeout report which objects still hold which finalizers and stop (the
   infrastructure must not be destroyed while finalizers are pending).
5. Check the cluster is back to its freshly bootstrapped state: one
   ``flux-system`` Kustomization and no HelmRelease.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.drivers.cluster import (
    FLUX_NAMESPACE,
    HELMRELEASE_API,
    KUSTOMIZATION_API,
    ClusterDriver,
    Manifest,
    ObjectRef,
)
from sandbox.errors import ClusterError, TeardownBlockedError
from sandbox.flux import FLUX_APPLIERS, inventory_refs, watch_until
from sandbox.progress import Progress, quiet

TIER_ANNOTATION = "fleet-sandbox.io/teardown-tier"
SUSPEND_REASON_ANNOTATION = "fleet-sandbox.io/suspended-reason"
TEARDOWN_TIERS: tuple[str, ...] = ("applications", "custom-objects", "controllers")
DEFAULT_TIER = "applications"
ROOT = ObjectRef(KUSTOMIZATION_API, "Kustomization", "flux-system", FLUX_NAMESPACE)
KS_OWNER_LABEL = "kustomize.toolkit.fluxcd.io/name"
KS_OWNER_NS_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
HELM_OWNER_LABEL = "helm.toolkit.fluxcd.io/name"
HELM_OWNER_NS_LABEL = "helm.toolkit.fluxcd.io/namespace"

PRUNE_ANNOTATION = "kustomize.toolkit.fluxcd.io/prune"
RECONCILE_ANNOTATION = "kustomize.toolkit.fluxcd.io/reconcile"
#: Namespaces teardown never deletes, even when a Kustomization orphans them.
KEPT_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease", FLUX_NAMESPACE})
INGRESS_API = "networking.k8s.io/v1"
PV_API = "v1"
PV_KIND = "PersistentVolume"

#: Kinds a Helm chart commonly renders that may carry finalizers of controllers
#: (load balancers, volumes); watched after a HelmRelease is deleted.
HELM_RENDERED_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "Ingress"),
    ("v1", "PersistentVolumeClaim"),
)


def tier_of(obj: Mapping[str, Any]) -> str:
    """The teardown tier of a Flux object (the default tier when unannotated or unknown)."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(TIER_ANNOTATION, DEFAULT_TIER)
    return value if value in TEARDOWN_TIERS else DEFAULT_TIER


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def is_top_level(obj: Mapping[str, Any]) -> bool:
    """Applied by the root Kustomization (or by hand), not by another Kustomization."""
    owner = _labels(obj).get(KS_OWNER_LABEL)
    return owner in (None, ROOT.name) and ObjectRef.of(obj) != ROOT


@dataclass(frozen=True)
class Placement:
    """Which tier a top-level object is deleted in, and the rule that put it there."""

    ref: ObjectRef
    tier: str
    rule: str = "default"

    def line(self) -> str:
        """``<object> (<rule>)`` for the teardown plan."""
        return f"{self.ref} ({self.rule})"


def _annotated_tier(obj: Mapping[str, Any]) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(TIER_ANNOTATION)
    return value if value in TEARDOWN_TIERS else None


def _depends_on(obj: Mapping[str, Any]) -> list[ObjectRef]:
    """The objects ``obj``'s ``spec.dependsOn`` names (same kind; the namespace defaults to ``obj``'s)."""
    ref = ObjectRef.of(obj)
    found = []
    for entry in (obj.get("spec") or {}).get("dependsOn") or []:
        if isinstance(entry, dict) and entry.get("name"):
            found.append(
                ObjectRef(ref.api_version, ref.kind, str(entry["name"]), entry.get("namespace") or ref.namespace)
            )
    return found


def teardown_plan(objects: Iterable[Mapping[str, Any]]) -> list[Placement]:
    """Where each top-level Kustomization/HelmRelease is deleted, and why.

    * annotated ``fleet-sandbox.io/teardown-tier`` (a known tier): that tier -- the
      annotation wins;
    * otherwise, depended on (``spec.dependsOn``) by other top-level objects: the tier
      after the latest of theirs (the last tier at most), so it outlives them;
    * otherwise the default tier (applications).
    """
    top = {ObjectRef.of(obj): obj for obj in objects if is_top_level(obj)}
    dependents: dict[ObjectRef, list[ObjectRef]] = {}
    for ref, obj in top.items():
        for needed in _depends_on(obj):
            key = next(
                (k for k in top if (k.kind, k.name, k.namespace) == (needed.kind, needed.name, needed.namespace)), None
            )
            if key is not None and key != ref:
                dependents.setdefault(key, []).append(ref)
    placed: dict[ObjectRef, Placement] = {}

    def place(ref: ObjectRef, visiting: frozenset[ObjectRef]) -> Placement:
        if ref in placed:
            return placed[ref]
        annotated = _annotated_tier(top[ref])
        if annotated is not None:
            placement = Placement(ref, annotated, "annotation")
        else:
            after = [place(d, visiting | {ref}) for d in sorted(dependents.get(ref, [])) if d not in visiting]
            if after:
                latest = max(TEARDOWN_TIERS.index(p.tier) for p in after)
                tier = TEARDOWN_TIERS[min(latest + 1, len(TEARDOWN_TIERS) - 1)]
                names = ", ".join(str(p.ref) for p in after)
                placement = Placement(ref, tier, f"dependsOn: after {names}")
            else:
                placement = Placement(ref, DEFAULT_TIER, "default")
        placed[ref] = placement
        return placement

    return [place(ref, frozenset()) for ref in sorted(top)]


def teardown_order(objects: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[ObjectRef]]]:
    """Tiers of top-level Kustomizations/HelmReleases to delete, in deletion order (see :func:`teardown_plan`).

    The root ``flux-system`` Kustomization is never part of it; objects nested in
    another Kustomization are deleted by their parent's garbage collection.
    """
    tiers: dict[str, list[ObjectRef]] = {tier: [] for tier in TEARDOWN_TIERS}
    for placement in teardown_plan(objects):
        tiers[placement.tier].append(placement.ref)
    return [(tier, sorted(refs)) for tier, refs in tiers.items() if refs]


@dataclass
class TeardownReport:
    """What a teardown did, for the inventory and the CLI."""

    tiers: list[tuple[str, list[str]]] = field(default_factory=list)
    #: The teardown plan: ``"<tier>: <object> (<rule>)"`` per object, the rule that placed it.
    placements: list[str] = field(default_factory=list)
    unsuspended: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    forced: bool = False
    #: Objects Flux would have left behind, deleted by teardown: ``"<object> (<why>)"``.
    orphans: list[str] = field(default_factory=list)
    #: PersistentVolumes kept with their cloud volumes (reclaim policy Retain, or a claim teardown does not delete).
    kept_volumes: list[str] = field(default_factory=list)


def _flux_objects(cluster: ClusterDriver) -> list[Manifest]:
    return [obj for api, kind in FLUX_APPLIERS for obj in cluster.list(api, kind)]


def suspend_root(cluster: ClusterDriver, reason: str) -> bool:
    """Suspend the root Kustomization so nothing self-heals. ``False`` if it is gone."""
    if cluster.get(ROOT) is None:
        return False
    cluster.merge_patch(
        ROOT,
        {"metadata": {"annotations": {SUSPEND_REASON_ANNOTATION: reason}}, "spec": {"suspend": True}},
    )
    return True


def unsuspend_children(cluster: ClusterDriver) -> list[ObjectRef]:
    """Resume every suspended Kustomization/HelmRelease but the root, so deletion garbage-collects."""
    resumed = []
    for obj in _flux_objects(cluster):
        ref = ObjectRef.of(obj)
        if ref != ROOT and (obj.get("spec") or {}).get("suspend"):
            cluster.merge_patch(ref, {"spec": {"suspend": False}})
            resumed.append(ref)
    return resumed


def subtree(cluster: ClusterDriver, roots: Iterable[ObjectRef]) -> set[ObjectRef]:
    """The roots and everything they applied, recursively (Kustomization inventories, Helm-rendered objects)."""
    seen: set[ObjectRef] = set()
    pending = list(roots)
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        obj = cluster.get(ref)
        if obj is None:
            continue
        if ref.kind == "Kustomization":
            pending.extend(inventory_refs(obj))
        elif ref.kind == "HelmRelease":
            selector = f"{HELM_OWNER_LABEL}={ref.name},{HELM_OWNER_NS_LABEL}={ref.namespace}"
            for api, kind in HELM_RENDERED_KINDS:
                pending.extend(ObjectRef.of(o) for o in cluster.list(api, kind, label_selector=selector))
    return seen


def _disabled(obj: Mapping[str, Any], annotation: str) -> bool:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(annotation) or ""
    return str(value).lower() == "disabled"


def left_by_flux(cluster: ClusterDriver, tracked: Iterable[ObjectRef]) -> dict[ObjectRef, str]:
    """What the Kustomizations among ``tracked`` will not delete when they are deleted, and why.

    kustomize-controller deletes a deleted Kustomization's inventory only with
    ``spec.deletionPolicy`` ``Delete``/``WaitForTermination``, or ``MirrorPrune``
    (the default) with ``spec.prune``; and even then skips objects annotated
    ``prune: disabled`` or ``reconcile: disabled``, and objects another
    Kustomization took over. (A suspended one deletes nothing: teardown
    resumes them first.)
    """
    left: dict[ObjectRef, str] = {}
    for ref in sorted(tracked):
        if ref.kind != "Kustomization":
            continue
        kustomization = cluster.get(ref)
        if kustomization is None:
            continue
        spec = kustomization.get("spec") or {}
        policy = str(spec.get("deletionPolicy") or "MirrorPrune")
        collects = policy in ("Delete", "WaitForTermination") or (policy == "MirrorPrune" and bool(spec.get("prune")))
        for item in inventory_refs(kustomization):
            if item.kind == "Namespace" and item.name in KEPT_NAMESPACES:
                continue
            obj = cluster.get(item)
            if obj is None:
                continue
            labels = _labels(obj)
            if labels.get(KS_OWNER_LABEL) != ref.name or labels.get(KS_OWNER_NS_LABEL) != ref.namespace:
                continue  # another Kustomization owns it now: its deletion decides
            if not collects:
                why = f"{ref} has deletionPolicy {policy}" + ("" if policy != "MirrorPrune" else " without prune")
            elif _disabled(obj, PRUNE_ANNOTATION):
                why = f"{PRUNE_ANNOTATION}: disabled"
            elif _disabled(obj, RECONCILE_ANNOTATION):
                why = f"{RECONCILE_ANNOTATION}: disabled"
            else:
                continue
            left.setdefault(item, why)
    return left


def _finalizers(obj: Mapping[str, Any]) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def delete_tier(
    cluster: ClusterDriver,
    refs: list[ObjectRef],
    timeout: float,
    on_tracked: Callable[[list[ObjectRef]], None] | None = None,
    on_orphans: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """Delete a tier's objects and watch until everything they applied is gone.

    What Flux would leave behind (:func:`left_by_flux`) is deleted explicitly
    right after the tier's objects: the sandbox is short-lived, and an orphan
    holding a load balancer or a volume would keep it once its controller is
    gone -- so, safe by default, it goes with its tier, before the controllers.

    Args:
        cluster: The cluster.
        refs: The tier's objects.
        timeout: Seconds to wait.
        on_tracked: Told, before anything is deleted, every object the tier's
            deletion must make disappear (so a rerun after a crash can wait for them).
        on_orphans: Told ``"<object> (<why>)"`` for each orphan deleted explicitly.

    Returns:
        ``"<object> (<finalizers>)"`` for each object still present at the timeout
        (empty when the tier is gone).
    """
    tracked = subtree(cluster, refs)
    # Read before the deletion: a deleted Kustomization's inventory goes with it.
    orphans = left_by_flux(cluster, tracked)
    if on_tracked is not None:
        on_tracked(sorted(tracked))
    for ref in refs:
        cluster.delete(ref)
    if orphans and on_orphans is not None:
        on_orphans([f"{ref} ({why})" for ref, why in sorted(orphans.items())])
    for ref in sorted(orphans):
        # After the owners: a Kustomization being deleted no longer re-applies what it applied.
        cluster.delete(ref)
    return wait_gone(cluster, tracked, timeout)


def wait_gone(cluster: ClusterDriver, tracked: set[ObjectRef], timeout: float) -> list[str]:
    """Watch until none of ``tracked`` exists any more.

    Returns:
        ``"<object> (<finalizers>)"`` for each object still present at the timeout.
    """
    kinds = sorted({(r.api_version, r.kind) for r in tracked})

    def gone(snapshot: dict[ObjectRef, Manifest]) -> bool:
        return not (tracked & snapshot.keys())

    ok, snapshot = watch_until(cluster, kinds, gone, timeout)
    if ok:
        return []
    stuck = []
    for ref in sorted(tracked & snapshot.keys()):
        obj = cluster.get(ref)
        if obj is not None:
            stuck.append(f"{ref} ({', '.join(_finalizers(obj)) or 'no finalizers; still deleting'})")
    return stuck


def _reclaim_policy(volume: Mapping[str, Any]) -> str:
    # The API server defaults a PV without a policy to Retain.
    return str((volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain")


def _claim_state(cluster: ClusterDriver, volume: Mapping[str, Any]) -> tuple[str, Manifest | None]:
    """``"gone"``, ``"deleting"``, ``"present"`` or ``"none"`` for a PV's ``spec.claimRef``, and the claim."""
    claim_ref = (volume.get("spec") or {}).get("claimRef") or {}
    if not claim_ref.get("name"):
        return "none", None
    claim = cluster.get(
        ObjectRef("v1", "PersistentVolumeClaim", str(claim_ref["name"]), str(claim_ref.get("namespace") or ""))
    )
    if claim is None or (claim_ref.get("uid") and (claim.get("metadata") or {}).get("uid") != claim_ref["uid"]):
        return "gone", None
    return ("deleting" if (claim.get("metadata") or {}).get("deletionTimestamp") else "present"), claim


def _owned_by_a_live_applier(cluster: ClusterDriver, obj: Mapping[str, Any]) -> bool:
    """Whether a Kustomization or HelmRelease that still exists applied ``obj`` (its tier deletes it)."""
    labels = _labels(obj)
    owners = (
        (KUSTOMIZATION_API, "Kustomization", labels.get(KS_OWNER_LABEL), labels.get(KS_OWNER_NS_LABEL)),
        (HELMRELEASE_API, "HelmRelease", labels.get(HELM_OWNER_LABEL), labels.get(HELM_OWNER_NS_LABEL)),
    )
    return any(
        name and namespace and cluster.get(ObjectRef(api, kind, name, namespace)) is not None
        for api, kind, name, namespace in owners
    )


def claims_left_bound(cluster: ClusterDriver) -> dict[ObjectRef, str]:
    """Claims still bound to a PersistentVolume whose reclaim policy is ``Delete``, and why each must go.

    Called once the tiers before the controllers are gone, so what is left was
    never Flux's to delete (a claim a remaining Kustomization or HelmRelease
    applied is left to its tier): a StatefulSet's ``volumeClaimTemplates`` claims
    (kept when the StatefulSet is deleted), a Helm ``resource-policy: keep``
    claim, one applied by hand. Left bound, the cloud volume behind it would
    outlive the cluster; a ``Retain`` volume is kept by design and not listed.
    """
    left: dict[ObjectRef, str] = {}
    for volume in cluster.list(PV_API, PV_KIND):
        if _reclaim_policy(volume) != "Delete" or (volume.get("metadata") or {}).get("deletionTimestamp"):
            continue
        state, claim = _claim_state(cluster, volume)
        if state != "present" or claim is None or _owned_by_a_live_applier(cluster, claim):
            continue
        left[ObjectRef.of(claim)] = (
            f"bound to {ObjectRef.of(volume)}, reclaim policy Delete: its volume would outlive the cluster"
        )
    return left


def load_balancers_left(cluster: ClusterDriver) -> dict[ObjectRef, str]:
    """Ingresses and ``LoadBalancer`` Services still in the cluster (not being deleted), and why each must go.

    Called once the tiers before the controllers are gone, so what is left
    was never in a Flux inventory (Helm's ``resource-policy: keep``, one
    applied by hand) -- except what a remaining Kustomization or HelmRelease
    applied (an ingress controller's own Service): its tier deletes it. Its
    load balancer controller, or the cloud provider, made a cloud load
    balancer for it, and deletes that only when the object is deleted while
    the controller still runs.
    """
    candidates = [
        *((obj, "an Ingress") for obj in cluster.list(INGRESS_API, "Ingress")),
        *(
            (obj, "a LoadBalancer Service")
            for obj in cluster.list("v1", "Service")
            if (obj.get("spec") or {}).get("type") == "LoadBalancer"
        ),
    ]
    return {
        ObjectRef.of(obj): f"{what}: its load balancer would outlive the cluster"
        for obj, what in candidates
        if not (obj.get("metadata") or {}).get("deletionTimestamp") and not _owned_by_a_live_applier(cluster, obj)
    }


def releasing_volumes(cluster: ClusterDriver) -> tuple[set[ObjectRef], list[str]]:
    """The PersistentVolumes being deleted with their claims, and those that stay.

    A PV is deleted (with its cloud volume, by its provisioner) when its reclaim
    policy is ``Delete`` and its claim is gone or being deleted -- or when the
    PV itself is being deleted.

    Returns:
        The PVs to wait for, and a line for each PV that stays, saying why.
    """
    releasing: set[ObjectRef] = set()
    kept: list[str] = []
    for volume in cluster.list(PV_API, PV_KIND):
        ref = ObjectRef.of(volume)
        policy = _reclaim_policy(volume)
        claim_ref = (volume.get("spec") or {}).get("claimRef") or {}
        claim = f"claim {claim_ref.get('namespace')}/{claim_ref.get('name')}" if claim_ref.get("name") else "no claim"
        state, _ = _claim_state(cluster, volume)
        if (volume.get("metadata") or {}).get("deletionTimestamp") or (
            policy == "Delete" and state in ("gone", "deleting")
        ):
            releasing.add(ref)
        elif policy != "Delete":
            kept.append(f"{ref} ({claim}, reclaim policy {policy}: its volume is kept)")
        else:
            kept.append(f"{ref} ({claim}, still {'bound' if state == 'present' else 'unclaimed'}: not deleted)")
    return releasing, sorted(kept)


def _blocked(report: TeardownReport, stuck: list[str], message: str, progress: Progress) -> None:
    """Record what is still pending; stop unless the teardown is forced (``report.forced``).

    Raises:
        TeardownBlockedError: With ``message``, when not forced.
    """
    report.blocked.extend(stuck)
    if not report.forced:
        raise TeardownBlockedError(message)
    progress(f"{message} -- continuing because --force was given")


def verify_bootstrapped(cluster: ClusterDriver) -> None:
    """Check only the root Kustomization remains and no HelmRelease exists.

    Raises:
        ClusterError: Something else is left.
    """
    left = [
        str(ObjectRef.of(o)) for api, kind in FLUX_APPLIERS for o in cluster.list(api, kind) if ObjectRef.of(o) != ROOT
    ]
    if left:
        raise ClusterError(f"cluster not back to its bootstrapped state; still present: {', '.join(left)}")


def teardown_cluster(
    cluster: ClusterDriver,
    *,
    timeout_per_tier: float,
    force: bool = False,
    reason: str = "fleet-sandbox teardown",
    progress: Progress = quiet,
    pending: Iterable[ObjectRef] = (),
    on_tracked: Callable[[list[ObjectRef]], None] | None = None,
) -> TeardownReport:
    """Run steps 1-5 of the module docstring on a sandbox cluster.

    A rerun continues where an earlier attempt stopped: the tiers already deleted
    are no longer listed, so what they left terminating is passed back in
    ``pending`` (as ``on_tracked`` reported it) and waited for first.

    Args:
        cluster: The sandbox's cluster.
        timeout_per_tier: Seconds to wait for each tier's finalizers.
        force: Carry on past pending finalizers (recorded in the report).
        reason: Recorded on the suspended root Kustomization.
        progress: Receives a line per step.
        pending: Objects an earlier attempt deleted and was still waiting for.
        on_tracked: Told the objects being waited for before each tier is deleted,
            and ``[]`` once everything is gone.

    Raises:
        TeardownBlockedError: Finalizers still pending at a tier's timeout (without ``force``).
    """
    report = TeardownReport(forced=force)
    if suspend_root(cluster, reason):
        progress("suspended Kustomization/flux-system/flux-system (no self-healing)")
    report.unsuspended = [str(r) for r in unsuspend_children(cluster)]
    if report.unsuspended:
        progress(f"resumed suspended objects so deletion cleans up: {', '.join(report.unsuspended)}")

    def wait_or_block(tracked: set[ObjectRef], blocked: str) -> bool:
        """Wait for ``tracked`` to be gone; else record ``blocked`` and what is stuck (see :func:`_blocked`)."""
        stuck = wait_gone(cluster, tracked, timeout_per_tier)
        if stuck:
            _blocked(report, stuck, f"{blocked} {'; '.join(stuck)}", progress)
        return not stuck

    leftover = set(pending)
    if leftover:
        progress(f"waiting for what an earlier attempt deleted: {', '.join(str(r) for r in sorted(leftover))}")
        wait_or_block(leftover, "teardown blocked: finalizers pending on")
    cloud_released = False

    def release_cloud_resources() -> None:
        # Run before the controllers tier: the CSI driver that deletes a
        # released volume, and the load balancer controller, are controllers.
        # Without them a PV keeps its finalizer, an Ingress its own, and the
        # cloud volume or load balancer outlives the cluster.
        left = {**claims_left_bound(cluster), **load_balancers_left(cluster)}
        if left:
            lines = [f"{ref} ({why})" for ref, why in sorted(left.items())]
            report.orphans.extend(lines)
            progress(f"deleting what is left in the cluster holding cloud resources: {'; '.join(lines)}")
            for ref in sorted(left):
                cluster.delete(ref)
        releasing, kept = releasing_volumes(cluster)
        report.kept_volumes = kept
        for line in kept:
            progress(f"kept by design: {line}")
        if not releasing and not left:
            return
        waiting = releasing | set(left)
        progress(f"waiting for cloud resources to be released: {', '.join(str(r) for r in sorted(waiting))}")
        # The deleted objects too: a claim a Pod still mounts (pvc-protection)
        # is what holds its volume; an Ingress holds its load balancer.
        if wait_or_block(waiting, "teardown blocked before tier controllers: cloud resources not released:"):
            progress("cloud resources: released")

    plan = teardown_plan(_flux_objects(cluster))
    rules = {p.ref: p.rule for p in plan}
    report.placements.extend(f"{p.tier}: {p.line()}" for p in plan)
    tiers: dict[str, list[ObjectRef]] = {tier: [] for tier in TEARDOWN_TIERS}
    for placement in plan:
        tiers[placement.tier].append(placement.ref)
    for tier, refs in [(tier, sorted(refs)) for tier, refs in tiers.items() if refs]:
        if tier == "controllers":
            release_cloud_resources()
            cloud_released = True
        progress(f"tier {tier}: deleting {', '.join(f'{r} ({rules[r]})' for r in refs)}")

        def deleting_orphans(lines: list[str], tier: str = tier) -> None:
            report.orphans.extend(lines)
            progress(f"tier {tier}: deleting what Flux leaves behind: {'; '.join(lines)}")

        stuck = delete_tier(cluster, refs, timeout_per_tier, on_tracked, deleting_orphans)
        report.tiers.append((tier, [str(r) for r in refs]))
        if stuck:
            _blocked(
                report, stuck, f"teardown blocked in tier {tier}: finalizers pending on {'; '.join(stuck)}", progress
            )
        else:
            progress(f"tier {tier}: gone")
    if not cloud_released:
        # No controllers tier (left by an earlier attempt, or the CSI driver is
        # not Flux-managed): the volumes must still be gone before the
        # infrastructure is destroyed.
        release_cloud_resources()
    elif releasing := releasing_volumes(cluster)[0]:
        # A claim of the controllers tier itself is released while its CSI
        # driver is uninstalled beside it; a PV left holding the provisioner's
        # finalizer is a cloud volume nothing will delete now.
        progress(f"waiting for volumes released with tier controllers: {', '.join(str(r) for r in sorted(releasing))}")
        wait_or_block(
            releasing,
            "teardown blocked after tier controllers: volumes not deleted (their CSI driver was removed with "
            "the tier; delete the cloud volumes, then rerun with --force):",
        )
    if not report.blocked:
        verify_bootstrapped(cluster)
        progress("cluster is back to its bootstrapped state (only Kustomization/flux-system/flux-system)")
    if on_tracked is not None:
        on_tracked([])
    return report


__all__ = [
    "DEFAULT_TIER",
    "HELMRELEASE_API",
    "TEARDOWN_TIERS",
    "TIER_ANNOTATION",
    "TeardownReport",
    "claims_left_bound",
    "left_by_flux",
    "load_balancers_left",
    "releasing_volumes",
    "teardown_cluster",
    "teardown_order",
]
