"""The product's kubernetes driver on a real API server (issue 21, Deliver 3).

One local cluster (no Flux: the control plane is enough) and one test that runs the checks in turn, so the
cluster starts once. Each check goes through :class:`KubernetesClusterDriver`; what the driver sent and got is
read from the server where it can be (API Priority and Fairness metrics on ``/metrics``, managedFields) and from
the client's own watch and list calls otherwise (a spy that records, never changes, what passes).

1. Server-side apply with the driver's field manager; a field another manager took over is forced back.
2. Discovery is cached: the driver's discovery requests (counted by the API server: a FlowSchema that matches
   only the driver's ServiceAccount on the discovery URLs) do not grow with its calls, and grow once when a
   CustomResourceDefinition appears, whose objects the driver then applies.
3. Watches with resourceVersion and bookmarks: each watch request asks ``allowWatchBookmarks``; the real
   server's bookmark (sent 2 s before a request's ``timeoutSeconds``) carries a resourceVersion past the last
   event (writes elsewhere moved it), and the next request resumes exactly from it, without a list.
4. Rate limiting: a real ``429`` with ``Retry-After`` from API Priority and Fairness (a priority level with no
   seats to lend or borrow and ``limitResponse: Reject``, its one dispatch slot held by a write stuck while
   etcd is SIGSTOPped); the driver sends again no sooner than the server asked, and succeeds once the slot is
   free (etcd continued).
5. The API server killed mid-watch: the host kubelet starts it again on its port, its watch cache starts at
   the present, so the watch's resourceVersion (older: writes to other kinds moved etcd's revision) gets a real
   ``410 Gone``; the driver re-lists and watches on, and its view ends equal to the server's after changes made
   once the server was back.
6. A watch's events in resourceVersion order from another writer (kubectl), until stopped.
7. An API group whose server is unavailable (an APIService with no Service behind it: the aggregator answers
   ``503`` for its resource list) is not taken for a group that serves nothing: a get of its kind is a
   retryable unavailable error, not "no such object"; a group that does not exist at all is still not served.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes.watch
import pytest
import yaml
from kubernetes.client.rest import ApiException

from sandbox.drivers.cluster import ObjectRef, WatchEvent
from sandbox.drivers.kubernetes_cluster import (
    DEFAULT_FIELD_MANAGER,
    KubernetesClusterDriver,
    KubernetesUnavailableError,
)
from sandbox.localcluster.processes import LocalProcess, find_local_cluster_processes
from tests.polling import poll
from tests.real.localstack import Kubectl, LocalStack

pytestmark = pytest.mark.timeout(1200)

NAMESPACE = "driver"
SETTINGS = ObjectRef("v1", "ConfigMap", "settings", NAMESPACE)
#: The driver's own identity for the checks that count or limit its requests on the server.
SERVICE_ACCOUNT = "sandbox-driver"
WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.fleet-sandbox.io}
spec:
  group: example.fleet-sandbox.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"""


def _configmap(name: str, data: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE}, "data": data}


def _owners(obj: dict[str, object], key: str) -> set[str]:
    """The field managers owning ``data.<key>`` of a ConfigMap (from ``metadata.managedFields``)."""
    owners = set()
    for entry in obj["metadata"].get("managedFields") or []:  # type: ignore[attr-defined]
        fields = (entry.get("fieldsV1") or {}).get("f:data") or {}
        if f"f:{key}" in fields:
            owners.add(entry["manager"])
    return owners


def _metric(k: Kubectl, name: str, flow_schema: str) -> float:
    """The sum of metric ``name`` over the series labelled ``flow_schema`` (0 when there is none yet)."""
    total = 0.0
    for line in k("get", "--raw", "/metrics").splitlines():
        if line.startswith(name + "{") and f'flow_schema="{flow_schema}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _apply_flow_control(k: Kubectl, *documents: dict[str, Any]) -> None:
    k("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    for doc in documents:
        if doc["kind"] == "FlowSchema":
            name = doc["metadata"]["name"]

            def taken_up(name: str = name) -> bool:
                # API Priority and Fairness acts on a FlowSchema once its controller has looked at it.
                return "Dangling" in k("get", "flowschema", name, "-o", "yaml")

            poll(f"FlowSchema {name} taken up", taken_up, 60)


def _flow_schema(name: str, priority_level: str, precedence: int, rules: dict[str, Any]) -> dict[str, Any]:
    subject = {"kind": "ServiceAccount", "serviceAccount": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}}
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "priorityLevelConfiguration": {"name": priority_level},
            "matchingPrecedence": precedence,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{"subjects": [subject], **rules}],
        },
    }


