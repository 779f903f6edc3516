"""TTLs (``sandbox extend``) and cost estimates: rules, limits and what the list shows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.list_view import list_entries, list_lines
from sandbox.config import FleetConfig
from sandbox.cost import estimate, estimated_saving, with_cost
from sandbox.errors import ConflictError, InvalidInputError
from sandbox.expiry import extend, new_expiry
from sandbox.inventory import Inventory, NotFoundError
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus
from tests.pg_server import inventory_url, postgres_server, postgres_url  # noqa: F401

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def fleet_config(**cost: Any) -> FleetConfig:
    module = "infra/cluster"
    return FleetConfig.model_validate(
        {
            "fleet_repo": {"remote": "remote.git"},
            "environments": {
                "development": {
                    "cluster_dir": "clusters/development",
                    "tracking": {"type": "branch", "branch": "main"},
                    "terraform": {"module": module, "variables": {"node_count": 1, "node_size": "small"}},
                },
                "production": {
                    "cluster_dir": "clusters/production",
                    "tracking": {"type": "tag", "tag": "1.2.3"},
                    "terraform": {"module": module, "variables": {"node_count": 3, "node_size": "large"}},
                },
            },
            "sandbox": {"max_ttl": "7d"},
            "cost": {"hourly_rates": {"small": 0.1, "large": 0.4}, **cost},
        }
    )


def sandbox(name: str = "sb-a", **fields: Any) -> SandboxRecord:
    values: dict[str, Any] = {
        "name": name,
        "kind": SandboxKind.platform,
        "source_env": "development",
        "lifecycle_id": "lc1",
        "status": SandboxStatus.active,
        "created_at": NOW - timedelta(hours=10),
        "expires_at": NOW + timedelta(hours=62),
    }
    values.update(fields)
    return SandboxRecord(**values)


@pytest.fixture
def inventory(inventory_url: str) -> Iterator[Inventory]:  # noqa: F811
    inv = Inventory(inventory_url)
    yield inv
    inv.close()


# -- cost -----------------------------------------------------------------------------


def test_hourly_cost_is_the_rate_of_the_size_times_the_count() -> None:
    config = fleet_config()
    assert (estimate(config, "development", {}).scale, estimate(config, "development", {}).hourly_cost) == (
        "1 x small",
        0.1,
    )
    # A performance sandbox cloned from production runs at production's scale.
    assert estimate(config, "production", {}).hourly_cost == pytest.approx(1.2)
    # Overrides from the command line are strings.
    assert estimate(config, "development", {"node_count": "4", "node_size": "large"}).hourly_cost == pytest.approx(1.6)


def test_unknown_sizes_have_no_cost_unless_a_default_rate_is_set() -> None:
    assert estimate(fleet_config(), "development", {"node_size": "xlarge"}).hourly_cost is None
    assert estimate(fleet_config(default_hourly_rate=1.0), "development", {"node_size": "xlarge"}).hourly_cost == 1.0


def test_cost_so_far_runs_until_destruction() -> None:
    running = sandbox(hourly_cost=0.5)
    assert running.cost_so_far(NOW) == 5.0
    destroyed = sandbox(hourly_cost=0.5, status=SandboxStatus.destroyed, destroyed_at=NOW - timedelta(hours=6))
    assert destroyed.cost_so_far(NOW + timedelta(days=30)) == 2.0
    assert sandbox().cost_so_far(NOW) is None  # no rate, no number


def test_the_saving_assumes_a_person_notices_after_unnoticed_hours() -> None:
    # Expired 10 h ago, assumed noticed 168 h after expiry: 158 h saved.
    assert estimated_saving(0.4, now=NOW, expires_at=NOW - timedelta(hours=10), unnoticed_hours=168) == 63.2
    # Cleaned long after it would have been noticed anyway: nothing saved.
    assert estimated_saving(0.4, now=NOW, expires_at=NOW - timedelta(days=30), unnoticed_hours=168) == 0.0
    # An orphan has no expiry: the whole assumed period from when it was found.
    assert estimated_saving(0.4, now=NOW, expires_at=None, unnoticed_hours=24) == 9.6
    assert estimated_saving(None, now=NOW, expires_at=None, unnoticed_hours=24) is None


def test_list_shows_expiry_protection_and_cost() -> None:
    config = fleet_config()
    records = [
        sandbox("sb-old", expires_at=NOW - timedelta(hours=1)),
        sandbox("sb-kept", keep=True, source_env="production", kind=SandboxKind.performance),
    ]
    lines = list_lines(records, config, now=NOW)
    assert lines[0].split()[:8] == ["NAME", "KIND", "FROM", "STATUS", "EXPIRES", "SCALE", "COST/H", "COST"]
    assert "2026-11-24T11:00:00Z (expired)" in lines[1] and "1 x small" in lines[1] and " 1.00 " in lines[1]
    assert "(keep)" in lines[2] and "3 x large" in lines[2] and " 12.00 " in lines[2]
    assert lines[-1] == "cost so far (estimated): 13.00 USD"
    entries = list_entries(records, config, now=NOW)
    assert [(e["expired"], e["hourly_cost"], e["cost_so_far"]) for e in entries] == [
        (True, 0.1, 1.0),
        (False, pytest.approx(1.2), 12.0),
    ]
    assert with_cost(config, records[0]).scale == "1 x small"


# -- TTL ------------------------------------------------------------------------------


def test_extend_adds_to_the_later_of_now_and_the_expiry() -> None:
    assert new_expiry(NOW + timedelta(hours=5), "24h", now=NOW, max_ttl="7d") == NOW + timedelta(hours=29)
    # Already expired: counted from now, or it could stay expired.
    assert new_expiry(NOW - timedelta(days=2), "24h", now=NOW, max_ttl="7d") == NOW + timedelta(hours=24)


def test_extend_beyond_the_maximum_ttl_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="beyond the maximum TTL 7d"):
        new_expiry(NOW + timedelta(days=6), "2d", now=NOW, max_ttl="7d")
    with pytest.raises(InvalidInputError, match="invalid duration 'soon'"):
        new_expiry(NOW, "soon", now=NOW, max_ttl="7d")


def test_extend_updates_the_inventory(inventory: Inventory) -> None:
    config = fleet_config()
    inventory.create(sandbox())
    done = extend(config, inventory, "sb-a", ttl="24h", now=NOW)
    assert done.previous_expiry == NOW + timedelta(hours=62)
    assert inventory.get("sb-a").expires_at == NOW + timedelta(hours=86)
    assert extend(config, inventory, "sb-a", keep=True, now=NOW).keep_changed
    assert inventory.get("sb-a").keep
    assert not extend(config, inventory, "sb-a", keep=True, now=NOW).keep_changed


def test_extend_refuses_nothing_unknown_and_destroyed(inventory: Inventory) -> None:
    config = fleet_config()
    inventory.create(sandbox("sb-gone", status=SandboxStatus.destroyed))
    with pytest.raises(InvalidInputError, match="nothing to change"):
        extend(config, inventory, "sb-gone")
    with pytest.raises(NotFoundError):
        extend(config, inventory, "sb-none", ttl="1h")
    with pytest.raises(ConflictError, match="destroyed"):
        extend(config, inventory, "sb-gone", ttl="1h")


def test_cleanup_and_cost_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        fleet_config().model_validate({**fleet_config().model_dump(), "cleanup": {"grace": "later"}})
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        fleet_config(hourly_rates={"small": -1})


def test_extending_by_a_huge_ttl_is_refused_not_an_overflow() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(InvalidInputError, match="beyond the maximum TTL 30d"):
        new_expiry(now, "999999998d", now=now, max_ttl="30d")
