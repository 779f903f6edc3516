"""Scenario conformance: the simulated cluster and a real local cluster, the same scenarios, the same assertions.

Every test takes the module-scoped ``world``, parametrized by driver: ``simulated`` (the fast tier: a
:class:`~sandbox.drivers.simulated_cluster.SimulatedCluster` with its simulated Flux) and ``real`` (marked ``real``:
one local cluster per module, started with the example fleet's ``infra/local-cluster`` stack and real terraform,
real Flux installed, the fleet repository served over smart HTTP on loopback, the product's
:class:`~sandbox.drivers.kubernetes_cluster.KubernetesClusterDriver` on its API server). The product's code runs on
top of either: :func:`sandbox.teardown.teardown_cluster`, :func:`sandbox.flux.readiness`,
:func:`sandbox.teardown.wait_gone` and the validate stage's removed-API scan
(:func:`sandbox.validation.scan_repo_paths`). docs/simulation.md names the test proving each behaviour the simulation
models.

No timing is asserted: every wait is generous and fails naming what it waited for.
"""

from __future__ import annotations

import builtins
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import deprecations
from sandbox.deprecations import ApiDeprecation
from sandbox.drivers.cluster import (
    FLUX_NAMESPACE,
    GITREPOSITORY_API,
    HELMRELEASE_API,
    KUSTOMIZATION_API,
    ClusterDriver,
    Manifest,
    ObjectRef,
)
from sandbox.drivers.kubernetes_cluster import KubernetesClusterDriver
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.errors import ClusterError, TeardownBlockedError
from sandbox.flux import Readiness, readiness
from sandbox.localcluster.processes import find_local_cluster_processes, terminate
from sandbox.teardown import TIER_ANNOTATION, teardown_cluster, wait_gone
from sandbox.validation import minor_version_of, scan_repo_paths
from tests.polling import poll

pytestmark = pytest.mark.timeout(1500)

EXAMPLE_REPO = Path(__file__).resolve().parents[2] / "examples" / "fleet-repo"
BRANCH = "conformance"
#: Generous: a loaded 2-core machine runs a real control plane, four Flux controllers and other sessions' tests.
WAIT = 300.0
DEPLOYMENT = ObjectRef("apps/v1", "Deployment", "kustomize-controller", FLUX_NAMESPACE)


def _namespace_with_settings(name: str) -> dict[str, str]:
    return {
        "kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n  - namespace.yaml\n  - settings.yaml\n",
        "namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n",
        "settings.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {name}\n"
        "data:\n  owner: conformance\n",
    }


UNAVAILABLE = {
    "kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    "resources:\n  - namespace.yaml\n  - deployment.yaml\n",
    "namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: conf-unavailable\n",
    # No node carries this label: the pod is never scheduled, the Deployment never becomes available.
    "deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\n"
    "metadata:\n  name: never\n  namespace: conf-unavailable\n"
    "spec:\n  replicas: 1\n  selector:\n    matchLabels: {app: never}\n  template:\n    metadata:\n"
    '      labels: {app: never}\n    spec:\n      nodeSelector: {fleet-sandbox.io/no-such-node: "true"}\n'
    "      containers:\n        - name: app\n          image: registry.example.org/never:1.0.0\n",
}

#: A PersistentVolume statically bound to a claim (a local cluster has no provisioner), and a Pod mounting the
#: claim that a finalizer of the test's own holds once deleted (kwok deletes a pod at once otherwise).
VOLUMES = {
    "kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    "resources:\n  - namespace.yaml\n  - volume.yaml\n  - claim.yaml\n  - pod.yaml\n",
    "namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: conf-volumes\n",
    "volume.yaml": "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: conf-volumes-data\n"
    "spec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n"
    '  storageClassName: ""\n  hostPath: {path: /tmp/conf-volumes-data}\n'
    "  claimRef: {namespace: conf-volumes, name: data}\n",
    "claim.yaml": "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\n  namespace: conf-volumes\n"
    'spec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: ""\n  volumeName: conf-volumes-data\n'
    "  resources: {requests: {storage: 1Gi}}\n",
    # The ServiceAccount admission refuses (even at kustomize-controller's dry-run) a pod whose account does not
    # exist yet; the namespace's "default" one is created just after the namespace: the Kustomization's
    # retryInterval applies the pod once it is there.
    "pod.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: user\n  namespace: conf-volumes\n"
    "  finalizers: [conformance.example.org/hold]\n"
    "spec:\n  automountServiceAccountToken: false\n  containers:\n"
    "    - name: app\n      image: registry.example.org/app:1.0.0\n"
    "      volumeMounts: [{name: data, mountPath: /data}]\n"
    "  volumes:\n    - name: data\n      persistentVolumeClaim: {claimName: data}\n",
}

