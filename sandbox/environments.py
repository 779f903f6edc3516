"""Long-lived environments' clusters: where this tool keeps what it knows of them, and how it reaches them.

A long-lived environment (development, staging, production) has its own cluster,
made by the environment's terraform module (``environments.<env>.terraform`` in
``fleet.yaml``) in its own workspace (``terraform.workspace``, default: the
environment's name). This tool reaches that cluster the way it reaches a
sandbox's: from the module's outputs (``cluster_endpoint``, ``kubernetes_version``
and, for the kubernetes driver, the sensitive kubeconfig output named by
``drivers.cluster.kubeconfig_output``), read in the working directory
``<state_dir>/environments/<env>/terraform`` (the one ``sandbox align`` uses),
initialised from the module in a checkout of the fleet repository's default
branch (``<state_dir>/environments/<env>/repo``). With a remote backend
``terraform init`` brings the environment's state, so the outputs are the live
cluster's; a workspace without state means no cluster is known.

The simulated cluster driver keeps an environment's cluster in
``<state_dir>/environments/<env>/simulated-cluster``. The demo provisions and
bootstraps development there (:func:`provision_environment`,
:func:`bootstrap_environment`) so that ``sandbox watch development`` has a
development cluster to watch; this tool never provisions a long-lived
environment otherwise.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sandbox import fleetrepo, paths
from sandbox.config import FleetConfig
from sandbox.drivers.cluster import ClusterDriver
from sandbox.drivers.git import GitDriver
from sandbox.drivers.terraform import TerraformDriver, TerraformOutput, public_outputs
from sandbox.errors import PermanentError
from sandbox.progress import Progress, quiet
from sandbox.wiring import check_cluster_module_outputs, connect_cluster


class EnvironmentNotProvisionedError(PermanentError):
    """A long-lived environment has no cluster this tool can find."""


def environment_state_dir(config: FleetConfig, env: str) -> Path:
    """``<state_dir>/environments/<env>``."""
    return config.state_dir / "environments" / env


def environment_terraform_dir(config: FleetConfig, env: str) -> Path:
    """The terraform working directory of an environment's cluster module."""
    return environment_state_dir(config, env) / "terraform"


def environment_simulation_dir(config: FleetConfig, env: str) -> Path:
    """Where an environment's simulated cluster lives (simulated driver only)."""
    return environment_state_dir(config, env) / "simulated-cluster"


def environment_checkout(config: FleetConfig, env: str) -> Path:
    """This tool's checkout of the fleet repository for an environment."""
    return environment_state_dir(config, env) / "repo"


def environment_workspace(config: FleetConfig, env: str) -> str:
    """The terraform workspace holding the environment's state (``terraform.workspace``, else its name)."""
    return getattr(config.environment(env).terraform, "workspace", None) or env


def environment_variables(config: FleetConfig, env: str) -> dict[str, Any]:
    """The variables of an environment's cluster module, as fleet.yaml gives them.

    ``cluster_name`` defaults to the environment's name and, with the simulated
    driver, ``simulation_dir`` to the environment's simulation directory.
    """
    variables: dict[str, Any] = dict(config.environment(env).terraform.variables)
    variables.setdefault("cluster_name", env)
    if config.drivers.cluster.type == "simulated":
        variables.setdefault("simulation_dir", str(environment_simulation_dir(config, env)))
    return variables


def update_checkout(config: FleetConfig, env: str, git: GitDriver) -> Path:
    """The environment's checkout, cloned or fetched, at the tip of the default branch."""
    checkout = environment_checkout(config, env)
    if not (checkout / ".git").is_dir():
        if checkout.exists():
            shutil.rmtree(checkout)  # a clone interrupted half-way
        git.clone(config.remote_url, checkout)
    else:
        git.fetch(checkout)
    default = config.fleet_repo.default_branch
    git.checkout(checkout, default, start=f"origin/{default}")
    git.reset_hard(checkout, f"origin/{default}")
    return checkout


