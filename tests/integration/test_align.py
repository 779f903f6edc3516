"""``sandbox align ENV [--apply]`` end to end: the real CLI, real terraform, real git, a real Prefect server.

Setup: the demo's fleet repository and remote; development and staging already
exist (their own state, applied here with the example cluster module in the
working directory ``sandbox align`` uses); promotions are recorded in the
inventory the way ``create`` (overrides on the record) and ``promote`` (a pull
request in the stage result, or none for an IaC-only promotion) record them.
Plan-then-apply: ``align`` opens a pull request with the environment's variables
and the plan; ``align --apply`` applies once it is merged.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from sandbox.align import environment_terraform_dir, environment_variables, environment_workspace
from sandbox.config import FleetConfig, load_config
from sandbox.drivers.git import GitCli
from sandbox.drivers.terraform import PythonTerraformDriver, TerraformOutput
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.models import Stage
from sandbox.stages.register import register, validate_request
from sandbox.wiring import build_drivers, open_inventory
from tests.integration.sandbox_cli import demo_setup, error_line, sandbox_cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires_tool("terraform"),
]

CLUSTER_MODULE = Path(__file__).resolve().parents[2] / "examples" / "fleet-repo" / "infra" / "cluster"


@dataclass
class Fleet:
    config_path: Path
    config: FleetConfig
    terraform: PythonTerraformDriver
    api_url: str
    promotions: int = 0

    def cli(self, *args: str) -> Any:
        return sandbox_cli(*args, "--config", str(self.config_path), api_url=self.api_url)

    def workdir(self, environment: str) -> Path:
        return environment_terraform_dir(self.config, environment)

    def provision(self, environment: str) -> dict[str, TerraformOutput]:
        """Create a long-lived environment's cluster as its own pipeline would have."""
        workdir = self.workdir(environment)
        self.terraform.prepare(workdir, CLUSTER_MODULE, environment_workspace(self.config, environment))
        return self.terraform.apply(workdir, environment_variables(self.config, environment))

    def outputs(self, environment: str) -> dict[str, TerraformOutput]:
        workdir = self.workdir(environment)
        self.terraform.prepare(workdir, CLUSTER_MODULE, environment_workspace(self.config, environment))
        return self.terraform.outputs(workdir)

    def promoted(self, name: str, overrides: dict[str, str], *, pull_request: bool = False) -> None:
        """Record sandbox ``name`` created with ``overrides`` and promoted.

        IaC-only (no pull request: nothing changed in development's directory) unless
        ``pull_request``: then its branch is pushed and a pull request opened, not merged.
        """
        self.promotions += 1
        request = LifecycleRequest(
            config_path=str(self.config_path),
            name=name,
            ticket=f"OPS-{100 + self.promotions}",
            summary="upgrade rehearsal",
            overrides=overrides,
        )
        inventory = open_inventory(self.config)
        try:
            record = register(self.config, inventory, validate_request(self.config, request), resume=False)
            opened = None
            if pull_request:
                work = self.config_path.parent / f"promote-{name}"
                git = GitCli()
                git.clone(self.config.remote_url, work)
                git.checkout(work, record.branch or name, start="origin/main")
                (work / "clusters" / "development" / f"{name}.txt").write_text("promoted\n", encoding="utf-8")
                git.commit_all(work, f"promote {name}")
                git.push(work, record.branch or name)
                shutil.rmtree(work)
                hosting = build_drivers(self.config).hosting
                opened = hosting.open_pull_request(
                    head=record.branch or name, base="main", title=f"{record.ticket}: promote", body="promotion"
                ).model_dump()
            inventory.stage_completed(
                name,
                record.lifecycle_id,
                Stage.promote,
                {"stage": "promote", "summary": "promoted", "details": {"pull_request": opened}},
            )
        finally:
            inventory.close()

    def merge(self, branch: str) -> None:
        """Merge ``branch`` into main on the remote, as a person merging the pull request."""
        work = self.config_path.parent / f"merge-{branch}"
        git = GitCli()
        git.clone(self.config.remote_url, work)
        git._git(work, "merge", "--no-ff", "-m", f"Merge {branch}", f"origin/{branch}", timeout_is_retryable=False)
        git.push(work, "main")
        shutil.rmtree(work)

    def pull_request(self, url_or_path: str) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(Path(url_or_path).read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def fleet(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    config_path = demo_setup(tmp_path_factory.mktemp("align"))
    fleet = Fleet(config_path, load_config(config_path), PythonTerraformDriver(timeout=120), prefect_server)
    fleet.provision("development")
    fleet.provision("staging")
    return fleet


def _lines(result: Any) -> str:
    return result.stdout + result.stderr


def test_without_a_promotion_there_is_nothing_to_align(fleet: Fleet) -> None:
    before = fleet.outputs("development")
    result = fleet.cli("align", "development")
    assert result.returncode == 0, _lines(result)
    assert "no promoted sandbox in the inventory: nothing to align development with" in result.stdout
    assert fleet.outputs("development") == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["align", "qa"], "unknown environment 'qa'"),
        (["align", "development", "--sandbox", "sandbox-nope"], "no sandbox named 'sandbox-nope'"),
    ],
)
def test_bad_input_exits_2_before_anything_runs(fleet: Fleet, args: list[str], message: str) -> None:
    result = fleet.cli(*args)
    assert result.returncode == 2, _lines(result)
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "flow run" not in result.stdout


