"""The real cluster driver against the fake Kubernetes API server.

Every check reads what the driver actually sent (method, path, query, content
type, body) from the server's request records, or what it made of the
server's answers. The kubeconfig carries a fake bearer token; no error may
show it.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from sandbox.drivers.cluster import (
    HELMRELEASE_API,
    KUSTOMIZATION_API,
    ClusterDriver,
    ObjectRef,
    WatchEvent,
)
from sandbox.drivers.kubernetes_cluster import (
    KubernetesApiError,
    KubernetesClusterDriver,
    KubernetesUnavailableError,
)
from sandbox.errors import (
    ClusterError,
    ClusterUnreachableError,
    ConfigError,
    InvalidInputError,
)
from tests.fakes.kubeapi_server import (
    FAKE_TOKEN,
    FIXTURES_DIR,
    KubeApiServer,
    RecordedRequest,
    running_kubeapi_server,
    write_kubeconfig,
)

pytestmark = pytest.mark.integration

SANDBOX_OBJECTS = FIXTURES_DIR / "objects" / "flux-sandbox.yaml"
ROOT = ObjectRef(KUSTOMIZATION_API, "Kustomization", "flux-system", "flux-system")
KS_PATH = "/apis/kustomize.toolkit.fluxcd.io/v1"
SUSPEND_PATCH: dict[str, Any] = {
    "spec": {"suspend": True},
    "metadata": {"annotations": {"fleet-sandbox.io/suspended-reason": "teardown of plat-123"}},
}


@pytest.fixture
def kubeapi(tmp_path: Path) -> Iterator[KubeApiServer]:
    """A running fake API server with a kubeconfig for it in ``tmp_path``."""
    with running_kubeapi_server(tmp_path) as server:
        yield server


@pytest.fixture
def seeded(kubeapi: KubeApiServer) -> KubeApiServer:
    """The fake API server holding a small bootstrapped sandbox."""
    kubeapi.load_objects(SANDBOX_OBJECTS)
    return kubeapi


@pytest.fixture
def driver(kubeapi: KubeApiServer) -> Iterator[KubernetesClusterDriver]:
    """A driver loaded from the kubeconfig that points at the fake server."""
    assert kubeapi.kubeconfig_path is not None
    with KubernetesClusterDriver(kubeapi.kubeconfig_path) as cluster:
        yield cluster


def _only(requests: list[RecordedRequest]) -> RecordedRequest:
    assert len(requests) == 1, [f"{r.method} {r.path}" for r in requests]
    return requests[0]


def _assert_no_secret(error: BaseException) -> None:
    """Neither the message nor anything chained to the error shows the token."""
    rendered = "".join(traceback.format_exception(error))
    assert FAKE_TOKEN not in str(error)
    assert FAKE_TOKEN not in rendered
    assert "\n" not in str(error)


def _ks(name: str, namespace: str = "flux-system", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": KUSTOMIZATION_API,
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {"interval": "10m", "path": f"./{name}", "prune": True},
    }


# -- construction and kubeconfig -------------------------------------------------


def test_driver_satisfies_the_protocol_and_authenticates_with_the_kubeconfig_token(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    assert isinstance(driver, ClusterDriver)
    driver.get(ROOT)
    sent = kubeapi.requests_to("GET", f"{KS_PATH}/namespaces/flux-system/kustomizations/flux-system")
    assert _only(sent).headers["authorization"] == f"Bearer {FAKE_TOKEN}"


def test_named_context_is_used(kubeapi: KubeApiServer, tmp_path: Path) -> None:
    config = yaml.safe_load(kubeapi.kubeconfig_path.read_text())  # type: ignore[union-attr]
    # The current context points nowhere; the named one points at the server.
    config["contexts"].append({"name": "elsewhere", "context": {"cluster": "nowhere", "user": "nobody"}})
    config["clusters"].append({"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}})
    config["users"].append({"name": "nobody", "user": {"token": "other-token-value"}})
    config["current-context"] = "elsewhere"
    path = tmp_path / "two-contexts"
    path.write_text(yaml.safe_dump(config))
    with KubernetesClusterDriver(path, context="kubeapi-test") as cluster:
        assert cluster.server_version() == "1.31"


def test_kubeconfig_env_is_read_when_no_path_is_given(kubeapi: KubeApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeapi.kubeconfig_path))
    with KubernetesClusterDriver() as cluster:
        assert cluster.server_version() == "1.31"


def test_kubeconfig_text_is_used_without_a_file(kubeapi: KubeApiServer) -> None:
    assert kubeapi.kubeconfig_path is not None
    text = kubeapi.kubeconfig_path.read_text()
    with KubernetesClusterDriver.from_kubeconfig_text(text, field_manager="text-test") as cluster:
        cluster.apply(_ks("apps"))
    assert _only(kubeapi.requests_to("PATCH")).param("fieldManager") == "text-test"


def test_kubeconfig_text_that_is_not_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        KubernetesClusterDriver.from_kubeconfig_text(f"users: [{{token: {FAKE_TOKEN}")
    _assert_no_secret(caught.value)


def test_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        KubernetesClusterDriver(tmp_path / "absent")


def test_unknown_context_is_a_config_error_without_secrets(kubeapi: KubeApiServer) -> None:
    with pytest.raises(ConfigError, match="no-such-context") as caught:
        KubernetesClusterDriver(kubeapi.kubeconfig_path, context="no-such-context")
    _assert_no_secret(caught.value)


def test_malformed_kubeconfig_error_does_not_quote_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text(f"users:\n- name: me\n  user: {{token: {FAKE_TOKEN}\n  :: [\n")
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        KubernetesClusterDriver(broken)
    _assert_no_secret(caught.value)


def test_given_api_client_and_field_manager_are_used(kubeapi: KubeApiServer) -> None:
    configuration = kubernetes.client.Configuration()
    configuration.host = kubeapi.url
    configuration.api_key = {"authorization": f"Bearer {FAKE_TOKEN}"}
    with kubernetes.client.ApiClient(configuration) as api_client:
        cluster = KubernetesClusterDriver(api_client=api_client, field_manager="release-bot")
        cluster.apply(_ks("apps"))
    sent = _only(kubeapi.requests_to("PATCH"))
    assert sent.param("fieldManager") == "release-bot"


# -- server_version ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ({"major": "1", "minor": "31+"}, "1.31"),
        ({"major": "1", "minor": "29"}, "1.29"),
        ({"major": "", "minor": "", "gitVersion": "v1.30.2-gke.1587003"}, "1.30"),
    ],
)
def test_server_version_is_major_minor_from_version_endpoint(
    tmp_path: Path, version: dict[str, str], expected: str
) -> None:
    with running_kubeapi_server(tmp_path, version=version) as server:
        assert server.kubeconfig_path is not None
        with KubernetesClusterDriver(server.kubeconfig_path) as cluster:
            assert cluster.server_version() == expected
        assert [r.path for r in server.requests] == ["/version"]


# -- merge_patch -------------------------------------------------------------------


def test_merge_patch_sends_merge_patch_json(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    patched = driver.merge_patch(ROOT, SUSPEND_PATCH)

    sent = _only(seeded.requests_to("PATCH"))
    assert sent.path == f"{KS_PATH}/namespaces/flux-system/kustomizations/flux-system"
    assert sent.content_type == "application/merge-patch+json"
    assert sent.json() == SUSPEND_PATCH
    assert patched["spec"]["suspend"] is True
    assert patched["spec"]["path"] == "./clusters/plat-123-sandbox"
    assert patched["metadata"]["annotations"] == SUSPEND_PATCH["metadata"]["annotations"]
    stored = seeded.get_object(KUSTOMIZATION_API, "Kustomization", "flux-system", "flux-system")
    assert stored is not None and stored["spec"]["suspend"] is True


def test_merge_patch_of_a_missing_object_is_a_permanent_error(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    with pytest.raises(KubernetesApiError) as caught:
        driver.merge_patch(ROOT, SUSPEND_PATCH)
    assert not caught.value.retryable
    assert str(caught.value) == (
        "patch Kustomization/flux-system/flux-system: 404 NotFound: "
        'kustomizations.kustomize.toolkit.fluxcd.io "flux-system" not found'
    )


# -- apply ---------------------------------------------------------------------------


def test_apply_is_server_side_apply_to_the_namespaced_url(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    manifest = _ks("apps", tier="applications")
    stored = driver.apply(manifest)

    sent = _only(kubeapi.requests_to("PATCH"))
    assert sent.path == f"{KS_PATH}/namespaces/flux-system/kustomizations/apps"
    assert sent.content_type == "application/apply-patch+yaml"
    assert sent.param("fieldManager") == "fleet-sandbox"
    assert sent.param("force") == "true"
    assert sent.json() == manifest
    assert stored["metadata"]["resourceVersion"] == kubeapi.resource_version
    assert stored["spec"] == manifest["spec"]


@pytest.mark.parametrize(
    ("manifest", "path"),
    [
        (
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}},
            "/api/v1/namespaces/flux-system",
        ),
        (
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": "kustomizations.kustomize.toolkit.fluxcd.io"},
                "spec": {"group": "kustomize.toolkit.fluxcd.io", "scope": "Namespaced"},
            },
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/kustomizations.kustomize.toolkit.fluxcd.io",
        ),
    ],
)
def test_apply_of_cluster_scoped_kinds_uses_the_cluster_url(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver, manifest: dict[str, Any], path: str
) -> None:
    driver.apply(manifest)
    sent = _only(kubeapi.requests_to("PATCH"))
    assert sent.path == path
    assert sent.content_type == "application/apply-patch+yaml"


def test_apply_of_an_object_read_back_drops_managed_fields(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    first = driver.apply(_ks("apps"))
    assert first["metadata"]["managedFields"]
    first["spec"]["suspend"] = True
    again = driver.apply(first)
    body = seeded.requests_to("PATCH")[-1].json()
    assert "managedFields" not in body["metadata"]
    assert again["spec"]["suspend"] is True


def test_apply_of_namespaced_kind_without_namespace_sends_nothing(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    manifest = _ks("apps")
    del manifest["metadata"]["namespace"]
    with pytest.raises(InvalidInputError, match="namespaced"):
        driver.apply(manifest)
    assert kubeapi.requests_to("PATCH") == []


def test_apply_of_a_kind_the_cluster_does_not_serve_is_a_permanent_error(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    manifest = {
        "apiVersion": "notification.toolkit.fluxcd.io/v1",
        "kind": "Receiver",
        "metadata": {"name": "github", "namespace": "flux-system"},
    }
    with pytest.raises(KubernetesApiError, match="not served") as caught:
        driver.apply(manifest)
    assert not caught.value.retryable
    assert kubeapi.requests_to("PATCH") == []


def test_a_kind_served_later_is_found_after_a_discovery_miss(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    ref = ObjectRef("notification.toolkit.fluxcd.io/v1", "Receiver", "github", "flux-system")
    assert driver.get(ref) is None
    kubeapi.serve(
        "notification.toolkit.fluxcd.io/v1",
        [
            {
                "name": "receivers",
                "singularName": "receiver",
                "namespaced": True,
                "kind": "Receiver",
                "verbs": ["get", "list", "watch", "patch", "delete"],
            }
        ],
    )
    kubeapi.put_object(
        {"apiVersion": ref.api_version, "kind": ref.kind, "metadata": {"name": ref.name, "namespace": ref.namespace}}
    )
    found = driver.get(ref)
    assert found is not None and found["metadata"]["name"] == "github"


def test_a_discovery_miss_re_reads_only_the_group_list_and_the_missed_group_version(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    namespace = ObjectRef("v1", "Namespace", "flux-system")
    helm_release = ObjectRef(HELMRELEASE_API, "HelmRelease", "podinfo", "podinfo")
    assert driver.get(ROOT) is not None and driver.get(namespace) is not None and driver.get(helm_release)
    seeded.clear_requests()
    # Misses: a group the cluster does not serve, and a kind a served group version does not have.
    assert driver.get(ObjectRef("image.toolkit.fluxcd.io/v1beta2", "ImagePolicy", "p", "flux-system")) is None
    assert driver.get(ObjectRef(KUSTOMIZATION_API, "NoSuchKind", "x", "flux-system")) is None
    for _ in range(3):
        assert driver.get(ROOT) is not None and driver.get(namespace) is not None and driver.get(helm_release)
    discovery = [r.path for r in seeded.requests if "/namespaces/" not in r.path]
    # Before: each miss threw everything away (/version, /apis, then /api/v1 and every group version again).
    assert discovery == ["/apis", "/apis", KS_PATH], discovery


# -- delete --------------------------------------------------------------------------


def test_delete_sends_background_propagation_and_reports_absence(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    ref = ObjectRef(KUSTOMIZATION_API, "Kustomization", "apps", "flux-system")
    assert driver.delete(ref) is True
    assert driver.delete(ref) is False

    first, second = seeded.requests_to("DELETE")
    assert first.path == second.path == f"{KS_PATH}/namespaces/flux-system/kustomizations/apps"
    assert first.content_type == "application/json"
    assert first.json()["propagationPolicy"] == "Background"
    assert seeded.get_object(KUSTOMIZATION_API, "Kustomization", "apps", "flux-system") is None


def test_delete_of_an_object_with_finalizers_leaves_it_terminating(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    ref = ObjectRef("v1", "Service", "podinfo", "podinfo")
    assert driver.delete(ref) is True
    left = driver.get(ref)
    assert left is not None
    assert left["metadata"]["deletionTimestamp"]
    assert left["metadata"]["finalizers"] == ["service.kubernetes.io/load-balancer-cleanup"]


def test_delete_of_a_cluster_scoped_object_uses_the_cluster_url(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    assert driver.delete(ObjectRef("v1", "Namespace", "podinfo")) is True
    assert _only(seeded.requests_to("DELETE")).path == "/api/v1/namespaces/podinfo"


# -- get -----------------------------------------------------------------------------


def test_get_returns_the_object_or_none(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    deployment = driver.get(ObjectRef("apps/v1", "Deployment", "podinfo", "podinfo"))
    assert deployment is not None
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    assert deployment["spec"]["replicas"] == 1

    assert driver.get(ObjectRef("apps/v1", "Deployment", "absent", "podinfo")) is None
    missing = seeded.requests_to("GET", "/apis/apps/v1/namespaces/podinfo/deployments/absent")
    assert len(missing) == 1


def test_get_of_a_kind_the_cluster_does_not_serve_is_none(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    assert driver.get(ObjectRef("image.toolkit.fluxcd.io/v1beta2", "ImagePolicy", "x", "y")) is None
    assert kubeapi.api_requests() == []


def test_namespaced_get_without_namespace_is_invalid_input(driver: KubernetesClusterDriver) -> None:
    with pytest.raises(InvalidInputError, match="namespace is required"):
        driver.get(ObjectRef(KUSTOMIZATION_API, "Kustomization", "flux-system"))


# -- list ----------------------------------------------------------------------------


def test_list_in_all_namespaces_uses_the_cluster_wide_path_and_selector(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    selector = "helm.toolkit.fluxcd.io/name=podinfo,helm.toolkit.fluxcd.io/namespace=podinfo"
    services = driver.list("v1", "Service", label_selector=selector)

    sent = _only(seeded.requests_to("GET", "/api/v1/services"))
    assert sent.param("labelSelector") == selector
    # The server leaves apiVersion/kind off built-in list items; the driver restores them.
    assert [(s["apiVersion"], s["kind"], s["metadata"]["name"]) for s in services] == [("v1", "Service", "podinfo")]


def test_list_in_one_namespace_uses_the_namespaced_path(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    children = driver.list(
        KUSTOMIZATION_API,
        "Kustomization",
        namespace="flux-system",
        label_selector="kustomize.toolkit.fluxcd.io/name=flux-system",
    )
    sent = _only(seeded.requests_to("GET", f"{KS_PATH}/namespaces/flux-system/kustomizations"))
    assert sent.param("labelSelector") == "kustomize.toolkit.fluxcd.io/name=flux-system"
    assert sorted(k["metadata"]["name"] for k in children) == ["apps", "infra-controllers"]


def test_list_follows_continue_tokens(seeded: KubeApiServer) -> None:
    assert seeded.kubeconfig_path is not None
    with KubernetesClusterDriver(seeded.kubeconfig_path, list_page_size=2) as cluster:
        names = [k["metadata"]["name"] for k in cluster.list(KUSTOMIZATION_API, "Kustomization")]
    assert sorted(names) == ["apps", "flux-system", "infra-controllers"]
    pages = seeded.requests_to("GET", f"{KS_PATH}/kustomizations")
    assert [(p.param("limit"), p.param("continue")) for p in pages] == [("2", None), ("2", "2")]


def test_list_of_persistent_volumes_uses_the_cluster_scoped_core_path(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    # Teardown waits for released PVs before removing their CSI driver: they are in no namespace.
    kubeapi.put_object(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "pvc-1234", "finalizers": ["external-provisioner.volume.kubernetes.io/finalizer"]},
            "spec": {"persistentVolumeReclaimPolicy": "Delete", "claimRef": {"namespace": "data", "name": "db"}},
        }
    )
    volumes = driver.list("v1", "PersistentVolume")
    _only(kubeapi.requests_to("GET", "/api/v1/persistentvolumes"))
    assert [(v["kind"], v["metadata"]["name"], v["metadata"].get("namespace")) for v in volumes] == [
        ("PersistentVolume", "pvc-1234", None)
    ]


def test_list_of_a_kind_the_cluster_does_not_serve_is_empty(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    assert driver.list("image.toolkit.fluxcd.io/v1beta2", "ImagePolicy") == []


# -- watch ---------------------------------------------------------------------------


def _names(events: list[WatchEvent]) -> list[tuple[str, str]]:
    return [(e.type, e.object["metadata"]["name"]) for e in events]


def test_watch_lists_then_watches_from_the_list_resource_version(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    listed_version = seeded.resource_version
    stream = driver.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=1.0)
    events = [next(stream) for _ in range(3)]
    assert _names(events) == [("ADDED", "apps"), ("ADDED", "flux-system"), ("ADDED", "infra-controllers")]
    assert all(e.object["kind"] == "Kustomization" for e in events)

    # Changes after the list arrive through the watch.
    seeded.patch_object(KUSTOMIZATION_API, "Kustomization", "apps", "flux-system", {"spec": {"suspend": True}})
    seeded.remove_object(KUSTOMIZATION_API, "Kustomization", "infra-controllers", "flux-system")
    seeded.put_object(_ks("monitoring"))
    rest = list(stream)  # ends quietly at the timeout
    assert _names(rest) == [("MODIFIED", "apps"), ("DELETED", "infra-controllers"), ("ADDED", "monitoring")]
    assert rest[0].object["spec"]["suspend"] is True

    requests = seeded.requests_to("GET", f"{KS_PATH}/kustomizations")
    list_request, watch_request = requests[0], requests[1]
    assert list_request.param("watch") is None
    assert watch_request.param("watch") in ("true", "1")
    assert watch_request.param("resourceVersion") == listed_version
    assert watch_request.param("allowWatchBookmarks") == "true"
    assert watch_request.param("timeoutSeconds") == "1"


@pytest.mark.timeout(60)
def test_watch_ends_at_the_next_event_once_stop_is_set(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    stop = threading.Event()
    stream = driver.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=30.0, stop=stop)
    assert len([next(stream) for _ in range(3)]) == 3  # the listing
    seeded.put_object(_ks("monitoring"))
    assert _names([next(stream)]) == [("ADDED", "monitoring")]  # through the open watch
    stop.set()
    seeded.put_object(_ks("logging"))  # the event the open stream wakes up for
    assert list(stream) == []  # not reported: its consumer is gone, and the stream ends
    watches = [r for r in seeded.requests_to("GET", f"{KS_PATH}/kustomizations") if r.param("watch")]
    assert len(watches) == 1  # no new watch after it


@pytest.mark.timeout(60)
def test_watch_stopped_between_requests_opens_no_watch(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    stop = threading.Event()
    stream = driver.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=30.0, stop=stop)
    assert len([next(stream) for _ in range(3)]) == 3
    stop.set()
    assert list(stream) == []
    assert not [r for r in seeded.requests_to("GET", f"{KS_PATH}/kustomizations") if r.param("watch")]


def test_watch_passes_namespace_and_selector(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    selector = "kustomize.toolkit.fluxcd.io/name=apps"
    events = list(driver.watch(HELMRELEASE_API, "HelmRelease", "podinfo", selector, timeout_seconds=0.5))
    assert _names(events) == [("ADDED", "podinfo")]
    path = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/podinfo/helmreleases"
    list_request, watch_request = seeded.requests_to("GET", path)[:2]
    assert list_request.param("labelSelector") == watch_request.param("labelSelector") == selector
    assert watch_request.param("watch") in ("true", "1")


def test_watch_relists_after_410_gone_and_reports_the_difference(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    stream = driver.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=1.0)
    first = [next(stream) for _ in range(3)]
    assert {e.type for e in first} == {"ADDED"}

    # Changes happen and the history is compacted before the watch starts:
    # the watch from the list's version gets an ERROR event with 410.
    seeded.patch_object(KUSTOMIZATION_API, "Kustomization", "apps", "flux-system", {"spec": {"suspend": True}})
    seeded.remove_object(KUSTOMIZATION_API, "Kustomization", "infra-controllers", "flux-system")
    seeded.put_object(_ks("monitoring"))
    compacted_at = seeded.compact()
    rest = list(stream)

    assert _names(rest) == [("MODIFIED", "apps"), ("ADDED", "monitoring"), ("DELETED", "infra-controllers")]
    requests = seeded.requests_to("GET", f"{KS_PATH}/kustomizations")
    kinds = ["watch" if r.param("watch") else "list" for r in requests]
    assert kinds[:4] == ["list", "watch", "list", "watch"]
    assert requests[3].param("resourceVersion") == str(compacted_at)


def test_watch_relists_after_http_410(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    seeded.fail(410, method="GET", query={"watch": "true"}, reason="Expired", message="too old resource version")
    events = list(driver.watch(KUSTOMIZATION_API, "Kustomization", "flux-system", timeout_seconds=0.5))
    # The re-list finds nothing new, so nothing is reported twice.
    assert _names(events) == [("ADDED", "apps"), ("ADDED", "flux-system"), ("ADDED", "infra-controllers")]
    requests = seeded.requests_to("GET", f"{KS_PATH}/namespaces/flux-system/kustomizations")
    assert ["watch" if r.param("watch") else "list" for r in requests][:4] == ["list", "watch", "list", "watch"]


def test_watch_resumes_from_the_bookmark_when_the_server_closes_early(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    seeded.watch_close_after = 0.2
    stream = driver.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=1.0)
    for _ in range(3):
        next(stream)
    # An unrelated change moves the resourceVersion on; the bookmark at the end
    # of the first watch carries it, and the next watch starts from there.
    seeded.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "podinfo"}})
    bookmark_version = seeded.resource_version
    events = list(stream)

    assert events == []  # bookmarks are not reported
    watches = [r for r in seeded.requests_to("GET", f"{KS_PATH}/kustomizations") if r.param("watch")]
    assert len(watches) >= 2
    assert watches[1].param("resourceVersion") == bookmark_version


def test_watch_of_a_kind_the_cluster_does_not_serve_ends_quietly(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    events = list(driver.watch("image.toolkit.fluxcd.io/v1beta2", "ImagePolicy", timeout_seconds=0.3))
    assert events == []
    assert kubeapi.api_requests() == []


def test_watch_reports_objects_deleted_when_their_kind_goes_away(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    stream = driver.watch(HELMRELEASE_API, "HelmRelease", timeout_seconds=0.5)
    assert _names([next(stream)]) == [("ADDED", "podinfo")]
    seeded.unserve(HELMRELEASE_API)  # the CRD is deleted: the watch gets a 404
    assert _names(list(stream)) == [("DELETED", "podinfo")]


def test_watch_error_event_other_than_410_is_raised_when_it_lasts_until_the_timeout(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    seeded.fail(500, query={"watch": "true"}, in_watch_stream=True, message="etcd leader changed", times=1000)
    with pytest.raises(KubernetesUnavailableError, match="watch Kustomization in all namespaces: 500") as caught:
        list(driver.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=1.0))
    _assert_no_secret(caught.value)


@pytest.mark.timeout(60)
def test_watch_resumes_from_where_it_was_after_a_server_error_event(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    listed_version = seeded.resource_version
    stream = driver.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=6.0)
    assert len([next(stream) for _ in range(3)]) == 3
    seeded.fail(500, query={"watch": "true"}, in_watch_stream=True, message="etcd leader changed")
    seeded.put_object(_ks("monitoring"))
    assert _names([next(stream)]) == [("ADDED", "monitoring")]
    requests = seeded.requests_to("GET", f"{KS_PATH}/kustomizations")
    assert ["watch" if r.param("watch") else "list" for r in requests] == ["list", "watch", "watch"]
    assert requests[2].param("resourceVersion") == listed_version  # resumed, not re-listed


@pytest.mark.timeout(60)
def test_watch_resumes_after_its_server_went_away(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    # An API server killed and restarted: watch requests find no server for a while (more often than
    # urllib3's own retries of an idempotent request cover), then one answers again.
    listed_version = seeded.resource_version
    stream = driver.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=20.0)
    assert len([next(stream) for _ in range(3)]) == 3
    seeded.fail(0, query={"watch": "true"}, drop_connection=True, times=8)
    seeded.put_object(_ks("monitoring"))
    assert _names([next(stream)]) == [("ADDED", "monitoring")]
    requests = seeded.requests_to("GET", f"{KS_PATH}/kustomizations")
    assert [r.param("watch") is not None for r in requests].count(False) == 1  # no second list
    assert requests[-1].param("resourceVersion") == listed_version


@pytest.mark.timeout(60)
def test_watch_with_no_server_until_its_timeout_is_unavailable(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    stream = driver.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=2.0)
    assert len([next(stream) for _ in range(3)]) == 3
    seeded.fail(0, query={"watch": "true"}, drop_connection=True, times=1000)
    with pytest.raises(KubernetesUnavailableError, match="unreachable"):
        list(stream)


@pytest.mark.timeout(60)
def test_a_long_watch_is_resumed_request_by_request_from_the_bookmark(kubeapi: KubeApiServer) -> None:
    kubeapi.load_objects(SANDBOX_OBJECTS)
    assert kubeapi.kubeconfig_path is not None
    with KubernetesClusterDriver(kubeapi.kubeconfig_path, watch_request_seconds=1) as cluster:
        stream = cluster.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=2.6)
        assert len([next(stream) for _ in range(3)]) == 3
        # An unrelated change: only the bookmark that ends the first request carries its version.
        kubeapi.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "podinfo"}})
        bookmark_version = kubeapi.resource_version
        assert list(stream) == []
    watches = [r for r in kubeapi.requests_to("GET", f"{KS_PATH}/kustomizations") if r.param("watch")]
    assert len(watches) >= 2
    assert {w.param("timeoutSeconds") for w in watches} == {"1"}
    assert watches[1].param("resourceVersion") == bookmark_version


def test_watch_refused_is_a_permanent_error(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    seeded.fail(403, query={"watch": "true"}, message="cannot watch kustomizations")
    with pytest.raises(KubernetesApiError, match="403 Forbidden: cannot watch kustomizations"):
        list(driver.watch(KUSTOMIZATION_API, "Kustomization", timeout_seconds=1.0))


# -- error mapping -------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503, 504])
def test_rate_limits_and_server_errors_are_retryable(
    seeded: KubeApiServer, driver: KubernetesClusterDriver, status: int
) -> None:
    seeded.fail(status, method="PATCH", message="try again later")
    with pytest.raises(KubernetesUnavailableError) as caught:
        driver.merge_patch(ROOT, SUSPEND_PATCH)
    error = caught.value
    assert isinstance(error, ClusterUnreachableError) and error.retryable
    assert error.status == status
    assert str(error).startswith(f"patch Kustomization/flux-system/flux-system: {status} ")
    assert str(error).endswith(": try again later")
    _assert_no_secret(error)


def test_a_429_with_retry_after_is_sent_again_after_the_wait_the_server_asked_for(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    seeded.fail(429, method="PATCH", message="Too many requests, please try again later.", retry_after="1", times=2)
    patched = driver.merge_patch(ROOT, SUSPEND_PATCH)
    assert patched["spec"]["suspend"] is True
    patches = seeded.requests_to("PATCH")
    assert len(patches) == 3
    # Each try waited at least the Retry-After (a lower bound: a slow machine only waits longer).
    assert all(later.received - earlier.received >= 1.0 for earlier, later in zip(patches, patches[1:], strict=False))


def test_a_429_that_goes_on_is_retryable_after_the_client_go_number_of_tries(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    seeded.fail(429, method="PATCH", message="Too many requests", retry_after="0", times=100)
    with pytest.raises(KubernetesUnavailableError, match=r"429 .*\(retry after 0s\)") as caught:
        driver.merge_patch(ROOT, SUSPEND_PATCH)
    assert caught.value.retry_after == 0
    assert len(seeded.requests_to("PATCH")) == 11


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (401, "Unauthorized", "Unauthorized"),
        (
            403,
            "Forbidden",
            'kustomizations.kustomize.toolkit.fluxcd.io "flux-system" is forbidden: '
            'User "ci" cannot patch resource "kustomizations"',
        ),
        (409, "Conflict", "Operation cannot be fulfilled: the object has been modified"),
        (
            422,
            "Invalid",
            'Kustomization.kustomize.toolkit.fluxcd.io "flux-system" is invalid: spec.interval: Required value',
        ),
    ],
)
def test_refusals_are_permanent_with_a_one_line_message(
    seeded: KubeApiServer, driver: KubernetesClusterDriver, status: int, reason: str, message: str
) -> None:
    seeded.fail(status, method="PATCH", reason=reason, message=message)
    with pytest.raises(KubernetesApiError) as caught:
        driver.merge_patch(ROOT, SUSPEND_PATCH)
    error = caught.value
    assert isinstance(error, ClusterError) and not error.retryable
    assert not isinstance(error, ClusterUnreachableError)
    assert (error.status, error.reason) == (status, reason)
    assert str(error) == f"patch Kustomization/flux-system/flux-system: {status} {reason}: {message}"
    _assert_no_secret(error)


def test_wrong_token_is_rejected_without_showing_it(tmp_path: Path) -> None:
    with running_kubeapi_server(tmp_path, token="the-right-token-value") as server:
        wrong = write_kubeconfig(tmp_path / "wrong", server.url, FAKE_TOKEN)
        with pytest.raises(KubernetesApiError, match="401 Unauthorized") as caught:
            KubernetesClusterDriver(wrong).list(KUSTOMIZATION_API, "Kustomization")
        assert _only(server.requests_to("GET", "/version")).headers["authorization"] == f"Bearer {FAKE_TOKEN}"
    _assert_no_secret(caught.value)


def test_token_echoed_by_the_server_is_scrubbed(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    seeded.fail(403, method="DELETE", message=f"token Bearer {FAKE_TOKEN} is not allowed to delete")
    with pytest.raises(KubernetesApiError) as caught:
        driver.delete(ROOT)
    assert "***" in str(caught.value)
    _assert_no_secret(caught.value)


def test_connection_refused_is_retryable(kubeapi: KubeApiServer) -> None:
    assert kubeapi.kubeconfig_path is not None
    cluster = KubernetesClusterDriver(kubeapi.kubeconfig_path)
    kubeapi.stop()  # nothing listens on the port any more
    with pytest.raises(ClusterUnreachableError, match="unreachable") as caught:
        cluster.get(ROOT)
    assert caught.value.retryable
    assert str(caught.value).startswith("get Kustomization/flux-system/flux-system: cluster API http://127.0.0.1:")
    _assert_no_secret(caught.value)


def test_request_timeout_is_retryable(seeded: KubeApiServer) -> None:
    assert seeded.kubeconfig_path is not None
    with KubernetesClusterDriver(seeded.kubeconfig_path, request_timeout=0.2) as cluster:
        cluster.list(KUSTOMIZATION_API, "Kustomization")  # discovery done
        # urllib3 retries reads of a GET, so hold every attempt.
        seeded.delay(2.0, method="GET", path="/kustomizations/flux-system$", times=10)
        with pytest.raises(ClusterUnreachableError, match="timed out") as caught:
            cluster.get(ROOT)
    _assert_no_secret(caught.value)


def test_dropped_connection_is_retryable(seeded: KubeApiServer, driver: KubernetesClusterDriver) -> None:
    seeded.fail(0, method="PATCH", drop_connection=True, times=10)
    with pytest.raises(ClusterUnreachableError, match="unreachable") as caught:
        driver.merge_patch(ROOT, SUSPEND_PATCH)
    _assert_no_secret(caught.value)


def test_a_503_for_a_group_versions_resource_list_is_unavailable_not_unserved(
    seeded: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    # The library reads it as "the group version serves nothing": the Kustomization would look gone while
    # its API server restarts, and teardown would go on to destroy the cluster with its finalizer pending.
    seeded.fail(503, path=r"^/apis/kustomize\.toolkit\.fluxcd\.io/v1$", times=2)
    with pytest.raises(KubernetesUnavailableError, match=r"^get Kustomization/flux-system/flux-system: 503 "):
        driver.get(ROOT)
    with pytest.raises(KubernetesUnavailableError, match=r"^list Kustomization in all namespaces: 503 "):
        driver.list(KUSTOMIZATION_API, "Kustomization")
    # Nothing was cached from the failed reads: once the resource list answers, the kind is served again.
    found = driver.get(ROOT)
    assert found is not None and found["metadata"]["name"] == "flux-system"
    assert len(seeded.requests_to("GET", "/apis/kustomize.toolkit.fluxcd.io/v1")) == 3


def test_discovery_failure_is_reported_for_the_operation(
    kubeapi: KubeApiServer, driver: KubernetesClusterDriver
) -> None:
    kubeapi.fail(503, path="^/apis$", times=10)
    with pytest.raises(KubernetesUnavailableError, match=r"^list Kustomization in all namespaces: 503"):
        driver.list(KUSTOMIZATION_API, "Kustomization")