def _service_account_kubeconfig(k: Kubectl, admin: str) -> str:
    """A kubeconfig for the driver's ServiceAccount (cluster-admin), from the admin's cluster entry and a token."""
    k("-n", NAMESPACE, "create", "serviceaccount", SERVICE_ACCOUNT)
    k("create", "clusterrolebinding", SERVICE_ACCOUNT, "--clusterrole=cluster-admin",
      f"--serviceaccount={NAMESPACE}:{SERVICE_ACCOUNT}")  # fmt: skip
    token = k("-n", NAMESPACE, "create", "token", SERVICE_ACCOUNT, "--duration=2h").strip()
    document = yaml.safe_load(admin)
    user = document["contexts"][0]["context"]["user"]
    document["users"] = [{"name": user, "user": {"token": token}}]
    return yaml.safe_dump(document)


class WatchSpy:
    """Records each watch request the driver opens (its arguments, the events and error it got) and each list."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.watches: list[dict[str, Any]] = []
        self.lists = 0
        self._lock = threading.Lock()
        spy = self
        original_stream = kubernetes.watch.Watch.stream
        original_list = KubernetesClusterDriver._list_all

        def stream(watch: kubernetes.watch.Watch, func: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            call: dict[str, Any] = {
                "resource_version": kwargs.get("resource_version"),
                "bookmarks": kwargs.get("allow_watch_bookmarks"),
                "timeout": kwargs.get("timeout_seconds"),
                "events": [],
                "error": None,
            }
            with spy._lock:
                spy.watches.append(call)
            inner = original_stream(watch, func, *args, **kwargs)
            try:
                for event in inner:
                    obj = event.get("raw_object", event.get("object")) or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion")
                    call["events"].append((event.get("type"), int(version) if version else None))
                    yield event
            except ApiException as exc:
                call["error"] = exc.status
                raise
            except Exception as exc:
                call["error"] = type(exc).__name__
                raise
            finally:
                inner.close()

        def list_all(driver: KubernetesClusterDriver, *args: Any, **kwargs: Any) -> Any:
            with spy._lock:
                spy.lists += 1
            return original_list(driver, *args, **kwargs)

        monkeypatch.setattr(kubernetes.watch.Watch, "stream", stream)
        monkeypatch.setattr(KubernetesClusterDriver, "_list_all", list_all)

    def reset(self) -> None:
        with self._lock:
            self.watches.clear()
            self.lists = 0


#: Watches started by the checks, stopped before the cluster goes (a failed check leaves its watch running).
_WATCHES: list[Watching] = []


class Watching:
    """A driver watch running in a thread, kept as a view (name -> object) and the events in order."""

    def __init__(self, driver: KubernetesClusterDriver, namespace: str, timeout: float) -> None:
        _WATCHES.append(self)
        self.stop = threading.Event()
        self.events: list[WatchEvent] = []
        self.view: dict[str, dict[str, Any]] = {}
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(driver, namespace, timeout), daemon=True)
        self._thread.start()

    def _run(self, driver: KubernetesClusterDriver, namespace: str, timeout: float) -> None:
        try:
            for event in driver.watch("v1", "ConfigMap", namespace, timeout_seconds=timeout, stop=self.stop):
                name = event.object["metadata"]["name"]
                if event.type == "DELETED":
                    self.view.pop(name, None)
                else:
                    self.view[name] = event.object
                self.events.append(event)
        except BaseException as exc:  # the test reports it
            self.error = exc

    def data(self) -> dict[str, dict[str, str]]:
        return {name: dict(obj.get("data") or {}) for name, obj in self.view.items() if name != "kube-root-ca.crt"}

    def until(self, what: str, check: Callable[[], bool], timeout: float = 120) -> None:
        def checked() -> bool:
            if self.error is not None:
                pytest.fail(f"the watch failed while waiting for {what}: {self.error!r}")
            return check()

        poll(what, checked, timeout)

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the watch did not end after stop was set"
        assert self.error is None, f"the watch failed: {self.error!r}"


def _process(cluster_dir: Path, component: str) -> LocalProcess:
    found = [p for p in find_local_cluster_processes(cluster_dir) if p.component == component]
    assert found, f"no {component} running"
    return found[0]


def _server_data(k: Kubectl, namespace: str) -> dict[str, dict[str, str]]:
    items = k.json("-n", namespace, "configmaps")["items"]
    return {
        i["metadata"]["name"]: dict(i.get("data") or {}) for i in items if i["metadata"]["name"] != "kube-root-ca.crt"
    }


# -- the checks ------------------------------------------------------------------------------------------------


def check_server_side_apply(driver: KubernetesClusterDriver, k: Kubectl) -> None:
    stored = driver.apply(_configmap("settings", {"owned": "by the sandbox"}))
    assert _owners(stored, "owned") == {DEFAULT_FIELD_MANAGER}
    # Another manager takes a field over; the driver's next apply forces it back (conflicts are forced: the
    # sandbox branch is the truth), and a field only the other manager set is left to it.
    k(
        "apply", "--server-side", "--force-conflicts", "--field-manager=someone-else", "-f", "-",
        stdin='{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": '
        '"driver"}, "data": {"owned": "changed by hand", "theirs": "kept"}}',
    )  # fmt: skip
    taken = driver.get(SETTINGS)
    assert taken is not None and _owners(taken, "owned") == {"someone-else"}
    stored = driver.apply(_configmap("settings", {"owned": "by the sandbox"}))
    assert stored["data"] == {"owned": "by the sandbox", "theirs": "kept"}
    assert _owners(stored, "owned") == {DEFAULT_FIELD_MANAGER}
    assert _owners(stored, "theirs") == {"someone-else"}


def check_discovery_is_cached(k: Kubectl, kubeconfig: str) -> None:
    schema = "sandbox-driver-discovery"
    discovery = {
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*"]}],
    }
    _apply_flow_control(k, _flow_schema(schema, "global-default", 50, discovery))

    def reads() -> float:
        return _metric(k, "apiserver_flowcontrol_dispatched_requests_total", schema)

    before = reads()
    widget = ObjectRef("example.fleet-sandbox.io/v1", "Widget", "w", NAMESPACE)
    with KubernetesClusterDriver.from_kubeconfig_text(kubeconfig) as driver:
        deployment = ObjectRef("apps/v1", "Deployment", "none", NAMESPACE)
        # Warm: the core group, apps/v1 and the missing Widget kind each looked up once.
        assert driver.get(SETTINGS) is not None and driver.get(deployment) is None
        assert driver.get(widget) is None  # a miss re-reads discovery (a CRD may have appeared)
        warm = reads()
        assert warm > before, "the driver's discovery requests were not counted by the server"
        for index in range(10):
            driver.apply(_configmap(f"cached-{index}", {"n": str(index)}))
            assert driver.get(SETTINGS) is not None
            assert driver.list("v1", "ConfigMap", NAMESPACE)
            assert driver.get(deployment) is None
        assert reads() == warm, f"discovery re-read during 40 calls of known kinds: {reads() - warm:.0f} requests"

        k("apply", "-f", "-", stdin=WIDGET_CRD)
        k("wait", "--for=condition=Established", "crd/widgets.example.fleet-sandbox.io", "--timeout=120s")
        applied = driver.apply({"apiVersion": widget.api_version, "kind": "Widget",
                                "metadata": {"name": "w", "namespace": NAMESPACE}, "spec": {"size": 1}})  # fmt: skip
        assert applied["spec"] == {"size": 1}
        refreshed = reads()
        assert refreshed > warm, "the new kind was found without reading discovery again"
        for _ in range(5):
            assert driver.get(widget) is not None and driver.list(widget.api_version, "Widget", NAMESPACE)
        assert reads() == refreshed, "discovery re-read for a kind already found"
    k("delete", "flowschema", schema)


def check_bookmarks_move_the_resume_point(kubeconfig: str, k: Kubectl, spy: WatchSpy) -> None:
    spy.reset()
    # Each watch request lasts 5 s; the real server sends a bookmark 2 s before a request's timeoutSeconds.
    with KubernetesClusterDriver.from_kubeconfig_text(kubeconfig, watch_request_seconds=5) as driver:
        watching = Watching(driver, NAMESPACE, timeout=300)
        watching.until("the watch's listing", lambda: "settings" in watching.view)
        # Writes the watch does not see (another namespace): only a bookmark can tell it they happened.
        for index in range(3):
            k("-n", "elsewhere", "create", "configmap", f"moved-{index}", "--from-literal=n=1")
        moved = int(k.json("-n", "elsewhere", "configmap", "moved-2")["metadata"]["resourceVersion"])

        def resumed_from_a_bookmark() -> bool:
            calls = list(spy.watches)
            return any(
                c["events"] and c["events"][-1][0] == "BOOKMARK" and (c["events"][-1][1] or 0) >= moved
                and n["resource_version"] == str(c["events"][-1][1])
                for c, n in zip(calls, calls[1:], strict=False)
            )  # fmt: skip

        watching.until("a watch request resumed from a bookmark past the writes elsewhere", resumed_from_a_bookmark)
        k("-n", NAMESPACE, "patch", "configmap", "settings", "--type=merge", "-p", '{"data":{"theirs":"seen"}}')
        watching.until(
            "the resumed watch reporting a change", lambda: watching.data()["settings"].get("theirs") == "seen"
        )
        watching.finish()
    calls = list(spy.watches)
    assert spy.lists == 1, f"the watch listed {spy.lists} times: it should only resume"
    assert all(c["bookmarks"] is True for c in calls), calls
    assert all(c["timeout"] <= 5 for c in calls), [c["timeout"] for c in calls]
    for previous, following in zip(calls, calls[1:], strict=False):
        seen = [version for _, version in previous["events"] if version is not None]
        # Every request resumes from the last resourceVersion the one before saw (an event's or a bookmark's).
        assert seen and following["resource_version"] == str(seen[-1]), (previous, following)


def _record_exchanges(driver: KubernetesClusterDriver, into: list[tuple[float, int, str | None]]) -> None:
    """Append (when, status, Retry-After) of each answer ``driver`` gets to ``into``."""
    rest = driver._api_client.rest_client
    original = rest.request

    def recorded(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        into.append((time.monotonic(), response.status, response.getheader("Retry-After")))
        return response

    rest.request = recorded  # type: ignore[method-assign]


def check_retry_after_is_honoured(k: Kubectl, kubeconfig: str, cluster_dir: Path, spy: WatchSpy) -> None:
    schema, level = "sandbox-driver-throttled", "sandbox-driver-one-at-a-time"
    priority_level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": level},
        # No seats of its own, none to lend or borrow: a request is dispatched only while no other of this
        # level executes, and rejected (not queued) otherwise.
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 0,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},
            },
        },
    }
    everything = {
        "resourceRules": [
            {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": True}
        ]
    }
    _apply_flow_control(k, priority_level, _flow_schema(schema, level, 60, everything))
    etcd = _process(cluster_dir, "etcd")
    blocker_result: list[Any] = []
    done: list[Any] = []
    exchanges: list[tuple[float, int, str | None]] = []  # the driver's answers: (when, status, Retry-After)
    held: list[tuple[float, int, str | None]] = []  # the same for the write holding the slot
    with (
        KubernetesClusterDriver.from_kubeconfig_text(kubeconfig) as blocker,
        KubernetesClusterDriver.from_kubeconfig_text(kubeconfig) as driver,
    ):
        # Both know ConfigMaps before etcd stops (discovery is not limited by this FlowSchema anyway).
        assert blocker.get(SETTINGS) is not None and driver.get(SETTINGS) is not None
        _record_exchanges(driver, exchanges)
        _record_exchanges(blocker, held)
        rejected_before = _metric(k, "apiserver_flowcontrol_rejected_requests_total", schema)
        os.kill(etcd.pid, signal.SIGSTOP)
        try:
            # The level's one slot: a write that cannot finish while etcd is stopped.
            def hold() -> None:
                try:
                    blocker_result.append(blocker.apply(_configmap("slot-holder", {"held": "yes"})))
                except Exception as exc:  # kept for the failure message: a holder that died holds nothing
                    blocker_result.append(exc)

            holder = threading.Thread(target=hold, daemon=True)
            holder.start()
            executing = lambda: _metric(k, "apiserver_flowcontrol_current_executing_requests", schema)  # noqa: E731
            try:
                poll("the write holding the priority level's slot", lambda: executing() >= 1 or None, 120, 0.2)
            except pytest.fail.Exception as timed_out:  # say what the holder got: it failed once under load
                log = cluster_dir / "logs" / "kube-apiserver.log"
                tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log.exists() else f"no {log}"
                pytest.fail(
                    f"{timed_out}: holder alive {holder.is_alive()}, it got {blocker_result!r}, its answers {held}; "
                    f"kube-apiserver log:\n{tail}"
                )
            caller = threading.Thread(
                target=lambda: done.append(driver.apply(_configmap("throttled", {"through": "at last"}))),
                daemon=True,
            )
            caller.start()
            poll("two 429 answers to the driver", lambda: sum(1 for e in exchanges if e[1] == 429) >= 2 or None, 120)
        finally:
            os.kill(etcd.pid, signal.SIGCONT)
        caller.join(timeout=120)
        holder.join(timeout=120)
    rejected = _metric(k, "apiserver_flowcontrol_rejected_requests_total", schema) - rejected_before
    k("delete", "flowschema", schema)
    k("delete", "prioritylevelconfiguration", level)
    assert done and done[0]["data"] == {"through": "at last"}, f"the driver's apply did not succeed: {exchanges}"
    assert blocker_result and isinstance(blocker_result[0], dict), f"the slot holder failed: {blocker_result}"
    statuses = [status for _, status, _ in exchanges]
    assert statuses.count(429) >= 2 and statuses[-1] in (200, 201), statuses
    # The server counted as many rejections as the driver got: nothing else was sent meanwhile.
    assert rejected == statuses.count(429), (rejected, statuses)
    for (at, status, retry_after), (next_at, _, _) in zip(exchanges, exchanges[1:], strict=False):
        if status == 429:
            assert retry_after is not None, "the real 429 carries Retry-After"
            # Not before the server said (a lower bound: a loaded machine only waits longer).
            assert next_at - at >= float(retry_after), (exchanges, next_at - at, retry_after)
    assert _server_data(k, NAMESPACE)["throttled"] == {"through": "at last"}


def check_api_server_restarted_mid_watch(
    driver: KubernetesClusterDriver, k: Kubectl, cluster_dir: Path, spy: WatchSpy
) -> None:
    spy.reset()
    k("-n", "restart", "create", "configmap", "stays", "--from-literal=v=1")
    k("-n", "restart", "create", "configmap", "goes", "--from-literal=v=1")
    watching = Watching(driver, "restart", timeout=600)
    watching.until("the watch's listing", lambda: {"stays", "goes"} <= set(watching.view))
    poll("the watch request open", lambda: spy.watches or None, 60)
    watched_from = spy.watches[0]["resource_version"]
    # Writes to another kind move etcd's revision past the watch's resourceVersion; a restarted API server's
    # watch cache starts at the present, so it will find the watch's version too old.
    k("-n", "restart", "create", "secret", "generic", "moves-the-revision", "--from-literal=v=1")
    first = _process(cluster_dir, "kube-apiserver")
    os.kill(first.pid, signal.SIGKILL)
    poll("kube-apiserver started again by the host kubelet",
         lambda: (lambda p: p and p[0].pid != first.pid)(
             [p for p in find_local_cluster_processes(cluster_dir) if p.component == "kube-apiserver"]) or None,
         120)  # fmt: skip
    poll("the API server ready again", lambda: _ready(k), 120)
    # Changes made after the restart.
    k("-n", "restart", "delete", "configmap", "goes")
    k("-n", "restart", "patch", "configmap", "stays", "--type=merge", "-p", '{"data":{"v":"2"}}')
    k("-n", "restart", "create", "configmap", "new", "--from-literal=v=3")
    expected = _server_data(k, "restart")
    assert expected == {"stays": {"v": "2"}, "new": {"v": "3"}}
    watching.until("the watch's view equal to the server's after the restart", lambda: watching.data() == expected)
    watching.finish()
    calls = list(spy.watches)
    gone = next((i for i, c in enumerate(calls) if c["error"] == 410), None)
    assert gone is not None, f"no 410 Gone after the restart: {calls}"
    # The request that got it resumed from where the watch was (no bookmark moved it meanwhile).
    assert calls[gone]["resource_version"] == watched_from, (watched_from, calls)
    assert spy.lists == 2, f"one list, one re-list after the 410: {spy.lists}"
    assert any(c["error"] is None and c["events"] for c in calls[gone + 1 :]), "no watch after the re-list"


def _ready(k: Kubectl) -> bool:
    with contextlib.suppress(AssertionError):
        return k("get", "--raw", "/readyz", timeout=30).strip() == "ok"
    return False


def check_watch_events_in_order(driver: KubernetesClusterDriver, k: Kubectl) -> None:
    stop = threading.Event()
    events: list[WatchEvent] = []

    def watch() -> None:
        for event in driver.watch("v1", "ConfigMap", NAMESPACE, timeout_seconds=600, stop=stop):
            if event.object["metadata"]["name"] == SETTINGS.name:
                events.append(event)
                if event.type == "DELETED":
                    stop.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    poll("the watch's first event", lambda: events or None, 120)
    k("-n", NAMESPACE, "patch", "configmap", "settings", "--type=merge", "-p", '{"data":{"theirs":"new"}}')
    poll(
        "the watch reporting kubectl's patch",
        lambda: any(e.type == "MODIFIED" and e.object["data"].get("theirs") == "new" for e in events) or None,
        120,
    )
    k("-n", NAMESPACE, "delete", "configmap", "settings")
    poll("the watch reporting the deletion", lambda: stop.is_set() or None, 120)
    watcher.join(timeout=120)
    assert not watcher.is_alive(), "the watch did not end after stop was set"
    assert events[0].type == "ADDED" and events[-1].type == "DELETED"
    versions = [int(e.object["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions), f"events out of resourceVersion order: {versions}"
    assert driver.get(SETTINGS) is None


UNAVAILABLE_GROUP = "unavailable.fleet-sandbox.io"


def _raw_get_error(k: Kubectl, path: str) -> str | None:
    """What kubectl said when ``GET path`` failed (``None`` when it succeeded)."""
    try:
        k("get", "--raw", path, timeout=60)
    except AssertionError as failed:
        return str(failed)
    return None


def check_an_unavailable_api_group_is_not_taken_for_unserved(kubeconfig: str, k: Kubectl) -> None:
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": f"v1.{UNAVAILABLE_GROUP}"},
        "spec": {
            "group": UNAVAILABLE_GROUP,
            "version": "v1",
            "service": {"namespace": NAMESPACE, "name": "nothing-here", "port": 443},
            "insecureSkipTLSVerify": True,
            "groupPriorityMinimum": 1000,
            "versionPriority": 15,
        },
    }
    path = f"/apis/{UNAVAILABLE_GROUP}/v1"
    k("apply", "-f", "-", stdin=yaml.safe_dump(api_service))
    try:
        said = poll(
            f"the aggregator answering 503 for {path}",
            lambda: (error := _raw_get_error(k, path)) and "ServiceUnavailable" in error and error or None,
            120,
        )
        assert "unable to handle the request" in said, said
        # A new driver: nothing of the group in its discovery cache.
        with KubernetesClusterDriver.from_kubeconfig_text(kubeconfig) as driver:
            gadget = ObjectRef(f"{UNAVAILABLE_GROUP}/v1", "Gadget", "g", NAMESPACE)
            with pytest.raises(KubernetesUnavailableError, match=r": 503 ") as caught:
                driver.get(gadget)
            assert caught.value.retryable and caught.value.status == 503
            with pytest.raises(KubernetesUnavailableError, match=r": 503 "):
                driver.list(gadget.api_version, "Gadget", NAMESPACE)
            assert driver.get(ObjectRef("nowhere.fleet-sandbox.io/v1", "Gadget", "g", NAMESPACE)) is None
    finally:
        # An unavailable APIService also stops the namespace controller's discovery: gone before any teardown.
        k("delete", "apiservice", f"v1.{UNAVAILABLE_GROUP}", "--ignore-not-found")


def test_the_kubernetes_driver_on_a_real_api_server(
    terraform: str, kubectl: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = LocalStack(terraform, tmp_path / "stack", "driver")
    spy = WatchSpy(monkeypatch)
    try:
        stack.apply()
        k = Kubectl(kubectl, stack.kubeconfig)
        admin = stack.kubeconfig.read_text(encoding="utf-8")
        for namespace in (NAMESPACE, "elsewhere", "restart"):
            k("create", "namespace", namespace)
        service_account = _service_account_kubeconfig(k, admin)
        with KubernetesClusterDriver.from_kubeconfig_text(admin) as driver:
            assert driver.server_version() == "1.36"
            check_server_side_apply(driver, k)
            check_discovery_is_cached(k, service_account)
            check_bookmarks_move_the_resume_point(admin, k, spy)
            check_retry_after_is_honoured(k, service_account, stack.cluster_dir, spy)
            check_api_server_restarted_mid_watch(driver, k, stack.cluster_dir, spy)
            check_watch_events_in_order(driver, k)
            check_an_unavailable_api_group_is_not_taken_for_unserved(admin, k)
    finally:
        for watching in _WATCHES:
            watching.stop.set()
        with contextlib.suppress(ProcessLookupError, AssertionError):
            os.kill(_process(stack.cluster_dir, "etcd").pid, signal.SIGCONT)
        stack.destroy()
    assert find_local_cluster_processes(stack.cluster_dir) == []
