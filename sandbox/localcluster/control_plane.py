"""A local cluster's control plane: start it (``up``), stop it and delete it (``down``), report on it (``status``).

A local cluster is one directory (``--dir``) and the processes marked with it:

========================  ==========================================================================
etcd                      ``--unsafe-no-fsync`` (a sandbox's data is disposable), client + peer port
kube-apiserver            the cluster's CA, serving certificate and service-account keys; RBAC
kube-controller-manager   every default controller (deployments, replica sets, garbage collector, ...)
kube-scheduler            schedules onto the fake nodes
kwok                      fakes ``node_count`` Nodes (``kwok-node-<i>``) and their pods' lifecycle
flux-host-kubelet         :mod:`sandbox.localcluster.supervisor`: runs the Flux controllers as host
                          processes while their Deployments have a ready replica
========================  ==========================================================================

Everything listens on 127.0.0.1 only, on ports picked by :mod:`sandbox.localcluster.ports`; a component whose
port was taken between the pick and its ``bind`` (its log says ``address already in use``) is started again on
new ports, up to ``port_attempts`` times. A component counts as ready only when its health endpoint answers
**and** its own pid listens on its ports (``/proc``): on a machine with several local clusters, a health check
could otherwise be answered by another cluster's process on a port ours failed to bind.

``up`` is idempotent: a component whose recorded process still runs with the same command line is kept (and
waited for), anything else is (re)started, so a rerun after a crash, a timeout or a killed flow picks up where
the cluster is. If ``up`` fails, it stops every process of the cluster (the directory, logs included, stays for
``down``), so a failed start leaves nothing running. Once the cluster is up, the host kubelet does what ``up``
does for any control-plane process that dies (:func:`restart_stopped`, as a kubelet restarts its static pods): a
killed kube-apiserver is started again on its port, and the cluster's clients (a stage retrying, the controllers)
carry on with the same kubeconfig. ``down`` stops every process carrying the cluster's marker,
whatever started it, and deletes the directory, but only a directory holding the marker file.

Layout of the directory (0700)::

    .fleet-sandbox-local-cluster   marker file: this directory is a local cluster's
    cluster.json                   public facts: endpoint, version, ports, timings (the stack's outputs)
    admin.kubeconfig               cluster-admin kubeconfig, certificates embedded (0600; the stack's output)
    pki/                           CA, serving/client certificates, service-account keys (0600)
    data/etcd/                     etcd's data
    run/<component>.json           pid files
    logs/<component>.log           each process's output
    work/<component>/              each process's cwd, HOME and TMPDIR
    flux/                          the host kubelet's state and the Flux controllers' storage
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import toolchain
from sandbox.errors import InvalidInputError
from sandbox.localcluster import ports as portpicker
from sandbox.localcluster.errors import (
    ComponentFailedError,
    ComponentTimeoutError,
    LocalApiUnreachableError,
    LocalClusterError,
    NotALocalClusterError,
    PortsExhaustedError,
)
from sandbox.localcluster.kubeapi import ApiStatusError, Credentials, KubeApi, admin_kubeconfig
from sandbox.localcluster.pki import SERVICE_CLUSTER_IP_RANGE, PkiFiles, ensure_pki
from sandbox.localcluster.processes import (
    LocalProcess,
    ProcessRecord,
    ProcessSpec,
    find_local_cluster_processes,
    is_running,
    listening_ports,
    pid_file,
    read_record,
    rss_bytes,
    spawn,
    tail_since_start,
    terminate,
    write_atomically,
)
from sandbox.localcluster.processes import stop as stop_processes

#: The file whose presence makes a directory a local cluster's (``down`` deletes nothing without it).
MARKER_FILE = ".fleet-sandbox-local-cluster"
#: The component name of the Flux host kubelet (:mod:`sandbox.localcluster.supervisor`).
HOST_KUBELET = "flux-host-kubelet"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", HOST_KUBELET)
#: Stop order: the host kubelet first (it stops the Flux controllers it runs), then whatever else the marker
#: finds ("*": the controllers, strays), then the control plane from the top down.
STOP_ORDER: tuple[tuple[str, ...], ...] = (
    (HOST_KUBELET,),
    ("*",),
    ("kwok", "kube-scheduler", "kube-controller-manager"),
    ("kube-apiserver",),
    ("etcd",),
)
#: The service-account token issuer. Not derived from the API server's port, so tokens stay valid when the API
#: server is restarted on another port.
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
POD_CIDR = "10.244.0.0/16"
#: How long a restart waits for a dead component's port to be free again (the kernel's FIN timeout and
#: TIME_WAIT are a minute each) before it gives up on it and picks another.
PORT_WAIT_SECONDS = 150.0
# Outside the pod CIDR: kwok gives a node IP inside it to the first pod (docs/toolchain.md).
NODE_IP = "10.243.0.1"


@dataclass(frozen=True)
class Layout:
    """Where everything of the cluster in ``root`` lives."""

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / MARKER_FILE

    @property
    def info(self) -> Path:
        return self.root / "cluster.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def pki(self) -> PkiFiles:
        return PkiFiles(self.root / "pki")

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def etcd_data(self) -> Path:
        return self.root / "data" / "etcd"

    @property
    def flux(self) -> Path:
        return self.root / "flux"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def record(self, component: str) -> ProcessRecord | None:
        """``component``'s pid record if its process still runs."""
        record = read_record(pid_file(self.run, component))
        return record if record is not None and is_running(record, self.root) else None


