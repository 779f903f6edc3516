"""The lifecycle's stages as plain functions: Prefect-free domain logic.

Tasks (``tasks/``) wrap each function with retries, checkpoints and inventory
bookkeeping; the benchmark calls them directly. Every stage is idempotent
against the real state (state present, branch present, directory equal), so a
rerun after a crash in the middle of a stage completes it instead of failing.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from sandbox import appstacks, fleetrepo, paths, validation
from sandbox.config import FleetConfig
from sandbox.cost import estimate as estimate_cost
from sandbox.drivers.cluster import FLUX_NAMESPACE, ClusterDriver, DiscoveryCache, Manifest, ObjectRef
from sandbox.drivers.terraform import PlanSummary, TerraformOutput, public_outputs
from sandbox.errors import (
    ConfigError,
    ConflictError,
    CrdNotEstablishedError,
    CrdRejectedError,
    InvalidInputError,
    PermanentError,
    ProtectedEnvironmentError,
    TeardownBlockedError,
)
from sandbox.inventory import Inventory, utcnow
from sandbox.lifecycle_request import LifecycleRequest, SandboxChange
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus, Stage, StageResult
from sandbox.naming import branch_name, parse_duration, validate_sandbox_name
from sandbox.perf.scenario import LoadOverrides
from sandbox.progress import Progress, quiet
from sandbox.teardown import teardown_cluster
from sandbox.validation import ValidationFailedError, ValidationInputs, ValidationReport
from sandbox.wiring import (
    Drivers,
    check_cluster_module_outputs,
    cluster_outputs,
    connect_cluster,
    kubeconfig_from_outputs,
    needs_cluster_credentials,
    sandbox_state_dir,
)
from sandbox.yamledit import set_scalar


@dataclass
class Secrets:
    """Secret values a stage may need; never logged, stored or returned."""

    git_token: str | None = None
    #: Tokens that read application stacks' repositories, by stack name.
    application_stack_tokens: dict[str, str] = field(default_factory=dict)
    #: The SSH private key Flux reads an ``ssh://`` fleet repository with.
    git_ssh_identity: str | None = None


@dataclass
class SandboxContext:
    """What a stage works with."""

    config: FleetConfig
    inventory: Inventory
    drivers: Drivers
    record: SandboxRecord
    progress: Progress = quiet
    secrets: Secrets = field(default_factory=Secrets)
    #: The sandbox cluster module's outputs (sensitive ones included), read once per context.
    _cluster_outputs: dict[str, TerraformOutput] | None = field(default=None, repr=False)
    _cluster: ClusterDriver | None = field(default=None, repr=False)

    @property
    def state_dir(self) -> Path:
        """This sandbox's state directory."""
        return sandbox_state_dir(self.config, self.record.name)

    @property
    def checkout(self) -> Path:
        """This sandbox's working copy of the fleet repository."""
        return self.state_dir / "repo"

    @property
    def terraform_workdir(self) -> Path:
        """This sandbox's terraform working directory."""
        return self.state_dir / "terraform"

    @property
    def simulation_dir(self) -> Path:
        """Where this sandbox's simulated cluster lives (simulated driver only)."""
        return self.state_dir / "simulated-cluster"

    @property
    def sandbox_path(self) -> str:
        """``clusters/<name>``."""
        return fleetrepo.cluster_dir(self.record.name)

    def refresh(self) -> SandboxRecord:
        """Reload the record from the inventory."""
        self.record = self.inventory.get(self.record.name)
        return self.record


# -- creating a record -------------------------------------------------------


@dataclass(frozen=True)
class ValidatedRequest:
    """A request that passed every input check (nothing created yet)."""

    request: LifecycleRequest
    branch: str
    ttl: timedelta


def validate_request(config: FleetConfig, request: LifecycleRequest) -> ValidatedRequest:
    """Check a lifecycle request before anything is created.

    Raises:
        InvalidInputError: Naming the first problem found.
    """
    validate_sandbox_name(request.name, config.protected_names())
    config.environment(request.source_env)
    ttl = parse_duration(request.ttl or config.sandbox.default_ttl)
    max_ttl = parse_duration(config.sandbox.max_ttl)
    if ttl > max_ttl:
        raise InvalidInputError(f"ttl {request.ttl} is longer than the maximum {config.sandbox.max_ttl}")
    if request.kind is SandboxKind.platform:
        if request.source_env != "development" and not config.environments[request.source_env].canary:
            raise InvalidInputError(f"platform sandboxes clone development (or a canary), not {request.source_env!r}")
        if not request.ticket or not request.summary:
            raise InvalidInputError("platform sandboxes need --ticket and --summary (branch <ticket>-<summary>)")
        branch = branch_name(request.ticket, request.summary, config.fleet_repo.ticket_pattern)
    elif request.ticket and request.summary:
        branch = branch_name(request.ticket, request.summary, config.fleet_repo.ticket_pattern)
    else:
        # Performance sandboxes are never merged; their branch only carries the
        # cluster directory Flux reconciles.
        branch = f"perf-{request.name}"
    for key in request.overrides:
        if not key.isidentifier():
            raise InvalidInputError(f"invalid terraform variable name {key!r} in overrides")
    if request.change:
        for edit in request.change.edits:
            if Path(edit.file).is_absolute() or ".." in Path(edit.file).parts:
                raise InvalidInputError(f"change file {edit.file!r} must be inside the sandbox directory")
    return ValidatedRequest(request=request, branch=branch, ttl=ttl)


