"""The bootstrap stage: write the sandbox's gotk-sync.yaml, push it, install Flux and the sync.

:func:`install_flux` is also how a long-lived environment gets Flux (:mod:`sandbox.environments`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox import fleetrepo
from sandbox.context import SandboxContext
from sandbox.drivers.cluster import FLUX_NAMESPACE, ClusterDriver, DiscoveryCache, Manifest, ObjectRef
from sandbox.errors import ConfigError, CrdNotEstablishedError, CrdRejectedError
from sandbox.models import SandboxStatus, Stage, StageResult
from sandbox.progress import Progress, quiet


def bootstrap(ctx: SandboxContext) -> StageResult:
    """Write the sandbox's gotk-sync.yaml, push it, and install Flux and the sync on the cluster."""
    record = ctx.record
    branch = record.branch or ""
    git = ctx.drivers.git
    repo = ctx.on_branch(branch)
    root = repo / ctx.sandbox_path
    url = ctx.config.checked_flux_url(ctx.config.flux_url, "fleet_repo.flux_url")
    sync_text = fleetrepo.render_gotk_sync(name=record.name, url=url, branch=branch, path=ctx.sandbox_path)
    written = fleetrepo.write_bootstrap_files(root, sync_text, repo=repo)
    commit = None
    if written:
        who = f"{record.ticket}: " if record.ticket else ""
        commit = git.commit_all(
            repo, f"{who}bootstrap {record.name}: flux-system sync for {ctx.sandbox_path}@{branch}", [ctx.sandbox_path]
        )
        git.push(repo, branch)
    components = install_flux(
        ctx.cluster(),
        root,
        repo=repo,
        git_token=ctx.secrets.git_token,
        ssh_identity=ctx.secrets.git_ssh_identity,
        known_hosts=ctx.config.known_hosts(),
        progress=ctx.progress,
        crd_timeout_seconds=ctx.config.drivers.cluster.crd_timeout_seconds,
    )
    ctx.inventory.update(record.name, status=SandboxStatus.active)
    return StageResult(
        stage=Stage.bootstrap,
        summary=f"Flux bootstrapped on {record.name}, syncing ./{ctx.sandbox_path} from {branch}",
        details={"written": written, "commit": commit, "components": components},
    )


#: The bootstrap secret ``flux-system/flux-system`` the fleet's GitRepository reads the repository with.
FLUX_GIT_SECRET = "flux-system"


def git_credentials_secret(
    url: str, *, git_token: str | None, ssh_identity: str | None = None, known_hosts: str | None = None
) -> Manifest:
    """The ``flux-system/flux-system`` Secret in the form Flux's source-controller reads for ``url``.

    ``ssh://`` URLs authenticate with a private key: keys ``identity`` and
    ``known_hosts`` (``flux bootstrap``'s format; ``identity.pub`` is optional
    and not written). Every other URL gets HTTP basic auth: ``username`` and
    ``password`` (the token).

    Raises:
        ConfigError: An ssh URL without a private key or without known_hosts,
            naming where they are configured (never their values).
    """
    if url.startswith("ssh://"):
        if not ssh_identity or not ssh_identity.strip():
            raise ConfigError(
                f"the fleet repository's Flux URL {url} is ssh: Flux needs an SSH private key "
                "(a Prefect Secret block in drivers.git.ssh_key_secret_block, or the variable drivers.git.ssh_key_env)"
            )
        if not known_hosts or not known_hosts.strip():
            raise ConfigError(
                f"the fleet repository's Flux URL {url} is ssh: Flux needs the host's keys in drivers.git.known_hosts"
            )
        # OpenSSH refuses a key file without its final newline (lost easily in an environment variable).
        identity = ssh_identity if ssh_identity.endswith("\n") else ssh_identity + "\n"
        data = {"identity": identity, "known_hosts": known_hosts}
    else:
        data = {"username": "git", "password": git_token or ""}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": FLUX_GIT_SECRET, "namespace": FLUX_NAMESPACE},
        "type": "Opaque",
        "stringData": data,
    }


CRD_API = "apiextensions.k8s.io/v1"
#: How often the wait for CustomResourceDefinitions looks again.
CRD_POLL_SECONDS = 0.5


def _crd_condition(crd: Manifest, condition: str) -> dict[str, Any] | None:
    for entry in (crd.get("status") or {}).get("conditions") or []:
        if entry.get("type") == condition:
            return dict(entry)
    return None


