"""What a stage works with: the sandbox's context, its secrets, its checkout and its cluster.

Every stage (:mod:`sandbox.stages`) takes a :class:`SandboxContext`. The
context reads the sandbox cluster module's outputs and connects the cluster
driver at most once, and it alone holds them: stages ask it (:meth:`SandboxContext.cluster`),
never its fields.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import fleetrepo
from sandbox.config import FleetConfig
from sandbox.drivers.cluster import ClusterDriver
from sandbox.drivers.terraform import TerraformOutput, public_outputs
from sandbox.errors import PermanentError
from sandbox.inventory import Inventory
from sandbox.models import SandboxRecord
from sandbox.progress import Progress, quiet
from sandbox.wiring import (
    Drivers,
    connect_cluster,
    kubeconfig_from_outputs,
    needs_cluster_credentials,
    sandbox_state_dir,
)


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
    def recorded_terraform_workdir(self) -> Path:
        """The terraform working directory the provision stage recorded, else :attr:`terraform_workdir`."""
        recorded = self.record.terraform_workdir
        return Path(recorded) if recorded else self.terraform_workdir

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

    # -- the checkout ---------------------------------------------------------

    def ensure_checkout(self) -> Path:
        """This sandbox's checkout of the fleet repo, cloned or fetched."""
        git = self.drivers.git
        if not (self.checkout / ".git").is_dir():
            if self.checkout.exists():
                shutil.rmtree(self.checkout)  # a clone interrupted half-way
            git.clone(self.config.remote_url, self.checkout)
        else:
            git.fetch(self.checkout)
        return self.checkout

    def on_branch(self, branch: str) -> Path:
        """Check out the sandbox branch as the remote has it (discarding leftovers of a crash).

        Raises:
            PermanentError: The branch is not on the fleet remote.
        """
        repo = self.ensure_checkout()
        git = self.drivers.git
        if git.rev_parse(repo, f"refs/remotes/origin/{branch}") is None:
            raise PermanentError(f"branch {branch!r} is not on the fleet remote (was the clone stage run?)")
        git.checkout(repo, branch, start=f"origin/{branch}")
        git.reset_hard(repo, f"origin/{branch}")
        return repo

    # -- the cluster ------------------------------------------------------------

    def terraform_variables(self, repo: Path | None = None) -> dict[str, Any]:
        """Variables for the sandbox's cluster module.

        The source environment's settings (so a performance sandbox cloned from
        production gets production's scale) -- fleet.yaml's, with what the fleet
        repository checkout ``repo`` records for the environment on top (what ``sandbox
        align`` merged, :func:`sandbox.align.recorded_variables`) -- the sandbox's name,
        and the user's overrides last.
        """
        from sandbox.align import recorded_variables

        env = self.config.environment(self.record.source_env)
        variables: dict[str, Any] = dict(env.terraform.variables)
        if repo is not None:
            variables.update(recorded_variables(repo, self.config, self.record.source_env))
        variables["cluster_name"] = self.record.name
        if self.config.drivers.cluster.type == "simulated":
            variables["simulation_dir"] = str(self.simulation_dir)
        variables.update(self.record.overrides)
        return variables

    def cluster_module_outputs(self) -> dict[str, TerraformOutput]:
        """The sandbox cluster module's outputs the cluster driver connects with (read once per context).

        The real driver needs the sensitive kubeconfig output, which is never stored:
        it is read from the sandbox's terraform state. The simulated driver needs only
        the public outputs the provision stage recorded, so no terraform runs for it.

        Raises:
            PermanentError: There is no ``cluster_endpoint`` output: the cluster was
                never provisioned (or the module does not describe one).
        """
        if self._cluster_outputs is None:
            record = self.record
            workdir = self.recorded_terraform_workdir
            if needs_cluster_credentials(self.config):
                outputs = self.drivers.terraform.outputs(workdir)
            else:
                recorded = {
                    "cluster_endpoint": record.cluster_endpoint,
                    "kubernetes_version": record.kubernetes_version,
                }
                outputs = {name: TerraformOutput(value=value) for name, value in recorded.items() if value}
            if not public_outputs(outputs).get("cluster_endpoint"):
                raise PermanentError(
                    f"sandbox {record.name} has no cluster: no cluster_endpoint output recorded or in the terraform "
                    f"state in {workdir} (run the provision stage first)"
                )
            self._cluster_outputs = outputs
        return self._cluster_outputs

    def use_cluster_outputs(self, outputs: Mapping[str, TerraformOutput]) -> None:
        """Take a fresh ``terraform apply``'s outputs; the cluster driver is connected anew from them."""
        self._cluster_outputs, self._cluster = dict(outputs), None

    def cluster(self) -> ClusterDriver:
        """The sandbox's cluster driver, connected from its cluster module's terraform outputs.

        See :func:`sandbox.wiring.connect_cluster`: the real driver reads the module's
        sensitive kubeconfig output, which is held in memory only.
        """
        if self._cluster is None:
            self._cluster = connect_cluster(self.config, self.cluster_module_outputs())
        return self._cluster

    def kubeconfig(self) -> str:
        """The sandbox's kubeconfig text (kubernetes driver), from its cluster module's outputs."""
        return kubeconfig_from_outputs(self.config, self.cluster_module_outputs())
