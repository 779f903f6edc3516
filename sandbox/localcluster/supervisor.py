"""The Flux host kubelet: runs each Flux controller as a host process while its Deployment has a ready pod.

On a local cluster, kwok fakes every pod: a Deployment ``flux-system/source-controller`` becomes Available,
but nothing runs. This supervisor (one process per local cluster, component ``flux-host-kubelet``) closes the
gap for Flux's controllers, so that a local cluster behaves like a cloud one where it matters to this product:

* while Deployment ``flux-system/<controller>`` exists, is not being deleted, wants replicas and has a ready
  replica, the controller's binary (from the toolchain) runs on the host;
* when the Deployment is deleted or scaled to zero, the process is stopped (SIGTERM, then SIGKILL after the
  pod's grace period), so a teardown that removes the controllers before their custom objects leaves real
  finalizers stuck, exactly as on a real cluster;
* a change of the pod template's image or args restarts the process (a rollout); a process that exits is
  started again with a growing back-off (CrashLoopBackOff); one that exits because a port was taken is
  started again at once on new ports.

How a controller runs (the pod's view, mapped to the host):

* identity: the Deployment's ServiceAccount, through a token from the TokenRequest API in a ``tokenFile``
  kubeconfig (client-go re-reads the file; the token is renewed at half its lifetime), so Flux's own RBAC
  applies, as in the pod;
* ``RUNTIME_NAMESPACE`` = the Deployment's namespace; ``HOME``/``TMPDIR`` under ``<dir>/work/<controller>``;
* the container's args, except those naming addresses, paths and leader election, which are replaced by
  loopback ones: ``--metrics-addr``/``--health-addr`` on 127.0.0.1, source-controller's
  ``--storage-path=<dir>/flux/source-controller/data`` and ``--storage-addr``/``--storage-adv-addr`` on
  127.0.0.1 (the artifact URLs kustomize-controller and helm-controller fetch), notification-controller's event
  and receiver addresses, every controller's ``--events-addr`` pointing at notification-controller's;
  ``--enable-leader-election=false`` (one process each; a killed one's successor must not wait for a lease);
  ``--log-encoding=console`` (the logs are read by people).

It is also the cluster's node agent for the control plane: every :data:`CONTROL_PLANE_CHECK_SECONDS` it starts
again any control-plane process that died (:func:`sandbox.localcluster.control_plane.restart_stopped`; a killed
kube-apiserver comes back on its port, as a kubelet restarts a static pod), backing off like a crashing
controller when that fails.

What it does not model: readiness probes (kwok marks the pod ready before the process is), resource limits,
the container's environment variables, volumes other than the storage directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from sandbox import toolchain
from sandbox.errors import SandboxError
from sandbox.localcluster import ports as portpicker
from sandbox.localcluster.control_plane import Layout, admin_api, layout, restart_stopped
from sandbox.localcluster.errors import LocalClusterError
from sandbox.localcluster.kubeapi import token_file_kubeconfig
from sandbox.localcluster.processes import (
    LocalProcess,
    ProcessSpec,
    find_local_cluster_processes,
    spawn,
    tail_since_start,
    terminate,
    write_atomically,
)

Manifest = dict[str, Any]

NAMESPACE = "flux-system"

#: The controllers this kubelet runs, by Deployment name (= toolchain binary), and the ports each listens on.
CONTROLLERS: dict[str, tuple[str, ...]] = {
    "source-controller": ("metrics", "health", "storage"),
    "kustomize-controller": ("metrics", "health"),
    "helm-controller": ("metrics", "health"),
    "notification-controller": ("metrics", "health", "events", "receiver"),
}

#: Container args replaced by host ones (matched by flag name, with or without ``=value``).
OVERRIDDEN_FLAGS = frozenset(
    {
        "--metrics-addr",
        "--health-addr",
        "--events-addr",
        "--storage-path",
        "--storage-addr",
        "--storage-adv-addr",
        "--receiverAddr",
        "--enable-leader-election",
        "--log-encoding",
    }
)

#: Seconds between SIGTERM and SIGKILL (Flux's pods set terminationGracePeriodSeconds: 10 or 60; a host
#: process needs no minute).
GRACE_SECONDS = 10.0
TOKEN_SECONDS = 24 * 3600
BACKOFF_MAX_SECONDS = 60.0
#: A process that ran this long before exiting starts its next back-off from the beginning.
BACKOFF_RESET_SECONDS = 120.0
#: How often the kubelet looks for a dead control-plane process (reading pid files and ``/proc``: cheap).
CONTROL_PLANE_CHECK_SECONDS = 1.0


# -- decisions (pure) -------------------------------------------------------------------------------------------


def wants_running(deployment: Mapping[str, Any] | None) -> bool:
    """Whether a controller's process should run for this Deployment (``None``: there is none).

    Runs while the Deployment exists, is not being deleted, wants at least one replica and has a ready one.
    """
    if not deployment:
        return False
    metadata = deployment.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return False
    replicas = (deployment.get("spec") or {}).get("replicas", 1)
    if replicas is not None and int(replicas) == 0:
        return False
    return int((deployment.get("status") or {}).get("readyReplicas") or 0) >= 1


def manager_container(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod template's ``manager`` container (Flux's name for it), else its first one."""
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    for container in containers:
        if container.get("name") == "manager":
            return dict(container)
    return dict(containers[0]) if containers else {}


