"""Helpers shared by the cleanup tests: a demo fleet, sandboxes with simulated clusters, orphans.

Sandboxes made here have a real inventory record and a real simulated cluster
(Flux components installed from the example repository, a root Kustomization
and an ``apps`` Kustomization, both carrying Flux's finalizer), but no terraform
state, so a teardown runs the real ordered teardown and is fast. A sandbox made
with ``controller_gone=True`` has lost its kustomize-controller: its ``apps``
Kustomization keeps its finalizer forever and its teardown is blocked, as a
real one would be.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from sandbox import fleetrepo
from sandbox.config import FleetConfig, load_config
from sandbox.demo import prepare_demo
from sandbox.drivers.cluster import ObjectRef
from sandbox.drivers.git import GitCli
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.inventory import Inventory, utcnow
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus
from sandbox.wiring import sandbox_state_dir

EXAMPLE_REPO = Path(__file__).resolve().parents[1] / "examples" / "fleet-repo"
COMPONENTS = EXAMPLE_REPO / "clusters" / "development" / "flux-system" / "gotk-components.yaml"
KS_API = "kustomize.toolkit.fluxcd.io/v1"


def make_fleet(
    workdir: Path,
    inventory_url: str | None = None,
    *,
    template: Path | None = None,
    teardown_timeout: float = 0.5,
    **settings: Any,
) -> FleetConfig:
    """The demo fleet (bare remote + fleet.yaml) in ``workdir``, with cleanup-friendly settings.

    Args:
        workdir: Where the fleet goes (must not exist yet).
        inventory_url: The inventory database (default: SQLite in the state dir).
        template: A directory made by ``prepare_demo`` to copy instead of making a new one.
        teardown_timeout: Seconds a teardown waits per tier (short: blocked teardowns fail fast).
        settings: Merged into fleet.yaml's top level (one level deep).
    """
    if template is not None:
        shutil.copytree(template, workdir)
    path = prepare_demo(workdir)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["cost"] = {"hourly_rates": {"small": 0.1, "large": 0.4}, "unnoticed_hours": 168}
    data["cleanup"] = {"concurrency": 10, "grace": "1h"}
    data["drivers"]["cluster"]["teardown_timeout_seconds"] = teardown_timeout
    if inventory_url:
        data["inventory"] = {"url": inventory_url}
    for key, value in settings.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_config(path)


def _kustomization(name: str) -> dict[str, Any]:
    return {
        "apiVersion": KS_API,
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system"},
        "spec": {
            "interval": "10m",
            "path": f"./clusters/{name}",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
        },
    }


def _build_cluster(directory: Path, *, controller_gone: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    cluster = SimulatedCluster(directory)
    for doc in yaml.safe_load_all(COMPONENTS.read_text(encoding="utf-8")):
        if doc:
            cluster.apply(doc)
    cluster.apply(_kustomization("flux-system"))
    cluster.apply(_kustomization("apps"))
    if controller_gone:
        cluster.delete(ObjectRef("apps/v1", "Deployment", "kustomize-controller", "flux-system"))


#: Clusters built once per test process and copied (a simulated cluster is its directory).
_TEMPLATES: dict[bool, Path] = {}


def simulated_cluster(directory: Path, *, controller_gone: bool = False) -> SimulatedCluster:
    """A simulated cluster with Flux installed, the root Kustomization and an ``apps`` Kustomization."""
    if controller_gone not in _TEMPLATES:
        root = Path(tempfile.mkdtemp(prefix="fleet-sandbox-simcluster-"))
        atexit.register(shutil.rmtree, root, True)
        _build_cluster(root / "cluster", controller_gone=controller_gone)
        _TEMPLATES[controller_gone] = root / "cluster"
    directory.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(_TEMPLATES[controller_gone], directory)
    return SimulatedCluster(directory)


def add_sandbox(
    config: FleetConfig,
    inventory: Inventory,
    name: str,
    *,
    expires_in: timedelta = timedelta(hours=-1),
    keep: bool = False,
    status: SandboxStatus = SandboxStatus.active,
    cluster: bool = True,
    controller_gone: bool = False,
    kind: SandboxKind = SandboxKind.platform,
    branch: str | None = None,
    updated_at: datetime | None = None,
) -> SandboxRecord:
    """A sandbox record (created 5 hours ago) with, by default, a simulated cluster."""
    now = utcnow()
    endpoint = None
    if cluster:
        directory = sandbox_state_dir(config, name) / "simulated-cluster"
        simulated_cluster(directory, controller_gone=controller_gone)
        endpoint = f"simulated://{directory}"
    created = now - timedelta(hours=5)
    return inventory.create(
        SandboxRecord(
            name=name,
            kind=kind,
            source_env="development",
            ticket="OPS-9",
            branch=branch or f"OPS-9-{name}",
            lifecycle_id=uuid.uuid4().hex[:12],
            status=status,
            created_at=created,
            expires_at=now + expires_in,
            updated_at=updated_at or created,
            keep=keep,
            cluster_endpoint=endpoint,
            kubernetes_version="1.31" if cluster else None,
            hourly_cost=0.1,
            scale="1 x small",
        )
    )


def flux_objects(directory: Path) -> list[str]:
    """The Kustomizations left in a simulated cluster."""
    cluster = SimulatedCluster(directory)
    return sorted(o["metadata"]["name"] for o in cluster.list(KS_API, "Kustomization"))


def checkout(config: FleetConfig, where: Path) -> Path:
    """A fresh clone of the fleet remote."""
    git = GitCli()
    if where.exists():
        shutil.rmtree(where)
    git.clone(config.remote_url, where)
    return where


def push_sandbox_branch(
    config: FleetConfig,
    work: Path,
    branch: str,
    name: str,
    *,
    sync_branch: str | None = None,
    source: str = "development",
) -> str:
    """Push ``branch``: main plus ``clusters/<name>`` copied from ``source`` as the clone stage does.

    ``sync_branch`` also writes a gotk-sync.yaml tracking that branch (as bootstrap does).
    Returns the branch's commit.
    """
    git = GitCli()
    repo = checkout(config, work)
    git.checkout(repo, branch, start="origin/main")
    fleetrepo.copy_cluster_dir(repo / fleetrepo.cluster_dir(source), repo / fleetrepo.cluster_dir(name), repo=repo)
    if sync_branch is not None:
        text = fleetrepo.render_gotk_sync(
            name=name, url=config.remote_url, branch=sync_branch, path=fleetrepo.cluster_dir(name)
        )
        fleetrepo.write_bootstrap_files(repo / fleetrepo.cluster_dir(name), text, repo=repo)
    sha = git.commit_all(repo, f"clone clusters/{source} into clusters/{name}")
    assert sha is not None
    git.push(repo, branch)
    return sha


def remote_branches(config: FleetConfig) -> dict[str, str]:
    """Branch -> commit on the fleet remote."""
    return GitCli().remote_branches(config.remote_url)


def remote_tree(config: FleetConfig, branch: str) -> list[str]:
    """The directories under clusters/ on a remote branch."""
    out = subprocess.run(
        ["git", "--git-dir", config.remote_url, "ls-tree", "--name-only", "-d", branch, "clusters/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.rsplit("/", 1)[-1] for line in out.splitlines()]
