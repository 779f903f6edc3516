"""The Prefect-free parts of ``sandbox align``: which promotion, which values, what is refused, what is recorded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox.align import (
    AlignNotMergedError,
    AlignResult,
    check_merged,
    environment_terraform_dir,
    environment_variables,
    environment_workspace,
    find_promotion,
    refusal,
    split_overrides,
    typed_like,
)
from sandbox.config import load_config
from sandbox.drivers.terraform import PlanSummary
from sandbox.errors import InvalidInputError, PermanentError
from sandbox.inventory import Inventory, utcnow
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus, Stage

CONFIG = """\
# fleet.yaml of the unit tests
fleet_repo:
  remote: remote.git
environments:
  development:
    cluster_dir: clusters/development
    tracking: {type: branch, branch: main}
    terraform:
      module: infra/cluster
      variables:
        kubernetes_version: "1.31"  # what development runs
        node_count: 1
        spot: false
  staging:
    cluster_dir: clusters/staging
    tracking: {type: semver, range: 1.2.x}
    terraform:
      module: infra/cluster
      workspace: stg
      variables:
        node_count: 3
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def inventory(tmp_path: Path) -> Any:
    inv = Inventory(f"sqlite:///{tmp_path / 'inventory.db'}")
    yield inv
    inv.close()


def _sandbox(
    inventory: Inventory,
    name: str,
    overrides: dict[str, str],
    *,
    pull_request: int | None,
    kind: SandboxKind = SandboxKind.platform,
    created_minutes_ago: int = 0,
    details: dict[str, Any] | None = None,
) -> None:
    now = utcnow() - timedelta(minutes=created_minutes_ago)
    record = inventory.create(
        SandboxRecord(
            name=name,
            kind=kind,
            source_env="development",
            lifecycle_id=f"id-{name}",
            status=SandboxStatus.destroyed,
            created_at=now,
            expires_at=now + timedelta(hours=72),
            overrides=overrides,
        )
    )
    if pull_request is not None or details is not None:
        found = details or {"pull_request": {"number": pull_request, "url": f"https://git.example/pr/{pull_request}"}}
        inventory.stage_completed(
            name, record.lifecycle_id, Stage.promote, {"stage": "promote", "summary": "s", "details": found}
        )


def test_environment_location_workspace_and_variables(config_path: Path) -> None:
    config = load_config(config_path)
    assert environment_terraform_dir(config, "development") == config.state_dir / "environments/development/terraform"
    assert environment_workspace(config, "development") == "development"
    assert environment_workspace(config, "staging") == "stg"
    assert environment_variables(config, "development") == {
        "kubernetes_version": "1.31",
        "node_count": 1,
        "spot": False,
        "cluster_name": "development",
        "simulation_dir": str(config.state_dir / "environments" / "development" / "simulated-cluster"),
    }
    with pytest.raises(InvalidInputError, match="unknown environment 'qa'"):
        environment_variables(config, "qa")


@pytest.mark.parametrize(
    ("value", "like", "typed"),
    [
        ("2", 1, 2),
        ("2.5", 1.0, 2.5),
        ("true", False, True),
        ("False", True, False),
        ("1.32", "1.31", "1.32"),
        ("large", None, "large"),
        ("many", 1, "many"),  # not a number: Terraform's own validation reports it
        ("maybe", False, "maybe"),
    ],
)
def test_overrides_take_the_configured_values_type(value: str, like: Any, typed: Any) -> None:
    assert typed_like(value, like) == typed
    assert type(typed_like(value, like)) is type(typed)


def test_identity_variables_are_never_carried(config_path: Path) -> None:
    configured = environment_variables(load_config(config_path), "development")
    carried, skipped = split_overrides(
        {"kubernetes_version": "1.32", "cluster_name": "sandbox-a", "simulation_dir": "/x", "node_count": "2"},
        configured,
    )
    assert carried == {"kubernetes_version": "1.32", "node_count": 2}
    assert skipped == ["cluster_name", "simulation_dir"]