def template_key(deployment: Mapping[str, Any]) -> str:
    """What a running process was started from: the manager container's image and args (a change is a rollout)."""
    container = manager_container(deployment)
    return json.dumps({"image": container.get("image"), "args": list(container.get("args") or [])}, sort_keys=True)


def passed_args(deployment: Mapping[str, Any]) -> list[str]:
    """The container's args that the host process keeps (all but :data:`OVERRIDDEN_FLAGS`).

    ``--flag value`` pairs are not used by Flux's manifests; a bare ``--flag`` is a boolean.
    """
    kept: list[str] = []
    for arg in manager_container(deployment).get("args") or []:
        text = str(arg)
        if text.split("=", 1)[0] in OVERRIDDEN_FLAGS:
            continue
        kept.append(text)
    return kept


def host_args(name: str, ports: Mapping[str, int], *, storage: Path, events_port: int | None) -> list[str]:
    """The loopback addresses, paths and settings that replace the container's (see the module docstring)."""
    args = [
        f"--metrics-addr=127.0.0.1:{ports['metrics']}",
        f"--health-addr=127.0.0.1:{ports['health']}",
        "--enable-leader-election=false",
        "--log-encoding=console",
    ]
    if name == "notification-controller":
        args += [f"--events-addr=127.0.0.1:{ports['events']}", f"--receiverAddr=127.0.0.1:{ports['receiver']}"]
    else:
        args.append(f"--events-addr=http://127.0.0.1:{events_port}/" if events_port else "--events-addr=")
    if name == "source-controller":
        address = f"127.0.0.1:{ports['storage']}"
        args += [f"--storage-path={storage}", f"--storage-addr={address}", f"--storage-adv-addr={address}"]
    return args


def image_tag(deployment: Mapping[str, Any]) -> str:
    """The manager image's tag (``v1.9.4`` of ``ghcr.io/fluxcd/source-controller:v1.9.4``), or ``""``."""
    image = str(manager_container(deployment).get("image") or "")
    name, _, tag = image.rpartition(":")
    return tag if name and "/" not in tag else ""


@dataclass
class Running:
    """A controller process this kubelet started."""

    name: str
    handle: ProcessHandle
    key: str
    ports: dict[str, int]
    started: float


@dataclass(frozen=True)
class Action:
    """One thing :func:`decide` wants done."""

    verb: str  # "start", "stop" or "restart"
    name: str
    reason: str


@dataclass
class Backoff:
    """CrashLoopBackOff for one controller: the earliest next start and the current delay."""

    failures: int = 0
    not_before: float = 0.0

    def failed(self, now: float, ran_for: float) -> None:
        """The process exited after ``ran_for`` seconds: wait longer before the next start."""
        if ran_for >= BACKOFF_RESET_SECONDS:
            self.failures = 0
        self.failures += 1
        self.not_before = now + min(BACKOFF_MAX_SECONDS, 2.0 ** (self.failures - 1))