def register(config: FleetConfig, inventory: Inventory, validated: ValidatedRequest, *, resume: bool) -> SandboxRecord:
    """Create the sandbox's inventory record, or return the existing one when resuming.

    Raises:
        ConflictError: The sandbox exists and ``resume`` is false.
    """
    request = validated.request
    existing = inventory.find(request.name)
    if existing is not None:
        if resume:
            return existing
        raise ConflictError(
            f"sandbox {request.name!r} already exists (status {existing.status.value}); "
            f"use 'sandbox resume {request.name}'"
        )
    now = utcnow()
    cost = estimate_cost(config, request.source_env, request.overrides)
    return inventory.create(
        SandboxRecord(
            name=request.name,
            kind=request.kind,
            source_env=request.source_env,
            ticket=request.ticket,
            summary=request.summary,
            branch=validated.branch,
            owner=request.owner,
            lifecycle_id=uuid.uuid4().hex[:12],
            status=SandboxStatus.creating,
            created_at=now,
            expires_at=now + validated.ttl,
            keep=request.keep,
            overrides=dict(request.overrides),
            scale=cost.scale,
            hourly_cost=cost.hourly_cost,
            stages=[],
        )
    )


# -- shared helpers ----------------------------------------------------------


def minor_version_of(version: str | None) -> str | None:
    """``X.Y`` of a control-plane version as providers spell it (``1.31``, ``v1.31.2``, ``1.31-eks``)."""
    if not version:
        return None
    match = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    if match is None:
        raise InvalidInputError(f"invalid Kubernetes version {version!r}: expected X.Y")
    return f"{match.group(1)}.{match.group(2)}"


def ensure_checkout(ctx: SandboxContext) -> Path:
    """This sandbox's checkout of the fleet repo, cloned or fetched."""
    git = ctx.drivers.git
    if not (ctx.checkout / ".git").is_dir():
        if ctx.checkout.exists():
            shutil.rmtree(ctx.checkout)  # a clone interrupted half-way
        git.clone(ctx.config.remote_url, ctx.checkout)
    else:
        git.fetch(ctx.checkout)
    return ctx.checkout


def _on_branch(ctx: SandboxContext, branch: str) -> Path:
    """Check out the sandbox branch as the remote has it (discarding leftovers of a crash)."""
    repo = ensure_checkout(ctx)
    git = ctx.drivers.git
    if git.rev_parse(repo, f"refs/remotes/origin/{branch}") is None:
        raise PermanentError(f"branch {branch!r} is not on the fleet remote (was the clone stage run?)")
    git.checkout(repo, branch, start=f"origin/{branch}")
    git.reset_hard(repo, f"origin/{branch}")
    return repo


def cluster_module_outputs(ctx: SandboxContext) -> dict[str, TerraformOutput]:
    """The sandbox cluster module's outputs the cluster driver connects with (read once per context).

    The real driver needs the sensitive kubeconfig output, which is never stored:
    it is read from the sandbox's terraform state. The simulated driver needs only
    the public outputs the provision stage recorded, so no terraform runs for it.

    Raises:
        PermanentError: There is no ``cluster_endpoint`` output: the cluster was
            never provisioned (or the module does not describe one).
    """
    if ctx._cluster_outputs is None:
        record = ctx.record
        workdir = Path(record.terraform_workdir) if record.terraform_workdir else ctx.terraform_workdir
        if needs_cluster_credentials(ctx.config):
            outputs = ctx.drivers.terraform.outputs(workdir)
        else:
            recorded = {"cluster_endpoint": record.cluster_endpoint, "kubernetes_version": record.kubernetes_version}
            outputs = {name: TerraformOutput(value=value) for name, value in recorded.items() if value}
        if not public_outputs(outputs).get("cluster_endpoint"):
            raise PermanentError(
                f"sandbox {record.name} has no cluster: no cluster_endpoint output recorded or in the terraform "
                f"state in {workdir} (run the provision stage first)"
            )
        ctx._cluster_outputs = outputs
    return ctx._cluster_outputs


