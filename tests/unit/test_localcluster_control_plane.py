"""The local control plane's start logic (sandbox.localcluster.control_plane) with stand-in components.

Each stand-in is a small Python HTTP server: the retry on a taken port, the readiness rule (health answers *and*
our own pid listens), idempotent restarts and the all-or-nothing start are the same for etcd or kube-apiserver.
The real binaries are exercised by tests/real.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox.errors import InvalidInputError
from sandbox.localcluster import control_plane as C
from sandbox.localcluster import processes as P
from sandbox.localcluster.errors import (
    ComponentFailedError,
    ComponentTimeoutError,
    NotALocalClusterError,
    PortsExhaustedError,
)
from sandbox.localcluster.ports import pick_ports
from tests.polling import poll


def _server(ports: Mapping[str, int]) -> list[str]:
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(ports["http"])]


def _answers(ports: Mapping[str, int]) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/", timeout=2) as response:  # noqa: S310
        return bool(response.status == 200)


def _ready(ports: Mapping[str, int]) -> bool:
    try:
        return _answers(ports)
    except OSError:
        return False


SERVER = C.Component("web", ("http",), _server, _ready)


@pytest.fixture
def where(tmp_path: Path) -> Iterator[C.Layout]:
    layout = C.prepare(tmp_path / "cluster")
    yield layout
    P.terminate(P.find_local_cluster_processes(layout.root), grace=1.0)


def _settings(**overrides: Any) -> C.ClusterSettings:
    return C.ClusterSettings(**{"timeout": 60.0, "port_attempts": 3, **overrides})


def test_a_port_taken_between_pick_and_bind_is_picked_again(where: C.Layout) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        picks: list[list[int]] = []

        def pick(count: int, exclude: set[int] = frozenset(), **_: Any) -> list[int]:  # type: ignore[assignment]
            # The first pick returns a port someone else binds before our component does.
            chosen = [taken] if not picks else pick_ports(count, exclude=exclude)
            picks.append(chosen)
            return chosen

        record = C._start(where, SERVER, _settings(), time.monotonic() + 60, reserved=set(), pick=pick)
    assert len(picks) == 2 and record.ports["http"] == picks[1][0] != taken
    assert ("127.0.0.1", record.ports["http"]) in P.listening_ports(record.pid)
    log = Path(record.log).read_text()
    assert log.count("---- ") == 2 and "Address already in use" in log


def test_ports_taken_every_time_give_up_retryably(where: C.Layout) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(PortsExhaustedError, match="web: its ports were taken by another process 3 times"):
            C._start(where, SERVER, _settings(), time.monotonic() + 60, reserved=set(), pick=lambda n, **_: [taken])
    assert P.find_local_cluster_processes(where.root) == []


def test_a_component_that_exits_is_reported_with_its_output(where: C.Layout) -> None:
    broken = C.Component(
        "broken", (), lambda _: [sys.executable, "-c", "raise SystemExit('bad flag --x')"], lambda _: False
    )
    with pytest.raises(ComponentFailedError, match=r"broken exited while starting; .*bad flag --x"):
        C._start(where, broken, _settings(), time.monotonic() + 60, reserved=set())


def test_a_component_that_never_gets_ready_times_out(where: C.Layout) -> None:
    slow = C.Component("slow", (), lambda _: ["/bin/sleep", "60"], lambda _: False)
    with pytest.raises(ComponentTimeoutError, match="slow was not ready in time"):
        C._start(where, slow, _settings(), time.monotonic() + 1, reserved=set())


def test_health_from_another_process_on_the_port_is_not_readiness(where: C.Layout) -> None:
    # Something else answers on the port (another cluster's component); ours only sleeps and never listens.
    impostor = C.Component("impostor", ("http",), lambda _: ["/bin/sleep", "60"], lambda _: True)
    with pytest.raises(ComponentTimeoutError):
        C._start(where, impostor, _settings(), time.monotonic() + 1, reserved=set())


def test_a_running_component_is_kept_and_one_with_other_flags_replaced(where: C.Layout) -> None:
    first = C._start(where, SERVER, _settings(), time.monotonic() + 60, reserved=set())
    again = C._start(where, SERVER, _settings(), time.monotonic() + 60, reserved=set())
    assert again == first  # idempotent: same process
    changed = C.Component("web", ("http",), lambda p: [*_server(p), "--directory", str(where.root)], _ready)
    replaced = C._start(where, changed, _settings(), time.monotonic() + 60, reserved=set())
    assert replaced.pid != first.pid and not P.is_running(first, where.root)
    assert replaced.ports == first.ports  # the ports it had, so handed-out addresses stay right


def _fake_toolchain(monkeypatch: pytest.MonkeyPatch) -> None:
    version = SimpleNamespace(version="v1.36.3")
    monkeypatch.setattr(C.toolchain, "files", lambda *a, **k: {"kube-apiserver": version})
    monkeypatch.setattr(C.toolchain, "locate", lambda name, *a, **k: Path(f"/toolchain/{name}"))


def test_up_refuses_a_version_the_toolchain_does_not_have(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_toolchain(monkeypatch)
    with pytest.raises(InvalidInputError, match=r"runs Kubernetes v1.36.3 .* kubernetes_version '1.31'"):
        C.up(tmp_path / "c", kubernetes_version="1.31")
    with pytest.raises(InvalidInputError, match="at least one node"):
        C.up(tmp_path / "c", C.ClusterSettings(nodes=0))
    assert not (tmp_path / "c").exists()  # refused before anything was created


def test_a_failed_up_leaves_no_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_toolchain(monkeypatch)
    failing = C.Component("second", (), lambda _: [sys.executable, "-c", "raise SystemExit(3)"], lambda _: False)
    monkeypatch.setattr(C, "components", lambda *a, **k: [SERVER, failing])
    monkeypatch.setattr(C, "ensure_pki", lambda *a, **k: None)
    with pytest.raises(ComponentFailedError):
        C.up(tmp_path / "c", _settings(), kubernetes_version="1.36")
    assert P.find_local_cluster_processes(tmp_path / "c") == []
    assert (tmp_path / "c" / "logs" / "web.log").is_file()  # the logs stay until down
    assert C.down(tmp_path / "c") == []
    assert not (tmp_path / "c").exists()


def test_prepare_refuses_a_directory_that_is_not_a_local_clusters(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(NotALocalClusterError, match="already holds files"):
        C.prepare(tmp_path)
    with pytest.raises(InvalidInputError):
        C.prepare("/")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert C.prepare(empty).marker.is_file()


def test_down_stops_marked_processes_and_deletes_only_a_marked_directory(tmp_path: Path) -> None:
    assert C.down(tmp_path / "never-created") == []
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data").write_text("keep me")
    P.spawn(foreign, P.ProcessSpec("sleeper", ("/bin/sleep", "60")))
    with pytest.raises(NotALocalClusterError, match="no .fleet-sandbox-local-cluster marker"):
        C.down(foreign)
    assert (foreign / "data").read_text() == "keep me"
    assert P.find_local_cluster_processes(foreign) == []  # its marked processes were still stopped

    ours = C.prepare(tmp_path / "ours")
    P.spawn(ours.root, P.ProcessSpec("kube-apiserver", ("/bin/sleep", "60")))
    P.spawn(ours.root, P.ProcessSpec("source-controller", ("/bin/sleep", "60")))
    stopped = C.down(ours.root)
    assert sorted(p.component for p in stopped) == ["kube-apiserver", "source-controller"]
    assert not ours.root.exists()


def test_status_of_a_stopped_cluster(tmp_path: Path) -> None:
    where = C.prepare(tmp_path / "c")
    report = C.status(where.root)
    assert report["exists"] and not report["running"] and report["processes"] == {} and report["rss_bytes"] == 0


def test_fake_nodes_look_like_kwoks() -> None:
    node = C.node_manifest(2)
    assert node["metadata"]["name"] == "kwok-node-2"
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert "taints" not in node.get("spec", {})


def _up_with_stand_ins(where: C.Layout, monkeypatch: pytest.MonkeyPatch) -> dict[str, P.ProcessRecord]:
    """Two stand-in components started, and the cluster.json ``up`` writes once everything is ready."""
    stand_ins = [SERVER, C.Component("other", ("http",), _server, _ready)]
    monkeypatch.setattr(C, "components", lambda *a, **k: stand_ins)
    records = {c.name: C._start(where, c, _settings(), time.monotonic() + 60, reserved=set()) for c in stand_ins}
    where.info.write_text(json.dumps({"name": "local", "nodes": ["kwok-node-0"], "endpoint": "https://x"}))
    return records


def test_a_dead_component_of_an_up_cluster_is_restarted_on_its_port(
    where: C.Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _up_with_stand_ins(where, monkeypatch)
    assert C.restart_stopped(where.root) == []  # all running: nothing touched
    os.kill(records["web"].pid, signal.SIGKILL)  # killed, as a kube-apiserver by an OOM killer or a test
    poll("the killed stand-in gone", lambda: where.record("web") is None or None, 30, interval=0.05)
    restarted = C.restart_stopped(where.root, timeout=60)
    assert restarted == ["web"]
    again = where.record("web")
    assert again is not None and again.pid != records["web"].pid
    assert again.ports == records["web"].ports  # the kubeconfig handed out stays right
    assert _answers(again.ports)
    assert where.record("other") == records["other"]  # the one still running was left alone


def test_restart_leaves_a_cluster_alone_while_up_or_down_holds_it_or_before_it_was_up(
    where: C.Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _up_with_stand_ins(where, monkeypatch)
    os.kill(records["web"].pid, signal.SIGKILL)
    poll("the killed stand-in gone", lambda: where.record("web") is None or None, 30, interval=0.05)
    with C._locked(where):  # `up` or `down` at work
        assert C.restart_stopped(where.root) == []
    where.info.unlink()  # never finished `up`: `up` is in charge
    assert C.restart_stopped(where.root) == []
    assert where.record("web") is None


def _bound(port: int) -> socket.socket | None:
    """A socket listening on ``port`` of 127.0.0.1, or None while the port is still taken."""
    try:
        return socket.create_server(("127.0.0.1", port))
    except OSError:
        return None


def test_a_restart_waits_for_its_port_rather_than_take_another(where: C.Layout) -> None:
    # Ready once it listens: no connection to it, so its port is free the moment it is killed.
    listening = C.Component("web", ("http",), _server, lambda _: True)
    first = C._start(where, listening, _settings(), time.monotonic() + 60, reserved=set())
    os.kill(first.pid, signal.SIGKILL)
    poll("the killed stand-in gone", lambda: where.record("web") is None or None, 30, interval=0.05)
    # The dead process's port stays busy for a while (seen on Linux after a kill: what its connections leave
    # behind); here another socket holds it for a second.
    # The holder itself may have to wait for the killed process's own leftovers to clear (seen under CI load).
    holder = poll("the killed stand-in's port", lambda: _bound(first.ports["http"]), 90, interval=0.2)
    threading.Timer(1.0, holder.close).start()
    again = C._start(where, listening, _settings(), time.monotonic() + 60, reserved=set(), port_wait=30)
    assert again.ports == first.ports and again.pid != first.pid
