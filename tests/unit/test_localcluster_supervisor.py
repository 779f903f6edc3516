"""The Flux host kubelet's decisions (sandbox.localcluster.supervisor) with a fake API, watch and launcher."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.localcluster import supervisor as S
from sandbox.localcluster.control_plane import prepare
from sandbox.localcluster.errors import ComponentTimeoutError, LocalApiUnreachableError
from sandbox.localcluster.flux_install import CONTROLLERS, render_documents
from sandbox.localcluster.processes import ProcessSpec


def _install() -> dict[str, dict[str, Any]]:
    versions = {"source-controller": "v1.9.4", "kustomize-controller": "v1.9.4"}
    versions |= {"helm-controller": "v1.6.2", "notification-controller": "v1.9.3"}
    docs = render_documents(versions, {})
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}


def _ready(deployment: Mapping[str, Any], ready: int = 1, replicas: int = 1) -> dict[str, Any]:
    dep = copy.deepcopy(dict(deployment))
    dep["spec"]["replicas"] = replicas
    dep["status"] = {"readyReplicas": ready} if ready else {}
    return dep


DEPLOYMENTS = _install()


def test_a_controller_runs_only_while_its_deployment_has_a_ready_replica() -> None:
    dep = DEPLOYMENTS["kustomize-controller"]
    assert S.wants_running(_ready(dep))
    assert not S.wants_running(None)
    assert not S.wants_running(_ready(dep, ready=0))  # scheduled, not ready yet
    assert not S.wants_running(_ready(dep, ready=1, replicas=0))  # scaled to zero, pod not yet gone
    deleting = _ready(dep)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not S.wants_running(deleting)


def test_the_container_args_are_kept_except_addresses_paths_and_leader_election() -> None:
    dep = copy.deepcopy(DEPLOYMENTS["source-controller"])
    dep["spec"]["template"]["spec"]["containers"][0]["args"].append("--concurrent=6")
    assert S.passed_args(dep) == ["--watch-all-namespaces", "--log-level=info", "--concurrent=6"]
    args = S.host_args(
        "source-controller", {"metrics": 1, "health": 2, "storage": 3}, storage=Path("/c/data"), events_port=9
    )
    assert args == [
        "--metrics-addr=127.0.0.1:1",
        "--health-addr=127.0.0.1:2",
        "--enable-leader-election=false",
        "--log-encoding=console",
        "--events-addr=http://127.0.0.1:9/",
        "--storage-path=/c/data",
        "--storage-addr=127.0.0.1:3",
        "--storage-adv-addr=127.0.0.1:3",
    ]
    nc = S.host_args(
        "notification-controller",
        {"metrics": 1, "health": 2, "events": 3, "receiver": 4},
        storage=Path("/x"),
        events_port=3,
    )
    assert "--events-addr=127.0.0.1:3" in nc and "--receiverAddr=127.0.0.1:4" in nc
    assert S.image_tag(dep) == "v1.9.4"


class FakeHandle:
    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec
        self.running = True
        self.output = ""
        self.stopped_with: float | None = None

    def alive(self) -> bool:
        return self.running

    def stop(self, grace: float) -> None:
        self.running = False
        self.stopped_with = grace

    def output_tail(self) -> str:
        return self.output


class FakeApi:
    server = "https://127.0.0.1:6443"

    def __init__(self) -> None:
        self.token_requests: list[str] = []
        self.fail_tokens = False

    def get_json(self, path: str) -> dict[str, Any] | None:
        raise AssertionError("not used")

    def create(self, path: str, obj: Mapping[str, Any], *, exist_ok: bool = False) -> dict[str, Any] | None:
        if self.fail_tokens:
            raise LocalApiUnreachableError("connection refused")
        self.token_requests.append(path)
        assert obj["kind"] == "TokenRequest"
        return {"status": {"token": f"token-{len(self.token_requests)}"}}

    def watch(self, path: str, resource_version: str, *, timeout_seconds: int = 60) -> Any:
        raise AssertionError("not used")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[tuple[S.HostKubelet, list[FakeHandle], Clock, FakeApi]]:
    where = prepare(tmp_path / "cluster")
    (where.pki.root).mkdir()
    started: list[FakeHandle] = []

    def launch(cluster_dir: Path, spec: ProcessSpec) -> FakeHandle:
        handle = FakeHandle(spec)
        started.append(handle)
        return handle

    counter = iter(range(30000, 40000))
    clock, api = Clock(), FakeApi()
    kube = S.HostKubelet(
        where,
        api,
        {name: f"/bin/{name}" for name in CONTROLLERS},
        versions={name: "v1.9.4" for name in CONTROLLERS},
        launcher=launch,
        clock=clock,
        pick=lambda n, **_: [next(counter) for _ in range(n)],
    )
    yield kube, started, clock, api


def _names(actions: list[S.Action]) -> list[tuple[str, str]]:
    return [(a.verb, a.name) for a in actions]


def test_ready_deployments_start_their_controllers_with_their_service_account(kubelet: Any) -> None:
    kube, started, _, api = kubelet
    actions = kube.reconcile({name: _ready(dep) for name, dep in DEPLOYMENTS.items()})
    assert _names(actions) == [("start", name) for name in CONTROLLERS]
    assert api.token_requests[0] == "/api/v1/namespaces/flux-system/serviceaccounts/source-controller/token"
    source = started[0].spec
    assert source.argv[0] == "/bin/source-controller"
    assert source.env["RUNTIME_NAMESPACE"] == "flux-system"
    kubeconfig = yaml.safe_load(Path(source.env["KUBECONFIG"]).read_text())
    token_file = Path(kubeconfig["users"][0]["user"]["tokenFile"])
    assert token_file.read_text() == "token-1"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == FakeApi.server
    events = kube.ports["notification-controller"]["events"]
    assert f"--events-addr=http://127.0.0.1:{events}/" in source.argv
    ports = set()
    for handle in started:
        ports |= set(handle.spec.ports.values())
    assert len(ports) == 2 + 3 + 2 + 4  # every controller's ports distinct
    # Nothing more to do while nothing changes.
    assert kube.reconcile({name: _ready(dep) for name, dep in DEPLOYMENTS.items()}) == []


def test_scaling_to_zero_or_deleting_stops_the_controller(kubelet: Any) -> None:
    kube, started, _, _ = kubelet
    deployments = {name: _ready(dep) for name, dep in DEPLOYMENTS.items()}
    kube.reconcile(deployments)
    deployments["kustomize-controller"] = _ready(DEPLOYMENTS["kustomize-controller"], ready=1, replicas=0)
    del deployments["helm-controller"]
    actions = kube.reconcile(deployments)
    assert _names(actions) == [("stop", "kustomize-controller"), ("stop", "helm-controller")]
    assert actions[1].reason == "Deployment deleted"
    by_name = {h.spec.component: h for h in started}
    assert not by_name["kustomize-controller"].running and by_name["kustomize-controller"].stopped_with == 10.0
    assert by_name["source-controller"].running
    # Scaled back: started again (its ports kept).
    deployments["kustomize-controller"] = _ready(DEPLOYMENTS["kustomize-controller"])
    assert _names(kube.reconcile(deployments)) == [("start", "kustomize-controller")]
    assert started[-1].spec.ports == by_name["kustomize-controller"].spec.ports


def test_a_changed_pod_template_restarts_the_controller(kubelet: Any) -> None:
    kube, started, _, _ = kubelet
    deployments = {"kustomize-controller": _ready(DEPLOYMENTS["kustomize-controller"])}
    kube.reconcile(deployments)
    changed = copy.deepcopy(deployments["kustomize-controller"])
    changed["spec"]["template"]["spec"]["containers"][0]["args"].append("--concurrent=20")
    assert _names(kube.reconcile({"kustomize-controller": changed})) == [("restart", "kustomize-controller")]
    assert not started[0].running and "--concurrent=20" in started[1].spec.argv


def test_a_crashing_controller_backs_off(kubelet: Any) -> None:
    kube, started, clock, _ = kubelet
    deployments = {"helm-controller": _ready(DEPLOYMENTS["helm-controller"])}
    kube.reconcile(deployments)
    delays = []
    for _ in range(4):
        started[-1].running = False
        started[-1].output = "panic: boom"
        assert kube.reconcile(deployments) == []  # exited: not at once
        wait = kube.backoff["helm-controller"].not_before - clock.now
        delays.append(wait)
        clock.now += wait
        assert _names(kube.reconcile(deployments)) == [("start", "helm-controller")]
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert any("helm-controller exited" in line and "panic: boom" in line for line in kube.events)


def test_a_port_taken_at_bind_restarts_at_once_on_new_ports(kubelet: Any) -> None:
    kube, started, _, _ = kubelet
    deployments = {"source-controller": _ready(DEPLOYMENTS["source-controller"])}
    kube.reconcile(deployments)
    first_ports = dict(started[0].spec.ports)
    started[0].running = False
    started[0].output = "unable to start: listen tcp 127.0.0.1:30001: bind: address already in use"
    assert _names(kube.reconcile(deployments)) == [("start", "source-controller")]
    assert not set(started[1].spec.ports.values()) & set(first_ports.values())
    assert "source-controller" not in kube.backoff


def test_no_token_means_no_start_yet(kubelet: Any) -> None:
    kube, started, clock, api = kubelet
    api.fail_tokens = True
    deployments = {"source-controller": _ready(DEPLOYMENTS["source-controller"])}
    assert _names(kube.reconcile(deployments)) == [("start", "source-controller")]
    assert started == [] and kube.backoff["source-controller"].failures == 1
    api.fail_tokens = False
    clock.now += 1
    kube.reconcile(deployments)
    assert len(started) == 1


def test_stop_all_stops_every_controller(kubelet: Any) -> None:
    kube, started, _, _ = kubelet
    kube.reconcile({name: _ready(dep) for name, dep in DEPLOYMENTS.items()})
    kube.stop_all()
    assert kube.running == {} and not any(h.running for h in started)


class FakeWatchApi:
    """Lists once, then replays scripted watch events; the second sync fails (API server down)."""

    server = "https://127.0.0.1:6443"

    def __init__(self, items: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        self.items = items
        self.events = events
        self.lists = 0

    def get_json(self, path: str) -> dict[str, Any] | None:
        self.lists += 1
        if self.lists > 1:
            raise LocalApiUnreachableError("connection refused")
        assert path == "/apis/apps/v1/namespaces/flux-system/deployments"
        return {"metadata": {"resourceVersion": "10"}, "items": self.items}

    def create(self, path: str, obj: Mapping[str, Any], *, exist_ok: bool = False) -> dict[str, Any] | None:
        raise AssertionError("not used")

    def watch(self, path: str, resource_version: str, *, timeout_seconds: int = 60) -> Iterator[dict[str, Any]]:
        assert resource_version == "10"
        yield from self.events


def test_the_deployment_watch_keeps_a_snapshot() -> None:
    source, kustomize = DEPLOYMENTS["source-controller"], DEPLOYMENTS["kustomize-controller"]
    api = FakeWatchApi(
        [source],
        [
            {"type": "ADDED", "object": _ready(kustomize)},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
            {"type": "MODIFIED", "object": _ready(source, ready=0)},
            {"type": "DELETED", "object": kustomize},
        ],
    )
    changed = threading.Event()
    watch = S.DeploymentWatch(api, "flux-system", changed)
    assert watch.snapshot() is None  # nothing before the first list
    watch.sync_once()
    snapshot = watch.snapshot()
    assert snapshot is not None and set(snapshot) == {"source-controller"}
    assert not S.wants_running(snapshot["source-controller"]) and changed.is_set()
    stopping = threading.Event()
    thread = threading.Thread(target=watch.run, args=(stopping,))
    thread.start()
    while watch.errors == 0:
        stopping.wait(0.01)
    stopping.set()
    thread.join(timeout=5)
    assert watch.snapshot() == snapshot  # an unreachable API server keeps the last snapshot


def test_the_kubelet_restarts_a_dead_control_plane_and_backs_off_when_it_cannot(tmp_path: Path) -> None:
    now = [100.0]
    notes: list[str] = []
    outcomes: list[list[str] | Exception] = [
        [],
        ["kube-apiserver"],
        ComponentTimeoutError("kube-apiserver was not ready in time"),
        ComponentTimeoutError("kube-apiserver was not ready in time"),
        ["kube-apiserver"],
    ]
    calls: list[float] = []

    def restart(cluster_dir: Path) -> list[str]:
        calls.append(now[0])
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    watch = S.ControlPlaneWatch(prepare(tmp_path / "c"), notes.append, restart=restart, clock=lambda: now[0])
    assert watch.check() == []  # everything runs
    assert watch.check() == [] and len(calls) == 1  # looked at a moment ago: not again yet
    now[0] += S.CONTROL_PLANE_CHECK_SECONDS
    assert watch.check() == ["kube-apiserver"]
    assert notes[-1] == "restarted kube-apiserver: its process had exited"
    now[0] += S.CONTROL_PLANE_CHECK_SECONDS
    assert watch.check() == []  # failed: told, and the next try waits
    assert "could not be restarted; trying again in 1s (kube-apiserver was not ready in time)" in notes[-1]
    now[0] += 1.0
    assert watch.check() == [] and "trying again in 2s" in notes[-1]
    now[0] += 1.0
    assert watch.check() == [] and len(calls) == 4  # still backing off
    now[0] += 1.0
    assert watch.check() == ["kube-apiserver"] and watch.backoff.failures == 0
