"""Installing Flux on a cluster (``install_flux``): what is applied, in which order, and the git credentials."""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import fleetrepo
from sandbox.drivers.cluster import ObjectRef
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.errors import ClusterError, ConfigError, CrdNotEstablishedError, CrdRejectedError
from sandbox.stages.bootstrap import install_flux, wait_for_crds_established

EXAMPLE_FLUX_DIR = Path(__file__).resolve().parents[2] / "examples" / "fleet-repo" / "clusters" / "development"
SECRET = ObjectRef("v1", "Secret", "flux-system", "flux-system")
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUtZXhhbXBsZQ\n-----END OPENSSH PRIVATE KEY-----"
)
KNOWN_HOSTS = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"


def cluster_dir(tmp_path: Path, url: str) -> Path:
    """A cluster directory with the example's Flux components and a gotk-sync.yaml fetching ``url``."""
    root = tmp_path / "clusters" / "sandbox-a"
    (root / "flux-system").mkdir(parents=True)
    shutil.copy(EXAMPLE_FLUX_DIR / fleetrepo.COMPONENTS_FILE, root / fleetrepo.COMPONENTS_FILE)
    sync = fleetrepo.render_gotk_sync(name="sandbox-a", url=url, branch="OPS-1-x", path="clusters/sandbox-a")
    fleetrepo.write_bootstrap_files(root, sync, repo=tmp_path)
    return root


def stored_secret(cluster: SimulatedCluster) -> dict[str, str]:
    secret = cluster.get(SECRET)
    assert secret is not None
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_an_ssh_fleet_gets_flux_identity_and_known_hosts(tmp_path: Path) -> None:
    cluster = SimulatedCluster(tmp_path / "cluster")
    (tmp_path / "cluster").mkdir()
    root = cluster_dir(tmp_path, "ssh://git@github.com/example-org/fleet-infra.git")
    install_flux(
        cluster, root, repo=root.parents[1], git_token="a-token", ssh_identity=PRIVATE_KEY, known_hosts=KNOWN_HOSTS
    )
    assert stored_secret(cluster) == {"identity": PRIVATE_KEY + "\n", "known_hosts": KNOWN_HOSTS}


def test_an_https_fleet_gets_username_and_password(tmp_path: Path) -> None:
    cluster = SimulatedCluster(tmp_path / "cluster")
    (tmp_path / "cluster").mkdir()
    root = cluster_dir(tmp_path, "https://github.com/example-org/fleet-infra.git")
    install_flux(
        cluster, root, repo=root.parents[1], git_token="a-token", ssh_identity=PRIVATE_KEY, known_hosts=KNOWN_HOSTS
    )
    assert stored_secret(cluster) == {"username": "git", "password": "a-token"}


@pytest.mark.parametrize(
    ("identity", "known_hosts", "message"),
    [
        (None, KNOWN_HOSTS, "Flux needs an SSH private key .*drivers.git.ssh_key_secret_block"),
        (PRIVATE_KEY, None, "Flux needs the host's keys in drivers.git.known_hosts"),
    ],
)
def test_an_ssh_fleet_without_its_key_is_refused_before_anything_is_applied(
    tmp_path: Path, identity: str | None, known_hosts: str | None, message: str
) -> None:
    cluster = SimulatedCluster(tmp_path / "cluster")
    (tmp_path / "cluster").mkdir()
    root = cluster_dir(tmp_path, "ssh://git@github.com/example-org/fleet-infra.git")
    with pytest.raises(ConfigError, match=message) as refused:
        install_flux(
            cluster, root, repo=root.parents[1], git_token=None, ssh_identity=identity, known_hosts=known_hosts
        )
    assert "PRIVATE KEY" not in str(refused.value) and "\n" not in str(refused.value)
    assert cluster.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == []


# -- CustomResourceDefinitions are Established after a delay ------------------------------