def layout(cluster_dir: Path | str) -> Layout:
    """The layout of the cluster directory ``cluster_dir`` (made absolute: the marker compares absolute paths)."""
    return Layout(Path(cluster_dir).expanduser().absolute())


# -- preparing, locking --------------------------------------------------------------------------


def prepare(cluster_dir: Path | str) -> Layout:
    """Create the cluster directory with its marker; a directory with other files and no marker is refused.

    Raises:
        NotALocalClusterError: The directory holds files but is not a local cluster's.
        InvalidInputError: The path is the filesystem root or the home directory.
    """
    where = layout(cluster_dir)
    if where.root in (Path("/"), Path.home()):
        raise InvalidInputError(f"refusing to use {where.root} as a local cluster directory")
    if where.root.is_dir() and any(where.root.iterdir()) and not where.marker.is_file():
        raise NotALocalClusterError(
            f"{where.root} already holds files and is not a local cluster directory (no {MARKER_FILE}); "
            "refusing to use it"
        )
    where.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    where.root.chmod(0o700)
    if not where.marker.is_file():
        note = "created by fleet-sandbox (sandbox.localcluster); `down` deletes this directory\n"
        write_atomically(where.marker, note, 0o644)
    return where


@contextlib.contextmanager
def _locked(where: Layout, *, wait: bool = True) -> Iterator[bool]:
    """Serialise ``up``/``down`` of one cluster (two terraform runs of the same sandbox, a rerun).

    Yields whether the lock is held: always with ``wait``; without it, ``False`` when someone else holds it.
    """
    handle = os.open(where.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(handle)


# -- components -----------------------------------------------------------------------------------


@dataclass
class Component:
    """How to start one component and tell that it is ready.

    Attributes:
        name: The component name (process marker, log and pid file).
        port_roles: The ports it listens on, by role (empty: it listens on nothing).
        argv: Builds the argv from the ports.
        ready: Whether it is ready (called repeatedly until it is, or until the timeout).
        env: Extra environment.
    """

    name: str
    port_roles: tuple[str, ...]
    argv: Callable[[Mapping[str, int]], list[str]]
    ready: Callable[[Mapping[str, int]], bool]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ClusterSettings:
    """What ``up`` was asked for."""

    name: str = "local"
    nodes: int = 1
    python: str = sys.executable
    timeout: float = 600.0
    port_attempts: int = 5


def _binary(name: str) -> str:
    return str(toolchain.locate(name))


def _answers(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (LocalApiUnreachableError, ApiStatusError, LocalClusterError):
        return False


def admin_api(where: Layout, port: int, *, timeout: float = 10.0) -> KubeApi:
    """A client for the cluster's API server as cluster-admin."""
    pki = where.pki
    return KubeApi(
        f"https://127.0.0.1:{port}",
        Credentials(ca_file=pki.ca_cert, cert_file=pki.admin_cert, key_file=pki.admin_key),
        timeout=timeout,
    )


def _health(url_port: int, path: str, *, https: bool) -> bool:
    scheme = "https" if https else "http"
    status, body = KubeApi(f"{scheme}://127.0.0.1:{url_port}", timeout=3.0).get_text(path)
    text = "".join(body.split())
    # kube-* components answer "ok"; etcd answers {"health":"true","reason":""}.
    return status == 200 and (text == "ok" or '"health":"true"' in text)


def components(where: Layout, settings: ClusterSettings, api_port: Callable[[], int]) -> list[Component]:
    """The cluster's components in start order (``api_port`` reads the API server's port once it is known)."""
    pki = where.pki
    kubeconfig = str(where.kubeconfig)

    def etcd(p: Mapping[str, int]) -> list[str]:
        client, peer = f"http://127.0.0.1:{p['client']}", f"http://127.0.0.1:{p['peer']}"
        return [
            _binary("etcd"),
            "--name=default",
            f"--data-dir={where.etcd_data}",
            # A sandbox's data is disposable; fsync on a loaded, shared disk costs seconds per write.
            "--unsafe-no-fsync=true",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--listen-metrics-urls=",
            "--log-level=warn",
        ]

    def etcd_port() -> int:
        record = where.record("etcd")
        if record is None:
            raise LocalClusterError("etcd is not running")
        return record.ports["client"]

    def apiserver(p: Mapping[str, int]) -> list[str]:
        return [
            _binary("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port()}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={p['secure']}",
            f"--tls-cert-file={pki.apiserver_cert}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--cert-dir={where.root / 'work' / 'kube-apiserver' / 'certs'}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # The default reconciler would keep writing 127.0.0.1 into the kubernetes Endpoints and log
            # that a loopback address is invalid there.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def apiserver_ready(p: Mapping[str, int]) -> bool:
        status, body = admin_api(where, p["secure"], timeout=3.0).get_text("/readyz")
        return status == 200 and body.strip() == "ok"

    def kcm(p: Mapping[str, int]) -> list[str]:
        return [
            _binary("kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={p['secure']}",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            "--controllers=*",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--cluster-name={settings.name}",
            "--profiling=false",
        ]

    def scheduler(p: Mapping[str, int]) -> list[str]:
        return [
            _binary("kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={p['secure']}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def kwok(_: Mapping[str, int]) -> list[str]:
        return [
            _binary("kwok"),
            f"--kubeconfig={kubeconfig}",
            f"--config={toolchain.locate('kwok-stages')}",
            "--manage-all-nodes=true",
            # A lease of 40 s selects the heartbeat-with-lease stage (kwokctl's choice).
            "--node-lease-duration-seconds=40",
            f"--cidr={POD_CIDR}",
            f"--node-ip={NODE_IP}",
        ]

    def kwok_ready(_: Mapping[str, int]) -> bool:
        return nodes_ready(admin_api(where, api_port(), timeout=3.0), settings.nodes)

    def host_kubelet(_: Mapping[str, int]) -> list[str]:
        return [settings.python, "-m", "sandbox.localcluster", "supervise", "--dir", str(where.root)]

    def host_kubelet_ready(_: Mapping[str, int]) -> bool:
        try:
            state = json.loads((where.flux / "host-kubelet.json").read_text())
        except (OSError, ValueError):
            return False
        record = where.record(HOST_KUBELET)
        return bool(state.get("synced")) and record is not None and state.get("pid") == record.pid

    return [
        Component("etcd", ("client", "peer"), etcd, lambda p: _health(p["client"], "/health", https=False)),
        Component("kube-apiserver", ("secure",), apiserver, apiserver_ready),
        Component("kube-controller-manager", ("secure",), kcm, lambda p: _health(p["secure"], "/healthz", https=True)),
        Component("kube-scheduler", ("secure",), scheduler, lambda p: _health(p["secure"], "/healthz", https=True)),
        Component("kwok", (), kwok, kwok_ready),
        Component(HOST_KUBELET, (), host_kubelet, host_kubelet_ready),
    ]


def node_manifest(index: int) -> dict[str, Any]:
    """A fake Node for kwok (its ``status`` is kept on create; the kwok taint is left off so any pod fits)."""
    name = f"kwok-node-{index}"
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": capacity,
            "capacity": capacity,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    }


def nodes_ready(api: KubeApi, count: int) -> bool:
    """Whether nodes ``kwok-node-0`` … ``kwok-node-<count-1>`` all report ``Ready=True``."""
    listed = api.get_json("/api/v1/nodes") or {}
    ready = set()
    for node in listed.get("items") or []:
        conditions = (node.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ready.add((node.get("metadata") or {}).get("name"))
    return all(f"kwok-node-{i}" in ready for i in range(count))


# -- starting one component ------------------------------------------------------------------------


class _PortTaken(Exception):
    def __init__(self, ports: Mapping[str, int]) -> None:
        super().__init__("port taken")
        self.ports = dict(ports)


def _wait_ready(
    where: Layout, component: Component, record: ProcessRecord, deadline: float, poll: float = 0.25
) -> None:
    """Wait until ``component`` (running as ``record``) is ready.

    Raises:
        _PortTaken: It exited (or never listened) because a port was taken.
        ComponentFailedError: It exited for another reason.
        ComponentTimeoutError: Not ready by ``deadline``.
    """
    wanted = {("127.0.0.1", port) for port in record.ports.values()}
    while True:
        if not is_running(record, where.root):
            tail = tail_since_start(record.log)
            if portpicker.port_taken(tail):
                raise _PortTaken(record.ports)
            raise ComponentFailedError(
                f"{component.name} exited while starting; the end of {record.log}: {_one_line(tail)}"
            )
        if wanted <= listening_ports(record.pid) and _answers(lambda: component.ready(record.ports)):
            return
        if time.monotonic() >= deadline:
            tail = tail_since_start(record.log)
            if portpicker.port_taken(tail):
                raise _PortTaken(record.ports)
            raise ComponentTimeoutError(
                f"{component.name} was not ready in time; the end of {record.log}: {_one_line(tail, 400)}"
            )
        time.sleep(poll)


def _one_line(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "…" + text[-limit:]


def _start(
    where: Layout,
    component: Component,
    settings: ClusterSettings,
    deadline: float,
    *,
    reserved: set[int],
    pick: Callable[..., list[int]] = portpicker.pick_ports,
    port_wait: float = 0.0,
) -> ProcessRecord:
    """Ensure ``component`` runs and is ready; start it (again) when needed, on new ports after a bind failure.

    ``port_wait``: how long to wait for the ports it had to be free again before picking new ones (a killed
    process's connections can hold its port for up to a minute, TIME_WAIT and orphaned FIN_WAIT sockets).
    """
    current = where.record(component.name)
    if current is not None:
        if list(current.argv) == component.argv(current.ports):
            with contextlib.suppress(_PortTaken, ComponentFailedError):
                _wait_ready(where, component, current, deadline)
                return current
        # Started with other flags (an upstream component moved) or broken: replace it.
        terminate([_as_local(current, where)], grace=10.0)
    previous = read_record(pid_file(where.run, component.name))
    ports: dict[str, int] = {}
    # Prefer the ports it had: clients (a kubeconfig already handed out) keep working.
    if previous is not None and set(previous.ports) == set(component.port_roles):
        until = min(deadline, time.monotonic() + port_wait)
        while not (free := all(portpicker.is_free(port) for port in previous.ports.values())):
            if time.monotonic() >= until:
                break
            time.sleep(0.5)
        if free:
            ports = dict(previous.ports)
    failed: set[int] = set()
    for _ in range(settings.port_attempts):
        if len(ports) != len(component.port_roles):
            picked = pick(len(component.port_roles), exclude=reserved | failed)
            ports = dict(zip(component.port_roles, picked, strict=True))
        spec = ProcessSpec(component.name, tuple(component.argv(ports)), env=component.env, ports=ports)
        _, record = spawn(where.root, spec)
        try:
            _wait_ready(where, component, record, deadline)
        except _PortTaken as taken:
            terminate([_as_local(record, where)], grace=5.0)
            failed |= set(taken.ports.values())
            ports = {}
            continue
        reserved |= set(ports.values())
        return record
    raise PortsExhaustedError(
        f"{component.name}: its ports were taken by another process {settings.port_attempts} times in a row"
    )


def _as_local(record: ProcessRecord, where: Layout) -> LocalProcess:
    return LocalProcess(record.pid, str(where.root), record.component, record.start_ticks, record.argv)


# -- up / down / status ------------------------------------------------------------------------------


def up(
    cluster_dir: Path | str,
    settings: ClusterSettings | None = None,
    *,
    kubernetes_version: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Start (or resume) the local cluster in ``cluster_dir``; return its public facts (``cluster.json``).

    Args:
        cluster_dir: The cluster's directory (created, with its marker).
        settings: Name, node count, the Python for the host kubelet, the timeout for the whole start.
        kubernetes_version: ``MAJOR.MINOR`` the caller expects; must be the toolchain's.
        progress: Told one line per component that is ready.

    Raises:
        InvalidInputError: A Kubernetes version the toolchain does not provide, or a node count below 1.
        NotALocalClusterError: ``cluster_dir`` is somebody else's directory.
        ToolNotFoundError: A binary is not built (``make toolchain``).
        ComponentFailedError / ComponentTimeoutError / PortsExhaustedError: A component did not start; every
            process of the cluster has been stopped again.
    """
    settings = settings or ClusterSettings()
    version = toolchain.files()["kube-apiserver"].version  # e.g. v1.36.3
    minor = ".".join(version.lstrip("v").split(".")[:2])
    if kubernetes_version and kubernetes_version.lstrip("v") not in (minor, version.lstrip("v")):
        raise InvalidInputError(
            f"a local cluster runs Kubernetes {version} (the toolchain's); kubernetes_version {kubernetes_version!r} "
            f"cannot be provided"
        )
    if settings.nodes < 1:
        raise InvalidInputError("a local cluster needs at least one node")
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages"):
        toolchain.locate(name)  # every binary is there before anything starts
    where = prepare(cluster_dir)
    with _locked(where):
        try:
            return _up(where, settings, version, minor, progress)
        except BaseException:
            # All or nothing: a failed start leaves no process behind (the directory stays for `down`).
            stop_processes(where.root, order=STOP_ORDER)
            raise


def _up(
    where: Layout, settings: ClusterSettings, version: str, minor: str, progress: Callable[[str], None]
) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + settings.timeout
    ensure_pki(where.pki.root, settings.name)
    where.etcd_data.mkdir(parents=True, exist_ok=True, mode=0o700)
    where.flux.mkdir(parents=True, exist_ok=True, mode=0o700)
    timings: dict[str, float] = {}
    reserved: set[int] = set()
    records: dict[str, ProcessRecord] = {}

    def api_port() -> int:
        return records["kube-apiserver"].ports["secure"]

    for component in components(where, settings, api_port):
        if component.name == "kwok":
            # The fake nodes exist before kwok starts: it takes over every node (--manage-all-nodes).
            api = admin_api(where, api_port())
            for index in range(settings.nodes):
                api.create("/api/v1/nodes", node_manifest(index), exist_ok=True)
        records[component.name] = _start(where, component, settings, deadline, reserved=reserved)
        timings[component.name] = round(time.monotonic() - started, 2)
        ports = ", ".join(f"{role} 127.0.0.1:{port}" for role, port in records[component.name].ports.items())
        progress(f"{component.name} ready after {timings[component.name]:.1f}s" + (f" ({ports})" if ports else ""))
        if component.name == "kube-apiserver":
            _write_kubeconfig(where, settings.name, api_port())
    info = {
        "name": settings.name,
        "endpoint": f"https://127.0.0.1:{api_port()}",
        "kubernetes_version": minor,
        "kubernetes_git_version": version,
        "nodes": [f"kwok-node-{i}" for i in range(settings.nodes)],
        "ports": {name: dict(record.ports) for name, record in records.items() if record.ports},
        "timings_seconds": timings,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_atomically(where.info, json.dumps(info, indent=2, sort_keys=True) + "\n", 0o644)
    return info


def restart_stopped(cluster_dir: Path | str, *, timeout: float = 300.0) -> list[str]:
    """Start again each control-plane process of a cluster that is up but whose process is gone; their names.

    The host kubelet calls this every few seconds, as a kubelet restarts a static pod that exited: a killed
    kube-apiserver (or etcd, controller-manager, scheduler, kwok) comes back on the ports it had, so the
    kubeconfig handed out stays right and clients resume. The components that still run are not touched. Nothing
    is done for a cluster that never finished ``up`` (no ``cluster.json``) or while ``up``/``down`` holds the
    cluster's lock: they are in charge then.

    Raises:
        ComponentFailedError / ComponentTimeoutError / PortsExhaustedError: A component did not start again (the
            caller tries later).
    """
    where = layout(cluster_dir)
    try:
        info = json.loads(where.info.read_text())
    except (OSError, ValueError):
        return []
    settings = ClusterSettings(name=str(info.get("name") or "local"), nodes=max(1, len(info.get("nodes") or [])))

    def api_port() -> int:
        record = where.record("kube-apiserver")
        if record is None:
            raise LocalClusterError("kube-apiserver is not running")
        return record.ports["secure"]

    wanted = [c for c in components(where, settings, api_port) if c.name != HOST_KUBELET]
    if all(where.record(c.name) is not None for c in wanted):
        return []
    restarted: list[str] = []
    with _locked(where, wait=False) as held:
        if not held:
            return []
        deadline = time.monotonic() + timeout
        running = [where.record(c.name) for c in wanted]
        reserved = {port for record in running if record is not None for port in record.ports.values()}
        for component in wanted:
            if where.record(component.name) is None:
                # Its port back, even if that means waiting for the dead process's connections to time out: a
                # new port would strand every kubeconfig handed out.
                _start(where, component, settings, deadline, reserved=reserved, port_wait=PORT_WAIT_SECONDS)
                restarted.append(component.name)
        if "kube-apiserver" in restarted and f"https://127.0.0.1:{api_port()}" != info.get("endpoint"):
            # Its port was taken meanwhile: the cluster's own files follow (a kubeconfig handed out does not).
            _write_kubeconfig(where, settings.name, api_port())
            info["endpoint"] = f"https://127.0.0.1:{api_port()}"
            info.setdefault("ports", {})["kube-apiserver"] = {"secure": api_port()}
            write_atomically(where.info, json.dumps(info, indent=2, sort_keys=True) + "\n", 0o644)
    return restarted


def _write_kubeconfig(where: Layout, name: str, port: int) -> None:
    pki = where.pki
    text = admin_kubeconfig(
        f"https://127.0.0.1:{port}",
        cluster_name=name,
        ca_file=pki.ca_cert,
        cert_file=pki.admin_cert,
        key_file=pki.admin_key,
    )
    write_atomically(where.kubeconfig, text)


def down(cluster_dir: Path | str, *, grace: float = 10.0) -> list[LocalProcess]:
    """Stop every process of the local cluster in ``cluster_dir`` and delete the directory.

    Processes are found by their marker, so this also cleans up after a start that was killed before it wrote
    anything. A directory without the marker file is never deleted (its processes, if any carry the marker,
    are still stopped). Nothing there: nothing to do.

    Returns:
        The processes that were stopped.

    Raises:
        LocalClusterError: A process survived SIGKILL; the directory is kept.
    """
    where = layout(cluster_dir)
    if not where.root.exists():
        return stop_processes(where.root, order=STOP_ORDER, grace=grace)
    if not where.marker.is_file():
        stopped = stop_processes(where.root, order=STOP_ORDER, grace=grace)
        if any(where.root.iterdir()):
            raise NotALocalClusterError(
                f"not deleting {where.root}: it has no {MARKER_FILE} marker (is it a local cluster's directory?)"
            )
        return stopped
    with _locked(where):
        stopped = stop_processes(where.root, order=STOP_ORDER, grace=grace)
    shutil.rmtree(where.root)
    return stopped


def status(cluster_dir: Path | str) -> dict[str, Any]:
    """The cluster's facts, each component's process (pid, running, ports listened on, RSS), and health.

    ``running`` is true when every control-plane component runs; ``rss_bytes`` sums every marked process
    (the Flux controllers included).
    """
    where = layout(cluster_dir)
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(where.info.read_text())
    rows: dict[str, Any] = {}
    found = find_local_cluster_processes(where.root)
    for process in found:
        record = read_record(pid_file(where.run, process.component))
        rows[process.component] = {
            "pid": process.pid,
            "listening": sorted(f"{a}:{p}" for a, p in listening_ports(process.pid)),
            "rss_bytes": rss_bytes(process.pid),
            "ports": dict(record.ports) if record and record.pid == process.pid else {},
        }
    running = all(name in rows for name in CONTROL_PLANE)
    api_ready = False
    port = ((info.get("ports") or {}).get("kube-apiserver") or {}).get("secure")
    if port and "kube-apiserver" in rows:
        api_ready = _answers(lambda: admin_api(where, int(port), timeout=3.0).get_text("/readyz") == (200, "ok"))
    return {
        "dir": str(where.root),
        "exists": where.marker.is_file(),
        "running": running,
        "api_ready": api_ready,
        "endpoint": info.get("endpoint"),
        "kubernetes_version": info.get("kubernetes_git_version"),
        "processes": rows,
        "rss_bytes": sum(row["rss_bytes"] for row in rows.values()),
    }


def every_process_of(dirs: Sequence[Path | str]) -> list[LocalProcess]:
    """The marked processes of any of ``dirs``."""
    wanted = {str(layout(d).root) for d in dirs}
    return [p for p in find_local_cluster_processes() if p.cluster_dir in wanted]