def _pull_request_path(result: Any) -> str:
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("pull request: "))
    return line.split("pull request: ", 1)[1].strip()


def test_an_in_place_change_is_proposed_then_applied_once_merged(fleet: Fleet) -> None:
    from prefect.artifacts import Artifact
    from prefect.client.schemas.objects import Artifact as ArtifactResponse

    before = fleet.outputs("development")
    staging_before = fleet.outputs("staging")
    fleet.promoted("sandbox-upgrade", {"kubernetes_version": "1.32", "node_count": "2"})

    proposed = fleet.cli("align", "development")

    assert proposed.returncode == 0, _lines(proposed)
    assert "development's alignment with sandbox-upgrade proposed: pull request #" in proposed.stdout
    assert "kubernetes_version=1.32, node_count=2 in infra/cluster/environments/development.tfvars.json" in (
        proposed.stdout
    )
    pull_request = fleet.pull_request(_pull_request_path(proposed))
    assert pull_request["head"] == "align-development-sandbox-upgrade" and pull_request["base"] == "main"
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in pull_request["body"]
    assert "update in place: terraform_data.cluster" in pull_request["body"]
    assert fleet.outputs("development") == before  # proposing applies nothing
    artifact = cast(ArtifactResponse | None, Artifact.get("align-plan-development"))  # sync call: not a coroutine
    assert artifact is not None and artifact.data is not None
    assert "`terraform_data.cluster`" in str(artifact.data)
    assert before["cluster_token"].value not in str(artifact.data)

    early = fleet.cli("align", "development", "--apply")
    assert early.returncode == 1, _lines(early)
    assert "does not carry sandbox-upgrade's kubernetes_version=1.32, node_count=2 yet" in error_line(early.stderr)
    assert fleet.outputs("development") == before

    fleet.merge("align-development-sandbox-upgrade")
    applied = fleet.cli("align", "development", "--apply")

    assert applied.returncode == 0, _lines(applied)
    assert "development aligned with sandbox-upgrade (Plan: 0 to add, 1 to change, 0 to destroy.)" in applied.stdout
    after = fleet.outputs("development")
    assert (after["kubernetes_version"].value, after["node_count"].value) == ("1.32", 2)
    # Updated in place: the same cluster (its credential is its resource id).
    assert after["cluster_token"].value == before["cluster_token"].value
    assert after["cluster_name"].value == "development"
    # The values live in the fleet repository, not in the worker's fleet.yaml.
    assert load_config(fleet.config_path).environments == fleet.config.environments
    # Another long-lived environment's state is never touched.
    assert fleet.outputs("staging") == staging_before

    again = fleet.cli("align", "development", "--apply")
    assert again.returncode == 0, _lines(again)
    assert "development is already aligned with sandbox-upgrade: no changes" in again.stdout


