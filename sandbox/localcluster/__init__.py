"""A real, local Kubernetes cluster for a sandbox: etcd, the control plane, kwok nodes and Flux as host processes.

Prefect-free. The terraform stack ``examples/fleet-repo/infra/local-cluster`` drives it through the CLI
(``python -m sandbox.localcluster up|down --dir D``); tests and the cleanup use the functions:

* :func:`up`, :func:`down`, :func:`status` (:mod:`~sandbox.localcluster.control_plane`): start/resume, stop and
  delete, report on one cluster directory;
* :func:`find_local_cluster_processes`, :func:`stop` (:mod:`~sandbox.localcluster.processes`): every process of
  any local cluster carries ``FLEET_SANDBOX_LOCAL_CLUSTER=<dir>`` in its environment, so a cleanup can find and
  stop the processes of a cluster whose flow was killed;
* :mod:`~sandbox.localcluster.supervisor`: the "host kubelet" that runs the Flux controllers while their
  Deployments have a ready replica;
* :mod:`~sandbox.localcluster.flux_install`: the Flux install manifests for a local cluster;
* :mod:`~sandbox.localcluster.git_http`: the fleet repository over smart HTTP on loopback (``git http-backend``).

See docs/local-cluster.md.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.localcluster.control_plane import (
    CONTROL_PLANE,
    HOST_KUBELET,
    STOP_ORDER,
    ClusterSettings,
    down,
    layout,
    status,
    up,
)
from sandbox.localcluster.flux_install import CONTROLLERS
from sandbox.localcluster.processes import MARKER_ENV, LocalProcess, find_local_cluster_processes
from sandbox.localcluster.processes import stop as _stop

#: The toolchain binaries a local cluster runs (``make toolchain`` builds them): the control plane's, then Flux's.
BINARIES = tuple(name for name in CONTROL_PLANE if name != HOST_KUBELET) + CONTROLLERS


def stop(cluster_dir: Path | str, *, grace: float = 10.0) -> list[LocalProcess]:
    """Stop every process of the local cluster in ``cluster_dir`` (its directory stays; :func:`down` deletes it)."""
    return _stop(layout(cluster_dir).root, order=STOP_ORDER, grace=grace)


__all__ = [
    "BINARIES",
    "MARKER_ENV",
    "ClusterSettings",
    "LocalProcess",
    "down",
    "find_local_cluster_processes",
    "status",
    "stop",
    "up",
]