def cluster_for(ctx: SandboxContext) -> ClusterDriver:
    """The sandbox's cluster driver, connected from its cluster module's terraform outputs.

    See :func:`sandbox.wiring.connect_cluster`: the real driver reads the module's
    sensitive kubeconfig output, which is held in memory only.
    """
    if ctx._cluster is None:
        ctx._cluster = connect_cluster(ctx.config, cluster_module_outputs(ctx))
    return ctx._cluster


def cluster_kubeconfig(ctx: SandboxContext) -> str:
    """The sandbox's kubeconfig text (kubernetes driver), from its cluster module's outputs."""
    return kubeconfig_from_outputs(ctx.config, cluster_module_outputs(ctx))


def terraform_variables(ctx: SandboxContext, repo: Path | None = None) -> dict[str, Any]:
    """Variables for the sandbox's cluster module.

    The source environment's settings (so a performance sandbox cloned from
    production gets production's scale) -- fleet.yaml's, with what the fleet
    repository checkout ``repo`` records for the environment on top (what ``sandbox
    align`` merged, :func:`sandbox.align.recorded_variables`) -- the sandbox's name,
    and the user's overrides last.
    """
    from sandbox.align import recorded_variables

    env = ctx.config.environment(ctx.record.source_env)
    variables: dict[str, Any] = dict(env.terraform.variables)
    if repo is not None:
        variables.update(recorded_variables(repo, ctx.config, ctx.record.source_env))
    variables["cluster_name"] = ctx.record.name
    if ctx.config.drivers.cluster.type == "simulated":
        variables["simulation_dir"] = str(ctx.simulation_dir)
    variables.update(ctx.record.overrides)
    return variables


# -- stages ------------------------------------------------------------------


def provision(ctx: SandboxContext, *, on_plan: Callable[[PlanSummary], None] | None = None) -> StageResult:
    """Create the sandbox cluster with terraform (per-sandbox working dir and workspace).

    Args:
        ctx: The sandbox.
        on_plan: Shown the plan before it is applied (the Prefect task publishes it
            as an artifact); the plan is logged either way.
    """
    env = ctx.config.environment(ctx.record.source_env)
    repo = ensure_checkout(ctx)
    module_dir = fleetrepo.module_dir(repo, env.terraform.module)
    tf = ctx.drivers.terraform
    workdir = ctx.terraform_workdir
    tf.prepare(workdir, module_dir, workspace=ctx.record.name)
    variables = terraform_variables(ctx, repo)
    plan = tf.plan(workdir, variables)
    # Before anything is created: a module that cannot give the driver a cluster is refused now.
    check_cluster_module_outputs(ctx.config, plan.outputs)
    ctx.progress(f"terraform plan for {ctx.record.name}: {plan.summary_line()}")
    for line in plan.resource_lines():
        ctx.progress(f"  {line}")
    if on_plan is not None:
        on_plan(plan)
    outputs = tf.apply(workdir, variables, plan=plan)  # exactly the plan shown above
    public = cluster_outputs(ctx.config, outputs)
    ctx.inventory.update(
        ctx.record.name,
        terraform_workdir=str(workdir),
        terraform_workspace=ctx.record.name,
        cluster_endpoint=str(public.get("cluster_endpoint", "")),
        kubernetes_version=str(public.get("kubernetes_version", "")),
    )
    ctx.refresh()
    ctx._cluster_outputs, ctx._cluster = outputs, None
    version = cluster_for(ctx).server_version()  # smoke check: the API answers
    ctx.progress(f"cluster {ctx.record.name} is up (Kubernetes {version})")
    return StageResult(
        stage=Stage.provision,
        summary=f"cluster {ctx.record.name} provisioned ({plan.summary_line()}); Kubernetes {version}",
        details={"outputs": public, "plan": plan.summary_line(), "variables": sorted(variables)},
    )


def _object_selector(kind: str, name: str) -> Callable[[Any], bool]:
    def select(doc: Any) -> bool:
        return bool(doc.get("kind") == kind and (doc.get("metadata") or {}).get("name") == name)

    return select


def _apply_change(repo: Path, cluster_root: Path, change: SandboxChange) -> list[str]:
    """Make a change's scalar edits in the sandbox directory (idempotent); no file outside the checkout."""
    changed: list[str] = []
    for edit in change.edits:
        path = paths.inside(repo, cluster_root / edit.file)
        if not path.is_file():
            raise InvalidInputError(f"change: {edit.file} does not exist in the sandbox")
        text = path.read_text(encoding="utf-8")
        select = _object_selector(edit.kind, edit.name)
        if not any(isinstance(d, dict) and select(d) for d in yaml.safe_load_all(text)):
            raise InvalidInputError(f"change: no {edit.kind} {edit.name!r} in {edit.file}")
        new_text, edits = set_scalar(text, select, tuple(edit.path), edit.value, source=edit.file)
        path.write_text(new_text, encoding="utf-8")
        changed.extend(f"{edit.file}: {'.'.join(edit.path)} {e.old} -> {e.new}" for e in edits)
    return changed