#: A Helm chart in the fleet repository (a local cluster has no chart repository to fetch from): what the
#: simulated chart catalog renders for any chart, a Deployment and a Service named after the release.
CHART = {
    "Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
    "templates/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\n"
    "metadata:\n  name: {{ .Release.Name }}\n  namespace: {{ .Release.Namespace }}\n"
    "spec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n"
    "      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n"
    "          image: registry.example.org/web:1.0.0\n",
    "templates/service.yaml": "apiVersion: v1\nkind: Service\n"
    "metadata:\n  name: {{ .Release.Name }}\n  namespace: {{ .Release.Namespace }}\n"
    "spec:\n  selector: {app: web}\n  ports:\n    - {name: http, port: 80}\n",
}

APPS: dict[str, dict[str, str]] = {
    "app": _namespace_with_settings("conf-app"),
    "configs": _namespace_with_settings("conf-configs"),
    "controllers": _namespace_with_settings("conf-controllers"),
    "blocked": _namespace_with_settings("conf-blocked"),
    "unavailable": UNAVAILABLE,
    "volumes": VOLUMES,
}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()


def _fleet(root: Path) -> Path:
    """A bare repository ``<root>/served/fleet.git``; its branch ``BRANCH`` holds ``apps/<app>`` and ``charts/web``."""
    work = root / "fleet-work"
    for app, files in APPS.items():
        (work / "apps" / app).mkdir(parents=True)
        for name, text in files.items():
            (work / "apps" / app / name).write_text(text, encoding="utf-8")
    for name, text in CHART.items():
        (work / "charts" / "web" / name).parent.mkdir(parents=True, exist_ok=True)
        (work / "charts" / "web" / name).write_text(text, encoding="utf-8")
    _git(root, "init", "-q", "-b", BRANCH, str(work))
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "conformance apps")
    served = root / "served"
    served.mkdir()
    _git(root, "clone", "-q", "--bare", str(work), str(served / "fleet.git"))
    return served / "fleet.git"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]


@dataclass
class World:
    """A cluster with Flux running and the conformance fleet as GitRepository ``fleet``; the same API for both."""

    driver: str
    cluster: ClusterDriver
    #: Waits until kustomize-controller runs (``True``) or is stopped (``False``) after a scale.
    controller_state: Callable[[bool], None]
    #: How long teardown waits per tier for a finalizer no one will release (nothing clears it: only a bound).
    blocked_wait: float
    #: Whether a scheduler binds pods to nodes (the simulated cluster has none: docs/simulation.md, Not modelled).
    schedules_pods: bool
    #: The URL GitRepository ``fleet`` fetches from (each driver reaches the bare repository its own way).
    source_url: str
    created: list[ObjectRef] = field(default_factory=list)

    def git_repository(self, name: str, branch: str) -> ObjectRef:
        """A GitRepository of the conformance fleet's URL at ``branch``."""
        ref = _apply_source(self.cluster, self.source_url, name=name, branch=branch)
        self.created.append(ref)
        return ref

    def kustomization(self, name: str, path: str, *, tier: str | None = None, **spec: Any) -> ObjectRef:
        meta: dict[str, Any] = {"name": name, "namespace": FLUX_NAMESPACE}
        if tier:
            meta["annotations"] = {TIER_ANNOTATION: tier}
        self.cluster.apply(
            {
                "apiVersion": KUSTOMIZATION_API,
                "kind": "Kustomization",
                "metadata": meta,
                "spec": {
                    "interval": "10m",
                    "path": path,
                    "prune": True,
                    "sourceRef": {"kind": "GitRepository", "name": "fleet"},
                    **spec,
                },
            }
        )
        ref = ObjectRef(KUSTOMIZATION_API, "Kustomization", name, FLUX_NAMESPACE)
        self.created.append(ref)
        return ref

    def helmrelease(
        self,
        name: str,
        target_namespace: str,
        *,
        tier: str | None = None,
        chart: str = "./charts/web",
        source: str = "fleet",
    ) -> ObjectRef:
        meta: dict[str, Any] = {"name": name, "namespace": FLUX_NAMESPACE}
        if tier:
            meta["annotations"] = {TIER_ANNOTATION: tier}
        self.cluster.apply(
            {
                "apiVersion": HELMRELEASE_API,
                "kind": "HelmRelease",
                "metadata": meta,
                "spec": {
                    "interval": "10m",
                    "targetNamespace": target_namespace,
                    "chart": {"spec": {"chart": chart, "sourceRef": {"kind": "GitRepository", "name": source}}},
                },
            }
        )
        ref = ObjectRef(HELMRELEASE_API, "HelmRelease", name, FLUX_NAMESPACE)
        self.created.append(ref)
        return ref

    def readiness(self, ref: ObjectRef) -> Readiness | None:
        obj = self.cluster.get(ref)
        return None if obj is None else readiness(obj)

    def wait_for(self, ref: ObjectRef, what: str, check: Callable[[Readiness], bool]) -> Readiness:
        def state() -> Readiness | None:
            current = self.readiness(ref)
            return current if current is not None and check(current) else None

        try:
            return poll(f"{ref} {what} ({self.driver})", state, WAIT)
        except pytest.fail.Exception:
            current = self.readiness(ref)
            pytest.fail(f"{ref} never {what} on the {self.driver} cluster; last: {current and current.line()}")

    def scale_kustomize_controller(self, replicas: int) -> None:
        self.cluster.merge_patch(DEPLOYMENT, {"spec": {"replicas": replicas}})
        self.controller_state(replicas > 0)

    def gone(self, refs: set[ObjectRef], what: str) -> None:
        stuck = wait_gone(self.cluster, refs, WAIT)
        assert not stuck, f"{what} still present on the {self.driver} cluster: {stuck}"


