"""Checks made before a new sandbox exists, so bad input and broken surroundings create nothing.

Two kinds, both run by the lifecycle flow before it registers the sandbox:

* :func:`check_request` — the request itself (names, environments, TTL, ticket,
  overrides): :class:`~sandbox.errors.InvalidInputError`, CLI exit 2. The CLI runs
  it too, before it starts a flow run.
* :func:`preflight` — the surroundings the first stages need: the ``terraform``
  and ``git`` executables, a fleet remote that answers and accepts our
  credentials, and a fleet repository whose source environment, cluster module
  and YAML are usable. Broken tools and remotes are failed operations (exit 1);
  an unusable repository is invalid input (:class:`FleetRepoError`, exit 2).

Neither writes anything: the repository is inspected in a temporary clone.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from sandbox import bounded, fleetrepo, paths, validation
from sandbox.config import FleetConfig
from sandbox.drivers.git import GitDriver
from sandbox.errors import ConflictError, InvalidInputError, PermanentError, SandboxError, ToolNotFoundError
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.paths import OutsideRepositoryError
from sandbox.progress import Progress, quiet
from sandbox.redaction import redact_url
from sandbox.stages.register import ValidatedRequest, validate_request

#: Terraform variables fleet-sandbox sets itself: an override would break the sandbox.
RESERVED_VARIABLES = frozenset({"cluster_name", "simulation_dir"})

_MAJOR_MINOR = re.compile(r"[0-9]+\.[0-9]+")

#: A terraform ``variable "NAME" {`` declaration at the start of a line.
_VARIABLE = re.compile(r'^[ \t]*variable[ \t]+"([^"\n]+)"', re.MULTILINE)


class FleetRepoError(InvalidInputError):
    """The fleet repository's content cannot make a sandbox (no clusters/, malformed YAML, no module)."""


class PreflightError(PermanentError):
    """A tool or outside system the first stages need is missing or refuses us."""


def _check_kubernetes_version(key: str, value: str) -> None:
    if not _MAJOR_MINOR.fullmatch(value.strip()):
        raise InvalidInputError(f"invalid Kubernetes version {value!r} in override {key}: use MAJOR.MINOR, e.g. 1.31")


def _check_node_count(key: str, value: str) -> None:
    if not value.strip().isdigit() or int(value) < 1:
        raise InvalidInputError(f"invalid override {key}={value!r}: a whole number of at least 1")


#: Value checks of the overrides every cluster module takes (others are the module's business).
OVERRIDE_CHECKS: dict[str, Callable[[str, str], None]] = {
    "kubernetes_version": _check_kubernetes_version,
    "node_count": _check_node_count,
}


def check_request(config: FleetConfig, request: LifecycleRequest) -> ValidatedRequest:
    """:func:`~sandbox.stages.register.validate_request`, plus the values terraform would refuse only later.

    Raises:
        InvalidInputError: Naming the first problem found.
    """
    if request.ttl is not None and not request.ttl.strip():
        raise InvalidInputError("invalid duration '': give a TTL such as 72h, or leave --ttl out for the default")
    validated = validate_request(config, request)
    for key, value in request.overrides.items():
        if key in RESERVED_VARIABLES:
            raise InvalidInputError(f"override {key!r} is set by fleet-sandbox itself and cannot be overridden")
        check = OVERRIDE_CHECKS.get(key)
        if check is not None:
            check(key, str(value))
    return validated


def _tool(binary: str, setting: str) -> None:
    if shutil.which(binary) is None:
        raise ToolNotFoundError(f"{binary} is not installed or not on PATH (setting {setting})")


def _first_malformed_yaml(repo: Path, roots: list[str], max_bytes: int) -> str | None:
    """The first YAML file under ``roots`` that does not parse, described (``None`` when all do).

    Raises:
        OutsideRepositoryError: A root, or a link below one, leads outside the checkout.
    """
    for root in roots:
        target = paths.inside(repo, root)
        files = [target] if target.is_file() else list(paths.entries(repo, root).values())
        for path in files:
            if path.suffix not in fleetrepo.YAML_SUFFIXES or not path.is_file():
                continue
            try:
                list(yaml.safe_load_all(bounded.read_bounded(path, max_bytes).decode("utf-8")))
            except bounded.FileRefusedError:
                continue  # not read here; the validate stage lists it as skipped, with the reason
            except UnicodeDecodeError:
                return f"{path.relative_to(repo)}: not UTF-8 text"
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f" line {mark.line + 1}" if mark is not None else ""
                problem = getattr(exc, "problem", None) or "invalid YAML"
                return f"{path.relative_to(repo)}:{where}: malformed YAML: {problem}"
    return None


def module_variables(module: Path) -> set[str]:
    """The variables a terraform module declares (``variable "NAME"`` in its ``.tf`` files)."""
    found: set[str] = set()
    for tf in sorted(module.glob("*.tf")):
        if tf.is_file():
            found.update(_VARIABLE.findall(tf.read_text(encoding="utf-8", errors="replace")))
    return found


def check_overrides(module_path: str, module: Path, overrides: dict[str, str]) -> None:
    """Refuse an override the cluster module does not declare (a typo terraform would silently ignore).

    Raises:
        InvalidInputError: Naming the unknown key and the variables the module takes.
    """
    known = module_variables(module)
    for key in overrides:
        if key not in known:
            settable = sorted(known - RESERVED_VARIABLES)
            raise InvalidInputError(
                f"unknown override {key!r}: the terraform module {module_path} takes "
                f"{', '.join(settable) or 'no variables'}"
            )