def wait_for_crds_established(
    cluster: ClusterDriver,
    names: list[str],
    *,
    timeout_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until every named CustomResourceDefinition is ``Established`` (its kind served), as ``flux install`` does.

    Then asks a driver with a discovery cache to refresh it: kinds looked up
    before they were served must be found now.

    Args:
        cluster: The cluster.
        names: CRD names (``gitrepositories.source.toolkit.fluxcd.io``).
        timeout_seconds: How long to wait.
        clock: Monotonic seconds (tests inject one).
        sleep: Pauses between looks (tests inject one that moves their clock).

    Raises:
        CrdRejectedError: A CRD's names were refused (``NamesAccepted=False``): it is never served.
        CrdNotEstablishedError: Some were not Established in time, named (retryable).
    """
    deadline = clock() + timeout_seconds
    waiting = sorted(set(names))
    while waiting:
        pending = []
        for name in waiting:
            crd = cluster.get(ObjectRef(CRD_API, "CustomResourceDefinition", name))
            names_accepted = _crd_condition(crd, "NamesAccepted") if crd else None
            if names_accepted is not None and names_accepted.get("status") == "False":
                raise CrdRejectedError(
                    f"CustomResourceDefinition {name} was rejected (NamesAccepted=False): "
                    f"{names_accepted.get('message') or names_accepted.get('reason') or 'no reason given'}"
                )
            established = _crd_condition(crd, "Established") if crd else None
            if established is None or established.get("status") != "True":
                pending.append(name)
        waiting = pending
        if not waiting:
            break
        remaining = deadline - clock()
        if remaining <= 0:
            raise CrdNotEstablishedError(
                f"CustomResourceDefinitions not Established after {timeout_seconds:g}s: {', '.join(waiting)}"
            )
        sleep(min(CRD_POLL_SECONDS, remaining))
    if isinstance(cluster, DiscoveryCache):
        cluster.refresh_discovery()


def _install_stage(doc: Manifest) -> int:
    """``flux install``'s order: CRDs and Namespaces (stage 0) before everything else (stage 1)."""
    return 0 if doc.get("kind") in ("CustomResourceDefinition", "Namespace") else 1


def install_flux(
    cluster: ClusterDriver,
    cluster_root: Path,
    *,
    repo: Path,
    git_token: str | None,
    ssh_identity: str | None = None,
    known_hosts: str | None = None,
    progress: Progress = quiet,
    crd_timeout_seconds: float = 120.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Apply a cluster directory's Flux components, the git credentials secret and its sync objects.

    What ``flux bootstrap git`` applies after committing: ``gotk-components.yaml``
    in two stages -- its CustomResourceDefinitions and Namespaces first, then,
    once the CRDs are Established (a custom object of a kind not yet served is
    refused), the controllers -- then the ``flux-system/flux-system`` secret the
    GitRepository reads the repo with (SSH key for an ``ssh://`` URL, token
    otherwise: see :func:`git_credentials_secret`), then ``gotk-sync.yaml``.
    Server-side apply makes a rerun harmless.

    Args:
        cluster: The cluster.
        cluster_root: The cluster's directory in a checkout (``clusters/<name>``).
        repo: The checkout's root: no file outside it is read (see :mod:`sandbox.paths`).
        git_token: The token of an http(s) fleet repository.
        ssh_identity: The private key of an ssh fleet repository.
        known_hosts: The git host's keys, for an ssh fleet repository.
        progress: Told what was applied.
        crd_timeout_seconds: How long to wait for the CRDs to be Established.
        clock: Monotonic seconds, for that wait (tests inject one).
        sleep: Pauses of that wait (tests inject one).

    Returns:
        How many component objects were applied.

    Raises:
        ConfigError: An ssh fleet URL without its private key or known_hosts.
        CrdNotEstablishedError: The CRDs were not Established in time (retryable).
        CrdRejectedError: A CRD's names were refused.
    """
    sync_docs = fleetrepo.read_documents(cluster_root / fleetrepo.SYNC_FILE, repo=repo)
    source = next((d for d in sync_docs if d.get("kind") == "GitRepository"), {})
    # Checked before anything is applied: a missing key is a configuration problem.
    secret = git_credentials_secret(
        str((source.get("spec") or {}).get("url") or ""),
        git_token=git_token,
        ssh_identity=ssh_identity,
        known_hosts=known_hosts,
    )
    components = fleetrepo.read_documents(cluster_root / fleetrepo.COMPONENTS_FILE, repo=repo)
    for stage in (0, 1):
        for doc in components:
            if _install_stage(doc) == stage:
                cluster.apply(doc)
        if stage == 0:
            crds = [str(d["metadata"]["name"]) for d in components if d.get("kind") == "CustomResourceDefinition"]
            wait_for_crds_established(cluster, crds, timeout_seconds=crd_timeout_seconds, clock=clock, sleep=sleep)
            progress(f"applied {len(crds)} Flux CustomResourceDefinitions; all Established")
    progress(f"applied {len(components)} Flux component objects")
    cluster.apply(secret)
    progress(f"applied the git credentials secret flux-system/flux-system ({', '.join(sorted(secret['stringData']))})")
    for doc in sync_docs:
        cluster.apply(doc)
    sync = next((d for d in sync_docs if d.get("kind") == "Kustomization"), {})
    progress(
        "applied gotk-sync: GitRepository and Kustomization flux-system tracking "
        f"{((source.get('spec') or {}).get('ref') or {}).get('branch')} at {(sync.get('spec') or {}).get('path')}"
    )
    return len(components)