def clone_into_checkout(
    repo: Path,
    *,
    source_env: str,
    name: str,
    retarget_from: str | None,
    retarget_to: str | None,
    progress: Progress = quiet,
) -> dict[str, Any]:
    """Copy ``clusters/<source_env>`` to ``clusters/<name>`` in a checkout and retarget its git sources.

    Returns:
        What was done: copied files, excluded files, retargeted sources.
    """
    source = repo / fleetrepo.cluster_dir(source_env)
    target = repo / fleetrepo.cluster_dir(name)
    report = fleetrepo.copy_cluster_dir(source, target, repo=repo)
    excluded = ", ".join(report.excluded) or "none"
    progress(f"copied {len(report.copied)} files from clusters/{source_env} (excluded: {excluded})")
    retargets = []
    if retarget_from and retarget_to:
        retargets = fleetrepo.retarget_git_sources(target, retarget_from, retarget_to, repo=repo)
        if retargets:
            for r in retargets:
                progress(f"retargeted GitRepository in {r.file}: {r.edit.old} -> {r.edit.new}")
        else:
            progress("no GitRepository tracks the default branch in this directory; nothing to retarget")
    return {
        "copied": report.copied,
        "excluded": report.excluded,
        "retargeted": [f"{r.file}: {r.edit.old} -> {r.edit.new}" for r in retargets],
    }


def clone(ctx: SandboxContext, change: SandboxChange | None = None) -> StageResult:
    """Branch, copy the source's cluster directory (no gotk-sync.yaml), retarget, commit, push."""
    record = ctx.record
    branch = record.branch or ""
    default = ctx.config.fleet_repo.default_branch
    git = ctx.drivers.git
    repo = ensure_checkout(ctx)
    if git.rev_parse(repo, f"refs/remotes/origin/{branch}") is not None:
        # The branch was pushed by an earlier attempt that crashed before the
        # inventory heard of it: the clone is done.
        _on_branch(ctx, branch)
        if not (repo / ctx.sandbox_path).is_dir():
            raise ConflictError(f"branch {branch!r} exists on the remote without {ctx.sandbox_path}/")
        head = git.rev_parse(repo, "HEAD")
        return StageResult(
            stage=Stage.clone,
            summary=f"branch {branch} already on the remote",
            details={"branch": branch, "commit": head},
        )
    if git.rev_parse(repo, f"refs/remotes/origin/{default}") is None:
        raise PermanentError(f"default branch {default!r} not found on the fleet remote")
    git.checkout(repo, branch, start=f"origin/{default}")
    git.reset_hard(repo, f"origin/{default}")  # drop a half-made copy from a crash
    target = repo / ctx.sandbox_path
    if git.list_tree(repo, f"origin/{default}", ctx.sandbox_path):
        raise ConflictError(f"{ctx.sandbox_path}/ already exists on {default}; pick another sandbox name")
    if target.exists():
        shutil.rmtree(target)  # untracked files of a copy a crash interrupted (reset --hard keeps them)
    platform = record.kind is SandboxKind.platform
    details = clone_into_checkout(
        repo,
        source_env=record.source_env,
        name=record.name,
        retarget_from=default if platform else None,
        retarget_to=branch if platform else None,
        progress=ctx.progress,
    )
    who = f"{record.ticket}: " if record.ticket else ""
    git.commit_all(repo, f"{who}clone clusters/{record.source_env} into {ctx.sandbox_path}", [ctx.sandbox_path])
    if change and change.edits:
        details["change"] = _apply_change(repo, target, change)
        git.commit_all(repo, f"{who}{change.message}", [ctx.sandbox_path])
        for line in details["change"]:
            ctx.progress(f"change: {line}")
    git.push(repo, branch)
    details["branch"] = branch
    details["commit"] = git.rev_parse(repo, "HEAD")
    return StageResult(
        stage=Stage.clone,
        summary=f"clusters/{record.source_env} cloned into {ctx.sandbox_path} on branch {branch}",
        details=details,
    )


def bootstrap(ctx: SandboxContext) -> StageResult:
    """Write the sandbox's gotk-sync.yaml, push it, and install Flux and the sync on the cluster."""
    record = ctx.record
    branch = record.branch or ""
    git = ctx.drivers.git
    repo = _on_branch(ctx, branch)
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
        cluster_for(ctx),
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


def scan_paths(ctx: SandboxContext, repo: Path) -> list[Path]:
    """The sandbox's cluster directory and every repo path its Flux Kustomizations build (transitively).

    See :func:`sandbox.validation.plan_scan`; the paths do not overlap.
    """
    plan = validation.plan_scan(
        repo, ctx.sandbox_path, repo_urls={validation.normalize_git_url(url) for url in ctx.config.fleet_urls}
    )
    return [repo / root for root in plan.roots]


