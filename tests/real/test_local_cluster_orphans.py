"""A starter SIGKILLed mid-start leaves the local cluster's processes running; the rerun finds and resumes them,
``down`` stops every one (found by the marker in their environment) and deletes the directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.localcluster.processes import find_local_cluster_processes
from tests.polling import poll
from tests.real.localstack import running_components

pytestmark = pytest.mark.timeout(900)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox.localcluster", *args]


def test_a_killed_start_is_resumed_by_the_rerun_and_stopped_by_down(tmp_path: Path) -> None:
    cluster = tmp_path / "cluster"
    starter = subprocess.Popen(  # noqa: S603 - argv list
        _cli("up", "--dir", str(cluster), "--name", "killed"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Killed once the control plane runs but before the start finished (kwok and the host kubelet not yet).
        def apiserver_up() -> bool | None:
            return "kube-apiserver" in running_components(cluster) or None

        poll("kube-apiserver started by the first run", apiserver_up, 300)
        os.killpg(starter.pid, signal.SIGKILL)
    finally:
        starter.wait(timeout=30)
    left = {p.component: p.pid for p in find_local_cluster_processes(cluster)}
    assert "etcd" in left and "kube-apiserver" in left  # orphans: their starter is gone, they run on

    done = subprocess.run(_cli("up", "--dir", str(cluster), "--name", "killed"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = {p.component: p.pid for p in find_local_cluster_processes(cluster)}
    assert resumed["etcd"] == left["etcd"]  # kept, not started twice
    assert {"kwok", "kube-scheduler", "kube-controller-manager", "flux-host-kubelet"} <= set(resumed)

    done = subprocess.run(_cli("down", "--dir", str(cluster)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert find_local_cluster_processes(cluster) == [] and not cluster.exists()
