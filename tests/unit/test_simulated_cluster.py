"""The simulated cluster: API-server rules, Flux controllers, and the ways a real cluster fails.

Flux scenarios bootstrap the example fleet repository's clusters (copied into
a temporary directory, its git URL pointed at a local bare repository) the way
the bootstrap stage does: Flux components, the git credentials secret, then the
sync objects. Time is an injected clock, stepped by the tests.
"""

from __future__ import annotations

import base64
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.drivers.cluster import ClusterDriver, ObjectRef
from sandbox.drivers.git import GitCli
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.drivers.simulation.kustomize import BuildError, build, envsubst
from sandbox.errors import ClusterError, ClusterUnreachableError, InvalidInputError, TeardownBlockedError
from sandbox.flux import inventory_refs
from sandbox.teardown import TeardownReport, load_balancers_left, teardown_cluster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "simulation"
EXAMPLE_REPO = Path(__file__).resolve().parents[2] / "examples" / "fleet-repo"
EXAMPLE_URL = "ssh://git@github.com/example-org/fleet-infra"
DEMO_REGISTRY_URL = "oci://registry.example.com/fleet/platform"  # what the example fleet's OCIRepositories name

KS_API = "kustomize.toolkit.fluxcd.io/v1"
HR_API = "helm.toolkit.fluxcd.io/v2"
SOURCE_API = "source.toolkit.fluxcd.io/v1"
ROOT = ObjectRef(KS_API, "Kustomization", "flux-system", "flux-system")
PLATFORM_CONFIGS = ObjectRef(KS_API, "Kustomization", "platform-configs", "flux-system")
PLATFORM_CONTROLLERS = ObjectRef(KS_API, "Kustomization", "platform-controllers", "flux-system")
APPS = ObjectRef(KS_API, "Kustomization", "apps", "flux-system")
PODINFO_RELEASE = ObjectRef(HR_API, "HelmRelease", "podinfo", "podinfo")
SHARED_INGRESS = ObjectRef("networking.k8s.io/v1", "Ingress", "shared-entrypoint", "platform")
SHARED_VOLUME = ObjectRef("v1", "PersistentVolumeClaim", "shared-cache", "platform")
PLATFORM_REPO = ObjectRef(SOURCE_API, "GitRepository", "platform", "flux-system")
PLATFORM_EXTERNALS = ["load-balancer-platform-shared-entrypoint", "volume-platform-shared-cache"]


class SteppedClock:
    """A clock the test moves forward."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Fleet:
    """A copy of the example fleet repository, its bare remote, and a checkout to push from."""

    remote: Path
    checkout: Path
    git: GitCli

    def push(self, message: str) -> str:
        sha = self.git.commit_all(self.checkout, message)
        assert sha is not None
        self.git.push(self.checkout, "main")
        return sha

    def release(self, tag: str) -> None:
        self.git.tag(self.checkout, tag, f"platform {tag}")
        self.git.push_tag(self.checkout, tag)


@pytest.fixture(scope="module")
def fleet_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The example fleet repository in a bare remote (tag 1.2.3), made once per module."""
    root = tmp_path_factory.mktemp("fleet-template")
    git = GitCli()
    remote = root / "remote.git"
    checkout = root / "checkout"
    git.init_bare(remote)
    shutil.copytree(EXAMPLE_REPO, checkout)
    for path in checkout.rglob("*.yaml"):
        path.write_text(path.read_text(encoding="utf-8").replace(EXAMPLE_URL, remote.as_uri()), encoding="utf-8")
    git.init_repo(checkout, str(remote))
    git.commit_all(checkout, "fleet repository")
    git.tag(checkout, "1.2.3", "platform 1.2.3")
    git.push(checkout, "main")
    git.push_tag(checkout, "1.2.3")
    return remote, checkout


@pytest.fixture
def fleet(fleet_template: tuple[Path, Path], tmp_path: Path) -> Fleet:
    """A private copy of the template (tests push to it)."""
    remote, checkout = tmp_path / "remote.git", tmp_path / "checkout"
    shutil.copytree(fleet_template[0], remote)
    shutil.copytree(fleet_template[1], checkout)
    git = GitCli()
    # Point the checkout, and the URLs Flux reads from the repository, at this test's remote.
    git._git(checkout, "remote", "set-url", "origin", str(remote), timeout_is_retryable=False)
    for path in checkout.rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(fleet_template[0].as_uri(), remote.as_uri()), encoding="utf-8")
    fleet = Fleet(remote=remote, checkout=checkout, git=git)
    fleet.push("point the fleet at this test's remote")
    return fleet


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def simulation_dir(tmp_path: Path) -> Path:
    """What the local cluster module creates at apply."""
    path = tmp_path / "simulated-cluster"
    (path / "external").mkdir(parents=True)
    return path


@pytest.fixture
def make_cluster(simulation_dir: Path, clock: SteppedClock, fleet: Fleet) -> Callable[..., SimulatedCluster]:
    def make(**options: Any) -> SimulatedCluster:
        options.setdefault("clock", clock)
        options.setdefault("oci_git_remote", str(fleet.remote))
        return SimulatedCluster(simulation_dir, **options)

    return make


@pytest.fixture
def cluster(simulation_dir: Path, clock: SteppedClock) -> SimulatedCluster:
    """A cluster for API-server tests (no fleet repository)."""
    return SimulatedCluster(simulation_dir, clock=clock)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]


def bootstrap(
    cluster: SimulatedCluster,
    fleet: Fleet,
    env: str = "development",
    *,
    components: Callable[[dict[str, Any]], bool] = lambda doc: True,
    secret: bool = True,
) -> None:
    """What the bootstrap stage applies: Flux components, the git credentials secret, the sync objects."""
    flux_dir = fleet.checkout / "clusters" / env / "flux-system"
    for doc in documents(flux_dir / "gotk-components.yaml"):
        if components(doc):
            cluster.apply(doc)
    if secret:
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "flux-system", "namespace": "flux-system"},
                "stringData": {"username": "git", "password": "s3cret-token"},
            }
        )
    for doc in documents(flux_dir / "gotk-sync.yaml"):
        cluster.apply(doc)
    cluster.tick()  # the controllers act after the last apply


def ready(obj: dict[str, Any] | None) -> tuple[str, str, str]:
    """``(status, reason, message)`` of the Ready condition."""
    assert obj is not None
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"], condition["reason"], condition["message"]
    return ("", "", "")


def flux_objects(cluster: SimulatedCluster) -> list[dict[str, Any]]:
    return [o for api, kind in ((KS_API, "Kustomization"), (HR_API, "HelmRelease")) for o in cluster.list(api, kind)]


def settle(cluster: SimulatedCluster, clock: SteppedClock, steps: int = 10, step: float = 1.5) -> None:
    """Let simulated time pass (each call ticks the controllers)."""
    for _ in range(steps):
        clock.advance(step)
        cluster.tick()


def configmap(name: str, namespace: str = "default", labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"key": "value"}}


# -- the API server ----------------------------------------------------------------


def test_it_is_a_cluster_driver(cluster: SimulatedCluster) -> None:
    assert isinstance(cluster, ClusterDriver)
    assert cluster.server_version() == "1.31"
    assert "simulated" in repr(cluster).lower()