def validation_report(ctx: SandboxContext) -> ValidationReport:
    """Validate the sandbox's branch head and cluster; the report, whatever the verdict.

    Static scan of :func:`scan_paths` at the sandbox's control-plane version and the
    configured Flux version, the fleet policy on the branch, then live readiness (see
    :mod:`sandbox.validation`).
    """
    record = ctx.record
    branch = record.branch or ""
    repo = _on_branch(ctx, branch)
    git = ctx.drivers.git
    default = ctx.config.fleet_repo.default_branch
    base = git.merge_base(repo, f"origin/{default}", "HEAD")
    settings = ctx.config.validation
    inputs = ValidationInputs(
        sandbox=record.name,
        sandbox_dir=ctx.sandbox_path,
        branch=branch,
        commit=git.rev_parse(repo, "HEAD"),
        k8s_version=minor_version_of(record.kubernetes_version),
        flux_version=settings.flux_version,
        extra_data=[ctx.config.path(p) for p in settings.extra_deprecation_data],
        repo_urls={validation.normalize_git_url(url) for url in ctx.config.fleet_urls},
        changed_files=git.changed_files(repo, base, "HEAD", "."),
        ready_timeout=ctx.config.drivers.cluster.ready_timeout_seconds,
    )
    if record.kind is SandboxKind.platform:
        # Performance sandboxes run production's own applications; platform sandboxes get the teams' stacks.
        inputs.application_stacks = appstacks.manifests_for(ctx.config, ctx.secrets.application_stack_tokens)
        inputs.application_stack_paths = appstacks.fleet_repo_paths(ctx.config)
    return validation.validate_checkout(repo, ctx.config, inputs, lambda: cluster_for(ctx), ctx.progress)


def validate(ctx: SandboxContext) -> StageResult:
    """Static scan for removed APIs, fleet policy, then live readiness of every Flux object.

    Raises:
        ValidationFailedError: Carrying the report; one line per cause in its message.
    """
    report = validation_report(ctx)
    if not report.passed:
        raise ValidationFailedError(report)
    return validation.stage_result(report)


def performance_test(
    ctx: SandboxContext, *, scenario: str | None = None, overrides: LoadOverrides | None = None
) -> StageResult:
    """Run a load scenario and compare it with the scenario's baseline (see :mod:`sandbox.perf.run`).

    Args:
        ctx: The sandbox.
        scenario: Scenario name (``performance.default_scenario`` when ``None``).
        overrides: Per-run changes to the scenario's settings.
    """
    from sandbox.perf.run import run_performance_test

    return run_performance_test(ctx, scenario=scenario, overrides=overrides)


#: Objects a teardown deleted and waits for, kept beside the sandbox's state so
#: a rerun (after a crash or a blocked tier) waits for them before anything else.
TEARDOWN_PENDING_FILE = "teardown-pending.json"


def _pending_path(ctx: SandboxContext) -> Path:
    return ctx.state_dir / TEARDOWN_PENDING_FILE


def read_teardown_pending(ctx: SandboxContext) -> list[ObjectRef]:
    """What an earlier teardown attempt deleted and was still waiting for (empty if none)."""
    path = _pending_path(ctx)
    if not path.is_file():
        return []
    try:
        return [ObjectRef(**item) for item in json.loads(path.read_text(encoding="utf-8"))]
    except (ValueError, TypeError) as exc:
        raise PermanentError(f"{path} is not a list of objects: {exc}") from None


def _write_teardown_pending(ctx: SandboxContext, refs: list[ObjectRef]) -> None:
    path = _pending_path(ctx)
    if not refs:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([dataclasses.asdict(r) for r in refs], indent=2), encoding="utf-8")
    tmp.replace(path)


