"""Bootstrap with the real cluster driver against the fake API server, which Establishes CRDs after a delay.

The fake server starts without Flux's kinds in discovery (a fresh cluster); a
CRD's kind is served only once it is Established, after a delay measured on a
stepped clock that the bootstrap's injected ``sleep`` moves (no real waiting).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import fleetrepo
from sandbox.drivers.cluster import GITREPOSITORY_API, KUSTOMIZATION_API, ObjectRef
from sandbox.drivers.kubernetes_cluster import KubernetesApiError, KubernetesClusterDriver
from sandbox.stages.bootstrap import install_flux
from tests.fakes.kubeapi_server import KubeApiServer, running_kubeapi_server

pytestmark = pytest.mark.integration

EXAMPLE_CLUSTER = Path(__file__).resolve().parents[2] / "examples" / "fleet-repo" / "clusters" / "development"
FLUX_GROUP_VERSIONS = ("source.toolkit.fluxcd.io/v1", "kustomize.toolkit.fluxcd.io/v1", "helm.toolkit.fluxcd.io/v2")
CRD_VERSIONS = {
    "source.toolkit.fluxcd.io": "v1",
    "kustomize.toolkit.fluxcd.io": "v1",
    "helm.toolkit.fluxcd.io": "v2",
}
DELAY = 3.0


class SteppedClock:
    """Seconds the test (or the bootstrap's injected sleep) moves forward."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def fresh_cluster(tmp_path: Path, clock: SteppedClock) -> Iterator[KubeApiServer]:
    """The fake API server as a fresh cluster: Flux's kinds not served, CRDs Established after ``DELAY``."""
    with running_kubeapi_server(tmp_path, crd_established_delay=DELAY, clock=clock) as server:
        for group_version in FLUX_GROUP_VERSIONS:
            server.unserve(group_version)
        yield server


@pytest.fixture
def driver(fresh_cluster: KubeApiServer) -> Iterator[KubernetesClusterDriver]:
    assert fresh_cluster.kubeconfig_path is not None
    with KubernetesClusterDriver(fresh_cluster.kubeconfig_path) as cluster:
        yield cluster


def cluster_dir(tmp_path: Path) -> Path:
    """The example's Flux components, their CRDs with the versions real ones serve, and a gotk-sync.yaml."""
    root = tmp_path / "clusters" / "sandbox-a"
    (root / "flux-system").mkdir(parents=True)
    documents = []
    for doc in yaml.safe_load_all((EXAMPLE_CLUSTER / fleetrepo.COMPONENTS_FILE).read_text(encoding="utf-8")):
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
            version = CRD_VERSIONS.get(doc["spec"]["group"], "v1")
            doc["spec"]["versions"] = [{"name": version, "served": True, "storage": True}]
        if isinstance(doc, dict):
            documents.append(doc)
    (root / fleetrepo.COMPONENTS_FILE).write_text(yaml.safe_dump_all(documents), encoding="utf-8")
    sync = fleetrepo.render_gotk_sync(
        name="sandbox-a", url="https://github.com/example-org/fleet-infra.git", branch="main", path="clusters/sandbox-a"
    )
    fleetrepo.write_bootstrap_files(root, sync, repo=root.parents[1])
    return root


def gitrepository(name: str = "probe") -> dict[str, Any]:
    return {
        "apiVersion": GITREPOSITORY_API,
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": "flux-system"},
        "spec": {"interval": "1m", "url": "https://github.com/example-org/fleet-infra.git", "ref": {"branch": "main"}},
    }


def test_the_stub_refuses_custom_objects_until_their_crd_is_established(
    fresh_cluster: KubeApiServer, driver: KubernetesClusterDriver, tmp_path: Path, clock: SteppedClock
) -> None:
    root = cluster_dir(tmp_path)
    components = list(yaml.safe_load_all((root / fleetrepo.COMPONENTS_FILE).read_text(encoding="utf-8")))
    for doc in components:
        if doc["kind"] in ("CustomResourceDefinition", "Namespace"):
            driver.apply(doc)
    crd = driver.get(
        ObjectRef("apiextensions.k8s.io/v1", "CustomResourceDefinition", "gitrepositories.source.toolkit.fluxcd.io")
    )
    assert crd is not None
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]} == {
        "NamesAccepted": "True",
        "Established": "False",
    }
    with pytest.raises(KubernetesApiError, match="is not served by the cluster"):
        driver.apply(gitrepository())
    # A client that skips discovery and sends the request anyway gets what a real API server answers.
    fresh_cluster.clear_requests()
    assert driver.list(GITREPOSITORY_API, "GitRepository") == []
    request = urllib.request.Request(
        f"{fresh_cluster.url}/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories",
        data=yaml.safe_dump(gitrepository()).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {fresh_cluster.token}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 404
    assert "the server could not find the requested resource" in refused.value.read().decode()
    clock.now += DELAY
    assert driver.apply(gitrepository())["kind"] == "GitRepository"


def test_bootstrap_waits_for_established_crds_and_the_driver_refreshes_discovery(
    fresh_cluster: KubeApiServer, driver: KubernetesClusterDriver, tmp_path: Path, clock: SteppedClock
) -> None:
    root = cluster_dir(tmp_path)
    # The driver has looked for Flux's kinds before they were served (a cached miss).
    assert driver.get(ObjectRef(KUSTOMIZATION_API, "Kustomization", "flux-system", "flux-system")) is None
    fresh_cluster.clear_requests()
    install_flux(
        driver, root, repo=root.parents[1], git_token="t", clock=clock, sleep=clock.sleep, crd_timeout_seconds=30
    )
    assert clock.now >= 1000.0 + DELAY
    writes = [r for r in fresh_cluster.requests if r.method == "PATCH"]
    kinds = [r.json()["kind"] for r in writes]
    first_other = next(i for i, kind in enumerate(kinds) if kind not in ("CustomResourceDefinition", "Namespace"))
    assert "CustomResourceDefinition" not in kinds[first_other:]
    assert kinds[-2:] == ["GitRepository", "Kustomization"]
    # Once the CRDs were Established, and before anything else was applied, discovery was asked again:
    # the driver's cache (which missed Flux's kinds) does not wait for a lookup of the kind to miss.
    index_of = fresh_cluster.requests.index
    last_crd = max(index_of(r) for r in writes if r.json()["kind"] == "CustomResourceDefinition")
    next_write = index_of(writes[first_other])
    assert "/apis" in [r.path for r in fresh_cluster.requests[last_crd:next_write]]
    assert fresh_cluster.get_object(GITREPOSITORY_API, "GitRepository", "flux-system", "flux-system") is not None