def test_the_latest_promotion_is_the_one_that_happened_last(
    inventory: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the highest pull request: an IaC-only promotion (an override, no pull request) is still a promotion."""
    import sandbox.inventory as inventory_module

    start = utcnow()
    clock = iter(start + timedelta(minutes=minute) for minute in range(100))
    monkeypatch.setattr(inventory_module, "utcnow", lambda: next(clock))
    assert find_promotion(inventory) is None
    _sandbox(inventory, "sandbox-early", {"region": "x"}, pull_request=3, created_minutes_ago=5)
    _sandbox(inventory, "sandbox-old", {"node_count": "2"}, pull_request=7, created_minutes_ago=3)
    _sandbox(inventory, "sandbox-unpromoted", {"node_count": "9"}, pull_request=None)
    _sandbox(inventory, "sandbox-perf", {"node_count": "9"}, pull_request=None, kind=SandboxKind.performance)
    # The control-plane upgrade: created before sandbox-old, promoted after it, no pull request.
    _sandbox(
        inventory,
        "sandbox-upgrade",
        {"kubernetes_version": "1.32"},
        pull_request=None,
        created_minutes_ago=4,
        details={"pull_request": None, "commit": "abc"},
    )
    promotion = find_promotion(inventory)
    assert promotion is not None
    assert (promotion.sandbox, promotion.overrides, promotion.pull_request) == (
        "sandbox-upgrade",
        {"kubernetes_version": "1.32"},
        None,
    )
    assert promotion.merge_check() is None
    named = find_promotion(inventory, "sandbox-old")
    assert named is not None and named.pull_request_url == "https://git.example/pr/7"
    named = find_promotion(inventory, "sandbox-early")
    assert named is not None and named.overrides == {"region": "x"}


class _Hosting:
    """Tells whether a pull request is merged; opens nothing."""

    def __init__(self, merged: str | None) -> None:
        self.merged = merged
        self.asked: list[int] = []

    def merged_revision(self, pr: Any) -> str | None:
        self.asked.append(pr.number)
        return self.merged


def test_a_promotion_is_aligned_with_only_once_its_pull_request_is_merged(inventory: Inventory) -> None:
    pull_request = {"number": 7, "url": "https://git.example/pr/7", "head": "OPS-1-x", "base": "main", "title": "t"}
    _sandbox(inventory, "sandbox-a", {"node_count": "2"}, pull_request=7, details={"pull_request": pull_request})
    promotion = find_promotion(inventory)
    assert promotion is not None
    waiting = _Hosting(merged=None)
    with pytest.raises(AlignNotMergedError) as refused:
        check_merged(promotion, waiting, "development")  # type: ignore[arg-type]
    assert str(refused.value) == (
        "align development refused: sandbox-a's promotion, pull request #7 (https://git.example/pr/7), "
        "is not merged yet; merge it, then align again"
    )
    assert waiting.asked == [7]
    check_merged(promotion, _Hosting(merged="f" * 40), "development")  # type: ignore[arg-type]


def test_a_skipped_promotion_does_not_count(inventory: Inventory) -> None:
    _sandbox(inventory, "sandbox-a", {"kubernetes_version": "1.32"}, pull_request=None, details={"skipped": True})
    assert find_promotion(inventory) is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sandbox-nope", "no sandbox named 'sandbox-nope' in the inventory"),
        ("sandbox-unpromoted", "sandbox 'sandbox-unpromoted' has not been promoted"),
    ],
)
def test_naming_a_sandbox_that_cannot_be_aligned_with_is_invalid_input(
    inventory: Inventory, name: str, message: str
) -> None:
    _sandbox(inventory, "sandbox-unpromoted", {"node_count": "9"}, pull_request=None)
    with pytest.raises(InvalidInputError, match=message):
        find_promotion(inventory, name)


def test_a_refusal_names_every_destroyed_and_replaced_resource() -> None:
    plan = PlanSummary(
        destroy=["terraform_data.addon"], replace=["terraform_data.cluster", "terraform_data.network"], change=["x.y"]
    )
    error = refusal("development", plan)
    assert isinstance(error, PermanentError) and not error.retryable
    assert str(error).startswith(
        "align development refused: the plan would destroy terraform_data.addon, replace terraform_data.cluster, "
        "replace terraform_data.network (Plan: 2 to add, 1 to change, 3 to destroy.); nothing applied."
    )
    assert "\n" not in str(error)


def test_plan_lines_and_markdown_list_each_resource_deletions_first() -> None:
    plan = PlanSummary(add=["a.new"], change=["a.changed"], replace=["a.replaced"], destroy=["a.gone"], text="plan")
    assert plan.resource_lines() == [
        "destroy: a.gone",
        "replace: a.replaced",
        "update in place: a.changed",
        "create: a.new",
    ]
    markdown = plan.markdown("terraform plan for sandbox-a")
    assert markdown.startswith("# terraform plan for sandbox-a\n\n**Plan: 2 to add, 1 to change, 2 to destroy.**")
    assert "| replace | `a.replaced` |" in markdown and "```text\nplan\n```" in markdown
    assert "No changes" in PlanSummary().markdown("t")
    long = PlanSummary(text="x" * 50).markdown("t", max_text_chars=10)
    assert "…\nxxxxxxxxxx\n" in long and "x" * 11 not in long


def test_result_lines_say_what_was_proposed_and_how_to_apply_it() -> None:
    result = AlignResult(
        environment="development",
        sandbox="sandbox-a",
        status="proposed",
        plan="Plan: 0 to add, 1 to change, 0 to destroy.",
        resources=["update in place: terraform_data.cluster"],
        skipped=["cluster_name"],
        record_in_config={"kubernetes_version": "1.32"},
        pull_request_url="https://git.example/pr/8",
        message="development's alignment with sandbox-a proposed",
    )
    assert result.lines() == [
        "development's alignment with sandbox-a proposed",
        "  Plan: 0 to add, 1 to change, 0 to destroy.",
        "    update in place: terraform_data.cluster",
        "  not carried (they identify the sandbox's cluster): cluster_name",
        "  pull request: https://git.example/pr/8",
        "  once it is merged: sandbox align development --apply",
    ]