def test_apply_creates_then_updates_with_generation_and_resource_version(cluster: SimulatedCluster) -> None:
    created = cluster.apply({**configmap("settings"), "spec": {"size": 1}})
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    again = cluster.apply({**configmap("settings"), "spec": {"size": 1}})
    assert again["metadata"]["resourceVersion"] == meta["resourceVersion"]  # a no-op write changes nothing

    relabelled = cluster.apply({**configmap("settings", labels={"team": "platform"}), "spec": {"size": 1}})
    assert relabelled["metadata"]["generation"] == 1
    assert int(relabelled["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    resized = cluster.apply({**configmap("settings"), "spec": {"size": 2}})
    assert resized["metadata"]["generation"] == 2
    assert resized["metadata"]["labels"] == {"team": "platform"}  # labels not given are kept
    assert resized["metadata"]["uid"] == meta["uid"]
    stored = cluster.get(ObjectRef("v1", "ConfigMap", "settings", "default"))
    assert stored is not None and stored["spec"] == {"size": 2}


def test_apply_keeps_status_and_finalizers(cluster: SimulatedCluster) -> None:
    cluster.apply({**configmap("held"), "metadata": {"name": "held", "namespace": "default", "finalizers": ["a/b"]}})
    updated = cluster.apply({**configmap("held"), "status": {"ignored": True}})
    assert updated["metadata"]["finalizers"] == ["a/b"]
    assert "status" not in updated


def test_get_and_list_with_label_selectors(cluster: SimulatedCluster) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    cluster.apply(configmap("web", "shop", {"app": "web", "tier": "front"}))
    cluster.apply(configmap("db", "shop", {"app": "db"}))
    cluster.apply(configmap("other", "default", {"app": "web"}))

    def names(selector: str | None, namespace: str | None = None) -> list[str]:
        return [o["metadata"]["name"] for o in cluster.list("v1", "ConfigMap", namespace, selector)]

    assert names(None, "shop") == ["db", "web"]
    assert names("app=web") == ["other", "web"]
    assert names("app==web,tier=front") == ["web"]
    assert names("app!=web", "shop") == ["db"]
    assert names("tier") == ["web"]
    assert names("!tier", "shop") == ["db"]
    assert names("app in (db, web)", "shop") == ["db", "web"]
    assert names("app notin (web)", "shop") == ["db"]
    with pytest.raises(ClusterError, match="unable to parse requirement"):
        cluster.list("v1", "ConfigMap", label_selector="app=(web")
    assert cluster.get(ObjectRef("v1", "ConfigMap", "missing", "shop")) is None


def test_namespaces_must_exist_and_namespaced_kinds_need_one(cluster: SimulatedCluster) -> None:
    with pytest.raises(ClusterError, match='namespaces "nowhere" not found'):
        cluster.apply(configmap("lost", "nowhere"))
    with pytest.raises(InvalidInputError, match="namespaced"):
        cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "no-namespace"}})
    with pytest.raises(InvalidInputError, match="metadata.name"):
        cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})
    with pytest.raises(ClusterError, match="may not be deleted"):
        cluster.delete(ObjectRef("v1", "Namespace", "kube-system"))


def test_merge_patch_follows_rfc_7386(cluster: SimulatedCluster) -> None:
    ref = ObjectRef("v1", "ConfigMap", "patched", "default")
    cluster.apply({**configmap("patched"), "spec": {"keep": 1, "drop": 2, "nested": {"a": 1, "b": 2}}})
    patched = cluster.merge_patch(ref, {"spec": {"drop": None, "nested": {"b": None, "c": 3}, "list": [1, 2]}})
    assert patched["spec"] == {"keep": 1, "nested": {"a": 1, "c": 3}, "list": [1, 2]}
    assert patched["metadata"]["generation"] == 2
    annotated = cluster.merge_patch(ref, {"metadata": {"annotations": {"note": "x"}}})
    assert annotated["metadata"]["generation"] == 2 and annotated["metadata"]["annotations"] == {"note": "x"}
    with pytest.raises(ClusterError, match="has been modified"):
        cluster.merge_patch(ref, {"metadata": {"resourceVersion": "1"}, "spec": {"keep": 5}})
    with pytest.raises(ClusterError, match='configmaps "absent" not found'):
        cluster.merge_patch(ObjectRef("v1", "ConfigMap", "absent", "default"), {"data": {}})


def test_finalizers_hold_a_deleted_object_until_removed(cluster: SimulatedCluster, clock: SteppedClock) -> None:
    ref = ObjectRef("v1", "ConfigMap", "guarded", "default")
    cluster.apply(
        {**configmap("guarded"), "metadata": {**configmap("guarded")["metadata"], "finalizers": ["example.com/never"]}}
    )
    assert cluster.delete(ref) is True
    clock.advance(3600)
    stuck = cluster.get(ref)
    assert stuck is not None and stuck["metadata"]["deletionTimestamp"]
    assert stuck["metadata"]["finalizers"] == ["example.com/never"]  # nothing in the simulation removes it
    with pytest.raises(ClusterError, match="no new finalizers"):
        cluster.merge_patch(ref, {"metadata": {"finalizers": ["example.com/never", "example.com/more"]}})
    cluster.merge_patch(ref, {"metadata": {"finalizers": None}})
    assert cluster.get(ref) is None
    assert cluster.delete(ref) is False

    plain = ObjectRef("v1", "ConfigMap", "plain", "default")
    cluster.apply(configmap("plain"))
    assert cluster.delete(plain) is True and cluster.get(plain) is None


def test_a_deleted_namespace_terminates_until_its_content_is_gone(cluster: SimulatedCluster) -> None:
    namespace = ObjectRef("v1", "Namespace", "team")
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    held = ObjectRef("v1", "ConfigMap", "held", "team")
    cluster.apply(
        {
            **configmap("held", "team"),
            "metadata": {"name": "held", "namespace": "team", "finalizers": ["example.com/hold"]},
        }
    )
    cluster.apply(configmap("free", "team"))
    cluster.delete(namespace)
    terminating = cluster.get(namespace)
    assert terminating is not None and terminating["status"]["phase"] == "Terminating"
    assert cluster.get(ObjectRef("v1", "ConfigMap", "free", "team")) is None
    with pytest.raises(ClusterError, match="being terminated"):
        cluster.apply(configmap("late", "team"))
    cluster.merge_patch(held, {"metadata": {"finalizers": []}})
    assert cluster.get(held) is None
    assert cluster.get(namespace) is None


@pytest.mark.parametrize(
    ("api_version", "kind", "version", "refused"),
    [
        ("extensions/v1beta1", "Ingress", "1.31", True),
        ("extensions/v1beta1", "Ingress", "1.21", False),
        ("networking.k8s.io/v1beta1", "Ingress", "1.22", True),
        ("policy/v1beta1", "PodSecurityPolicy", "1.25", True),
        ("policy/v1beta1", "PodSecurityPolicy", "1.24", False),
        ("batch/v1beta1", "CronJob", "1.25", True),
        ("autoscaling/v2beta2", "HorizontalPodAutoscaler", "1.26", True),
        ("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema", "1.29", True),
        ("networking.k8s.io/v1", "Ingress", "1.31", False),
    ],
)
def test_removed_api_versions_are_refused(
    simulation_dir: Path, api_version: str, kind: str, version: str, refused: bool
) -> None:
    cluster = SimulatedCluster(simulation_dir, kubernetes_version=version)
    namespaced = kind not in ("PodSecurityPolicy", "FlowSchema")
    manifest = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "legacy", **({"namespace": "default"} if namespaced else {})},
        "spec": {},
    }
    if refused:
        with pytest.raises(ClusterError, match=f'no matches for kind "{kind}" in version "{api_version}"'):
            cluster.apply(manifest)
        assert cluster.list(api_version, kind) == []
    else:
        assert cluster.apply(manifest)["apiVersion"] == api_version


def test_custom_kinds_need_their_crd(cluster: SimulatedCluster, fleet: Fleet) -> None:
    ks = documents(fleet.checkout / "clusters/development/flux-system/gotk-sync.yaml")[1]
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}})
    with pytest.raises(ClusterError, match="CustomResourceDefinition"):
        cluster.apply(ks)
    assert cluster.get(ROOT) is None and cluster.list(KS_API, "Kustomization") == []
    for doc in documents(fleet.checkout / "clusters/development/flux-system/gotk-components.yaml"):
        if doc["kind"] == "CustomResourceDefinition":
            cluster.apply(doc)
    assert cluster.apply(ks)["kind"] == "Kustomization"


def test_secret_values_are_stored_encoded_and_never_in_errors(cluster: SimulatedCluster) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "token", "namespace": "default"},
        "stringData": {"token": "p4ssw0rd-value"},
    }
    stored = cluster.apply(secret)
    assert "stringData" not in stored
    assert base64.b64decode(stored["data"]["token"]) == b"p4ssw0rd-value"
    with pytest.raises(ClusterError) as refused:
        cluster.apply({**secret, "metadata": {"name": "token", "namespace": "elsewhere"}})
    assert "p4ssw0rd" not in str(refused.value)
    assert str(refused.value).startswith("simulated cluster at ")


def test_state_persists_across_instances(simulation_dir: Path) -> None:
    first = SimulatedCluster(simulation_dir)
    created = first.apply(configmap("shared"))
    second = SimulatedCluster(simulation_dir)
    seen = second.get(ObjectRef("v1", "ConfigMap", "shared", "default"))
    assert seen is not None and seen["metadata"]["uid"] == created["metadata"]["uid"]
    updated = second.apply({**configmap("shared"), "data": {"key": "changed"}})
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    again = first.get(ObjectRef("v1", "ConfigMap", "shared", "default"))
    assert again is not None and again["data"] == {"key": "changed"}


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.server_version(),
        lambda c: c.apply(configmap("x")),
        lambda c: c.get(ObjectRef("v1", "ConfigMap", "x", "default")),
        lambda c: c.list("v1", "ConfigMap"),
        lambda c: c.merge_patch(ObjectRef("v1", "ConfigMap", "x", "default"), {}),
        lambda c: c.delete(ObjectRef("v1", "ConfigMap", "x", "default")),
        lambda c: next(iter(c.watch("v1", "ConfigMap", timeout_seconds=0.1))),
        lambda c: c.external_resources(),
    ],
)
def test_a_missing_simulation_dir_is_unreachable(tmp_path: Path, call: Callable[[SimulatedCluster], object]) -> None:
    cluster = SimulatedCluster(tmp_path / "destroyed")
    with pytest.raises(ClusterUnreachableError, match=r"simulated cluster at .*destroyed does not exist"):
        call(cluster)


