"""Issue 8's acceptance, end to end through the ``sandbox`` command line.

Three demo sandboxes are created by ``sandbox create`` (the lifecycle runs:
terraform, git, the simulated cluster, a Prefect server), one of them with
``--keep``; their TTLs are then put in the past through the inventory API (the
test's only hook: no command can set a past expiry). A fourth cluster is
provisioned with terraform and its record never made: an orphaned state.
``sandbox cleanup --dry-run`` must list exactly the two expired unprotected
sandboxes and the orphan, changing nothing; ``sandbox cleanup`` must remove
exactly those.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox.config import FleetConfig
from sandbox.drivers.terraform import PythonTerraformDriver
from sandbox.inventory import utcnow
from sandbox.models import SandboxStatus
from sandbox.wiring import open_inventory, sandbox_state_dir
from tests.cleanup_support import EXAMPLE_REPO, make_fleet, remote_branches

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
SANDBOXES = {"sb-one": "OPS-11", "sb-two": "OPS-12", "sb-kept": "OPS-13"}


def cli(api_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    return subprocess.Popen(
        [str(BIN / "sandbox"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def run(api_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    process = cli(api_url, *args)
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def snapshot(config: FleetConfig, tf: PythonTerraformDriver) -> dict[str, Any]:
    """What cleanup may change: records, terraform states, clusters, branches."""
    inventory = open_inventory(config)
    try:
        records = {r.name: (r.status.value, r.lifecycle_id) for r in inventory.list()}
    finally:
        inventory.close()
    names = [*SANDBOXES, "sb-orphan"]
    return {
        "records": records,
        "states": {n: tf.has_state(sandbox_state_dir(config, n) / "terraform", n) for n in names},
        "clusters": {n: (sandbox_state_dir(config, n) / "simulated-cluster").is_dir() for n in names},
        "branches": remote_branches(config),
    }


@pytest.fixture(scope="module")
def fleet(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> FleetConfig:
    config = make_fleet(tmp_path_factory.mktemp("acceptance") / "fleet", teardown_timeout=60)
    config_path = str(config.base_dir / "fleet.yaml")
    creating = {
        name: cli(
            prefect_server,
            "create",
            name,
            "--from",
            "development",
            "--ticket",
            ticket,
            "--summary",
            f"try {name}",
            "--config",
            config_path,
            *(["--keep"] if name == "sb-kept" else []),
        )  # fmt: skip
        for name, ticket in SANDBOXES.items()
    }
    for name, process in creating.items():
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, (name, out[-2000:], err[-2000:])
    inventory = open_inventory(config)
    try:
        for name in SANDBOXES:
            inventory.update(name, expires_at=utcnow() - timedelta(hours=2))  # the test hook: TTLs in the past
    finally:
        inventory.close()
    orphan = sandbox_state_dir(config, "sb-orphan")
    tf = PythonTerraformDriver()
    tf.prepare(orphan / "terraform", EXAMPLE_REPO / "infra" / "cluster", workspace="sb-orphan")
    tf.apply(
        orphan / "terraform",
        {
            "cluster_name": "sb-orphan",
            "kubernetes_version": "1.31",
            "node_count": 3,
            "node_size": "large",
            "simulation_dir": str(orphan / "simulated-cluster"),
        },
    )
    return config


def test_dry_run_lists_the_two_expired_unprotected_sandboxes_and_the_orphan_only(
    fleet: FleetConfig, prefect_server: str
) -> None:
    tf = PythonTerraformDriver()
    before = snapshot(fleet, tf)
    assert before["states"] == dict.fromkeys([*SANDBOXES, "sb-orphan"], True)
    config_path = str(fleet.base_dir / "fleet.yaml")
    as_json = run(prefect_server, "cleanup", "--dry-run", "--output", "json", "--config", config_path)
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    document = json.loads(as_json.stdout)
    assert document["dry_run"] is True
    assert sorted((a["kind"], a["target"], a["action"], a["status"]) for a in document["actions"]) == [
        ("expired", "sb-one", "teardown", "planned"),
        ("expired", "sb-two", "teardown", "planned"),
        ("orphan-state", "sb-orphan", "adopt-and-teardown", "planned"),
    ]
    assert document["protected_expired"] == 1
    # Costs: 1 x small at 0.1/h (expired 2 h ago: 166 h saved), the orphan 3 x large at 0.4/h (168 h).
    saving = {a["target"]: (a["hourly_cost"], a["estimated_saving"]) for a in document["actions"]}
    assert saving == {"sb-one": (0.1, 16.6), "sb-two": (0.1, 16.6), "sb-orphan": (1.2, 201.6)}
    assert snapshot(fleet, tf) == before


def test_cleanup_removes_exactly_those_and_nothing_else(fleet: FleetConfig, prefect_server: str) -> None:
    tf = PythonTerraformDriver()
    before = snapshot(fleet, tf)
    config_path = str(fleet.base_dir / "fleet.yaml")
    done = run(prefect_server, "cleanup", "--config", config_path)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith(("expired ", "orphan-"))}
    assert sorted(rows) == ["sb-one", "sb-orphan", "sb-two"] and all(" done " in r for r in rows.values())
    after = snapshot(fleet, tf)
    assert after["states"] == {"sb-one": False, "sb-two": False, "sb-kept": True, "sb-orphan": False}
    assert after["clusters"] == {"sb-one": False, "sb-two": False, "sb-kept": True, "sb-orphan": False}
    assert {n: after["records"][n][0] for n in [*SANDBOXES, "sb-orphan"]} == {
        "sb-one": "destroyed",
        "sb-two": "destroyed",
        "sb-kept": "active",
        "sb-orphan": "destroyed",  # adopted by cleanup, then torn down
    }
    assert after["records"]["sb-kept"] == before["records"]["sb-kept"]
    # No branch touched: the destroyed platform sandboxes keep theirs for their pull requests.
    assert after["branches"] == before["branches"]

    listing = run(prefect_server, "list", "--output", "json", "--config", config_path)
    assert listing.returncode == 0, listing.stderr
    entries = {e["name"]: e for e in json.loads(listing.stdout)}
    assert entries["sb-one"]["status"] == "destroyed" and entries["sb-one"]["destroyed_at"]
    assert entries["sb-one"]["hourly_cost"] == 0.1 and entries["sb-one"]["cost_so_far"] is not None
    assert entries["sb-kept"]["keep"] is True and entries["sb-kept"]["expired"] is True
    inventory = open_inventory(fleet)
    try:
        assert inventory.get("sb-orphan").adopted
        assert inventory.get("sb-kept").status is SandboxStatus.active
    finally:
        inventory.close()


def test_extend_pushes_the_expiry_out_within_the_maximum(fleet: FleetConfig, prefect_server: str) -> None:
    config_path = str(fleet.base_dir / "fleet.yaml")
    too_long = run(prefect_server, "extend", "sb-kept", "--ttl", "400d", "--config", config_path)
    assert too_long.returncode == 2 and too_long.stderr.count("\n") == 1, too_long.stderr
    assert "beyond the maximum TTL 30d" in too_long.stderr and "Traceback" not in too_long.stderr
    extended = run(prefect_server, "extend", "sb-kept", "--ttl", "24h", "--no-keep", "--config", config_path)
    assert extended.returncode == 0, extended.stderr
    inventory = open_inventory(fleet)
    try:
        kept = inventory.get("sb-kept")
    finally:
        inventory.close()
    # It had expired: 24 h from now, and no longer protected.
    assert timedelta(hours=23) < kept.expires_at - utcnow() <= timedelta(hours=24)
    assert not kept.keep and "no longer protected from cleanup" in extended.stdout
    destroyed = run(prefect_server, "extend", "sb-one", "--ttl", "1h", "--config", config_path)
    assert destroyed.returncode == 1 and "is destroyed" in destroyed.stderr