def teardown(ctx: SandboxContext, *, force: bool = False) -> StageResult:
    """Ordered teardown of the cluster's Flux objects, then ``terraform destroy``.

    Idempotent: a rerun waits for what an earlier attempt left terminating, deletes
    the tiers still there and destroys whatever state remains. Pending finalizers
    stop it (status ``teardown-blocked``, infrastructure untouched) unless ``force``.
    """
    record = ctx.record
    if record.name in ctx.config.protected_names():
        raise ProtectedEnvironmentError(f"{record.name!r} is a long-lived environment; it is never torn down")
    ctx.inventory.update(record.name, status=SandboxStatus.tearing_down)
    details: dict[str, Any] = {"forced": force}
    workdir = Path(record.terraform_workdir) if record.terraform_workdir else ctx.terraform_workdir
    tf = ctx.drivers.terraform
    cluster_exists = bool(record.cluster_endpoint) and (
        ctx.config.drivers.cluster.type != "simulated" or ctx.simulation_dir.is_dir()
    )
    done: list[str] = []
    if cluster_exists:
        try:
            report = teardown_cluster(
                cluster_for(ctx),
                timeout_per_tier=ctx.config.drivers.cluster.teardown_timeout_seconds,
                force=force,
                reason=f"fleet-sandbox teardown of {record.name}",
                progress=ctx.progress,
                pending=read_teardown_pending(ctx),
                on_tracked=lambda refs: _write_teardown_pending(ctx, refs),
            )
        except TeardownBlockedError as exc:
            message = f"{exc}; the infrastructure was not destroyed (rerun once they clear, or use --force)"
            ctx.inventory.update(record.name, status=SandboxStatus.teardown_blocked, last_error=message)
            raise TeardownBlockedError(message) from None
        details["tiers"] = report.tiers
        details["placements"] = report.placements  # which rule put each object in its tier
        details["blocked"] = report.blocked
        # Deleted explicitly because Flux would have left them; volumes kept by their Retain policy.
        details["orphans"] = report.orphans
        details["kept_volumes"] = report.kept_volumes
        if report.tiers:
            done.append("tiers " + " -> ".join(f"{tier} ({len(refs)})" for tier, refs in report.tiers))
        if report.blocked:
            done.append(f"forced past pending finalizers on {'; '.join(report.blocked)}")
        if report.kept_volumes:
            done.append(f"volumes kept by their reclaim policy: {', '.join(report.kept_volumes)}")
    else:
        ctx.progress("no cluster to empty (never provisioned or already gone)")
    if (workdir / ".terraform").is_dir() and tf.has_state(workdir, record.terraform_workspace or record.name):
        variables = terraform_variables(ctx)
        if force:
            # Like an S3 bucket's force_destroy, the module only honours the
            # flag once it is in the state: apply it, then destroy.
            variables["force_destroy"] = True
            tf.apply(workdir, variables)
        tf.destroy(workdir, variables)
        ctx.progress(f"terraform destroy of {record.name}: done")
        details["destroyed"] = True
        done.append("terraform state destroyed")
    else:
        ctx.progress("terraform state is empty: nothing to destroy")
        details["destroyed"] = False
    _write_teardown_pending(ctx, [])
    ctx.inventory.update(record.name, status=SandboxStatus.destroyed, forced_destroy=force or record.forced_destroy)
    return StageResult(
        stage=Stage.teardown,
        summary=f"{record.name} torn down{' (forced)' if force else ''}: {'; '.join(done) or 'nothing left to do'}",
        details=details,
    )


class PromotionRefusedError(PermanentError):
    """The sandbox may not be promoted (yet): not validated or not torn down."""


#: The long-lived environment platform sandboxes are promoted back to.
PROMOTION_TARGET = "development"

#: How much of the unified diff a pull request body quotes at most.
PR_DIFF_LIMIT = 6000


def development_dir(config: FleetConfig) -> str:
    """The repository path of development's cluster directory (``clusters/development``)."""
    env = config.environments.get(PROMOTION_TARGET)
    return env.cluster_dir.strip("/") if env else fleetrepo.cluster_dir(PROMOTION_TARGET)


def check_promotable(ctx: SandboxContext) -> None:
    """Refuse a promotion before validation passed and teardown finished.

    Raises:
        PromotionRefusedError: Naming what is missing.
    """
    record = ctx.record
    validation = ctx.inventory.stage_result(record.name, record.lifecycle_id, Stage.validate)
    if not validation or not (validation.get("details") or {}).get("passed"):
        raise PromotionRefusedError(
            f"{record.name} has not passed validation; nothing promoted (run 'sandbox validate {record.name}')"
        )
    torn_down = ctx.inventory.stage_result(record.name, record.lifecycle_id, Stage.teardown)
    if torn_down is None and record.status is not SandboxStatus.destroyed:
        raise PromotionRefusedError(
            f"{record.name} is not torn down yet (status {record.status.value}); nothing promoted "
            f"(run 'sandbox destroy {record.name}' first)"
        )