def _simulated_world(tmp: Path) -> Iterator[World]:
    remote = _fleet(tmp)
    simulation_dir = tmp / "simulated-cluster"
    (simulation_dir / "external").mkdir(parents=True)
    cluster = SimulatedCluster(simulation_dir, kubernetes_version="1.36")
    for doc in _documents(EXAMPLE_REPO / "clusters" / "development" / "flux-system" / "gotk-components.yaml"):
        cluster.apply(doc)
    _apply_source(cluster, remote.as_uri())
    yield World(
        "simulated", cluster, lambda running: None, blocked_wait=1.0, schedules_pods=False, source_url=remote.as_uri()
    )


def _real_world(tmp: Path) -> Iterator[World]:
    from sandbox.localcluster.git_http import GitHttpServer
    from tests.real.localstack import FLUX_COMPONENTS, Kubectl, LocalStack
    from tests.realparts import require_tool, require_toolchain

    require_toolchain()
    terraform = require_tool("terraform", "tofu")
    kubectl = require_tool("kubectl")
    remote = _fleet(tmp)
    stack = LocalStack(terraform, tmp / "stack", "conformance")
    with ExitStack() as stack_of_cleanups:

        def down() -> None:
            try:
                stack.destroy()
            finally:
                left = find_local_cluster_processes(stack.cluster_dir)
                if left:
                    terminate(left, grace=5.0)
                    pytest.fail(f"local-cluster processes left after destroy: {[p.component for p in left]}")

        stack_of_cleanups.callback(down)
        stack.apply()
        k = Kubectl(kubectl, stack.kubeconfig)
        k("apply", "--server-side", "-f", str(FLUX_COMPONENTS))
        k("-n", "flux-system", "wait", "--for=condition=Available", "deployment", "--all", "--timeout=300s")

        def components() -> set[str]:
            return {p.component for p in find_local_cluster_processes(stack.cluster_dir)}

        def controller_state(running: bool) -> None:
            word = "running" if running else "stopped"
            poll(
                f"kustomize-controller {word} (the local cluster's supervisor follows its Deployment)",
                lambda: (("kustomize-controller" in components()) == running) or None,
                WAIT,
            )

        controller_state(True)
        server = stack_of_cleanups.enter_context(GitHttpServer(remote.parent))
        driver = KubernetesClusterDriver.from_kubeconfig_text(stack.kubeconfig.read_text(encoding="utf-8"))
        stack_of_cleanups.callback(driver.close)
        url = f"http://127.0.0.1:{server.port}/{remote.name}"
        _apply_source(driver, url)
        yield World("real", driver, controller_state, blocked_wait=10.0, schedules_pods=True, source_url=url)