class SteppedClock:
    """Simulated time the test moves; ``sleep`` moves it instead of waiting."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


CRD_API = "apiextensions.k8s.io/v1"
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": CRD_API,
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Widget", "plural": "widgets"},
        "scope": "Namespaced",
        "versions": [{"name": "v1", "served": True, "storage": True}],
    },
}
WIDGET = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}}


def delayed_cluster(tmp_path: Path, clock: SteppedClock, delay: float = 3.0) -> SimulatedCluster:
    (tmp_path / "cluster").mkdir(exist_ok=True)
    return SimulatedCluster(tmp_path / "cluster", clock=clock, crd_established_delay_seconds=delay)


def crd_conditions(cluster: SimulatedCluster, name: str) -> dict[str, str]:
    crd = cluster.get(ObjectRef(CRD_API, "CustomResourceDefinition", name))
    assert crd is not None
    return {c["type"]: c["status"] for c in crd["status"]["conditions"]}


@pytest.mark.parametrize(
    ("versions", "invalid"),
    [
        (None, "spec.versions: Required value: must have exactly one version marked as storage version"),
        ([{"name": "v1", "served": True, "storage": False}], 'spec.versions: Invalid value: "": must have exactly one'),
        (
            [{"name": "v1", "served": True, "storage": True}, {"name": "v2", "served": True, "storage": True}],
            'spec.versions: Invalid value: "v1,v2": must have exactly one version marked as storage version',
        ),
    ],
)
def test_the_simulated_cluster_refuses_a_crd_without_exactly_one_storage_version(
    tmp_path: Path, versions: list[dict[str, Any]] | None, invalid: str
) -> None:
    cluster = delayed_cluster(tmp_path, SteppedClock())
    crd: dict[str, Any] = {**WIDGET_CRD, "spec": {**WIDGET_CRD["spec"], "versions": versions}}
    if versions is None:
        del crd["spec"]["versions"]
    with pytest.raises(ClusterError) as refused:
        cluster.apply(crd)
    assert f'CustomResourceDefinition.apiextensions.k8s.io "widgets.example.com" is invalid: {invalid}' in str(
        refused.value
    )
    assert cluster.get(ObjectRef(CRD_API, "CustomResourceDefinition", "widgets.example.com")) is None


def test_the_simulated_cluster_refuses_custom_objects_until_their_crd_is_established(tmp_path: Path) -> None:
    clock = SteppedClock()
    cluster = delayed_cluster(tmp_path, clock)
    cluster.apply(WIDGET_CRD)
    assert crd_conditions(cluster, "widgets.example.com") == {"NamesAccepted": "True", "Established": "False"}
    with pytest.raises(ClusterError, match="the server could not find the requested resource"):
        cluster.apply(WIDGET)
    assert cluster.list("example.com/v1", "Widget") == []
    clock.now += 2.9
    with pytest.raises(ClusterError, match="widgets.example.com is not Established"):
        cluster.apply(WIDGET)
    clock.now += 0.1
    assert crd_conditions(cluster, "widgets.example.com") == {"NamesAccepted": "True", "Established": "True"}
    assert cluster.apply(WIDGET)["kind"] == "Widget"


def test_bootstrap_waits_for_the_crds_before_the_controllers_and_the_sync(tmp_path: Path) -> None:
    clock = SteppedClock()
    cluster = delayed_cluster(tmp_path, clock)
    root = cluster_dir(tmp_path, "https://github.com/example-org/fleet-infra.git")
    applied: list[str] = []
    original = cluster.apply

    def recording_apply(manifest: Mapping[str, Any]) -> dict[str, Any]:
        applied.append(f"{manifest['kind']}@{clock.now - 1_700_000_000.0:g}")
        return original(manifest)

    cluster.apply = recording_apply  # type: ignore[method-assign]
    install_flux(
        cluster, root, repo=root.parents[1], git_token="t", clock=clock, sleep=clock.sleep, crd_timeout_seconds=30
    )
    kinds = [entry.split("@")[0] for entry in applied]
    first_other = next(i for i, kind in enumerate(kinds) if kind not in ("CustomResourceDefinition", "Namespace"))
    assert set(kinds[:first_other]) == {"CustomResourceDefinition", "Namespace"}
    assert set(kinds[first_other:]) >= {"Deployment", "Secret", "GitRepository", "Kustomization"}
    assert "CustomResourceDefinition" not in kinds[first_other:]
    # Everything after the CRDs was applied once they were Established, 3 simulated seconds later.
    assert all(float(entry.split("@")[1]) >= 3 for entry in applied[first_other:])
    assert cluster.get(ObjectRef("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "flux-system"))


def test_crds_not_established_in_time_are_named_and_retryable(tmp_path: Path) -> None:
    clock = SteppedClock()
    cluster = delayed_cluster(tmp_path, clock, delay=60)
    root = cluster_dir(tmp_path, "https://github.com/example-org/fleet-infra.git")
    with pytest.raises(CrdNotEstablishedError) as late:
        install_flux(
            cluster, root, repo=root.parents[1], git_token="t", clock=clock, sleep=clock.sleep, crd_timeout_seconds=5
        )
    message = str(late.value)
    assert message.startswith("CustomResourceDefinitions not Established after 5s: gitrepositories.source")
    assert "kustomizations.kustomize.toolkit.fluxcd.io" in message and late.value.retryable
    assert sum(clock.slept) == pytest.approx(5)
    assert cluster.list("apps/v1", "Deployment") == []  # the controllers wait for their CRDs


def test_a_crd_whose_names_are_taken_is_rejected_permanently(tmp_path: Path) -> None:
    clock = SteppedClock()
    cluster = delayed_cluster(tmp_path, clock, delay=0)
    cluster.apply(WIDGET_CRD)
    cluster.apply({**WIDGET_CRD, "metadata": {"name": "gadgets.example.com"}})
    assert crd_conditions(cluster, "gadgets.example.com") == {"NamesAccepted": "False", "Established": "False"}
    with pytest.raises(CrdRejectedError, match=r"gadgets\.example\.com was rejected \(NamesAccepted=False\): "):
        wait_for_crds_established(
            cluster, ["widgets.example.com", "gadgets.example.com"], timeout_seconds=5, clock=clock, sleep=clock.sleep
        )
    assert clock.slept == []


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://github.com/example-org/fleet-infra.git", True),
        ("ssh://git@github.com/example-org/fleet-infra.git", True),
        ("file:///srv/git/fleet.git", True),  # the simulation's allowance: read from disk
        ("/srv/git/fleet.git", True),  # likewise
        ("git@github.com:example-org/fleet-infra.git", False),
        ("remote.git", False),
        ("ftp://example.com/fleet.git", False),
    ],
)
def test_the_simulated_api_server_validates_git_repository_urls_like_flux_crd(
    tmp_path: Path, url: str, accepted: bool
) -> None:
    clock = SteppedClock()
    cluster = delayed_cluster(tmp_path, clock, delay=0)
    for doc in yaml.safe_load_all((EXAMPLE_FLUX_DIR / fleetrepo.COMPONENTS_FILE).read_text(encoding="utf-8")):
        if isinstance(doc, dict) and doc["kind"] in ("CustomResourceDefinition", "Namespace"):
            cluster.apply(doc)
    source: dict[str, Any] = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": "flux-system"},
        "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}},
    }
    ref = ObjectRef("source.toolkit.fluxcd.io/v1", "GitRepository", "fleet", "flux-system")
    if accepted:
        assert cluster.apply(source)["spec"]["url"] == url
        return
    refused = f"spec.url: Invalid value: \"{url}\": spec.url in body should match '^(http|https|ssh)://.*$'"
    with pytest.raises(ClusterError, match=re.escape(refused)):
        cluster.apply(source)
    cluster.apply({**source, "spec": {**source["spec"], "url": "https://github.com/example-org/fleet-infra.git"}})
    with pytest.raises(ClusterError, match=re.escape(refused)):
        cluster.merge_patch(ref, {"spec": {"url": url}})