def promote(ctx: SandboxContext) -> StageResult:
    """Copy the sandbox back to development (no gotk-sync.yaml), push, open a pull request.

    Refused, with nothing pushed, before validation passed and teardown finished,
    and when development changed on the default branch since the sandbox was cut
    in files the promotion also changes (each listed). Idempotent: a rerun after a
    crash pushes what was committed and finds the open pull request.

    Raises:
        PromotionRefusedError: Not validated or not torn down.
        ConflictError: Development changed in the same files since the cut.
    """
    record = ctx.record
    if record.kind is SandboxKind.performance:
        return StageResult(
            stage=Stage.promote, summary="performance sandboxes are never promoted", details={"skipped": True}
        )
    check_promotable(ctx)
    branch = record.branch or ""
    default = ctx.config.fleet_repo.default_branch
    git = ctx.drivers.git
    repo = _on_branch(ctx, branch)
    development = development_dir(ctx.config)
    sandbox_root = repo / ctx.sandbox_path
    base = git.merge_base(repo, f"origin/{default}", "HEAD")
    details: dict[str, Any] = {"base": base}
    if sandbox_root.is_dir():
        # Both directories are checked before anything changes: a link leading out of the checkout is refused.
        paths.entries(repo, sandbox_root)
        paths.entries(repo, development)
        fleetrepo.retarget_git_sources(sandbox_root, branch, default, repo=repo)  # development tracks main again
        report = fleetrepo.promote_cluster_dir(sandbox_root, repo / development, repo=repo)
        who = f"{record.ticket}: " if record.ticket else ""
        commit = git.commit_all(repo, f"{who}promote {record.name} to development", [development, ctx.sandbox_path])
        details.update(changed=report.copied, removed=report.removed)
    else:
        # Committed by an earlier attempt that crashed before the pull request.
        commit = git.rev_parse(repo, "HEAD")
        details["promoted"] = "earlier"
    # What the promotion changes in development since the cut, against what
    # development changed on the default branch meanwhile.
    ours = set(git.changed_files(repo, base, "HEAD", development))
    theirs = set(git.changed_files(repo, base, f"origin/{default}", development))
    conflicts = sorted(fleetrepo.relative_paths(ours & theirs, development))
    if conflicts:
        git.reset_hard(repo, f"origin/{branch}")  # drop the local promotion commit: nothing is pushed
        raise ConflictError(
            f"development changed on {default} since {record.name} was cut in files the sandbox also changed: "
            f"{', '.join(conflicts)}; nothing pushed (bring the change into the sandbox and validate again)"
        )
    git.push(repo, branch)
    details["commit"] = commit
    stats = git.diff_stat(repo, base, "HEAD", development)
    ctx.progress(f"promotion commit {commit} pushed to {branch}: {len(stats)} file(s) changed in {development}/")
    if not stats:
        ctx.progress(f"{record.name} changed nothing in {development}/: no pull request to open")
        return StageResult(
            stage=Stage.promote,
            summary=f"{record.name} changed nothing in {development}/; branch {branch} pushed, no pull request",
            details={**details, "pull_request": None},
        )
    body = pull_request_body(ctx, development, stats, git.diff(repo, base, "HEAD", development))
    return _open_pull_request(ctx, branch, default, body, details)


def _percent(value: Any) -> str:
    try:
        return f"{float(value):+.1f}%"
    except (TypeError, ValueError):
        return str(value)


def pull_request_body(ctx: SandboxContext, development: str, stats: list[Any], diff: str) -> str:
    """The pull request's description: the diff of development, the validation, the performance comparison."""
    record = ctx.record
    validation = ctx.inventory.stage_result(record.name, record.lifecycle_id, Stage.validate) or {}
    perf = ctx.inventory.stage_result(record.name, record.lifecycle_id, Stage.performance_test) or {}
    added = sum(s.added for s in stats)
    removed = sum(s.removed for s in stats)
    prefix = development.rstrip("/") + "/"
    lines = [
        f"Promotes sandbox `{record.name}` ({record.ticket}: {record.summary}) back to `{prefix}`.",
        "",
        f"### Changes in `{prefix}`",
        f"{len(stats)} file(s) changed, +{added} -{removed} lines:",
        "",
        *(
            f"- `{s.path.removeprefix(prefix)}`: " + ("binary" if s.binary else f"+{s.added} -{s.removed}")
            for s in stats
        ),
        "",
        f"`{fleetrepo.SYNC_FILE}` is never copied back: development keeps its own.",
        "",
        "<details><summary>diff</summary>",
        "",
        "```diff",
        diff if len(diff) <= PR_DIFF_LIMIT else diff[:PR_DIFF_LIMIT] + "\n… (diff truncated)",
        "```",
        "</details>",
        "",
        "### Validation",
        ("passed: " if (validation.get("details") or {}).get("passed") else "")
        + str(validation.get("summary", "not run")),
        "",
        "### Performance",
        str(perf.get("summary", "not run")),
    ]
    changes = (perf.get("details") or {}).get("change_percent") or {}
    if changes:
        lines += ["", "| metric | change against the baseline |", "|---|---|"]
        lines += [f"| {metric} | {_percent(value)} |" for metric, value in changes.items()]
    elif perf:
        lines += ["", "No baseline to compare with yet."]
    return "\n".join(lines) + "\n"