def _apply_source(cluster: ClusterDriver, url: str, *, name: str = "fleet", branch: str = BRANCH) -> ObjectRef:
    cluster.apply(
        {
            "apiVersion": GITREPOSITORY_API,
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
            "spec": {"interval": "1m", "ref": {"branch": branch}, "url": url},
        }
    )
    return ObjectRef(GITREPOSITORY_API, "GitRepository", name, FLUX_NAMESPACE)


@pytest.fixture(
    scope="module",
    params=[pytest.param("simulated"), pytest.param("real", marks=[pytest.mark.real, pytest.mark.integration])],
)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"conformance-{request.param}")
    yield from (_simulated_world if request.param == "simulated" else _real_world)(tmp)


@pytest.fixture
def scenario(world: World) -> Iterator[World]:
    """The world, emptied of what the test created afterwards (kustomize-controller running again)."""
    yield world
    world.scale_kustomize_controller(1)
    for ref in world.created:
        world.cluster.delete(ref)
    world.gone(set(world.created), "the test's Kustomizations")
    world.created.clear()


class Recording:
    """A cluster driver that records each delete, and which of ``watched`` still existed at that moment."""

    def __init__(self, inner: ClusterDriver, watched: builtins.list[ObjectRef]) -> None:
        self._inner = inner
        self._watched = watched
        self.deletes: builtins.list[tuple[ObjectRef, builtins.list[ObjectRef]]] = []

    def delete(self, ref: ObjectRef) -> bool:
        present = [w for w in self._watched if self._inner.get(w) is not None]
        self.deletes.append((ref, present))
        return self._inner.delete(ref)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _ns(name: str) -> ObjectRef:
    return ObjectRef("v1", "Namespace", name)


# -- (a) teardown ordering with real finalizers --------------------------------------------------------------


def test_teardown_deletes_the_tiers_in_order_and_flux_prunes_each(scenario: World) -> None:
    tiers = {"app": "applications", "configs": "custom-objects", "controllers": "controllers"}
    refs = {name: scenario.kustomization(name, f"./apps/{name}", tier=tier) for name, tier in tiers.items()}
    for ref in refs.values():
        scenario.wait_for(ref, "Ready", lambda s: s.ready)
    # A HelmRelease of the applications tier, installed into the controllers tier's namespace.
    refs["web"] = scenario.helmrelease("web", "conf-controllers", tier="applications")
    scenario.wait_for(refs["web"], "Ready", lambda s: s.ready)
    rendered = ObjectRef("apps/v1", "Deployment", "conf-controllers-web", "conf-controllers")
    deployment = scenario.cluster.get(rendered)
    assert deployment is not None, f"helm-controller rendered no {rendered}"
    assert deployment["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"] == "web"
    namespaces = [_ns(f"conf-{name}") for name in tiers]
    assert all(scenario.cluster.get(ns) is not None for ns in namespaces)

    recording = Recording(scenario.cluster, [rendered, *namespaces])
    report = teardown_cluster(recording, timeout_per_tier=WAIT)

    assert [tier for tier, _ in report.tiers] == ["applications", "custom-objects", "controllers"]
    assert [ref.name for ref, _ in recording.deletes] == ["web", "app", "configs", "controllers"]
    # Each tier's objects were gone before the next tier went: the release uninstalled by helm-controller, each
    # namespace pruned by kustomize-controller and terminated by the namespace controller. (Within a tier the
    # objects are deleted together: what is left between two of them is the controllers' timing, not compared.)
    first_of_each_tier = [recording.deletes[i] for i in (0, 2, 3)]
    assert [[obj.name for obj in present] for _, present in first_of_each_tier] == [
        ["conf-controllers-web", "conf-app", "conf-configs", "conf-controllers"],
        ["conf-configs", "conf-controllers"],
        ["conf-controllers"],
    ]
    assert not report.blocked and not report.forced
    assert all(scenario.cluster.get(ns) is None for ns in namespaces)
    assert all(scenario.cluster.get(ref) is None for ref in refs.values())


