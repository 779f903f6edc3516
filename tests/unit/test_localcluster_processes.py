"""Marked, detached processes of a local cluster (sandbox.localcluster.processes): start, find, identify, stop."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.errors import ToolNotFoundError
from sandbox.localcluster import processes as P
from sandbox.localcluster.errors import LocalClusterError

SLEEP = ("/bin/sleep", "60")
# Ignores SIGTERM: only SIGKILL ends it.
STUBBORN = (sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "cluster"
    directory.mkdir()
    yield directory
    # Never leave a process behind, whatever the test did.
    P.terminate(P.find_local_cluster_processes(directory), grace=1.0)


def test_a_spawned_process_carries_the_marker_and_a_pid_file(cluster: Path) -> None:
    popen, record = P.spawn(cluster, P.ProcessSpec("sleeper", SLEEP, ports={"main": 1234}))
    assert P.marker_of(popen.pid) == (str(cluster), "sleeper")
    env = P.environ_of(popen.pid) or {}
    assert env["HOME"] == str(cluster / "work" / "sleeper")
    assert env["TMPDIR"] == str(cluster / "work" / "sleeper" / "tmp")
    assert "KUBECONFIG" not in env  # the starter's environment is not passed on wholesale
    assert os.getpgid(popen.pid) == popen.pid  # its own session and process group
    saved = P.read_record(P.pid_file(cluster / "run", "sleeper"))
    assert saved == record
    assert record.start_ticks == P.start_ticks(popen.pid)
    assert record.ports == {"main": 1234}
    assert P.is_running(record, cluster)
    assert "starting /bin/sleep 60" in Path(record.log).read_text()
    found = P.find_local_cluster_processes(cluster)
    assert [(p.pid, p.component, p.cmdline) for p in found] == [(popen.pid, "sleeper", SLEEP)]
    assert P.find_local_cluster_processes(cluster.parent / "other") == []


def test_a_reused_pid_is_not_taken_for_the_recorded_process(cluster: Path) -> None:
    popen, record = P.spawn(cluster, P.ProcessSpec("sleeper", SLEEP))
    stale = P.ProcessRecord(**{**record.__dict__, "start_ticks": record.start_ticks - 1})
    assert not P.is_running(stale, cluster)  # same pid, another start time: another process
    assert not P.is_running(record, cluster.parent)  # same process, another cluster's marker
    P.terminate(P.find_local_cluster_processes(cluster), grace=5.0, reap=[popen])
    assert not P.is_running(record, cluster)
    assert P.running_record(cluster / "run", "sleeper", cluster) is None


def test_stop_terminates_in_order_and_kills_what_ignores_sigterm(cluster: Path) -> None:
    first, _ = P.spawn(cluster, P.ProcessSpec("late", SLEEP))
    second, _ = P.spawn(cluster, P.ProcessSpec("stubborn", STUBBORN))
    stray, _ = P.spawn(cluster, P.ProcessSpec("stray", SLEEP))
    time.sleep(0.3)  # the stubborn one installs its handler
    started = time.monotonic()
    stopped = P.stop(cluster, order=(("stubborn",), ("*",), ("late",)), grace=1.0)
    assert [p.component for p in stopped] == ["stubborn", "stray", "late"]
    assert time.monotonic() - started >= 1.0  # SIGKILL only after the grace period
    for popen in (first, second, stray):
        assert popen.wait(timeout=5) in (-signal.SIGTERM, -signal.SIGKILL)
    assert second.returncode == -signal.SIGKILL
    assert P.find_local_cluster_processes(cluster) == []


def test_a_missing_program_is_named(cluster: Path) -> None:
    with pytest.raises(ToolNotFoundError, match="make toolchain"):
        P.spawn(cluster, P.ProcessSpec("ghost", (str(cluster / "no-such-binary"),)))


def test_listening_ports_are_read_from_proc(cluster: Path) -> None:
    script = (
        "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen();"
        "print(s.getsockname()[1], flush=True); time.sleep(60)"
    )
    popen, record = P.spawn(cluster, P.ProcessSpec("listener", (sys.executable, "-c", script)))
    deadline = time.monotonic() + 10
    port = None
    while port is None and time.monotonic() < deadline:
        lines = [line for line in Path(record.log).read_text().splitlines() if line.isdigit()]
        port = int(lines[0]) if lines else None
        time.sleep(0.05)
    assert port is not None
    assert P.listening_ports(popen.pid) == {("127.0.0.1", port)}
    assert P.rss_bytes(popen.pid) > 0
    assert P.listening_ports(999_999_999) == set()


def _fake_proc(root: Path, pid: int, *, env: dict[str, str], state: str = "S", ticks: int = 42) -> None:
    entry = root / str(pid)
    entry.mkdir(parents=True)
    fields = [state] + ["0"] * 18 + [str(ticks)] + ["0"] * 10
    (entry / "stat").write_text(f"{pid} (odd ) name) " + " ".join(fields) + "\n")
    (entry / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in env.items()) + b"\0")
    (entry / "cmdline").write_bytes(b"prog\0--flag\0")


def test_find_reads_markers_and_skips_zombies_and_unmarked_processes(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    marked = {P.MARKER_ENV: "/clusters/a", P.COMPONENT_ENV: "etcd"}
    _fake_proc(proc, 100, env=marked, ticks=7)
    _fake_proc(proc, 101, env={**marked, P.COMPONENT_ENV: "kwok"}, state="Z")  # exited, not reaped
    _fake_proc(proc, 102, env={"PATH": "/bin"})
    _fake_proc(proc, 103, env={P.MARKER_ENV: "/clusters/b", P.COMPONENT_ENV: "etcd"})
    (proc / "self").mkdir()
    found = P.find_local_cluster_processes(proc=proc)
    assert [(p.pid, p.cluster_dir, p.component, p.start_ticks, p.cmdline) for p in found] == [
        (100, "/clusters/a", "etcd", 7, ("prog", "--flag")),
        (103, "/clusters/b", "etcd", 42, ("prog", "--flag")),
    ]
    assert [p.pid for p in P.find_local_cluster_processes("/clusters/b", proc=proc)] == [103]
    assert P.start_ticks(101, proc) is None


def test_proc_net_addresses_are_decoded() -> None:
    assert P._address("0100007F", False) == "127.0.0.1"
    assert P._address("00000000", False) == "0.0.0.0"
    assert P._address("0000000000000000FFFF00000100007F", True) == "127.0.0.1"
    assert P._address("00000000000000000000000001000000", True) == "::1"


def test_pid_records_round_trip_and_bad_files_are_ignored(tmp_path: Path) -> None:
    record = P.ProcessRecord("etcd", 5, 9, ("etcd", "--x"), {"client": 1}, 1.5, "/l")
    assert P.ProcessRecord.from_json(record.to_json()) == record
    (tmp_path / "bad.json").write_text("{not json")
    assert P.read_record(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text(json.dumps([1]))
    assert P.read_record(tmp_path / "list.json") is None
    assert P.read_record(tmp_path / "missing.json") is None


def test_a_survivor_of_sigkill_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ghost = P.LocalProcess(4242, str(tmp_path), "etcd", 1, ())
    monkeypatch.setattr(P, "find_local_cluster_processes", lambda *a, **k: [ghost])
    monkeypatch.setattr(P, "terminate", lambda group, **k: list(group))
    with pytest.raises(LocalClusterError, match=r"could not stop etcd \(pid 4242\)"):
        P.stop(tmp_path)


def test_run_binary_carries_bytes_both_ways(tmp_path: Path) -> None:
    code, out, err = P.run_binary(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        stdin=b"\x00\xffab",
        timeout=30,
    )
    assert (code, out, err) == (0, b"ba\xff\x00", b"")


def test_stop_below_stops_every_cluster_under_a_directory_and_no_other(tmp_path: Path) -> None:
    """`make clean` deleted .demo-local with its clusters running: their processes outlived their directory."""
    from sandbox.localcluster.__main__ import main

    demo = tmp_path / ".demo-local"
    deep = demo / "state" / "sandboxes" / "a" / "cluster"
    beside = tmp_path / "other-cluster"
    started = []
    for directory in (deep, demo, beside):
        directory.mkdir(parents=True, exist_ok=True)
        started.append(P.spawn(directory, P.ProcessSpec("sleeper", SLEEP))[0])
    try:
        assert {p.pid for p in P.below(demo, P.find_local_cluster_processes())} == {started[0].pid, started[1].pid}
        assert main(["stop-below", "--dir", str(demo)]) == 0
        for popen in started[:2]:
            popen.wait(timeout=15)
        assert started[2].poll() is None  # a cluster beside the directory is not touched
        assert P.find_local_cluster_processes(deep) == [] and P.find_local_cluster_processes(demo) == []
    finally:
        P.terminate(P.find_local_cluster_processes(beside), grace=1.0, reap=[started[2]])