def test_a_promotion_is_not_aligned_with_before_its_pull_request_is_merged(fleet: Fleet) -> None:
    fleet.promoted("sandbox-unmerged", {"node_count": "5"}, pull_request=True)
    result = fleet.cli("align", "development")
    assert result.returncode == 1, _lines(result)
    error = error_line(result.stderr)
    assert error.startswith("sandbox: error: align development refused: sandbox-unmerged's promotion, pull request #")
    assert error.endswith("is not merged yet; merge it, then align again")
    inventory = open_inventory(fleet.config)
    try:
        record = inventory.get("sandbox-unmerged")
        inventory.stage_completed(  # not promoted after all: out of the later tests' way
            record.name, record.lifecycle_id, Stage.promote, {"details": {"skipped": True}}
        )
    finally:
        inventory.close()


def test_a_replacement_is_refused_naming_each_resource(fleet: Fleet) -> None:
    before = fleet.outputs("development")
    fleet.promoted("sandbox-move", {"region": "local-2"})

    proposed = fleet.cli("align", "development")
    assert proposed.returncode == 0, _lines(proposed)
    assert "This plan destroys or replaces resources" in fleet.pull_request(_pull_request_path(proposed))["body"]
    fleet.merge("align-development-sandbox-move")

    result = fleet.cli("align", "development", "--apply")

    assert result.returncode == 1, _lines(result)
    # The plan is shown (Prefect's log on the console), then the one-line cause.
    assert "replace: terraform_data.cluster" in _lines(result)
    error = error_line(result.stderr)
    assert error.startswith("sandbox: error: align development refused: the plan would ")
    assert "replace terraform_data.cluster" in error
    assert "replace terraform_data.network" in error
    assert "(Plan: 2 to add, 0 to change, 2 to destroy.); nothing applied" in error
    assert "Traceback" not in _lines(result)
    assert fleet.outputs("development") == before
    assert not list(fleet.workdir("development").glob(".fleet-sandbox.tfplan"))


def test_an_earlier_promotion_can_be_named(fleet: Fleet) -> None:
    result = fleet.cli("align", "development", "--sandbox", "sandbox-upgrade")
    assert result.returncode == 0, _lines(result)
    assert "infra/cluster/environments/development.tfvars.json records sandbox-upgrade's overrides already" in (
        result.stdout
    )


def test_an_approved_replacement_is_applied(fleet: Fleet) -> None:
    before = fleet.outputs("development")
    staging_before = fleet.outputs("staging")

    result = fleet.cli("align", "development", "--apply", "--approve")

    assert result.returncode == 0, _lines(result)
    assert "development aligned with sandbox-move (Plan: 2 to add, 0 to change, 2 to destroy.)" in result.stdout
    after = fleet.outputs("development")
    assert after["cluster_token"].value != before["cluster_token"].value  # a new cluster
    # Built from what the fleet repository records (the earlier alignment's upgrade) plus this promotion's override.
    assert (after["kubernetes_version"].value, after["node_count"].value) == ("1.32", 2)
    assert fleet.outputs("staging") == staging_before


def test_an_environment_without_state_is_never_created(fleet: Fleet) -> None:
    result = fleet.cli("align", "production")
    assert result.returncode == 1, _lines(result)
    assert "production has no terraform state in workspace 'production'" in result.stderr
    assert "never creates one" in result.stderr
    assert "production" not in fleet.terraform.workspaces(fleet.workdir("production"))