def test_a_kustomization_whose_controller_is_gone_blocks_until_forced(scenario: World) -> None:
    blocked = scenario.kustomization("blocked", "./apps/blocked")
    scenario.wait_for(blocked, "Ready", lambda s: s.ready)
    scenario.scale_kustomize_controller(0)

    with pytest.raises(TeardownBlockedError) as raised:
        teardown_cluster(scenario.cluster, timeout_per_tier=scenario.blocked_wait)
    assert f"{blocked} (finalizers.fluxcd.io)" in str(raised.value)
    stuck = scenario.cluster.get(blocked)
    assert stuck is not None and stuck["metadata"].get("deletionTimestamp")

    report = teardown_cluster(scenario.cluster, timeout_per_tier=scenario.blocked_wait, force=True, pending=[blocked])
    assert report.forced and f"{blocked} (finalizers.fluxcd.io)" in report.blocked[0]
    assert scenario.cluster.get(blocked) is not None  # --force goes past it; nothing released it

    scenario.scale_kustomize_controller(1)  # back: it releases the finalizer and prunes what it applied
    scenario.gone({blocked, _ns("conf-blocked")}, "the released Kustomization and its namespace")


PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
HOLD = "conformance.example.org/hold"


def _phase(obj: Mapping[str, Any] | None) -> str:
    return str(((obj or {}).get("status") or {}).get("phase") or "")


def _finalizers_of(obj: Mapping[str, Any] | None) -> list[str]:
    return list(((obj or {}).get("metadata") or {}).get("finalizers") or [])


def test_protection_finalizers_hold_a_claim_and_its_volume_and_teardown_names_them(scenario: World) -> None:
    volumes = scenario.kustomization("volumes", "./apps/volumes", retryInterval="5s")
    scenario.wait_for(volumes, "Ready", lambda s: s.ready)
    claim = ObjectRef("v1", "PersistentVolumeClaim", "data", "conf-volumes")
    volume = ObjectRef("v1", "PersistentVolume", "conf-volumes-data")
    pod = ObjectRef("v1", "Pod", "user", "conf-volumes")
    namespace = _ns("conf-volumes")

    def bound() -> tuple[Manifest, Manifest] | None:
        c, v = scenario.cluster.get(claim), scenario.cluster.get(volume)
        return (c, v) if c and v and _phase(c) == "Bound" and _phase(v) == "Bound" else None

    # The PV controller binds them; the protection finalizers are there from creation (admission adds them).
    got_claim, got_volume = poll(f"{claim} and {volume} Bound ({scenario.driver})", bound, WAIT)
    assert PVC_PROTECTION in _finalizers_of(got_claim) and PV_PROTECTION in _finalizers_of(got_volume)
    if scenario.schedules_pods:  # pvc-protection counts only a scheduled pod as using the claim
        poll(f"{pod} scheduled", lambda: ((scenario.cluster.get(pod) or {}).get("spec") or {}).get("nodeName"), WAIT)

    tracked: list[ObjectRef] = []

    def on_tracked(refs: list[ObjectRef]) -> None:
        tracked[:] = refs

    # kustomize-controller prunes all four; the pod is held (by the test's finalizer), so pvc-protection holds
    # the claim, the claim keeps the volume Bound so pv-protection holds it, and the namespace stays Terminating.
    with pytest.raises(TeardownBlockedError) as raised:
        teardown_cluster(scenario.cluster, timeout_per_tier=scenario.blocked_wait, on_tracked=on_tracked)
    message = str(raised.value)
    for named in (f"{claim} ({PVC_PROTECTION})", f"{volume} ({PV_PROTECTION})", f"{pod} ({HOLD})", str(namespace)):
        assert named in message, f"the blocked teardown does not name {named}: {message}"
    held_claim, held_volume = scenario.cluster.get(claim), scenario.cluster.get(volume)
    assert held_claim is not None and held_claim["metadata"].get("deletionTimestamp")
    assert held_volume is not None and held_volume["metadata"].get("deletionTimestamp")
    assert _phase(held_volume) == "Bound" and _finalizers_of(held_volume) == [PV_PROTECTION]
    assert {claim, volume, pod, namespace} <= set(tracked)

    # The pod goes: pvc-protection lets the claim go, the volume is Released and pv-protection lets it go, the
    # namespace terminates. The rerun waits for what the first attempt left (as `sandbox destroy` reruns do).
    scenario.cluster.merge_patch(pod, {"metadata": {"finalizers": None}})
    report = teardown_cluster(scenario.cluster, timeout_per_tier=WAIT, pending=tracked)
    assert not report.blocked
    assert all(scenario.cluster.get(ref) is None for ref in (pod, claim, volume, namespace))