def _prepare(
    config: FleetConfig, env: str, terraform: TerraformDriver, git: GitDriver, *, create: bool
) -> tuple[Path, bool]:
    """Initialise the environment's working directory from the module on the default branch.

    Returns:
        The working directory, and whether the environment's workspace holds
        state (it is selected when it does, or when ``create``).
    """
    module = fleetrepo.module_dir(update_checkout(config, env, git), config.environment(env).terraform.module)
    workdir = environment_terraform_dir(config, env)
    workspace = environment_workspace(config, env)
    # Look before selecting: selecting a missing workspace would create it.
    terraform.prepare(workdir, module, workspace="default")
    exists = terraform.has_state(workdir, workspace)
    if exists or create:
        terraform.prepare(workdir, module, workspace=workspace)
    return workdir, exists


def _not_provisioned(config: FleetConfig, env: str, workdir: Path, what: str) -> EnvironmentNotProvisionedError:
    return EnvironmentNotProvisionedError(
        f"no cluster known for environment {env!r}: {what} (terraform working directory {workdir}, "
        f"workspace {environment_workspace(config, env)}); provision the environment's cluster first"
    )


def _connect(config: FleetConfig, env: str, outputs: dict[str, TerraformOutput], workdir: Path) -> ClusterDriver:
    if not public_outputs(outputs).get("cluster_endpoint"):
        raise _not_provisioned(config, env, workdir, "its terraform state has no cluster_endpoint output")
    return connect_cluster(config, outputs)


def connect_environment(config: FleetConfig, env: str, terraform: TerraformDriver, git: GitDriver) -> ClusterDriver:
    """A driver for a long-lived environment's cluster, from its terraform outputs.

    Raises:
        InvalidInputError: ``env`` is not a configured environment.
        EnvironmentNotProvisionedError: Its terraform state names no cluster.
        ClusterUnreachableError: The cluster does not answer (retryable).
    """
    config.environment(env)
    workdir, exists = _prepare(config, env, terraform, git, create=False)
    if not exists:
        raise _not_provisioned(config, env, workdir, "its terraform workspace holds no state")
    return _connect(config, env, terraform.outputs(workdir), workdir)


def provision_environment(
    config: FleetConfig, env: str, terraform: TerraformDriver, git: GitDriver, progress: Progress = quiet
) -> ClusterDriver:
    """Create a long-lived environment's cluster if its state has none (the demo's development).

    A workspace that already tracks resources is left as it is: a long-lived
    environment is never re-applied by this function.
    """
    config.environment(env)
    workdir, exists = _prepare(config, env, terraform, git, create=True)
    if exists:
        return _connect(config, env, terraform.outputs(workdir), workdir)
    variables = environment_variables(config, env)
    plan = terraform.plan(workdir, variables)
    check_cluster_module_outputs(config, plan.outputs)
    progress(f"terraform plan for environment {env}: {plan.summary_line()}")
    outputs = terraform.apply(workdir, variables, plan=plan)
    cluster = _connect(config, env, outputs, workdir)
    progress(f"environment {env}: cluster up (Kubernetes {cluster.server_version()})")
    return cluster


def bootstrap_environment(
    config: FleetConfig,
    env: str,
    cluster: ClusterDriver,
    git: GitDriver,
    *,
    git_token: str | None = None,
    ssh_identity: str | None = None,
    progress: Progress = quiet,
) -> int:
    """Install Flux on an environment's cluster from its committed ``flux-system/`` (the demo's development).

    The environment's own ``gotk-sync.yaml`` on the default branch is applied as
    it is, exactly what ``flux bootstrap`` did when the environment was made.

    Returns:
        How many component objects were applied.
    """
    from sandbox.stages.bootstrap import install_flux

    checkout = update_checkout(config, env, git)
    root = paths.inside(checkout, config.environment(env).cluster_dir)
    if not paths.inside(checkout, root / fleetrepo.SYNC_FILE).is_file():
        raise EnvironmentNotProvisionedError(f"{config.environment(env).cluster_dir}/{fleetrepo.SYNC_FILE} is missing")
    return install_flux(
        cluster,
        root,
        repo=checkout,
        git_token=git_token,
        ssh_identity=ssh_identity,
        known_hosts=config.known_hosts(),
        progress=progress,
        crd_timeout_seconds=config.drivers.cluster.crd_timeout_seconds,
    )
