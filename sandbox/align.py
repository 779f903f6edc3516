"""Align a long-lived environment's infrastructure with a promoted sandbox (``sandbox align ENV``).

The seed, after a sandbox's state is merged: "adjust any infrastructure as code
values for the development cluster to align it to the sandbox. These must be
non-destructive changes." The sandbox's terraform variable overrides (e.g. a
newer ``kubernetes_version``) are recorded on its inventory record when it is
created; promotion opens the pull request (an IaC-only promotion, which changes
nothing in the environment's directory, opens none and is still a promotion).

Aligning is plan-then-apply, as Atlantis does it:

1. ``sandbox align ENV`` picks the promotion (the named sandbox, or the one that
   happened last) and refuses, naming the pull request, until that pull request is
   merged (:meth:`~sandbox.drivers.git_hosting.GitHosting.merged_revision`);
2. it plans the environment's module -- checked out from the default branch, in the
   environment's own working directory (``<state_dir>/environments/<env>/terraform``)
   and workspace (``terraform.workspace``, default the environment's name), never a
   sandbox's or another environment's -- with the overrides on top of what the
   environment runs (names that identify a sandbox's cluster, such as
   ``cluster_name``, are not carried);
3. it commits the environment's IaC variables, overrides included, in the fleet
   repository (:func:`variables_file`: ``<module>/environments/<env>.tfvars.json``)
   on a branch and opens a pull request with the plan in its body: the reviewed step;
4. ``sandbox align ENV --apply``, once that pull request is merged, plans what the
   default branch records and applies that saved plan when it destroys and replaces
   nothing, or when approved (``--approve``); otherwise raises
   :class:`AlignRefusedError` naming every resource the plan would destroy or replace.

What an environment runs is fleet.yaml's ``terraform.variables`` with the fleet
repository's variables file on top, so later alignments start from it -- a later
promotion's overrides never silently revert an earlier one's. Aligning never
creates an environment (no state: refused) and never runs ``terraform destroy``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sandbox import fleetrepo, paths
from sandbox.config import FleetConfig
from sandbox.drivers.git import GitDriver
from sandbox.drivers.git_hosting import GitHosting, PullRequest
from sandbox.drivers.terraform import PlanSummary, TerraformDriver, public_outputs
from sandbox.errors import InvalidInputError, PermanentError
from sandbox.inventory import Inventory
from sandbox.models import SandboxKind, Stage
from sandbox.progress import Progress, quiet

#: Variables that name or locate one cluster rather than configure it: a
#: sandbox's values for them are never carried to a long-lived environment.
IDENTITY_VARIABLES: frozenset[str] = frozenset({"cluster_name", "simulation_dir", "force_destroy"})


class AlignRefusedError(PermanentError):
    """The alignment plan destroys or replaces resources and was not approved (nothing applied)."""


class AlignNotMergedError(PermanentError):
    """What aligning would build on is not merged yet: the promotion's pull request, or the alignment's own."""


class Promotion(BaseModel):
    """A promoted sandbox and the infrastructure overrides it ran with."""

    sandbox: str = Field(description="The promoted sandbox")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Its terraform variable overrides")
    pull_request: int | None = Field(default=None, description="Number of the promotion's pull request")
    pull_request_url: str | None = Field(default=None, description="The promotion's pull request")
    pull_request_details: dict[str, Any] | None = Field(
        default=None, description="The pull request as the promote stage recorded it (to ask whether it is merged)"
    )
    promoted_at: datetime | None = Field(default=None, description="When the promote stage completed")

    def merge_check(self) -> PullRequest | None:
        """The pull request to ask the host about, or ``None`` (an IaC-only promotion opens none)."""
        details = self.pull_request_details or {}
        try:
            return PullRequest.model_validate(details) if details else None
        except ValueError:
            return None


class AlignResult(BaseModel):
    """What an alignment did (plain data: a flow result, never a secret)."""

    environment: str = Field(description="The long-lived environment aligned")
    workspace: str | None = Field(default=None, description="Its terraform workspace")
    sandbox: str | None = Field(default=None, description="The promoted sandbox whose overrides were used")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Overrides planned for the environment")
    skipped: list[str] = Field(default_factory=list, description="Overrides not carried (they name a sandbox)")
    status: Literal["applied", "unchanged", "nothing-to-align", "proposed"] = Field(
        description="Outcome: proposed = the variables' pull request is open (apply with --apply once merged)"
    )
    pull_request_url: str | None = Field(default=None, description="The alignment's pull request (proposed)")
    variables_file: str | None = Field(default=None, description="The environment's IaC variables in the fleet repo")
    approved: bool = Field(default=False, description="Destructive changes were approved")
    plan: str | None = Field(default=None, description="Terraform's plan summary line")
    resources: list[str] = Field(default_factory=list, description="'<action>: <address>' per planned change")
    outputs: dict[str, Any] = Field(default_factory=dict, description="Non-sensitive outputs after the apply")
    record_in_config: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Values the environment does not record yet (fleet.yaml's terraform.variables with the fleet "
            "repository's variables file on top): what the alignment's pull request sets"
        ),
    )
    config_updated: bool = Field(
        default=False, description="Always false now: the values are recorded in the fleet repository, by pull request"
    )
    message: str = Field(default="", description="One line for people")

    def lines(self) -> list[str]:
        """What the CLI prints."""
        out = [self.message]
        if self.plan:
            out.append(f"  {self.plan}")
            out.extend(f"    {line}" for line in self.resources)
        if self.skipped:
            out.append(f"  not carried (they identify the sandbox's cluster): {', '.join(self.skipped)}")
        if self.status == "proposed" and self.pull_request_url:
            out.append(f"  pull request: {self.pull_request_url}")
            out.append(f"  once it is merged: sandbox align {self.environment} --apply")
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


def variables_file(config: FleetConfig, environment: str) -> str:
    """Where the fleet repository keeps an environment's IaC variables: ``<module>/environments/<env>.tfvars.json``.

    Beside the module the seed keeps in the fleet repository, in a directory terraform
    does not read by itself (only ``-var-file`` brings it in), so the module is unchanged.
    """
    module = config.environment(environment).terraform.module.strip("/")
    return f"{module}/environments/{environment}.tfvars.json"


def recorded_variables(repo: Path, config: FleetConfig, environment: str) -> dict[str, Any]:
    """The environment's variables as the fleet repository checkout ``repo`` records them (``{}`` when none).

    Raises:
        PermanentError: The file is not a JSON object.
    """
    path = paths.inside(repo, variables_file(config, environment))
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise PermanentError(f"{variables_file(config, environment)} in the fleet repository is not JSON") from None
    if not isinstance(values, dict):
        raise PermanentError(f"{variables_file(config, environment)} in the fleet repository is not a JSON object")
    return values


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
        pull_request_details=dict(pull_request) or None,
        promoted_at=inventory.stage_finished_at(record.name, record.lifecycle_id, Stage.promote),
    )


def find_promotion(inventory: Inventory, sandbox: str | None = None) -> Promotion | None:
    """The promotion to align with: ``sandbox``'s, or the one that happened last.

    Ranked by when the promote stage completed (then by the sandbox's age), not by
    pull request number: an IaC-only promotion (an override such as a newer
    control-plane version, with nothing changed in the environment's directory)
    opens no pull request and is still a promotion.

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
            when = promotion.promoted_at.timestamp() if promotion.promoted_at else 0.0
            candidates.append((when, index, promotion))
    return max(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None


def check_merged(promotion: Promotion, hosting: GitHosting | None, environment: str) -> None:
    """Refuse, naming the pull request, while the promotion's pull request is not merged.

    Raises:
        AlignNotMergedError: It is not merged (or the host cannot tell yet).
    """
    pr = promotion.merge_check()
    if pr is None or hosting is None:
        return
    if hosting.merged_revision(pr) is None:
        raise AlignNotMergedError(
            f"align {environment} refused: {promotion.sandbox}'s promotion, pull request #{pr.number} ({pr.url}), "
            "is not merged yet; merge it, then align again"
        )


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
    hosting: GitHosting | None = None,
    sandbox: str | None = None,
    apply: bool = False,
    approve: bool = False,
    progress: Progress = quiet,
    on_plan: Callable[[PlanSummary], None] | None = None,
) -> AlignResult:
    """Propose (by pull request) or, once merged, apply ``environment``'s alignment with a promoted sandbox.

    Args:
        config: The fleet configuration.
        inventory: Where promotions are recorded.
        git: Git, to check out the default branch (the module and the variables file) and push the branch.
        terraform: The terraform driver.
        environment: The long-lived environment to align (e.g. ``development``).
        hosting: Opens the alignment's pull request and tells whether the promotion's is merged
            (``None``: no merge check, and no pull request can be opened).
        sandbox: The promoted sandbox to align with (default: the promotion that happened last).
        apply: Apply what the default branch records (the alignment's merged pull request).
        approve: With ``apply``, apply even a plan that destroys or replaces resources.
        progress: Receives a line per step (the plan summary and each resource).
        on_plan: Shown the plan before anything is proposed or applied (an artifact in Prefect).

    Raises:
        InvalidInputError: Unknown environment or sandbox, or a sandbox never promoted.
        AlignNotMergedError: The promotion's pull request is not merged, or (``apply``) the
            alignment's pull request is not merged yet.
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
    check_merged(promotion, hosting, environment)
    repo = checkout_default_branch(git, config, environment_dir(config, environment) / "repo")
    recorded = recorded_variables(repo, config, environment)
    base = {**environment_variables(config, environment), **recorded}
    overrides, skipped = split_overrides(promotion.overrides, base)
    where = variables_file(config, environment)
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
            variables_file=where,
        )
    pending = {k: v for k, v in overrides.items() if base.get(k) != v}
    if apply and pending:
        values = ", ".join(f"{k}={v}" for k, v in pending.items())
        raise AlignNotMergedError(
            f"align {environment} --apply refused: {where} on {config.fleet_repo.default_branch} does not carry "
            f"{promotion.sandbox}'s {values} yet; run `sandbox align {environment}` and merge its pull request first"
        )
    shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
    progress(f"aligning {environment} with {promotion.sandbox}'s overrides: {shown}")
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
    result = AlignResult(
        environment=environment,
        workspace=workspace,
        sandbox=promotion.sandbox,
        overrides=overrides,
        skipped=skipped,
        status="unchanged",
        plan=plan.summary_line(),
        resources=plan.resource_lines(),
        record_in_config=pending,
        variables_file=where,
    )
    if not apply:
        _discard(plan)  # the reviewed step is the pull request; --apply plans again from what is merged
        if not pending:
            result.message = (
                f"{where} records {promotion.sandbox}'s overrides already"
                + (f": apply them with sandbox align {environment} --apply" if plan.has_changes else "")
                + ("" if plan.has_changes else f"; {environment} is already aligned with {promotion.sandbox}")
            )
            progress(result.message)
            return result
        pr = _propose(config, git, hosting, repo, environment, promotion, {**recorded, **pending}, plan)
        result.status = "proposed"
        result.pull_request_url = pr.url
        result.message = (
            f"{environment}'s alignment with {promotion.sandbox} proposed: pull request #{pr.number} sets "
            f"{', '.join(f'{k}={v}' for k, v in pending.items())} in {where} ({plan.summary_line()})"
        )
        progress(result.message)
        return result
    if not plan.has_changes:
        _discard(plan)
        result.message = f"{environment} is already aligned with {promotion.sandbox}: no changes"
        progress(result.message)
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
    return result


def align_branch(environment: str, sandbox: str) -> str:
    """The branch an alignment's pull request comes from."""
    return f"align-{environment}-{sandbox}"


def _propose(
    config: FleetConfig,
    git: GitDriver,
    hosting: GitHosting | None,
    repo: Path,
    environment: str,
    promotion: Promotion,
    values: dict[str, Any],
    plan: PlanSummary,
) -> PullRequest:
    """Commit the environment's variables on the alignment branch, push it, and open its pull request."""
    if hosting is None:
        raise PermanentError(f"align {environment}: no git hosting to open the alignment's pull request with")
    default = config.fleet_repo.default_branch
    branch = align_branch(environment, promotion.sandbox)
    git.checkout(repo, branch, start=f"origin/{default}")
    try:
        where = variables_file(config, environment)
        target = paths.inside(repo, where)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        git.commit_all(repo, f"align {environment} with {promotion.sandbox}: IaC variables", [where])
        git.push(repo, branch)
    finally:
        git.checkout(repo, default)
    changed = ", ".join(f"`{k}` = `{json.dumps(v)}`" for k, v in sorted(values.items()))
    resources = "\n".join(f"- {line}" for line in plan.resource_lines()) or "- (no resource changes)"
    warning = (
        "\n\n**This plan destroys or replaces resources**: applying it needs "
        f"`sandbox align {environment} --apply --approve`."
        if plan.is_destructive
        else ""
    )
    promoted = f" ({promotion.pull_request_url})" if promotion.pull_request_url else " (an IaC-only promotion)"
    body = (
        f"Aligns **{environment}** with the promoted sandbox **{promotion.sandbox}**{promoted}.\n\n"
        f"`{where}`: {changed}\n\n"
        f"### terraform plan ({environment}, workspace {environment_workspace(config, environment)})\n\n"
        f"{plan.summary_line()}\n\n{resources}{warning}\n\n"
        f"Once merged, apply it: `sandbox align {environment} --apply` (plans again from the merged values)."
    )
    pr = hosting.open_pull_request(
        head=branch, base=default, title=f"align {environment} with {promotion.sandbox}", body=body
    )
    return pr


def _discard(plan: PlanSummary) -> None:
    """Remove a saved plan that will not be applied (it holds every variable's value)."""
    if plan.plan_file:
        Path(plan.plan_file).unlink(missing_ok=True)
