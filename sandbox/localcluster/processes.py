"""The local cluster's processes: started detached, marked, recorded, found again and stopped.

Every long-running process of a local cluster (etcd, the Kubernetes control plane, kwok, the Flux host kubelet
and the Flux controllers it starts) is started here, and only here, with :class:`subprocess.Popen` on an argv list
(never a shell). Run-to-completion commands go through :func:`sandbox.proc.run` elsewhere; the one exception,
:func:`run_binary`, is here because a CGI program (``git http-backend``) speaks binary on stdin/stdout, which
:func:`sandbox.proc.run` (text, captured for error messages) cannot carry.

What a process gets:

* its own session (``start_new_session``): it is not in the caller's process group, so it survives the process
  that started it (``terraform apply``'s local-exec returns while the cluster runs on) and a Ctrl-C there;
* stdin from ``/dev/null`` and stdout + stderr appended to ``<dir>/logs/<component>.log``: it holds no pipe
  of its starter open (``terraform`` waits for its provisioner's pipes to close, and would hang);
* a small environment built here, not the caller's: ``PATH``, the toolchain cache location, ``HOME`` and
  ``TMPDIR`` inside the cluster directory (so nothing is written outside it), plus the **marker**:
  ``FLEET_SANDBOX_LOCAL_CLUSTER=<cluster dir>`` and ``FLEET_SANDBOX_LOCAL_COMPONENT=<name>``;
* a pid file ``<dir>/run/<component>.json`` with the pid, its start time in clock ticks since boot
  (``/proc/<pid>/stat`` field 22), the argv and the ports.

Finding and stopping: a process is taken to be a cluster's only when its ``/proc/<pid>/environ`` carries the
marker for that directory. That is how a rerun or the nightly cleanup finds the processes of a cluster whose
starter was SIGKILLed before it wrote a pid file, and why a reused pid (a different program now) is never
signalled: a pid file is trusted only while the pid's start time still matches and the marker is there.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox import toolchain
from sandbox.errors import CommandTransientError, ToolNotFoundError
from sandbox.localcluster.errors import LocalClusterError

#: Environment variable naming the cluster directory a process belongs to (absolute path).
MARKER_ENV = "FLEET_SANDBOX_LOCAL_CLUSTER"
#: Environment variable naming the component (``etcd``, ``kube-apiserver``, ``source-controller``, ...).
COMPONENT_ENV = "FLEET_SANDBOX_LOCAL_COMPONENT"

#: Variables passed on from the starter's environment (everything else is left behind: an inherited
#: ``KUBECONFIG`` or proxy setting would point a component at the wrong place).
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "FLEET_SANDBOX_CACHE", "PYTHONPATH", "VIRTUAL_ENV")

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessSpec:
    """A process to start.

    Attributes:
        component: Its name in the cluster (also the log and pid file name).
        argv: Program (an absolute path) and arguments.
        env: Variables on top of the base environment (:func:`base_environment`).
        ports: The ports it will listen on, by role (recorded in the pid file, re-picked on a bind failure).
    """

    component: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessRecord:
    """A pid file's content: which process runs a component, and how it was started."""

    component: str
    pid: int
    start_ticks: int
    argv: tuple[str, ...]
    ports: dict[str, int]
    started_at: float
    log: str

    def to_json(self) -> str:
        """The pid file text."""
        return json.dumps({**asdict(self), "argv": list(self.argv)}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ProcessRecord:
        """Read a pid file's text.

        Raises:
            ValueError: Not a pid file of this module.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a pid record")
        return cls(
            component=str(data["component"]),
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            argv=tuple(str(a) for a in data["argv"]),
            ports={str(k): int(v) for k, v in dict(data.get("ports") or {}).items()},
            started_at=float(data.get("started_at", 0.0)),
            log=str(data.get("log", "")),
        )


@dataclass(frozen=True)
class LocalProcess:
    """A running process that carries a local cluster's marker (found through ``/proc``)."""

    pid: int
    cluster_dir: str
    component: str
    start_ticks: int
    cmdline: tuple[str, ...]


# -- /proc ----------------------------------------------------------------------------------------


def start_ticks(pid: int, proc: Path = _PROC) -> int | None:
    """When ``pid`` started (clock ticks after boot), or ``None`` when there is no such live process.

    A zombie (exited, not yet reaped) counts as gone.
    """
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last one.
    fields = text[text.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3
    except (IndexError, ValueError):
        return None


def environ_of(pid: int, proc: Path = _PROC) -> dict[str, str] | None:
    """The environment ``pid`` was started with (``None`` when unreadable: gone, a zombie, another user's)."""
    try:
        raw = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep:
            env[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def cmdline_of(pid: int, proc: Path = _PROC) -> tuple[str, ...]:
    """``pid``'s argv (empty when unreadable)."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)


def marker_of(pid: int, proc: Path = _PROC) -> tuple[str, str] | None:
    """``(cluster dir, component)`` from ``pid``'s marker, or ``None`` for an unmarked (or gone) process."""
    env = environ_of(pid, proc)
    if not env or MARKER_ENV not in env:
        return None
    return env[MARKER_ENV], env.get(COMPONENT_ENV, "")


def _pids(proc: Path) -> Iterator[int]:
    try:
        entries = list(proc.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.isdigit():
            yield int(entry.name)


def find_local_cluster_processes(cluster_dir: Path | str | None = None, *, proc: Path = _PROC) -> list[LocalProcess]:
    """Every live process carrying a local cluster's marker (of ``cluster_dir`` only, when given).

    This is what a rerun and the nightly cleanup use to find a cluster whose starter died: the marker is in
    each process's environment from its first instruction, before any pid file exists. The current process
    is never returned.

    Args:
        cluster_dir: Only processes of this cluster directory (compared as absolute paths).
        proc: The proc filesystem (tests pass a fake tree).
    """
    wanted = str(Path(cluster_dir).absolute()) if cluster_dir is not None else None
    found: list[LocalProcess] = []
    for pid in _pids(proc):
        if pid == os.getpid():
            continue
        marker = marker_of(pid, proc)
        if marker is None or (wanted is not None and marker[0] != wanted):
            continue
        ticks = start_ticks(pid, proc)
        if ticks is None:
            continue
        found.append(LocalProcess(pid, marker[0], marker[1], ticks, cmdline_of(pid, proc)))
    return sorted(found, key=lambda p: (p.cluster_dir, p.start_ticks, p.pid))


def below(root: Path | str, found: Iterable[LocalProcess]) -> list[LocalProcess]:
    """The processes of ``found`` whose cluster directory is ``root`` or inside it (absolute paths compared).

    A demo or a test keeps its sandboxes' clusters deep below its own directory: this is
    how everything it started is found before that directory is deleted.
    """
    top = Path(root).absolute()
    return [p for p in found if Path(p.cluster_dir) == top or top in Path(p.cluster_dir).parents]


def is_running(record: ProcessRecord, cluster_dir: Path, proc: Path = _PROC) -> bool:
    """Whether the process of ``record`` is still the one that was started (same start time, same marker)."""
    if start_ticks(record.pid, proc) != record.start_ticks:
        return False
    marker = marker_of(record.pid, proc)
    return marker is not None and marker[0] == str(Path(cluster_dir).absolute())


def listening_ports(pid: int, proc: Path = _PROC) -> set[tuple[str, int]]:
    """The TCP ``(address, port)`` pairs ``pid`` listens on (IPv4 and IPv6), from ``/proc``.

    Used to check that a component that answers a health check is *this* cluster's process (another
    cluster's could hold the port) and that nothing listens beyond loopback.
    """
    inodes: set[str] = set()
    try:
        for fd in (proc / str(pid) / "fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        return set()
    found: set[tuple[str, int]] = set()
    for table, ipv6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = (proc / str(pid) / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != "0A" or parts[9] not in inodes:  # 0A: LISTEN
                continue
            address, _, port = parts[1].partition(":")
            found.add((_address(address, ipv6), int(port, 16)))
    return found


def _address(hex_address: str, ipv6: bool) -> str:
    # /proc/net/tcp* print addresses as host-order 32-bit words in hex.
    raw = bytes.fromhex(hex_address)
    words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
    data = b"".join(words)
    if not ipv6:
        return ".".join(str(b) for b in data)
    if data[:12] == b"\0" * 10 + b"\xff\xff":
        return ".".join(str(b) for b in data[12:])  # IPv4-mapped
    return str(ipaddress.IPv6Address(data))


def rss_bytes(pid: int, proc: Path = _PROC) -> int:
    """``pid``'s resident set size in bytes (0 when gone)."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0


# -- pid files ------------------------------------------------------------------------------------


def pid_file(run_dir: Path, component: str) -> Path:
    """Where ``component``'s pid record lives."""
    return run_dir / f"{component}.json"


def read_record(path: Path) -> ProcessRecord | None:
    """The pid record at ``path`` (``None`` when missing or unreadable)."""
    try:
        return ProcessRecord.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temp, path)


def running_record(run_dir: Path, component: str, cluster_dir: Path) -> ProcessRecord | None:
    """``component``'s pid record when its process is still running, else ``None``."""
    record = read_record(pid_file(run_dir, component))
    return record if record is not None and is_running(record, cluster_dir) else None


# -- starting -------------------------------------------------------------------------------------


def base_environment(cluster_dir: Path, component: str, *, home: Path, tmp: Path) -> dict[str, str]:
    """The environment every process of the cluster starts from (see the module docstring)."""
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        {
            # Resolved here: HOME changes below, and the default cache lives under the starter's HOME.
            toolchain.CACHE_ENV: str(toolchain.cache_root()),
            "HOME": str(home),
            "TMPDIR": str(tmp),
            MARKER_ENV: str(Path(cluster_dir).absolute()),
            COMPONENT_ENV: component,
        }
    )
    return env


def spawn(cluster_dir: Path, spec: ProcessSpec) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start ``spec`` as a detached, marked process of the cluster in ``cluster_dir`` and write its pid file.

    The process runs in ``<dir>/work/<component>`` with ``HOME`` and ``TMPDIR`` there; its output is appended
    to ``<dir>/logs/<component>.log`` (a restart's output follows the previous one's).

    Returns:
        The Popen (the caller may reap it; dropping it is fine) and the record written to the pid file.

    Raises:
        ToolNotFoundError: The program does not exist.
        LocalClusterError: It could not be started.
    """
    cluster_dir = Path(cluster_dir).absolute()
    work = cluster_dir / "work" / spec.component
    tmp = work / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    logs = cluster_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{spec.component}.log"
    env = {**base_environment(cluster_dir, spec.component, home=work, tmp=tmp), **spec.env}
    with open(log_path, "ab") as log:
        log.write(f"---- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {' '.join(spec.argv)}\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(  # noqa: S603 - argv list, never a shell
                list(spec.argv),
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            raise ToolNotFoundError(f"{spec.argv[0]} does not exist (run `make toolchain`)") from exc
        except OSError as exc:
            raise LocalClusterError(f"cannot start {spec.component}: {exc}") from exc
    # Popen returns as soon as execve has closed the close-on-exec pipe, which the kernel does *before* it
    # sets up the new program's environment: for a moment /proc/<pid>/environ is empty and the process looks
    # unmarked. Wait until the marker shows (or the process is gone), so that every check after this sees it.
    settle = time.monotonic() + 5.0
    while marker_of(process.pid) is None and process.poll() is None and time.monotonic() < settle:
        time.sleep(0.005)
    ticks = start_ticks(process.pid)
    record = ProcessRecord(
        component=spec.component,
        pid=process.pid,
        start_ticks=ticks if ticks is not None else -1,
        argv=tuple(spec.argv),
        ports=dict(spec.ports),
        started_at=time.time(),
        log=str(log_path),
    )
    write_atomically(pid_file(cluster_dir / "run", spec.component), record.to_json())
    return process, record


def log_tail(path: Path | str, limit: int = 1500) -> str:
    """The end of a log file, for error messages (at most ``limit`` characters; empty when unreadable)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def tail_since_start(path: Path | str, limit: int = 1500) -> str:
    """The log's tail, from the last ``---- ... starting`` line :func:`spawn` wrote (this run's output only)."""
    text = log_tail(path, 20000)
    marker = text.rfind("\n---- ")
    if marker >= 0:
        text = text[marker + 1 :]
    return text[-limit:]


# -- stopping -------------------------------------------------------------------------------------


def _alive(process: LocalProcess, proc: Path) -> bool:
    return start_ticks(process.pid, proc) == process.start_ticks


def _signal(process: LocalProcess, sig: int, proc: Path) -> None:
    # Checked right before signalling: the pid must still be this process (a reused pid is left alone).
    if not _alive(process, proc):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(process.pid) == process.pid:
            # A session leader we started: its whole group (anything it forked) goes with it.
            os.killpg(process.pid, sig)
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(process.pid, sig)


def terminate(
    processes: Sequence[LocalProcess],
    *,
    grace: float = 10.0,
    proc: Path = _PROC,
    sleep: float = 0.05,
    reap: Iterable[subprocess.Popen[bytes]] = (),
) -> list[LocalProcess]:
    """SIGTERM ``processes`` together, wait up to ``grace`` seconds, SIGKILL what is left.

    Args:
        processes: What to stop (all at once: they are independent of each other).
        grace: Seconds between SIGTERM and SIGKILL.
        proc: The proc filesystem.
        sleep: Poll interval while waiting.
        reap: Popen handles of our own children among them (polled, so they do not stay zombies).

    Returns:
        Processes still alive after SIGKILL and another wait (normally none).
    """
    children = list(reap)

    def remaining() -> list[LocalProcess]:
        for child in children:
            child.poll()
        return [p for p in processes if _alive(p, proc)]

    for process in processes:
        _signal(process, signal.SIGTERM, proc)
    deadline = time.monotonic() + grace
    left = remaining()
    while left and time.monotonic() < deadline:
        time.sleep(sleep)
        left = remaining()
    for process in left:
        _signal(process, signal.SIGKILL, proc)
    deadline = time.monotonic() + 5.0
    while left and time.monotonic() < deadline:
        time.sleep(sleep)
        left = remaining()
    return left


def stop(
    cluster_dir: Path | str,
    *,
    order: Sequence[Sequence[str]] = (),
    grace: float = 10.0,
    proc: Path = _PROC,
) -> list[LocalProcess]:
    """Stop every process of the local cluster in ``cluster_dir``; return those that were stopped.

    Processes are found by their marker (so those without a pid file are found too) and stopped in ``order``:
    a sequence of groups of component names, each group SIGTERMed together and waited for before the next.
    The group ``("*",)`` stands for every component named in no group; without it, those go first.
    The directory itself is left alone.

    Raises:
        LocalClusterError: Some process survived SIGKILL (it is named).
    """
    found = find_local_cluster_processes(cluster_dir, proc=proc)
    named = {name for group in order for name in group}
    others = [p for p in found if p.component not in named]
    groups: list[list[LocalProcess]] = [] if "*" in named else [others]
    for names in order:
        groups.append(others if "*" in names else [p for p in found if p.component in names])
    stopped: list[LocalProcess] = []
    for group in groups:
        if not group:
            continue
        survivors = terminate(group, grace=grace, proc=proc)
        if survivors:
            described = ", ".join(f"{p.component} (pid {p.pid})" for p in survivors)
            raise LocalClusterError(f"could not stop {described} of the local cluster {cluster_dir}")
        stopped.extend(group)
    # Anything a stopped process started meanwhile (a host kubelet restarting a controller) goes too.
    late = find_local_cluster_processes(cluster_dir, proc=proc)
    if late:
        survivors = terminate(late, grace=grace, proc=proc)
        if survivors:
            names = ", ".join(f"{p.component} (pid {p.pid})" for p in survivors)
            raise LocalClusterError(f"could not stop {names} of the local cluster {cluster_dir}")
        stopped.extend(late)
    return stopped


# -- one binary run-to-completion (CGI) -----------------------------------------------------------


def run_binary(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdin: bytes,
    timeout: float,
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` to completion with binary stdin/stdout (a CGI program); ``(returncode, stdout, stderr)``.

    Unlike :func:`sandbox.proc.run`, the environment is exactly ``env`` (a CGI request's variables must not
    mix with the server's) and nothing is decoded.

    Raises:
        ToolNotFoundError: The program does not exist.
        CommandTransientError: It did not finish within ``timeout`` (it is killed).
    """
    try:
        done = subprocess.run(  # noqa: S603 - argv list, never a shell
            list(argv), cwd=cwd, env=dict(env), input=stdin, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise ToolNotFoundError(f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandTransientError(f"{argv[0]} timed out after {timeout:g}s") from exc
    return done.returncode, done.stdout, done.stderr


def describe(processes: Iterable[LocalProcess]) -> list[dict[str, Any]]:
    """JSON-ready rows for ``processes`` (the CLI's ``find`` output)."""
    return [
        {"pid": p.pid, "cluster_dir": p.cluster_dir, "component": p.component, "cmdline": list(p.cmdline)}
        for p in processes
    ]