# -- (b) readiness names the real reason -------------------------------------------------------------------


def test_readiness_names_a_missing_path(scenario: World) -> None:
    missing = scenario.kustomization("missing", "./apps/no-such-app")
    # kustomize-controller checks the path before it builds: ArtifactFailed, not BuildFailed.
    state = scenario.wait_for(missing, "reports ArtifactFailed", lambda s: s.reason == "ArtifactFailed")
    assert not state.ready
    assert "kustomization path not found" in state.message and "apps/no-such-app" in state.message


def test_readiness_names_a_helmrelease_whose_chart_does_not_exist(scenario: World) -> None:
    nochart = scenario.helmrelease("nochart", "conf-nochart", chart="./charts/no-such-chart")
    # source-controller stats the chart path in the GitRepository's artifact: its HelmChart stalls with
    # InvalidChartReference, and helm-controller reports the release SourceNotReady with the HelmChart's message.
    state = scenario.wait_for(
        nochart, "reports the HelmChart's invalid chart reference", lambda s: "invalid chart reference" in s.message
    )
    assert not state.ready and state.reason == "SourceNotReady"
    assert state.message.startswith("HelmChart 'flux-system/flux-system-nochart' is not ready: ")
    assert "charts/no-such-chart: no such file or directory" in state.message
    assert f"{nochart}: SourceNotReady: HelmChart" in state.line()
    assert scenario.cluster.get(_ns("conf-nochart")) is None
    # Its source missing altogether: the same reason, the HelmChart's message naming the source.
    nosource = scenario.helmrelease("nosource", "conf-nochart", source="no-such-repo")
    state = scenario.wait_for(nosource, "reports its missing source", lambda s: "failed to get source" in s.message)
    assert not state.ready and state.reason == "SourceNotReady"
    assert state.message == (
        "HelmChart 'flux-system/flux-system-nosource' is not ready: failed to get source: "
        'GitRepository.source.toolkit.fluxcd.io "no-such-repo" not found'
    )
    # Its source there but never fetched (a branch the repository does not have): no artifact to build from.
    scenario.git_repository("unfetched", branch="no-such-branch")
    unfetched = scenario.helmrelease("unfetched", "conf-nochart", source="unfetched")
    state = scenario.wait_for(unfetched, "reports its source has no artifact", lambda s: "no artifact" in s.message)
    assert not state.ready and state.reason == "SourceNotReady"
    assert state.message == (
        "HelmChart 'flux-system/flux-system-unfetched' is not ready: "
        "no artifact available for GitRepository source 'unfetched'"
    )


def test_readiness_names_a_deployment_that_never_becomes_available(scenario: World) -> None:
    unavailable = scenario.kustomization("unavailable", "./apps/unavailable", wait=True, timeout="5s")
    state = scenario.wait_for(unavailable, "reports HealthCheckFailed", lambda s: s.reason == "HealthCheckFailed")
    assert not state.ready
    assert "Deployment/conf-unavailable/never" in state.message and "InProgress" in state.message


def test_readiness_names_a_suspended_object(scenario: World) -> None:
    suspended = scenario.kustomization("suspended", "./apps/app", suspend=True)
    state = scenario.readiness(suspended)
    assert state is not None and not state.ready and state.reason == "Suspended"
    # Flux does not reconcile it: nothing it would apply appears.
    assert scenario.cluster.get(_ns("conf-app")) is None


# -- (c) namespaces terminate through the namespace controller --------------------------------------------


def test_a_namespace_terminates_once_its_content_is_gone(world: World) -> None:
    namespace = _ns("conf-terminating")
    held = ObjectRef("v1", "ConfigMap", "held", namespace.name)
    world.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace.name}})
    world.cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "held", "namespace": namespace.name, "finalizers": ["conformance.example.org/hold"]},
            "data": {"k": "v"},
        }
    )
    world.cluster.delete(namespace)

    def terminating() -> Mapping[str, Any] | None:
        obj: Manifest | None = world.cluster.get(namespace)
        content: Manifest | None = world.cluster.get(held)
        if obj and content and (obj.get("status") or {}).get("phase") == "Terminating":
            return content if content["metadata"].get("deletionTimestamp") else None
        return None

    # The namespace controller deletes the content; the finalizer holds it, and so the namespace.
    poll(f"{namespace} Terminating and {held} deleted, held by its finalizer ({world.driver})", terminating, WAIT)
    time.sleep(1)  # not a timing assertion: a namespace must not vanish while content remains, however long
    assert world.cluster.get(namespace) is not None
    world.cluster.merge_patch(held, {"metadata": {"finalizers": None}})
    world.gone({namespace, held}, "the namespace and its content")