# -- the kustomize build --------------------------------------------------------------


def test_build_generates_a_kustomization_like_flux() -> None:
    objects = build(FIXTURES / "kustomize-build", "./generated")
    names = sorted((o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects)
    assert names == [("", "from-subdirectory"), ("", "generated"), ("", "top"), ("nested", "listed")]
    listed = next(o for o in objects if o["metadata"]["name"] == "listed")
    assert listed["metadata"]["labels"] == {"fixture": "nested"}
    targeted = build(FIXTURES / "kustomize-build", "generated", target_namespace="apps")
    assert {o["metadata"]["name"]: o["metadata"].get("namespace") for o in targeted} == {
        "top": "apps",
        "from-subdirectory": "apps",
        "generated": None,  # a Namespace is cluster-scoped
        "listed": "apps",
    }


def test_build_substitutes_variables_like_flux() -> None:
    [greeting] = build(FIXTURES / "kustomize-build", "substitute", substitute={"name": "fleet"})
    assert greeting["data"] == {"greeting": "hello", "name": "fleet", "literal": "${kept}"}
    [untouched] = build(FIXTURES / "kustomize-build", "substitute", substitute=None)
    assert untouched["data"]["greeting"] == "${greeting:=hello}"
    with pytest.raises(BuildError, match="'name' is not set"):
        build(FIXTURES / "kustomize-build", "substitute", substitute={})
    assert envsubst("${a:-x} ${b=y} ${c-z} $${d}", {"a": "", "b": ""}) == "x  z ${d}"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("./absent", "kustomization path not found"),
        ("./invalid", "failed to decode Kubernetes YAML from invalid/broken.yaml"),
        ("./unsupported", "does not support patches"),
        ("../..", "outside the source artifact"),
    ],
)
def test_build_failures(path: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        build(FIXTURES / "kustomize-build", path)


# -- Flux controllers --------------------------------------------------------------------


def test_without_flux_controllers_flux_objects_get_no_status(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet, components=lambda doc: doc["kind"] != "Deployment")
    settle(cluster, clock, steps=2)
    for obj in [cluster.get(ROOT), cluster.get(ObjectRef(SOURCE_API, "GitRepository", "flux-system", "flux-system"))]:
        assert obj is not None and "status" not in obj and "finalizers" not in obj["metadata"]
    bootstrap(cluster, fleet)  # now with the controllers' Deployments
    assert ready(cluster.get(ROOT))[0] == "True"


def test_a_git_repository_without_its_secret_fails_authentication(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet, secret=False)
    source = cluster.get(ObjectRef(SOURCE_API, "GitRepository", "flux-system", "flux-system"))
    status, reason, message = ready(source)
    assert (status, reason) == ("False", "AuthenticationFailed")
    assert 'secrets "flux-system" not found' in message
    assert ready(cluster.get(ROOT))[:2] == ("False", "ArtifactFailed")


def test_a_git_repository_reaches_only_local_remotes(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    ref = ObjectRef(SOURCE_API, "GitRepository", "flux-system", "flux-system")
    cluster.merge_patch(ref, {"spec": {"url": EXAMPLE_URL}})
    status, reason, message = ready(cluster.get(ref))
    assert (status, reason) == ("False", "GitOperationFailed") and EXAMPLE_URL in message


def test_the_development_cluster_reconciles_to_ready(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, simulation_dir: Path
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    objects = flux_objects(cluster)
    assert sorted(o["metadata"]["name"] for o in objects) == [
        "apps",
        "aws-ebs-csi-driver",
        "aws-load-balancer-controller",
        "flux-system",
        "platform-configs",
        "platform-controllers",
        "podinfo",
    ]
    for obj in objects:
        assert ready(obj)[0] == "True", obj["metadata"]["name"]
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        assert obj["metadata"]["finalizers"] == ["finalizers.fluxcd.io"]
    ingress, volume = cluster.get(SHARED_INGRESS), cluster.get(SHARED_VOLUME)
    assert ingress is not None and ingress["metadata"]["finalizers"] == ["ingress.k8s.aws/resources"]
    assert ingress["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "platform-configs"
    assert volume is not None and volume["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert volume["status"]["phase"] == "Bound"
    [pv] = cluster.list("v1", "PersistentVolume")  # dynamically provisioned by the CSI driver
    assert pv["metadata"]["name"] == f"pvc-{volume['metadata']['uid']}"
    assert sorted(pv["metadata"]["finalizers"]) == [
        "external-provisioner.volume.kubernetes.io/finalizer",
        "kubernetes.io/pv-protection",
    ]
    assert pv["spec"]["claimRef"]["uid"] == volume["metadata"]["uid"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["status"]["phase"] == "Bound"
    assert cluster.external_resources() == [
        "load-balancer-platform-shared-entrypoint",
        "load-balancer-podinfo-podinfo",
        "volume-platform-shared-cache",
    ]
    assert sorted(p.name for p in (simulation_dir / "external").iterdir())[0].endswith(".json")
    configs = cluster.get(PLATFORM_CONFIGS)
    assert configs is not None
    assert {"id": "platform_shared-entrypoint_networking.k8s.io_Ingress", "v": "v1"} in configs["status"]["inventory"][
        "entries"
    ]
    assert {"id": "_platform__Namespace", "v": "v1"} in configs["status"]["inventory"]["entries"]
    main = fleet.git.rev_parse(fleet.checkout, "HEAD")
    assert configs["status"]["lastAppliedRevision"] == f"main@sha1:{main}"
    release = cluster.get(PODINFO_RELEASE)
    assert release is not None and release["status"]["lastAttemptedRevision"] == "6.7.1"  # postBuild substitution
    rendered = cluster.list("apps/v1", "Deployment", label_selector="helm.toolkit.fluxcd.io/name=podinfo")
    assert [d["metadata"]["name"] for d in rendered] == ["podinfo"]


def test_readiness_waits_for_the_delay_and_reports_observed_generation(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster(readiness_delay_seconds=30)
    bootstrap(cluster, fleet)
    source_ref = ObjectRef(SOURCE_API, "GitRepository", "flux-system", "flux-system")
    source = cluster.get(source_ref)
    assert ready(source)[:2] == ("Unknown", "Progressing")
    assert source is not None and "observedGeneration" not in source["status"]
    clock.advance(29)
    assert ready(cluster.get(source_ref))[0] == "Unknown"
    clock.advance(2)
    source = cluster.get(source_ref)
    assert ready(source)[0] == "True" and source is not None and source["status"]["observedGeneration"] == 1
    cluster.merge_patch(source_ref, {"spec": {"interval": "5m0s"}})
    source = cluster.get(source_ref)
    assert source is not None and source["metadata"]["generation"] == 2
    assert ready(source)[0] == "Unknown" and source["status"]["observedGeneration"] == 1
    clock.advance(31)
    source = cluster.get(source_ref)
    assert source is not None and ready(source)[0] == "True" and source["status"]["observedGeneration"] == 2
    settle(cluster, clock, steps=8, step=31)
    assert all(ready(o)[0] == "True" for o in flux_objects(cluster))


def test_injected_failures_report_their_reason_and_message(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    cluster.inject_failure(PODINFO_RELEASE, "UpgradeFailed", "simulated: chart hook timed out")
    release = cluster.get(PODINFO_RELEASE)
    assert ready(release) == ("False", "UpgradeFailed", "simulated: chart hook timed out")
    assert release is not None and release["status"]["observedGeneration"] == release["metadata"]["generation"]
    other = SimulatedCluster(cluster.simulation_dir)  # persisted: another process sees it too
    assert ready(other.get(PODINFO_RELEASE))[1] == "UpgradeFailed"
    cluster.clear_failure(PODINFO_RELEASE)
    assert ready(cluster.get(PODINFO_RELEASE))[0] == "True"


def test_a_failing_controller_release_stops_reconciling_custom_objects(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    controller = ObjectRef(HR_API, "HelmRelease", "aws-load-balancer-controller", "flux-system")
    cluster.inject_failure(controller, "InstallFailed", "simulated: crash loop")
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.delete(PLATFORM_CONFIGS)
    ingress = cluster.get(SHARED_INGRESS)
    assert ingress is not None and ingress["metadata"]["finalizers"] == ["ingress.k8s.aws/resources"]
    assert cluster.get(SHARED_VOLUME) is None  # its controller still runs
    cluster.clear_failure(controller)
    assert cluster.get(SHARED_INGRESS) is None
    assert cluster.external_resources() == ["load-balancer-podinfo-podinfo"]


# -- teardown ordering, suspension, self-healing ----------------------------------------------


def test_deleting_custom_objects_while_controllers_run_cleans_external_resources(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.delete(APPS)
    cluster.delete(PLATFORM_CONFIGS)
    settle(cluster, clock, steps=2)
    for ref in (PLATFORM_CONFIGS, SHARED_INGRESS, SHARED_VOLUME, ObjectRef("v1", "Namespace", "platform")):
        assert cluster.get(ref) is None, ref
    assert cluster.external_resources() == []
    cluster.delete(PLATFORM_CONTROLLERS)
    assert cluster.list(HR_API, "HelmRelease") == []
    assert cluster.list("apps/v1", "Deployment", "kube-system") == []


def test_deleting_controllers_first_leaves_finalizers_pending_forever(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.delete(PLATFORM_CONTROLLERS)
    assert cluster.list(HR_API, "HelmRelease", "flux-system") == []
    cluster.delete(PLATFORM_CONFIGS)
    settle(cluster, clock, steps=5, step=3600)
    assert cluster.get(PLATFORM_CONFIGS) is None
    stuck = cluster.get(SHARED_INGRESS)
    assert stuck is not None and stuck["metadata"]["deletionTimestamp"]
    assert stuck["metadata"]["finalizers"] == ["ingress.k8s.aws/resources"]
    # The claim goes (nothing mounts it); its PV is Released and nobody deletes the volume.
    assert cluster.get(SHARED_VOLUME) is None
    [pv] = cluster.list("v1", "PersistentVolume")
    assert pv["status"]["phase"] == "Released"
    assert "external-provisioner.volume.kubernetes.io/finalizer" in pv["metadata"]["finalizers"]
    namespace = cluster.get(ObjectRef("v1", "Namespace", "platform"))
    assert namespace is not None and namespace["status"]["phase"] == "Terminating"
    assert set(PLATFORM_EXTERNALS) <= set(cluster.external_resources())
    pending = {p["object"] for p in cluster.status_summary()["pending_deletion"]}
    assert "Ingress/platform/shared-entrypoint" in pending


def test_deleting_a_suspended_kustomization_leaves_what_it_applied(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.merge_patch(PLATFORM_CONFIGS, {"spec": {"suspend": True}})
    cluster.delete(PLATFORM_CONFIGS)
    settle(cluster, clock, steps=2)
    assert cluster.get(PLATFORM_CONFIGS) is None
    for ref in (SHARED_INGRESS, SHARED_VOLUME):
        left = cluster.get(ref)
        assert left is not None and "deletionTimestamp" not in left["metadata"], ref
    assert set(PLATFORM_EXTERNALS) <= set(cluster.external_resources())


def test_deleting_a_suspended_helmrelease_skips_the_uninstall(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.merge_patch(APPS, {"spec": {"suspend": True}})
    cluster.merge_patch(PODINFO_RELEASE, {"spec": {"suspend": True}})
    cluster.delete(PODINFO_RELEASE)
    assert cluster.get(PODINFO_RELEASE) is None
    assert cluster.get(ObjectRef("apps/v1", "Deployment", "podinfo", "podinfo")) is not None
    assert "load-balancer-podinfo-podinfo" in cluster.external_resources()


def test_a_running_root_kustomization_heals_a_deleted_child(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    before = cluster.get(PLATFORM_CONFIGS)
    assert before is not None
    cluster.delete(PLATFORM_CONFIGS)
    settle(cluster, clock, steps=5)
    healed = cluster.get(PLATFORM_CONFIGS)
    assert healed is not None and healed["metadata"]["uid"] != before["metadata"]["uid"]
    assert ready(healed)[0] == "True"
    assert cluster.get(SHARED_INGRESS) is not None
    assert set(PLATFORM_EXTERNALS) <= set(cluster.external_resources())


def test_a_suspended_root_kustomization_does_not_heal(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.delete(PLATFORM_CONFIGS)
    settle(cluster, clock, steps=5)
    assert cluster.get(PLATFORM_CONFIGS) is None


def test_a_suspension_set_by_patch_survives_the_root_reapplying_its_child(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    cluster.merge_patch(PLATFORM_CONFIGS, {"spec": {"suspend": True}})  # flux suspend ks platform-configs
    apps = fleet.checkout / "clusters" / "development" / "apps.yaml"
    apps.write_text(apps.read_text(encoding="utf-8").replace('"6.7.1"', '"6.7.2"'), encoding="utf-8")
    fleet.push("development: podinfo 6.7.2")
    clock.advance(2)
    root = cluster.get(ROOT)
    assert root is not None and root["status"]["lastAppliedRevision"].endswith(
        str(fleet.git.rev_parse(fleet.checkout, "HEAD"))
    )
    configs = cluster.get(PLATFORM_CONFIGS)
    assert configs is not None and configs["spec"]["suspend"] is True
    # A suspended dependency never observes its new generation: its dependents wait, as in Flux.
    assert ready(cluster.get(APPS)) == (
        "False",
        "DependencyNotReady",
        "dependency 'flux-system/platform-configs' is not ready",
    )
    cluster.merge_patch(PLATFORM_CONFIGS, {"spec": {"suspend": False}})  # flux resume ks platform-configs
    release = cluster.get(PODINFO_RELEASE)
    assert release is not None and release["status"]["lastAttemptedRevision"] == "6.7.2"
    assert ready(release)[:2] == ("True", "UpgradeSucceeded")


def test_the_product_teardown_leaves_nothing_behind(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    report = teardown_cluster(cluster, timeout_per_tier=30)
    assert [tier for tier, _ in report.tiers] == ["applications", "custom-objects", "controllers"]
    assert cluster.external_resources() == []
    assert [o["metadata"]["name"] for o in flux_objects(cluster)] == ["flux-system"]


def test_the_product_teardown_is_blocked_when_controllers_go_too_early(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    # A mislabelled controllers Kustomization is deleted with the applications.
    cluster.merge_patch(
        PLATFORM_CONTROLLERS, {"metadata": {"annotations": {"fleet-sandbox.io/teardown-tier": "applications"}}}
    )
    with pytest.raises(TeardownBlockedError) as blocked:
        teardown_cluster(cluster, timeout_per_tier=0.3)
    assert "tier custom-objects" in str(blocked.value)
    assert "Ingress/platform/shared-entrypoint (ingress.k8s.aws/resources)" in str(blocked.value)
    assert set(PLATFORM_EXTERNALS) <= set(cluster.external_resources())


def test_the_product_teardown_resumes_suspended_children_so_their_deletion_cleans_up(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    # Somebody suspended children while debugging (flux suspend ks / hr); deleted as
    # they are, they would strand the load balancers and volumes they created.
    cluster.merge_patch(PLATFORM_CONFIGS, {"spec": {"suspend": True}})
    cluster.merge_patch(PODINFO_RELEASE, {"spec": {"suspend": True}})
    assert set(PLATFORM_EXTERNALS) | {"load-balancer-podinfo-podinfo"} <= set(cluster.external_resources())

    report = teardown_cluster(cluster, timeout_per_tier=30)

    assert sorted(report.unsuspended) == ["HelmRelease/podinfo/podinfo", "Kustomization/flux-system/platform-configs"]
    assert cluster.external_resources() == []
    assert [o["metadata"]["name"] for o in flux_objects(cluster)] == ["flux-system"]
    root = cluster.get(ROOT)
    assert root is not None and root["spec"]["suspend"] is True


def test_a_rerun_of_a_blocked_teardown_waits_for_what_the_deleted_tier_left(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    podinfo = ObjectRef("apps/v1", "Deployment", "podinfo", "podinfo")
    # A finalizer no controller ever removes, on what the applications tier uninstalls.
    cluster.merge_patch(podinfo, {"metadata": {"finalizers": ["example.com/never-cleared"]}})
    journal: list[list[ObjectRef]] = []
    with pytest.raises(TeardownBlockedError) as blocked:
        teardown_cluster(cluster, timeout_per_tier=0.3, on_tracked=journal.append)
    assert "tier applications" in str(blocked.value)
    assert "Deployment/podinfo/podinfo (example.com/never-cleared)" in str(blocked.value)
    pending = journal[-1]
    assert {APPS, PODINFO_RELEASE, podinfo} <= set(pending)

    # The deleted tier is no longer listed; only the journal shows what is still terminating.
    with pytest.raises(TeardownBlockedError, match=r"Deployment/podinfo/podinfo \(example.com/never-cleared\)"):
        teardown_cluster(cluster, timeout_per_tier=0.3, pending=pending)
    assert cluster.get(PLATFORM_CONTROLLERS) is not None  # nothing else was deleted

    report = teardown_cluster(cluster, timeout_per_tier=0.3, pending=pending, force=True, on_tracked=journal.append)
    assert report.forced and any("example.com/never-cleared" in b for b in report.blocked)
    assert [tier for tier, _ in report.tiers] == ["custom-objects", "controllers"]
    assert journal[-1] == []
    assert set(PLATFORM_EXTERNALS).isdisjoint(cluster.external_resources())  # the later tiers still cleaned up
    left = cluster.get(podinfo)
    assert left is not None and left["metadata"]["deletionTimestamp"]  # forced past, still terminating


# -- sources ---------------------------------------------------------------------------------------


def test_a_new_commit_on_the_tracked_branch_is_applied_and_pruned(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    configs = fleet.checkout / "platform" / "configs"
    shutil.copy(FIXTURES / "fleet-changes" / "cache-config.yaml", configs)
    kustomization = configs / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text(encoding="utf-8") + "  - cache-config.yaml\n", encoding="utf-8")
    added = fleet.push("platform: cache settings")
    clock.advance(2)
    setting = ObjectRef("v1", "ConfigMap", "cache-settings", "platform")
    assert cluster.get(setting) is not None
    source = cluster.get(PLATFORM_REPO)
    assert source is not None and source["status"]["artifact"]["revision"] == f"main@sha1:{added}"
    applied = cluster.get(PLATFORM_CONFIGS)
    assert applied is not None and applied["status"]["lastAppliedRevision"] == f"main@sha1:{added}"

    (configs / "cache-config.yaml").unlink()
    kustomization.write_text(kustomization.read_text(encoding="utf-8").replace("  - cache-config.yaml\n", ""))
    fleet.push("platform: drop cache settings")
    clock.advance(2)
    assert cluster.get(setting) is None  # prune: true


@pytest.mark.parametrize("ref_kind", ["tag", "commit", "missing-branch"])
def test_git_repositories_resolve_tags_commits_and_report_missing_branches(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, ref_kind: str
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    tagged = fleet.git.rev_parse(fleet.checkout, "1.2.3")
    ref = {
        "tag": {"branch": None, "tag": "1.2.3"},
        "commit": {"branch": None, "commit": tagged},
        "missing-branch": {"branch": "no-such-branch"},
    }[ref_kind]
    cluster.merge_patch(PLATFORM_REPO, {"spec": {"ref": ref}})
    source = cluster.get(PLATFORM_REPO)
    if ref_kind == "missing-branch":
        status, reason, message = ready(source)
        assert (status, reason) == ("False", "GitOperationFailed")
        assert 'couldn\'t find remote ref "refs/heads/no-such-branch"' in message
        return
    expected = f"1.2.3@sha1:{tagged}" if ref_kind == "tag" else f"sha1:{tagged}"
    assert source is not None and source["status"]["artifact"]["revision"] == expected
    configs = cluster.get(PLATFORM_CONFIGS)
    assert configs is not None and configs["status"]["lastAppliedRevision"] == expected


def test_a_reconcile_request_fetches_a_new_commit_at_once(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    shutil.copy(FIXTURES / "fleet-changes" / "cache-config.yaml", fleet.checkout / "clusters" / "development")
    added = fleet.push("development: cache settings")
    assert cluster.get(ObjectRef("v1", "ConfigMap", "cache-settings", "platform")) is None  # not polled yet
    requested = {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "2025-01-01T00:00:00Z"}}}
    cluster.merge_patch(ObjectRef(SOURCE_API, "GitRepository", "flux-system", "flux-system"), requested)
    source = cluster.get(ObjectRef(SOURCE_API, "GitRepository", "flux-system", "flux-system"))
    assert source is not None and source["status"]["artifact"]["revision"] == f"main@sha1:{added}"
    assert source["status"]["lastHandledReconcileAt"] == "2025-01-01T00:00:00Z"
    assert cluster.get(ObjectRef("v1", "ConfigMap", "cache-settings", "platform")) is not None


def test_a_kustomization_applying_a_removed_api_fails(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    configs = fleet.checkout / "platform" / "configs"
    shutil.copy(FIXTURES / "fleet-changes" / "legacy-ingress.yaml", configs)
    kustomization = configs / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text(encoding="utf-8") + "  - legacy-ingress.yaml\n")
    fleet.push("platform: a legacy ingress")
    clock.advance(2)
    status, reason, message = ready(cluster.get(PLATFORM_CONFIGS))
    assert (status, reason) == ("False", "ReconciliationFailed")
    assert message.startswith('Ingress/platform/legacy dry-run failed: no matches for kind "Ingress" in version')
    assert ready(cluster.get(APPS))[:2] == ("False", "DependencyNotReady")


BACKUP_SCHEDULE = ObjectRef("platform.example.com/v1", "BackupSchedule", "nightly", "platform")
BACKUP_SCHEDULE_CRD = ObjectRef(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "backupschedules.platform.example.com"
)


def ready_of_crd(crd: dict[str, Any]) -> str:
    """The status of a CRD's Established condition."""
    return next(c["status"] for c in crd["status"]["conditions"] if c["type"] == "Established")


def _add_backup_schedules(fleet: Fleet) -> None:
    """Push a CRD and an object of its kind into platform/configs."""
    configs = fleet.checkout / "platform" / "configs"
    shutil.copy(FIXTURES / "fleet-changes" / "backup-crd.yaml", configs)
    kustomization = configs / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text(encoding="utf-8") + "  - backup-crd.yaml\n")
    fleet.push("platform: backup schedules")


def test_a_kustomization_waits_for_its_crds_to_be_established_before_their_objects(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    bootstrap(make_cluster(), fleet)
    cluster = make_cluster(crd_established_delay_seconds=5)
    _add_backup_schedules(fleet)
    clock.advance(2)
    # Progressing, not failed: stage one is applied, stage two waits for its kinds to be served.
    status, reason, message = ready(cluster.get(PLATFORM_CONFIGS))
    assert (status, reason) == ("Unknown", "Progressing")
    assert "CustomResourceDefinition/backupschedules.platform.example.com to be established" in message
    crd = cluster.get(BACKUP_SCHEDULE_CRD)
    assert crd is not None and ready_of_crd(crd) == "False"
    assert cluster.get(SHARED_INGRESS) is not None  # applied before this revision, kept while it waits
    clock.advance(5)  # the CRD was applied 5 s ago
    assert ready(cluster.get(PLATFORM_CONFIGS))[:2] == ("True", "ReconciliationSucceeded")
    schedule = cluster.get(BACKUP_SCHEDULE)
    assert schedule is not None and schedule["spec"]["schedule"] == "0 2 * * *"
    configs = cluster.get(PLATFORM_CONFIGS)
    assert configs is not None
    assert "platform_nightly_platform.example.com_BackupSchedule" in {
        entry["id"] for entry in configs["status"]["inventory"]["entries"]
    }


def test_a_crd_never_established_fails_the_kustomization_at_its_timeout(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    bootstrap(make_cluster(), fleet)
    cluster = make_cluster(crd_established_delay_seconds=3600)
    _add_backup_schedules(fleet)
    clock.advance(2)
    assert ready(cluster.get(PLATFORM_CONFIGS))[:2] == ("Unknown", "Progressing")
    clock.advance(10 * 60 + 1)  # platform-configs has no spec.timeout: its interval, 10m, is the timeout
    status, reason, message = ready(cluster.get(PLATFORM_CONFIGS))
    assert (status, reason) == ("False", "ReconciliationFailed")
    assert message == (
        "timeout waiting for: [CustomResourceDefinition/backupschedules.platform.example.com status: 'InProgress']"
    )
    assert cluster.get(BACKUP_SCHEDULE) is None


def test_a_broken_manifest_fails_the_build(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    (fleet.checkout / "platform" / "configs" / "namespace.yaml").write_text("kind: [broken\n")
    broken = fleet.push("platform: broken namespace")
    clock.advance(2)
    status, reason, message = ready(cluster.get(PLATFORM_CONFIGS))
    assert (status, reason) == ("False", "BuildFailed") and "namespace.yaml" in message
    root = cluster.get(ROOT)
    assert root is not None and root["status"]["lastAppliedRevision"] == f"main@sha1:{broken}"
    assert cluster.get(SHARED_INGRESS) is not None  # the last good revision stays applied


def test_an_unsubstituted_chart_version_fails_the_helmrelease(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    cluster.merge_patch(APPS, {"spec": {"postBuild": None}})  # no postBuild: Flux substitutes nothing
    status, reason, message = ready(cluster.get(PODINFO_RELEASE))
    # source-controller stalls the HelmChart on the improper constraint; helm-controller passes its message on.
    assert (status, reason) == ("False", "SourceNotReady")
    assert message == (
        "HelmChart 'podinfo/podinfo-podinfo' is not ready: invalid chart reference: failed to get chart version "
        "for remote reference: improper constraint: ${podinfo_version:=6.7.0}"
    )


def _helmrelease(name: str, source_ref: dict[str, str], *, chart_ref: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"interval": "10m", "targetNamespace": "default"}
    if chart_ref:
        spec["chartRef"] = source_ref
    else:
        spec["chart"] = {"spec": {"chart": "./charts/web", "sourceRef": source_ref}}
    return {
        "apiVersion": HR_API,
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": "flux-system"},
        "spec": spec,
    }


def test_a_release_whose_source_never_stored_an_artifact_is_source_not_ready(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, tmp_path: Path
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    nowhere = ObjectRef(SOURCE_API, "GitRepository", "nowhere", "flux-system")
    cluster.apply(
        {
            "apiVersion": SOURCE_API,
            "kind": "GitRepository",
            "metadata": {"name": nowhere.name, "namespace": "flux-system"},
            "spec": {"interval": "1m", "ref": {"branch": "main"}, "url": (tmp_path / "no-such.git").as_uri()},
        }
    )
    release = ObjectRef(HR_API, "HelmRelease", "web", "flux-system")
    cluster.apply(_helmrelease(release.name, {"kind": "GitRepository", "name": nowhere.name}))
    assert ready(cluster.get(nowhere))[:2] == ("False", "GitOperationFailed")
    assert ready(cluster.get(release)) == (
        "False",
        "SourceNotReady",
        "HelmChart 'flux-system/flux-system-web' is not ready: "
        "no artifact available for GitRepository source 'nowhere'",
    )


def test_a_release_builds_from_the_last_artifact_while_its_source_fails(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    repository = ObjectRef(SOURCE_API, "HelmRepository", "podinfo", "podinfo")
    cluster.inject_failure(repository, "FetchFailed", "simulated: index unreachable")
    assert ready(cluster.get(repository))[:2] == ("False", "FetchFailed")
    cluster.merge_patch(PODINFO_RELEASE, {"spec": {"values": {"replicaCount": 3}}})
    # source-controller builds the HelmChart from the artifact it stored before: the upgrade goes on.
    release = cluster.get(PODINFO_RELEASE)
    assert ready(release)[0] == "True"
    assert release is not None and release["status"]["observedGeneration"] == release["metadata"]["generation"]


def test_a_release_whose_chart_ref_source_is_missing_or_not_ready(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    release = ObjectRef(HR_API, "HelmRelease", "charted", "flux-system")
    cluster.apply(_helmrelease(release.name, {"kind": "OCIRepository", "name": "charts"}, chart_ref=True))
    assert ready(cluster.get(release)) == (
        "False",
        "ArtifactFailed",
        'could not get Source object: ocirepositories.source.toolkit.fluxcd.io "charts" not found',
    )
    cluster.apply(
        {
            "apiVersion": SOURCE_API,
            "kind": "OCIRepository",
            "metadata": {"name": "charts", "namespace": "flux-system"},
            "spec": {"interval": "1m", "url": "not-oci://charts", "ref": {"tag": "1.0.0"}},
        }
    )
    status, reason, message = ready(cluster.get(release))
    assert (status, reason) == ("False", "SourceNotReady")
    assert message.startswith("OCIRepository 'flux-system/charts' is not ready: ")


@pytest.mark.parametrize(
    ("env", "expected_tag"),
    [("staging", "1.2.4"), ("production", "1.2.3")],
)
def test_oci_repositories_pull_release_tags_from_the_simulated_registry(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock, env: str, expected_tag: str
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet, env)
    oci = ObjectRef(SOURCE_API, "OCIRepository", "platform", "flux-system")
    source = cluster.get(oci)
    assert source is not None and source["status"]["artifact"]["revision"].startswith("1.2.3@sha256:")
    assert all(ready(o)[0] == "True" for o in flux_objects(cluster))
    fleet.release("1.2.4")
    fleet.release("2.0.0")  # outside staging's 1.2.x range
    clock.advance(2)
    source = cluster.get(oci)
    assert source is not None and source["status"]["artifact"]["revision"].startswith(f"{expected_tag}@sha256:")


@pytest.mark.parametrize("layout", [False, True], ids=["git-tags", "oci-layout"])
@pytest.mark.parametrize(
    ("semver", "what"),
    [
        ("1.3.x", "no match found for semver: 1.3.x"),
        ("1.2.x ~> ^", "semver '1.2.x ~> ^' parse error: "),
    ],
    ids=["no-match", "invalid"],
)
def test_an_oci_range_without_a_match_fails_as_source_controller_says(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, tmp_path: Path, layout: bool, semver: str, what: str
) -> None:
    # The words of source-controller v1.9 on a real cluster (tests/real/test_flux_semver_oracle.py).
    layouts = {DEMO_REGISTRY_URL: tmp_path / "registry"} if layout else {}
    if layout:
        _publish(tmp_path / "registry", fleet, "1.2.3")
    cluster = make_cluster(oci_layouts=layouts)
    bootstrap(cluster, fleet, "staging")
    oci = ObjectRef(SOURCE_API, "OCIRepository", "platform", "flux-system")
    cluster.merge_patch(oci, {"spec": {"ref": {"semver": semver}}})
    obj = cluster.get(oci)
    assert obj is not None
    status, reason, message = ready(obj)
    assert (status, reason) == ("False", "ReadOperationFailed")
    assert message.startswith(f"failed to determine the artifact tag for '{obj['spec']['url']}': {what}"), message


def _publish(layout: Path, fleet: Fleet, tag: str) -> str:
    """Push ``platform/`` of the checkout as the Flux artifact ``tag`` into an OCI layout; its digest."""
    from sandbox.drivers.oci_artifact import FluxArtifact
    from sandbox.drivers.oci_layout import OciLayoutRegistry

    artifact = FluxArtifact(
        directory=fleet.checkout / "platform",
        source=fleet.remote.as_uri(),
        revision=f"{tag}@sha1:{'0' * 40}",
        created="2026-01-01T00:00:00Z",
    )
    return OciLayoutRegistry(DEMO_REGISTRY_URL, layout).push_artifact(tag, artifact).digest


def test_oci_repositories_read_the_artifact_pushed_to_the_registry_not_git_tags(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock, tmp_path: Path
) -> None:
    layout = tmp_path / "registry"
    pushed = _publish(layout, fleet, "1.2.3")
    cluster = make_cluster(oci_layouts={DEMO_REGISTRY_URL: layout})
    bootstrap(cluster, fleet, "staging")
    oci = ObjectRef(SOURCE_API, "OCIRepository", "platform", "flux-system")
    source = cluster.get(oci)
    assert source is not None and source["status"]["artifact"]["revision"] == f"1.2.3@{pushed}"
    assert all(ready(o)[0] == "True" for o in flux_objects(cluster))
    fleet.release("1.2.4")  # a git tag alone publishes nothing
    clock.advance(2)
    source = cluster.get(oci)
    assert source is not None and source["status"]["artifact"]["revision"] == f"1.2.3@{pushed}"
    newer = _publish(layout, fleet, "1.2.4")
    clock.advance(2)
    source = cluster.get(oci)
    assert source is not None and source["status"]["artifact"]["revision"] == f"1.2.4@{newer}"


# -- watch --------------------------------------------------------------------------------------------


@pytest.fixture
def watched(make_cluster: Callable[..., SimulatedCluster], fleet: Fleet) -> Iterator[SimulatedCluster]:
    cluster = make_cluster(readiness_delay_seconds=10, watch_poll_seconds=0.01)
    for doc in documents(fleet.checkout / "clusters/development/flux-system/gotk-components.yaml"):
        cluster.apply(doc)
    yield cluster


def test_watch_reports_added_then_modified_then_deleted(watched: SimulatedCluster, clock: SteppedClock) -> None:
    ref = ObjectRef(SOURCE_API, "HelmRepository", "charts", "flux-system")
    watched.apply(
        {
            "apiVersion": SOURCE_API,
            "kind": "HelmRepository",
            "metadata": {"name": "charts", "namespace": "flux-system"},
            "spec": {"url": "https://charts.example.com"},
        }
    )
    events = watched.watch(SOURCE_API, "HelmRepository", "flux-system", timeout_seconds=120)
    first = next(events)
    assert first.type == "ADDED" and ready(first.object)[0] == "Unknown"
    clock.advance(11)
    second = next(events)
    assert second.type == "MODIFIED" and ready(second.object)[0] == "True"
    watched.delete(ref)
    third = next(events)
    assert third.type == "DELETED" and third.object["metadata"]["name"] == "charts"


@pytest.mark.timeout(60)
def test_watch_ends_once_its_consumer_sets_stop(watched: SimulatedCluster) -> None:
    # Without ``stop`` this watch would poll on for ten minutes with nothing to report.
    stop = threading.Event()
    events = watched.watch("apps/v1", "Deployment", "flux-system", timeout_seconds=600, stop=stop)
    assert next(events).type == "ADDED"
    stop.set()
    assert {e.type for e in events} == {"ADDED"}  # the rest of the first listing, then the end


def test_watch_ends_quietly_at_its_timeout(watched: SimulatedCluster) -> None:
    events = list(watched.watch("apps/v1", "Deployment", "flux-system", timeout_seconds=0.2))
    assert {e.type for e in events} == {"ADDED"}
    assert sorted(e.object["metadata"]["name"] for e in events) == [
        "helm-controller",
        "kustomize-controller",
        "notification-controller",
        "source-controller",
    ]
    assert list(watched.watch(KS_API, "Kustomization", timeout_seconds=0.1)) == []


# -- persistent volumes: provisioned by the CSI driver, deleted by it ---------------------------------


class TickingClock(SteppedClock):
    """A clock that moves on by ``step`` each time it is read (time passes while a teardown watches)."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def logged_teardown(cluster: SimulatedCluster) -> tuple[TeardownReport, list[str]]:
    """The product's teardown (30 s per tier), and the progress lines it printed."""
    lines: list[str] = []
    return teardown_cluster(cluster, timeout_per_tier=30, progress=lines.append), lines


def said_before_the_controllers_tier(lines: list[str], prefix: str) -> bool:
    """Whether a progress line starting with ``prefix`` came before the controllers tier was deleted."""
    said = next(i for i, line in enumerate(lines) if line.startswith(prefix))
    return said < next(i for i, line in enumerate(lines) if line.startswith("tier controllers: deleting"))


def shared_cache_pv(cluster: SimulatedCluster) -> dict[str, Any]:
    [pv] = [v for v in cluster.list("v1", "PersistentVolume") if v["spec"]["claimRef"]["name"] == "shared-cache"]
    return pv


def test_a_released_volume_is_deleted_by_its_csi_driver_after_the_claim(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster(volume_deletion_seconds=5)
    bootstrap(cluster, fleet)
    pv_ref = ObjectRef.of(shared_cache_pv(cluster))
    assert "volume-platform-shared-cache" in cluster.external_resources()
    # A Pod mounting the claim holds it (pvc-protection) until it is gone.
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "reader", "namespace": "platform"},
            "spec": {"volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "shared-cache"}}]},
        }
    )
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.merge_patch(PLATFORM_CONFIGS, {"spec": {"suspend": True}})  # so the claim is not re-applied
    cluster.delete(SHARED_VOLUME)
    held = cluster.get(SHARED_VOLUME)
    assert held is not None and held["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    cluster.delete(ObjectRef("v1", "Pod", "reader", "platform"))
    assert cluster.get(SHARED_VOLUME) is None
    released = cluster.get(pv_ref)
    assert released is not None and released["status"]["phase"] == "Released"
    assert "volume-platform-shared-cache" in cluster.external_resources()  # being deleted
    clock.advance(5)
    assert cluster.get(pv_ref) is None
    assert "volume-platform-shared-cache" not in cluster.external_resources()


def test_a_retained_volume_outlives_its_claim(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    cluster.apply(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "gp3"},
            "provisioner": "ebs.csi.aws.com",
            "reclaimPolicy": "Retain",
        }
    )
    bootstrap(cluster, fleet)
    assert shared_cache_pv(cluster)["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.delete(PLATFORM_CONFIGS)
    settle(cluster, clock, steps=2)
    assert cluster.get(SHARED_VOLUME) is None
    assert shared_cache_pv(cluster)["status"]["phase"] == "Released"
    assert "volume-platform-shared-cache" in cluster.external_resources()


def test_the_product_teardown_waits_for_volumes_before_removing_the_csi_driver(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    # Deleting a volume takes simulated time; the clock moves while teardown watches.
    cluster = make_cluster(clock=TickingClock(0.5), volume_deletion_seconds=20)
    bootstrap(cluster, fleet)
    report, lines = logged_teardown(cluster)
    assert cluster.external_resources() == []  # the CSI driver deleted the volume before it was uninstalled
    assert cluster.list("v1", "PersistentVolume") == []
    assert not report.blocked and report.kept_volumes == []
    assert said_before_the_controllers_tier(lines, "waiting for cloud resources to be released: ")


def test_the_product_teardown_is_blocked_by_a_volume_its_driver_does_not_delete(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster(volume_deletion_seconds=86_400)  # the stepped clock never gets there
    bootstrap(cluster, fleet)
    with pytest.raises(TeardownBlockedError) as blocked:
        teardown_cluster(cluster, timeout_per_tier=0.3)
    pv = shared_cache_pv(cluster)
    assert (
        f"PersistentVolume/{pv['metadata']['name']} (external-provisioner.volume.kubernetes.io/finalizer, "
        "kubernetes.io/pv-protection)" in str(blocked.value)
    )
    assert cluster.get(PLATFORM_CONTROLLERS) is not None  # the CSI driver was not removed
    assert "volume-platform-shared-cache" in cluster.external_resources()

    report = teardown_cluster(cluster, timeout_per_tier=0.3, force=True)
    assert report.forced and any(pv["metadata"]["name"] in line for line in report.blocked)
    assert [tier for tier, _ in report.tiers] == ["controllers"]


def test_the_product_teardown_reports_retained_volumes_without_waiting(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    cluster.apply(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "gp3"},
            "provisioner": "ebs.csi.aws.com",
            "reclaimPolicy": "Retain",
        }
    )
    bootstrap(cluster, fleet)
    pv_name = shared_cache_pv(cluster)["metadata"]["name"]
    report = teardown_cluster(cluster, timeout_per_tier=30)
    assert not report.blocked
    assert report.kept_volumes == [
        f"PersistentVolume/{pv_name} (claim platform/shared-cache, reclaim policy Retain: its volume is kept)"
    ]
    assert cluster.external_resources() == ["volume-platform-shared-cache"]


def scratch_claim(namespace: str = "default") -> dict[str, Any]:
    """A claim of the CSI driver's class that no Flux object applied (as a StatefulSet's template makes)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-db-0", "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "gp3",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def test_the_product_teardown_deletes_a_claim_flux_never_applied_before_removing_the_csi_driver(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster(clock=TickingClock(0.5), volume_deletion_seconds=5)
    bootstrap(cluster, fleet)
    cluster.apply(scratch_claim())
    [pv] = [v for v in cluster.list("v1", "PersistentVolume") if v["spec"]["claimRef"]["name"] == "data-db-0"]
    assert "volume-default-data-db-0" in cluster.external_resources()
    report, lines = logged_teardown(cluster)
    assert not report.blocked and report.kept_volumes == []
    assert report.orphans == [
        f"PersistentVolumeClaim/default/data-db-0 (bound to PersistentVolume/{pv['metadata']['name']}, "
        "reclaim policy Delete: its volume would outlive the cluster)"
    ]
    assert cluster.external_resources() == []  # deleted while the CSI driver still ran
    assert said_before_the_controllers_tier(lines, "deleting what is left in the cluster holding cloud resources: ")


def test_the_product_teardown_deletes_load_balancers_flux_never_applied_before_removing_their_controller(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster(clock=TickingClock(0.5))
    bootstrap(cluster, fleet)
    # As `kubectl expose` or a Helm `resource-policy: keep` leaves them: in no Flux inventory.
    cluster.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "debug", "namespace": "default"},
            "spec": {
                "ingressClassName": "alb",
                "defaultBackend": {"service": {"name": "debug", "port": {"number": 80}}},
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "debug", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        }
    )
    cluster.tick()
    assert {"load-balancer-default-debug", "network-load-balancer-default-debug"} <= set(cluster.external_resources())
    report, lines = logged_teardown(cluster)
    assert not report.blocked
    assert report.orphans == [
        "Ingress/default/debug (an Ingress: its load balancer would outlive the cluster)",
        "Service/default/debug (a LoadBalancer Service: its load balancer would outlive the cluster)",
    ]
    assert cluster.external_resources() == []  # deleted while the load balancer controller still ran
    assert said_before_the_controllers_tier(lines, "deleting what is left in the cluster")


def test_a_load_balancer_a_remaining_helmrelease_applied_is_left_to_its_tier(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)

    def service(name: str, release: str) -> dict[str, Any]:
        labels = {"helm.toolkit.fluxcd.io/name": release, "helm.toolkit.fluxcd.io/namespace": "flux-system"}
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        }

    cluster.apply(service("ingress", "aws-load-balancer-controller"))  # its HelmRelease still exists
    cluster.apply(service("kept", "uninstalled-release"))  # Helm's resource-policy: keep after an uninstall
    assert list(load_balancers_left(cluster)) == [ObjectRef("v1", "Service", "kept", "default")]


def test_the_product_teardown_is_blocked_by_a_volume_released_with_the_controllers_tier(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    # A controller's own claim in the controllers tier: deleted with the tier,
    # beside the CSI driver that would delete its volume.
    controllers = fleet.checkout / "platform" / "controllers"
    (controllers / "controller-cache.yaml").write_text(yaml.safe_dump(scratch_claim("kube-system")))
    kustomization = controllers / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text(encoding="utf-8") + "  - controller-cache.yaml\n")
    fleet.push("platform: a controller with a cache volume")
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    [pv] = [v for v in cluster.list("v1", "PersistentVolume") if v["spec"]["claimRef"]["name"] == "data-db-0"]
    with pytest.raises(TeardownBlockedError) as blocked:
        teardown_cluster(cluster, timeout_per_tier=0.3)
    message = str(blocked.value)
    assert message.startswith("teardown blocked after tier controllers: volumes not deleted")
    assert f"PersistentVolume/{pv['metadata']['name']} (external-provisioner.volume.kubernetes.io/finalizer" in message
    assert cluster.get(PLATFORM_CONTROLLERS) is None
    assert "volume-kube-system-data-db-0" in cluster.external_resources()  # what the block keeps from leaking silently


def test_the_product_teardown_is_blocked_by_a_left_claim_a_pod_still_mounts(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    cluster.apply(scratch_claim())
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "db-0", "namespace": "default"},
            "spec": {
                "containers": [{"name": "db", "image": "postgres:16"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}],
            },
        }
    )
    with pytest.raises(TeardownBlockedError) as blocked:
        teardown_cluster(cluster, timeout_per_tier=0.3)
    assert "PersistentVolumeClaim/default/data-db-0 (kubernetes.io/pvc-protection)" in str(blocked.value)
    assert cluster.get(PLATFORM_CONTROLLERS) is not None  # the CSI driver was not removed
    assert "volume-default-data-db-0" in cluster.external_resources()


# -- inventory ids, deletion policies and per-object annotations --------------------------------------

COLON_ROLE = ObjectRef("rbac.authorization.k8s.io/v1", "ClusterRole", "system:fleet-reader")


def add_colon_role(fleet: Fleet) -> None:
    """Give platform-configs a ClusterRole whose name has a colon, as system roles do."""
    configs = fleet.checkout / "platform" / "configs"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": COLON_ROLE.name}}
    (configs / "reader.yaml").write_text(yaml.safe_dump({**role, "rules": []}), encoding="utf-8")
    kustomization = configs / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text(encoding="utf-8") + "  - reader.yaml\n", encoding="utf-8")
    fleet.push("platform: a ClusterRole named with a colon")


def test_inventory_ids_escape_colons_as_cli_utils_does(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet
) -> None:
    add_colon_role(fleet)
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    configs = cluster.get(PLATFORM_CONFIGS)
    assert configs is not None
    entries = configs["status"]["inventory"]["entries"]
    assert {"id": "_system__fleet-reader_rbac.authorization.k8s.io_ClusterRole", "v": "v1"} in entries
    assert COLON_ROLE in inventory_refs(configs)
    report = teardown_cluster(cluster, timeout_per_tier=30)
    assert not report.blocked
    assert cluster.get(COLON_ROLE) is None  # garbage-collected: the controller decodes its own ids


@pytest.mark.parametrize(
    ("policy", "prune", "left_behind"),
    [
        (None, True, False),  # MirrorPrune, the default: as spec.prune says
        ("MirrorPrune", False, True),
        ("Delete", False, False),
        ("Orphan", True, True),
    ],
)
def test_the_deletion_policy_decides_what_a_deleted_kustomization_leaves(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, policy: str | None, prune: bool, left_behind: bool
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.merge_patch(PLATFORM_CONFIGS, {"spec": {"prune": prune, "deletionPolicy": policy}})
    cluster.delete(PLATFORM_CONFIGS)
    assert cluster.get(PLATFORM_CONFIGS) is None
    assert (cluster.get(SHARED_INGRESS) is not None) is left_behind


def test_wait_for_termination_keeps_the_kustomization_until_its_objects_are_gone(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    controller = ObjectRef(HR_API, "HelmRelease", "aws-load-balancer-controller", "flux-system")
    cluster.inject_failure(controller, "InstallFailed", "simulated: crash loop")  # the Ingress finalizer stays
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.merge_patch(PLATFORM_CONFIGS, {"spec": {"deletionPolicy": "WaitForTermination", "timeout": "5m"}})
    cluster.delete(PLATFORM_CONFIGS)
    waiting = cluster.get(PLATFORM_CONFIGS)
    assert waiting is not None and waiting["metadata"]["finalizers"] == ["finalizers.fluxcd.io"]
    cluster.clear_failure(controller)
    assert cluster.get(SHARED_INGRESS) is None
    assert cluster.get(PLATFORM_CONFIGS) is None

    # At spec.timeout kustomize-controller logs an error and lets the Kustomization go.
    cluster.inject_failure(controller, "InstallFailed", "simulated: crash loop")
    cluster.merge_patch(APPS, {"spec": {"deletionPolicy": "WaitForTermination", "timeout": "5m"}})
    cluster.delete(APPS)
    assert cluster.get(APPS) is not None  # podinfo's Service load balancer holds its finalizer
    clock.advance(301)
    cluster.tick()
    assert cluster.get(APPS) is None


def test_an_object_with_reconcile_disabled_is_not_changed_nor_garbage_collected(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, clock: SteppedClock
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    disabled = {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}
    drifted = {"service": {"name": "platform-gateway", "port": {"number": 8080}}}  # the manifest says 80
    cluster.merge_patch(SHARED_INGRESS, {"metadata": {"annotations": disabled}, "spec": {"defaultBackend": drifted}})
    storage = fleet.checkout / "platform" / "configs" / "shared-storage.yaml"
    storage.write_text(storage.read_text(encoding="utf-8").replace("20Gi", "30Gi"), encoding="utf-8")
    fleet.push("platform: a new revision")
    settle(cluster, clock, steps=3)
    configs = cluster.get(PLATFORM_CONFIGS)
    assert configs is not None and configs["status"]["lastAppliedRevision"].endswith(
        str(fleet.git.rev_parse(fleet.checkout, "HEAD"))
    )
    left = cluster.get(SHARED_INGRESS)
    assert left is not None and left["spec"]["defaultBackend"] == drifted  # not reverted
    claim = cluster.get(SHARED_VOLUME)
    assert claim is not None and claim["spec"]["resources"]["requests"]["storage"] == "30Gi"  # others are applied

    # Garbage collection skips it too (its namespace as well here, or deleting that would take it).
    namespace = ObjectRef("v1", "Namespace", "platform")
    cluster.merge_patch(namespace, {"metadata": {"annotations": disabled}})
    cluster.merge_patch(ROOT, {"spec": {"suspend": True}})
    cluster.delete(PLATFORM_CONFIGS)
    assert cluster.get(PLATFORM_CONFIGS) is None
    kept = cluster.get(namespace)
    assert kept is not None and "deletionTimestamp" not in kept["metadata"]
    assert cluster.get(SHARED_INGRESS) is not None
    assert cluster.get(SHARED_VOLUME) is None  # not annotated: collected


@pytest.mark.parametrize(
    "leave",
    [
        {"kustomization": {"spec": {"deletionPolicy": "Orphan"}}},
        {"ingress": {"metadata": {"annotations": {"kustomize.toolkit.fluxcd.io/prune": "disabled"}}}},
    ],
    ids=["deletion-policy-orphan", "prune-disabled"],
)
def test_the_product_teardown_deletes_what_flux_leaves_before_its_controllers(
    make_cluster: Callable[..., SimulatedCluster], fleet: Fleet, leave: dict[str, dict[str, Any]]
) -> None:
    cluster = make_cluster()
    bootstrap(cluster, fleet)
    if "kustomization" in leave:
        cluster.merge_patch(PLATFORM_CONFIGS, leave["kustomization"])
    else:
        cluster.merge_patch(SHARED_INGRESS, leave["ingress"])
    report, lines = logged_teardown(cluster)
    assert not report.blocked
    assert "Ingress/platform/shared-entrypoint" in " ".join(report.orphans)
    assert any(line.startswith("tier custom-objects: deleting what Flux leaves") for line in lines)
    assert cluster.external_resources() == []  # deleted while its controller still ran
    assert [o["metadata"]["name"] for o in flux_objects(cluster)] == ["flux-system"]