def check_collisions(
    config: FleetConfig,
    repo: Path,
    *,
    name: str,
    branch: str,
    remote_branches: set[str],
    branches_in_use: dict[str, str],
) -> None:
    """Refuse a new sandbox whose branch or directory someone else already has (before anything is created).

    Args:
        repo: A checkout of the default branch.
        name: The new sandbox's name.
        branch: The branch it would push.
        remote_branches: The fleet remote's branches.
        branches_in_use: Branch -> sandbox name, for the inventory's sandboxes not destroyed.

    Raises:
        ConflictError: The branch is another sandbox's or already on the remote, or
            ``clusters/<name>/`` already exists on the default branch.
    """
    owner = branches_in_use.get(branch)
    if owner is not None and owner != name:
        raise ConflictError(f"branch {branch!r} belongs to sandbox {owner!r}; choose another --ticket or --summary")
    if branch in remote_branches:
        raise ConflictError(
            f"branch {branch!r} already exists on the fleet remote; choose another --ticket or --summary"
        )
    target = fleetrepo.cluster_dir(name)
    if paths.inside(repo, target).exists():
        raise ConflictError(
            f"{target}/ already exists on {config.fleet_repo.default_branch} of the fleet repository; "
            "choose another sandbox name"
        )


def check_checkout(
    config: FleetConfig, repo: Path, source_env: str, overrides: dict[str, str] | None = None
) -> list[str]:
    """What a sandbox cloned from ``source_env`` needs in a checkout of the default branch.

    Returns:
        The repository paths checked.

    Raises:
        FleetRepoError: No ``clusters/``, no directory for the environment, no
            cluster module, or a malformed YAML file in what the environment builds.
        OutsideRepositoryError: A symbolic link in what the sandbox would read (the
            environment's directory, what it builds, the module) leads outside the
            repository (nothing would be copied, applied or pushed from outside).
    """
    env = config.environment(source_env)
    try:
        fleetrepo.discover_environments(repo)
    except OutsideRepositoryError:
        raise
    except InvalidInputError:
        raise FleetRepoError(
            f"the fleet repository has no {fleetrepo.CLUSTERS_DIR}/ directory on "
            f"{config.fleet_repo.default_branch}: not a fleet repository"
        ) from None
    cluster_path = env.cluster_dir.strip("/")
    if not paths.inside(repo, cluster_path).is_dir():
        raise FleetRepoError(
            f"environment {source_env!r} has no directory {cluster_path}/ in the fleet repository "
            f"({config.fleet_repo.default_branch})"
        )
    try:
        module = fleetrepo.module_dir(repo, env.terraform.module)
    except OutsideRepositoryError:
        raise
    except InvalidInputError:
        module = None
    if module is None or not any(p.suffix == ".tf" for p in module.iterdir()):
        raise FleetRepoError(f"terraform module {env.terraform.module!r} not found in the fleet repository")
    check_overrides(env.terraform.module, module, dict(overrides or {}))
    limit = config.validation.max_file_bytes
    plan = validation.plan_scan(
        repo,
        cluster_path,
        repo_urls={validation.normalize_git_url(url) for url in config.fleet_urls},
        max_file_bytes=limit,
    )
    roots = plan.roots or [cluster_path]
    problem = _first_malformed_yaml(repo, roots, limit)
    if problem is not None:
        raise FleetRepoError(f"fleet repository: {problem}")
    return roots


def preflight(
    config: FleetConfig,
    request: LifecycleRequest,
    git: GitDriver,
    progress: Progress | None = None,
    branches_in_use: dict[str, str] | None = None,
) -> None:
    """Check the surroundings a new sandbox needs before anything is created.

    Raises:
        ToolNotFoundError: terraform or git is missing (exit 1).
        PreflightError: The fleet remote cannot be read (unreachable, credentials rejected) (exit 1).
        FleetRepoError: The repository cannot make this sandbox: no default branch, no
            ``clusters/``, no environment directory or module, malformed YAML (exit 2).
        InvalidInputError: An override the cluster module does not declare (exit 2).
        ConflictError: The sandbox's branch is another sandbox's or already on the
            remote, or its directory already exists (exit 1): refused before terraform
            creates anything.
    """
    say = progress or quiet
    branch = validate_request(config, request).branch
    _tool(config.drivers.terraform.binary, "drivers.terraform.binary")
    _tool(config.drivers.git.binary, "drivers.git.binary")
    remote = config.remote_url
    shown = redact_url(remote)
    default = config.fleet_repo.default_branch
    try:
        branches = git.remote_branches(remote)
    except SandboxError as exc:
        raise PreflightError(f"the fleet remote {shown} cannot be read: {exc}") from None
    if default not in branches:
        raise FleetRepoError(f"the fleet remote {shown} has no branch {default!r} (fleet_repo.default_branch)")
    with tempfile.TemporaryDirectory(prefix="fleet-sandbox-preflight-") as scratch:
        checkout = Path(scratch) / "repo"
        try:
            git.clone(remote, checkout)
            git.checkout(checkout, default, start=f"origin/{default}")
        except SandboxError as exc:
            raise PreflightError(f"the fleet remote {shown} cannot be cloned: {exc}") from None
        roots = check_checkout(config, checkout, request.source_env, dict(request.overrides))
        check_collisions(
            config,
            checkout,
            name=request.name,
            branch=branch,
            remote_branches=set(branches),
            branches_in_use=branches_in_use or {},
        )
    say(f"preflight: terraform and git found; {shown} answers; {', '.join(roots)} usable on {default}")
