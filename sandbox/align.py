"""Align a long-lived environment's infrastructure with a promoted sandbox (``sandbox align ENV``).

The seed, after a sandbox's state is merged: "adjust any infrastructure as code
values for the development cluster to align it to the sandbox. These must be
non-destructive changes." The sandbox's terraform variable overrides (e.g. a
newer ``kubernetes_version``) are recorded on its inventory record when it is
created; promotion opens the pull request. Aligning then:

1. picks the promotion (the named sandbox, or the newest promoted one);
2. checks out the fleet repository's default branch and prepares the
   environment's own terraform working directory
   (``<state_dir>/environments/<env>/terraform``) in the environment's own
   workspace (``terraform.workspace`` in fleet.yaml, default: the environment's
   name) -- never a sandbox's, never another environment's;
3. plans the environment's variables with the overrides on top (names that
   identify a sandbox's cluster, such as ``cluster_name``, are not carried);
4. applies that saved plan only when it destroys and replaces nothing, or when
   the caller approved it; otherwise raises :class:`AlignRefusedError` naming
   every resource the plan would destroy or replace.

5. records the applied values in fleet.yaml under the environment's
   ``terraform.variables`` (a round-trip edit of those keys only), so new
   sandboxes cloned from the environment and later alignments start from what
   the environment runs -- a later promotion's overrides never silently revert
   an earlier one's.

Aligning never creates an environment (no state → refused) and never runs
``terraform destroy``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sandbox import fleetrepo
from sandbox.config import FleetConfig
from sandbox.drivers.git import GitDriver
from sandbox.drivers.terraform import PlanSummary, TerraformDriver, public_outputs
from sandbox.errors import InvalidInputError, PermanentError, SandboxError
from sandbox.inventory import Inventory
from sandbox.models import SandboxKind, Stage
from sandbox.progress import Progress, quiet

#: Variables that name or locate one cluster rather than configure it: a
#: sandbox's values for them are never carried to a long-lived environment.
IDENTITY_VARIABLES: frozenset[str] = frozenset({"cluster_name", "simulation_dir", "force_destroy"})


class AlignRefusedError(PermanentError):
    """The alignment plan destroys or replaces resources and was not approved (nothing applied)."""


class Promotion(BaseModel):
    """A promoted sandbox and the infrastructure overrides it ran with."""

    sandbox: str = Field(description="The promoted sandbox")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Its terraform variable overrides")
    pull_request: int | None = Field(default=None, description="Number of the promotion's pull request")
    pull_request_url: str | None = Field(default=None, description="The promotion's pull request")


class AlignResult(BaseModel):
    """What an alignment did (plain data: a flow result, never a secret)."""

    environment: str = Field(description="The long-lived environment aligned")
    workspace: str | None = Field(default=None, description="Its terraform workspace")
    sandbox: str | None = Field(default=None, description="The promoted sandbox whose overrides were used")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Overrides planned for the environment")
    skipped: list[str] = Field(default_factory=list, description="Overrides not carried (they name a sandbox)")
    status: Literal["applied", "unchanged", "nothing-to-align"] = Field(description="Outcome")
    approved: bool = Field(default=False, description="Destructive changes were approved")
    plan: str | None = Field(default=None, description="Terraform's plan summary line")
    resources: list[str] = Field(default_factory=list, description="'<action>: <address>' per planned change")
    outputs: dict[str, Any] = Field(default_factory=dict, description="Non-sensitive outputs after the apply")
    record_in_config: dict[str, Any] = Field(
        default_factory=dict, description="Values that differ from fleet.yaml's terraform.variables of the environment"
    )
    config_updated: bool = Field(default=False, description="fleet.yaml now records record_in_config")
    message: str = Field(default="", description="One line for people")

    def lines(self) -> list[str]:
        """What the CLI prints."""
        out = [self.message]
        if self.plan:
            out.append(f"  {self.plan}")
            out.extend(f"    {line}" for line in self.resources)
        if self.skipped:
            out.append(f"  not carried (they identify the sandbox's cluster): {', '.join(self.skipped)}")
        if self.record_in_config:
            values = ", ".join(f"{k}: {v!r}" for k, v in self.record_in_config.items())
            where = f"environments.{self.environment}.terraform.variables"
            if self.config_updated:
                out.append(f"  recorded in fleet.yaml ({where}): {values}")
            elif self.status == "applied":
                out.append(f"  record in fleet.yaml ({where}) so new sandboxes and later plans keep them: {values}")
        return out


# -- where an environment's terraform lives --------------------------------------


def environment_dir(config: FleetConfig, environment: str) -> Path:
    """``<state_dir>/environments/<env>``: the environment's checkout and terraform working directory."""
    return config.state_dir / "environments" / environment