def decide(
    deployments: Mapping[str, Mapping[str, Any]],
    running: Mapping[str, Running],
    backoff: Mapping[str, Backoff],
    now: float,
) -> list[Action]:
    """What to start, stop and restart now, given the Deployments and the live processes.

    Args:
        deployments: Deployments in the namespace, by name (only the controllers' names matter).
        running: Live processes by controller name (exited ones already removed).
        backoff: Back-off state by controller name.
        now: Monotonic time.
    """
    actions: list[Action] = []
    for name in CONTROLLERS:
        deployment = deployments.get(name)
        want = wants_running(deployment)
        current = running.get(name)
        if current is not None and not want:
            reason = "Deployment deleted" if deployment is None else "no ready replica (deleted or scaled to zero)"
            actions.append(Action("stop", name, reason))
        elif current is None and want:
            wait = backoff.get(name)
            if wait is None or now >= wait.not_before:
                actions.append(Action("start", name, "Deployment has a ready replica"))
        elif current is not None and deployment is not None and current.key != template_key(deployment):
            actions.append(Action("restart", name, "pod template changed"))
    return actions


# -- processes --------------------------------------------------------------------------------------------------


class ProcessHandle(Protocol):
    """A started controller process (the real one wraps :func:`sandbox.localcluster.processes.spawn`)."""

    def alive(self) -> bool:
        """Whether it still runs."""
        ...

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        ...

    def output_tail(self) -> str:
        """The end of what it printed since it started."""
        ...


class Launcher(Protocol):
    """Starts a controller process."""

    def __call__(self, cluster_dir: Path, spec: ProcessSpec) -> ProcessHandle: ...


class _SpawnedProcess:
    def __init__(self, cluster_dir: Path, spec: ProcessSpec) -> None:
        self._cluster_dir = cluster_dir
        self._popen, self._record = spawn(cluster_dir, spec)

    def alive(self) -> bool:
        return self._popen.poll() is None

    def stop(self, grace: float) -> None:
        process = LocalProcess(
            self._record.pid, str(self._cluster_dir), self._record.component, self._record.start_ticks, ()
        )
        terminate([process], grace=grace, reap=[self._popen])
        self._popen.poll()

    def output_tail(self) -> str:
        return tail_since_start(self._record.log)


def spawn_process(cluster_dir: Path, spec: ProcessSpec) -> ProcessHandle:
    """The real :class:`Launcher`."""
    return _SpawnedProcess(cluster_dir, spec)


# -- the watch ---------------------------------------------------------------------------------------------------


class ApiLike(Protocol):
    """What the kubelet needs from :class:`~sandbox.localcluster.kubeapi.KubeApi` (tests pass a fake)."""

    server: str

    def get_json(self, path: str) -> dict[str, Any] | None: ...

    def create(self, path: str, obj: Mapping[str, Any], *, exist_ok: bool = False) -> dict[str, Any] | None: ...

    def watch(self, path: str, resource_version: str, *, timeout_seconds: int = 60) -> Any: ...


class DeploymentWatch:
    """The Deployments of one namespace, kept current by list-then-watch (re-listed on any error or end).

    Args:
        api: The API client.
        namespace: Whose Deployments.
        changed: Set whenever the snapshot changes.
        watch_seconds: How long one watch request lasts before a re-list.
    """

    def __init__(self, api: ApiLike, namespace: str, changed: threading.Event, *, watch_seconds: int = 30) -> None:
        self._api = api
        self._path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        self._changed = changed
        self._watch_seconds = watch_seconds
        self._lock = threading.Lock()
        self._items: dict[str, Manifest] | None = None
        self.errors = 0

    def snapshot(self) -> dict[str, Manifest] | None:
        """The Deployments by name, or ``None`` before the first successful list."""
        with self._lock:
            return None if self._items is None else dict(self._items)

    def sync_once(self) -> None:
        """One list, then one watch until the server ends it.

        Raises:
            SandboxError: The list or the watch failed (the caller waits and calls again).
        """
        listed = self._api.get_json(self._path) or {}
        items = {str(d["metadata"]["name"]): d for d in listed.get("items") or []}
        with self._lock:
            self._items = items
        self._changed.set()
        version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        for event in self._api.watch(self._path, version, timeout_seconds=self._watch_seconds):
            kind, obj = event.get("type"), event.get("object") or {}
            name = str((obj.get("metadata") or {}).get("name") or "")
            if kind == "BOOKMARK" or not name:
                continue
            with self._lock:
                assert self._items is not None
                if kind == "DELETED":
                    self._items.pop(name, None)
                else:
                    self._items[name] = obj
            self._changed.set()

    def run(self, stopping: threading.Event) -> None:
        """Keep the snapshot current until ``stopping`` is set (a daemon thread's body)."""
        while not stopping.is_set():
            try:
                self.sync_once()
            except SandboxError:
                self.errors += 1
                stopping.wait(1.0)