# -- API versions: what a Kubernetes 1.36 API server serves (discovery), and what it removed ---------------

REMOVED_BY_1_36 = [
    ("extensions/v1beta1", "Ingress"),  # removed in 1.22
    ("networking.k8s.io/v1beta1", "Ingress"),  # removed in 1.22
    ("batch/v1beta1", "CronJob"),  # removed in 1.25
    ("policy/v1beta1", "PodDisruptionBudget"),  # removed in 1.25
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler"),  # removed in 1.26
    ("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema"),  # removed in 1.32
    ("apps/v1beta2", "Deployment"),  # removed in 1.16
]


def _kubernetes_apis_in_the_scan_data() -> dict[tuple[str, str], ApiDeprecation]:
    """The Kubernetes API versions of the bundled deprecation data: what the validate stage's removed-API scan knows."""
    return {(e.apiVersion, e.kind): e for e in deprecations.load_data().entries if e.component == "kubernetes"}


def test_removed_api_versions_are_refused_and_served_ones_accepted(world: World, tmp_path: Path) -> None:
    """The API server's own discovery agrees with the scan's data at the version the API server reports.

    The validate stage scans the sandbox's manifests at its control plane's version with the bundled deprecation
    data; on a real cluster, what that scan reports removed must be exactly what the API server no longer serves
    (the driver looks each kind up in the server's discovery: not served is refused at apply), and what it reports
    only deprecated must still be served.
    """
    version = minor_version_of(world.cluster.server_version())
    assert version == "1.36"
    apis = _kubernetes_apis_in_the_scan_data()
    assert set(REMOVED_BY_1_36) <= set(apis)
    namespace = "conf-apis"
    world.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    refused: dict[tuple[str, str], str] = {}
    for api_version, kind in sorted(apis):
        try:
            world.cluster.apply(
                {"apiVersion": api_version, "kind": kind, "metadata": {"name": "old", "namespace": namespace}}
            )
        except ClusterError as exc:
            refused[(api_version, kind)] = str(exc)
        else:
            world.cluster.delete(ObjectRef(api_version, kind, "old", namespace))
    for (api_version, kind), message in refused.items():
        assert api_version in message and kind in message, f"the refusal names neither: {message}"
    assert set(REMOVED_BY_1_36) <= set(refused), f"served on the {world.driver} cluster: " + ", ".join(
        f"{a} {k}" for a, k in REMOVED_BY_1_36 if (a, k) not in refused
    )

    # The product's removed-API scan at the server's version, over one manifest per API version of its data.
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for i, (api_version, kind) in enumerate(sorted(apis)):
        (manifests / f"{i:03d}.yaml").write_text(
            yaml.safe_dump({"apiVersion": api_version, "kind": kind, "metadata": {"name": "old"}}), encoding="utf-8"
        )
    findings, skipped, _ = scan_repo_paths(tmp_path, ["manifests"], k8s_version=version, flux_version=None)
    assert not skipped
    scanned_removed = {(f["apiVersion"], f["kind"]) for f in findings if f["removed"]}
    scanned_deprecated = {(f["apiVersion"], f["kind"]) for f in findings if not f["removed"]}
    assert scanned_removed == set(refused), (
        f"the scan at {version} and the {world.driver} API server disagree: removed by the scan but served: "
        f"{sorted(scanned_removed - set(refused))}; refused by the server but not removed by the scan: "
        f"{sorted(set(refused) - scanned_removed)}"
    )
    assert scanned_deprecated and not scanned_deprecated & set(refused)

    # The replacements are served: the same object is accepted.
    ingress = world.cluster.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "new", "namespace": namespace},
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
        }
    )
    assert ingress["metadata"]["name"] == "new"
    world.cluster.delete(_ns(namespace))
    world.gone({_ns(namespace)}, "the namespace")