def environment_terraform_dir(config: FleetConfig, environment: str) -> Path:
    """The environment's terraform working directory (with the local backend, its state lives here)."""
    return environment_dir(config, environment) / "terraform"


def environment_workspace(config: FleetConfig, environment: str) -> str:
    """The workspace holding the environment's state (configured, else the environment's name)."""
    return config.environment(environment).terraform.workspace or environment


def environment_variables(config: FleetConfig, environment: str) -> dict[str, Any]:
    """The environment's own module variables, as fleet.yaml gives them.

    ``cluster_name`` defaults to the environment's name; with the simulated
    cluster driver, ``simulation_dir`` is the environment's simulation directory.
    """
    variables: dict[str, Any] = dict(config.environment(environment).terraform.variables)
    variables.setdefault("cluster_name", environment)
    if config.drivers.cluster.type == "simulated":
        variables.setdefault("simulation_dir", str(environment_dir(config, environment) / "simulated-cluster"))
    return variables


def typed_like(value: Any, like: Any) -> Any:
    """``value`` (an override, given as text) in the type of the configured value ``like`` when it converts."""
    if not isinstance(value, str) or like is None or isinstance(like, str):
        return value
    if isinstance(like, bool):
        lowered = value.strip().lower()
        return lowered == "true" if lowered in ("true", "false") else value
    try:
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
    except ValueError:
        return value
    return value