def _open_pull_request(ctx: SandboxContext, branch: str, base: str, body: str, details: dict[str, Any]) -> StageResult:
    record = ctx.record
    pr = ctx.drivers.hosting.open_pull_request(
        head=branch, base=base, title=f"{record.ticket}: {record.summary}", body=body
    )
    ctx.inventory.update(record.name, pull_request_url=pr.url)
    if pr.manual:
        ctx.progress(f"no git-hosting token: open the pull request {branch} -> {base} at {pr.url}")
        summary = f"pull request {branch} -> {base} to open at {pr.url} (no git-hosting token)"
    else:
        ctx.progress(f"pull request #{pr.number}{'' if pr.created else ' (already open)'}: {pr.url}")
        summary = f"pull request #{pr.number} {branch} -> {base}: {pr.url}"
    return StageResult(
        stage=Stage.promote,
        summary=summary,
        details={**details, "pull_request": pr.model_dump()},
    )


#: The stage functions by stage, for callers that run them generically.
STAGE_FUNCTIONS: dict[Stage, Callable[..., StageResult]] = {
    Stage.provision: provision,
    Stage.clone: clone,
    Stage.bootstrap: bootstrap,
    Stage.validate: validate,
    Stage.performance_test: performance_test,
    Stage.teardown: teardown,
    Stage.promote: promote,
}


# -- the clone step alone, on a local checkout (``sandbox clone``) -------------


@dataclass(frozen=True)
class LocalCloneResult:
    """What ``clone_local_checkout`` did."""

    branch: str
    commit: str | None
    noop: bool
    details: dict[str, Any]


def clone_local_checkout(
    git: Any,
    repo: Path,
    *,
    source_env: str,
    name: str,
    branch: str | None,
    default_branch: str,
    environments: list[str],
    protected: set[str],
    ticket_pattern: str,
    progress: Progress = quiet,
) -> LocalCloneResult:
    """The clone stage on a checkout the user already has.

    With ``branch`` (a platform-change sandbox): ``branch`` is created from the
    default branch and the copy's GitRepository is retargeted to it. Without it
    (a performance sandbox): the copy keeps the source's version tracking and is
    committed on the current branch, or on ``perf-<name>`` when the current
    branch is the default one, which is never moved.

    Raises:
        InvalidInputError: Unknown environment, invalid name or branch.
        ConflictError: The target directory exists with other content.

    Args:
        protected: Names that are never a sandbox (long-lived environments).
    """
    from sandbox.naming import validate_branch

    validate_sandbox_name(name, protected | {"flux-system"})
    if source_env not in environments:
        raise InvalidInputError(f"unknown environment {source_env!r} (found: {', '.join(environments)})")
    if branch is not None:
        validate_branch(branch, ticket_pattern)
    if git.rev_parse(repo, default_branch) is None:
        raise InvalidInputError(f"default branch {default_branch!r} not found in {repo}")
    target_rel = fleetrepo.cluster_dir(name)
    current = git.current_branch(repo)
    if branch is not None:
        work_branch = branch
        start = default_branch
    else:
        work_branch = current if current != default_branch else f"perf-{name}"
        start = current
    retarget_to = branch
    source_rel = fleetrepo.cluster_dir(source_env)
    paths.entries(repo, source_rel)  # refused before anything changes when it leads outside the checkout
    # Render what the clone would produce, so an existing identical target is a no-op. The
    # scratch copy keeps the repository's layout, so links that stay inside it still do.
    with tempfile_dir() as scratch:
        shutil.copytree(repo / source_rel, scratch / source_rel, symlinks=True)
        expected = scratch / target_rel
        fleetrepo.copy_cluster_dir(scratch / source_rel, expected, repo=scratch)
        if retarget_to:
            fleetrepo.retarget_git_sources(expected, default_branch, retarget_to, repo=scratch)
        created = git.rev_parse(repo, f"refs/heads/{work_branch}") is None
        git.checkout(repo, work_branch, start=start)
        target = repo / target_rel
        if target.exists():
            matches = fleetrepo.sandbox_copy_matches(expected, target, repo=repo, source_repo=scratch)
            if matches and not (target / fleetrepo.SYNC_FILE).exists():
                progress(f"{target_rel}/ already holds this clone; nothing to do")
                return LocalCloneResult(work_branch, git.rev_parse(repo, "HEAD"), True, {})
            if created:  # leave nothing half-done: no new branch behind a refusal
                git.checkout(repo, current)
                git.delete_branch(repo, work_branch)
            raise ConflictError(f"{target_rel}/ already exists with different content")
    details = clone_into_checkout(
        repo,
        source_env=source_env,
        name=name,
        retarget_from=default_branch if retarget_to else None,
        retarget_to=retarget_to,
        progress=progress,
    )
    commit = git.commit_all(repo, f"clone clusters/{source_env} into {target_rel}", [target_rel])
    return LocalCloneResult(work_branch, commit, False, details)


def tempfile_dir() -> Any:
    """A temporary directory as a ``Path`` context manager."""
    import contextlib
    import tempfile

    @contextlib.contextmanager
    def manager() -> Any:
        with tempfile.TemporaryDirectory(prefix="fleet-sandbox-") as raw:
            yield Path(raw)

    return manager()