# -- the kubelet -------------------------------------------------------------------------------------------------


@dataclass
class HostKubelet:
    """Runs the Flux controllers of one local cluster (see the module docstring).

    Args:
        where: The cluster's layout.
        api: Cluster-admin API client (TokenRequests; the watch uses it too).
        binaries: Controller name → binary path.
        versions: Controller name → the toolchain's version of it (compared with the image tag).
        launcher: Starts a process.
        clock: Monotonic time.
        pick: Picks free ports.
    """

    where: Layout
    api: ApiLike
    binaries: Mapping[str, str]
    versions: Mapping[str, str] = field(default_factory=dict)
    launcher: Launcher = spawn_process
    clock: Callable[[], float] = time.monotonic
    pick: Callable[..., list[int]] = portpicker.pick_ports
    running: dict[str, Running] = field(default_factory=dict)
    backoff: dict[str, Backoff] = field(default_factory=dict)
    ports: dict[str, dict[str, int]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    # -- one pass --------------------------------------------------------------

    def reconcile(self, deployments: Mapping[str, Mapping[str, Any]]) -> list[Action]:
        """Notice exited processes, then start/stop/restart what :func:`decide` says; return what was done."""
        now = self.clock()
        self._reap(now)
        actions = decide(deployments, self.running, self.backoff, now)
        for action in actions:
            deployment = deployments.get(action.name)
            if action.verb in ("stop", "restart"):
                self._stop(action.name, action.reason)
            if action.verb in ("start", "restart") and deployment is not None:
                self._start(action.name, deployment)
        self._renew_tokens(deployments, now)
        return actions

    def stop_all(self) -> None:
        """Stop every controller process together (the kubelet is shutting down)."""
        names = list(self.running)
        threads = [threading.Thread(target=self._stop, args=(name, "host kubelet stopping")) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # -- internals ---------------------------------------------------------------

    def _note(self, text: str) -> None:
        self.events.append(text)
        del self.events[:-50]
        print(time.strftime("%H:%M:%S"), text, flush=True)

    def _reap(self, now: float) -> None:
        for name, current in list(self.running.items()):
            if current.handle.alive():
                continue
            del self.running[name]
            tail = current.handle.output_tail()
            if portpicker.port_taken(tail):
                # Taken between the pick and the bind: new ports, no back-off.
                self.ports.pop(name, None)
                self._note(f"{name} could not bind its ports; starting it on new ones")
                continue
            self.backoff.setdefault(name, Backoff()).failed(now, now - current.started)
            wait = self.backoff[name].not_before - now
            self._note(f"{name} exited; restarting in {wait:.0f}s (last output: {' '.join(tail.split())[-300:]})")

    def _ports_for(self, name: str) -> dict[str, int]:
        if name not in self.ports:
            taken = {port for ports in self.ports.values() for port in ports.values()}
            roles = CONTROLLERS[name]
            self.ports[name] = dict(zip(roles, self.pick(len(roles), exclude=taken), strict=True))
            self._save_ports()
        return self.ports[name]

    def _save_ports(self) -> None:
        write_atomically(self.where.flux / "ports.json", json.dumps(self.ports, indent=2, sort_keys=True) + "\n")

    def _token(self, name: str, deployment: Mapping[str, Any]) -> Path:
        """Request the ServiceAccount's token and write it where the controller's kubeconfig reads it."""
        namespace = str((deployment.get("metadata") or {}).get("namespace") or NAMESPACE)
        pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
        account = str(pod.get("serviceAccountName") or "default")
        answer = self.api.create(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": TOKEN_SECONDS},
            },
        )
        token = str(((answer or {}).get("status") or {}).get("token") or "")
        if not token:
            raise LocalClusterError(f"no token for ServiceAccount {namespace}/{account}")
        directory = self.where.flux / name
        token_file = directory / "token"
        write_atomically(token_file, token)
        kubeconfig = directory / "kubeconfig"
        if not kubeconfig.exists():
            text = token_file_kubeconfig(
                self.api.server,
                cluster_name="local",
                ca_file=self.where.pki.ca_cert,
                token_file=token_file,
                user=f"system:serviceaccount:{namespace}:{account}",
            )
            write_atomically(kubeconfig, text)
        self.tokens[name] = self.clock()
        return kubeconfig

    def _renew_tokens(self, deployments: Mapping[str, Mapping[str, Any]], now: float) -> None:
        for name in self.running:
            deployment = deployments.get(name)
            if deployment is not None and now - self.tokens.get(name, now) >= TOKEN_SECONDS / 2:
                with contextlib.suppress(SandboxError):
                    self._token(name, deployment)

    def _start(self, name: str, deployment: Mapping[str, Any]) -> None:
        binary = self.binaries.get(name)
        if binary is None:
            self._note(f"{name}: no binary in the toolchain; not started")
            self.backoff.setdefault(name, Backoff()).failed(self.clock(), 0.0)
            return
        tag, version = image_tag(deployment), self.versions.get(name, "")
        if tag and version and tag.lstrip("v") != version.lstrip("v"):
            # A host process cannot run another version; say so in the kubelet's log.
            self._note(f"{name}: the Deployment asks for {tag}; the toolchain runs {version}")
        try:
            kubeconfig = self._token(name, deployment)
        except SandboxError as exc:
            self._note(f"{name}: cannot get its ServiceAccount token ({exc}); retrying")
            self.backoff.setdefault(name, Backoff()).failed(self.clock(), 0.0)
            return
        ports = self._ports_for(name)
        events = self._ports_for("notification-controller")["events"]
        storage = self.where.flux / name / "data"
        storage.mkdir(parents=True, exist_ok=True)  # source-controller exits when --storage-path is missing
        namespace = str((deployment.get("metadata") or {}).get("namespace") or NAMESPACE)
        argv = (binary, *passed_args(deployment), *host_args(name, ports, storage=storage, events_port=events))
        spec = ProcessSpec(
            name, argv, env={"KUBECONFIG": str(kubeconfig), "RUNTIME_NAMESPACE": namespace}, ports=dict(ports)
        )
        try:
            handle = self.launcher(self.where.root, spec)
        except SandboxError as exc:
            self._note(f"{name}: cannot start ({exc})")
            self.backoff.setdefault(name, Backoff()).failed(self.clock(), 0.0)
            return
        self.running[name] = Running(name, handle, template_key(deployment), dict(ports), self.clock())
        self._note(f"started {name} ({', '.join(f'{r} {p}' for r, p in ports.items())})")

    def _stop(self, name: str, reason: str) -> None:
        current = self.running.pop(name, None)
        if current is None:
            return
        current.handle.stop(GRACE_SECONDS)
        self.backoff.pop(name, None)
        self._note(f"stopped {name}: {reason}")

    def state(self, synced: bool, pid: int) -> dict[str, Any]:
        """What ``status`` and ``up`` read (``<dir>/flux/host-kubelet.json``)."""
        return {
            "pid": pid,
            "synced": synced,
            "running": {name: {"ports": r.ports} for name, r in sorted(self.running.items())},
            "backoff": {name: b.failures for name, b in sorted(self.backoff.items()) if b.failures},
            "events": self.events[-20:],
        }


@dataclass
class ControlPlaneWatch:
    """Restarts the cluster's control-plane processes that died (see the module docstring).

    Args:
        where: The cluster's layout.
        note: Where a restart (or a failed one) is told.
        restart: Restarts what is missing, returns the names (tests pass a fake).
        clock: Monotonic time.
    """

    where: Layout
    note: Callable[[str], None]
    restart: Callable[[Path], list[str]] = restart_stopped
    clock: Callable[[], float] = time.monotonic
    backoff: Backoff = field(default_factory=Backoff)
    checked: float = float("-inf")

    def check(self) -> list[str]:
        """Restart what died, unless looked at too recently or backing off; the names restarted."""
        now = self.clock()
        if now - self.checked < CONTROL_PLANE_CHECK_SECONDS or now < self.backoff.not_before:
            return []
        self.checked = now
        try:
            restarted = self.restart(self.where.root)
        except SandboxError as exc:
            self.backoff.failed(now, 0.0)
            wait = self.backoff.not_before - now
            self.note(f"the control plane could not be restarted; trying again in {wait:.0f}s ({exc})")
            return []
        self.backoff = Backoff()
        if restarted:
            whose = "its process" if len(restarted) == 1 else "their processes"
            self.note(f"restarted {', '.join(restarted)}: {whose} had exited")
        return restarted


def _stop_leftovers(where: Layout) -> None:
    """Stop controller processes a previous kubelet of this cluster left (it was killed): start from scratch."""
    leftovers = [p for p in find_local_cluster_processes(where.root) if p.component in CONTROLLERS]
    if leftovers:
        terminate(leftovers, grace=GRACE_SECONDS)


def supervise(cluster_dir: Path | str, *, poll_seconds: float = 1.0) -> int:
    """Run the host kubelet of the cluster in ``cluster_dir`` until SIGTERM or SIGINT; the exit code.

    Called as ``python -m sandbox.localcluster supervise --dir D`` by ``up`` (as component ``flux-host-kubelet``).
    """
    where = layout(cluster_dir)
    info = json.loads(where.info.read_text()) if where.info.is_file() else {}
    port = ((info.get("ports") or {}).get("kube-apiserver") or {}).get("secure")
    if port is None:
        record_port = where.record("kube-apiserver")
        if record_port is None:
            raise LocalClusterError(f"the API server of {where.root} is not running")
        port = record_port.ports["secure"]
    api = admin_api(where, int(port))
    binaries: dict[str, str] = {}
    versions: dict[str, str] = {}
    known = toolchain.files()
    for name in CONTROLLERS:
        with contextlib.suppress(SandboxError):
            binaries[name] = str(toolchain.locate(name))
            versions[name] = known[name].version
    stopping = threading.Event()
    changed = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        changed.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _stop_leftovers(where)
    kubelet = HostKubelet(where, api, binaries, versions)
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads((where.flux / "ports.json").read_text())
        kubelet.ports = {
            name: {role: int(p) for role, p in ports.items()}
            for name, ports in saved.items()
            if name in CONTROLLERS and all(portpicker.is_free(int(p)) for p in ports.values())
        }
    control_plane = ControlPlaneWatch(where, kubelet._note)
    watch = DeploymentWatch(api, NAMESPACE, changed)
    threading.Thread(target=watch.run, args=(stopping,), name="deployment-watch", daemon=True).start()
    state_file = where.flux / "host-kubelet.json"
    last_state = ""
    try:
        while not stopping.is_set():
            changed.wait(poll_seconds)
            changed.clear()
            if stopping.is_set():
                break
            control_plane.check()
            snapshot = watch.snapshot()
            if snapshot is None:
                continue
            kubelet.reconcile(snapshot)
            state = json.dumps(kubelet.state(True, os.getpid()), indent=2, sort_keys=True) + "\n"
            if state != last_state:
                write_atomically(state_file, state)
                last_state = state
    finally:
        kubelet.stop_all()
        with contextlib.suppress(OSError):
            write_atomically(state_file, json.dumps(kubelet.state(False, os.getpid()), indent=2) + "\n")
    return 0