def split_overrides(overrides: dict[str, Any], configured: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The overrides to carry to a long-lived environment (typed like its configured values), and the names left out.

    Args:
        overrides: The sandbox's overrides.
        configured: The environment's own variables.
    """
    carried = {k: typed_like(v, configured.get(k)) for k, v in sorted(overrides.items()) if k not in IDENTITY_VARIABLES}
    return carried, sorted(k for k in overrides if k in IDENTITY_VARIABLES)


def record_environment_values(config_path: Path, environment: str, values: dict[str, Any]) -> None:
    """Set ``values`` in fleet.yaml's ``environments.<env>.terraform.variables`` (comments and order kept).

    The edited file is validated before it replaces the original.

    Raises:
        ConfigError: The edited file would not be a valid configuration.
        OSError: The file cannot be written.
    """
    from io import StringIO

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from sandbox.config import load_config
    from sandbox.errors import ConfigError

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    document = yaml.load(config_path.read_text(encoding="utf-8"))
    try:
        terraform = document["environments"][environment]["terraform"]
    except (KeyError, TypeError):
        raise ConfigError(f"{config_path}: no environments.{environment}.terraform to record values in") from None
    if terraform.get("variables") is None:
        terraform["variables"] = CommentedMap()
    for key, value in values.items():
        terraform["variables"][key] = value
    out = StringIO()
    yaml.dump(document, out)
    tmp = config_path.with_name(f".{config_path.name}.align.tmp")
    tmp.write_text(out.getvalue(), encoding="utf-8")
    try:
        load_config(tmp)
        tmp.replace(config_path)
    finally:
        tmp.unlink(missing_ok=True)


# -- which promotion ---------------------------------------------------------------


def _promotion_of(inventory: Inventory, name: str) -> Promotion | None:
    record = inventory.find(name)
    if record is None or record.kind is not SandboxKind.platform:
        return None
    result = inventory.stage_result(record.name, record.lifecycle_id, Stage.promote)
    if not result:
        return None
    details = result.get("details") or {}
    if details.get("skipped"):
        return None
    pull_request = details.get("pull_request") or {}
    number = pull_request.get("number")
    return Promotion(
        sandbox=record.name,
        overrides=dict(record.overrides),
        pull_request=int(number) if number is not None else None,
        pull_request_url=pull_request.get("url") or record.pull_request_url,
    )


def find_promotion(inventory: Inventory, sandbox: str | None = None) -> Promotion | None:
    """The promotion to align with: ``sandbox``'s, or the newest one recorded.

    The newest is the one with the highest pull request number (pull requests are
    numbered in the order they are opened), then the newest sandbox.

    Raises:
        InvalidInputError: ``sandbox`` is not in the inventory or was never promoted.
    """
    if sandbox is not None:
        if inventory.find(sandbox) is None:
            raise InvalidInputError(f"no sandbox named {sandbox!r} in the inventory")
        promotion = _promotion_of(inventory, sandbox)
        if promotion is None:
            raise InvalidInputError(f"sandbox {sandbox!r} has not been promoted; there is nothing to align from it")
        return promotion
    candidates = []
    for index, record in enumerate(inventory.list()):  # oldest first
        promotion = _promotion_of(inventory, record.name)
        if promotion is not None:
            candidates.append((promotion.pull_request or 0, index, promotion))
    return max(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None


# -- aligning -----------------------------------------------------------------------


def checkout_default_branch(git: GitDriver, config: FleetConfig, repo: Path) -> Path:
    """A checkout of the fleet repository's default branch as the remote has it."""
    default = config.fleet_repo.default_branch
    if not (repo / ".git").is_dir():
        if repo.exists():
            shutil.rmtree(repo)  # a clone interrupted half-way
        git.clone(config.remote_url, repo)
    else:
        git.fetch(repo)
    if git.rev_parse(repo, f"refs/remotes/origin/{default}") is None:
        raise PermanentError(f"default branch {default!r} not found on the fleet remote")
    git.checkout(repo, default, start=f"origin/{default}")
    git.reset_hard(repo, f"origin/{default}")
    return repo


def refusal(environment: str, plan: PlanSummary) -> AlignRefusedError:
    """The error naming every resource ``plan`` would destroy or replace."""
    named = [f"destroy {a}" for a in plan.destroy] + [f"replace {a}" for a in plan.replace]
    return AlignRefusedError(
        f"align {environment} refused: the plan would {', '.join(named)} ({plan.summary_line()}); "
        "nothing applied. Aligning must be non-destructive: review the plan and approve it (--approve) to apply anyway"
    )


def align_environment(
    config: FleetConfig,
    inventory: Inventory,
    *,
    git: GitDriver,
    terraform: TerraformDriver,
    environment: str,
    sandbox: str | None = None,
    approve: bool = False,
    config_path: Path | None = None,
    progress: Progress = quiet,
    on_plan: Callable[[PlanSummary], None] | None = None,
) -> AlignResult:
    """Plan ``environment`` with a promoted sandbox's overrides; apply when non-destructive or approved.

    Args:
        config: The fleet configuration.
        inventory: Where promotions are recorded.
        git: Git, to check out the default branch's module.
        terraform: The terraform driver.
        environment: The long-lived environment to align (e.g. ``development``).
        sandbox: The promoted sandbox to align with (default: the newest promotion).
        approve: Apply even a plan that destroys or replaces resources.
        config_path: fleet.yaml, to record the applied values in (not recorded when ``None``).
        progress: Receives a line per step (the plan summary and each resource).
        on_plan: Shown the plan before anything is applied (an artifact in Prefect).

    Raises:
        InvalidInputError: Unknown environment or sandbox, or a sandbox never promoted.
        AlignRefusedError: The plan destroys or replaces something and ``approve`` is false.
        PermanentError: The environment has no terraform state (aligning never creates one).
        StateLockedError: Another run holds the environment's state lock (retryable).
    """
    env = config.environment(environment)
    workspace = environment_workspace(config, environment)
    promotion = find_promotion(inventory, sandbox)
    if promotion is None:
        message = f"no promoted sandbox in the inventory: nothing to align {environment} with"
        progress(message)
        return AlignResult(environment=environment, workspace=workspace, status="nothing-to-align", message=message)
    base = environment_variables(config, environment)
    overrides, skipped = split_overrides(promotion.overrides, base)
    if not overrides:
        message = (
            f"{promotion.sandbox} was promoted without infrastructure overrides: nothing to align {environment} with"
        )
        progress(message)
        return AlignResult(
            environment=environment,
            workspace=workspace,
            sandbox=promotion.sandbox,
            skipped=skipped,
            status="nothing-to-align",
            message=message,
        )
    shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
    progress(f"aligning {environment} with {promotion.sandbox}'s overrides: {shown}")
    repo = checkout_default_branch(git, config, environment_dir(config, environment) / "repo")
    module_dir = fleetrepo.module_dir(repo, env.terraform.module)
    workdir = environment_terraform_dir(config, environment)
    # Look before selecting: selecting a missing workspace would create it.
    terraform.prepare(workdir, module_dir, workspace="default")
    if not terraform.has_state(workdir, workspace):
        raise PermanentError(
            f"{environment} has no terraform state in workspace {workspace!r} ({workdir}); align only changes an "
            "existing environment and never creates one"
        )
    terraform.prepare(workdir, module_dir, workspace=workspace)
    variables = {**base, **overrides}
    plan = terraform.plan(workdir, variables)
    progress(f"terraform plan for {environment} (workspace {workspace}): {plan.summary_line()}")
    for line in plan.resource_lines():
        progress(f"  {line}")
    if on_plan is not None:
        on_plan(plan)
    record = {k: v for k, v in overrides.items() if base.get(k) != v}
    result = AlignResult(
        environment=environment,
        workspace=workspace,
        sandbox=promotion.sandbox,
        overrides=overrides,
        skipped=skipped,
        status="unchanged",
        plan=plan.summary_line(),
        resources=plan.resource_lines(),
        record_in_config=record,
    )
    if not plan.has_changes:
        _discard(plan)
        result.message = f"{environment} is already aligned with {promotion.sandbox}: no changes"
        progress(result.message)
        _record(result, config_path, progress)  # an earlier run may have stopped before recording
        return result
    if plan.is_destructive and not approve:
        _discard(plan)
        raise refusal(environment, plan)
    if plan.is_destructive:
        progress(f"applying a destructive plan to {environment}: approved")
    outputs = terraform.apply(workdir, variables, plan=plan)  # exactly the plan shown
    result.status = "applied"
    result.approved = approve and plan.is_destructive
    result.outputs = public_outputs(outputs)
    result.message = f"{environment} aligned with {promotion.sandbox} ({plan.summary_line()})"
    progress(result.message)
    _record(result, config_path, progress)
    return result


def _record(result: AlignResult, config_path: Path | None, progress: Progress) -> None:
    """Write what the environment now runs into fleet.yaml; a failure is reported, not raised (it is applied)."""
    if not result.record_in_config or config_path is None:
        return
    try:
        record_environment_values(config_path, result.environment, result.record_in_config)
    except (OSError, SandboxError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        progress(f"could not record the aligned values in {config_path}: {reason}")
        return
    result.config_updated = True
    values = ", ".join(f"{k}={v!r}" for k, v in result.record_in_config.items())
    progress(f"recorded in {config_path} (environments.{result.environment}.terraform.variables): {values}")


def _discard(plan: PlanSummary) -> None:
    """Remove a saved plan that will not be applied (it holds every variable's value)."""
    if plan.plan_file:
        Path(plan.plan_file).unlink(missing_ok=True)
