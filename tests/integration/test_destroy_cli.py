"""``sandbox destroy`` acceptance: the real CLI, real terraform and git, the simulated cluster, a Prefect server.

Sandboxes are created with ``sandbox create`` from the demo's fleet repository
(provision → clone → bootstrap → validate), then destroyed. The simulated
cluster fails like a real one: an object whose finalizer no controller removes
stays terminating, and the teardown must not destroy the infrastructure under it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.config import FleetConfig, load_config
from sandbox.drivers.cluster import ObjectRef
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.drivers.terraform import PythonTerraformDriver
from sandbox.teardown import ROOT
from sandbox.wiring import open_inventory, sandbox_state_dir
from tests.integration.sandbox_cli import demo_setup, error_line, sandbox_cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires_tool("terraform"),
]

STUCK_FINALIZER = "example.com/never-cleared"
PODINFO_DEPLOYMENT = ObjectRef("apps/v1", "Deployment", "podinfo", "podinfo")


@dataclass
class Demo:
    config_path: Path
    config: FleetConfig
    api_url: str

    def cli(self, *args: str) -> Any:
        return sandbox_cli(*args, "--config", str(self.config_path), api_url=self.api_url)

    def create(self, name: str, ticket: str) -> None:
        result = self.cli("create", name, "--from", "development", "--ticket", ticket, "--summary", "teardown test")
        assert result.returncode == 0, result.stderr[-3000:]

    def cluster(self, name: str) -> SimulatedCluster:
        return SimulatedCluster(sandbox_state_dir(self.config, name) / "simulated-cluster")

    def has_state(self, name: str) -> bool:
        return PythonTerraformDriver(timeout=60).has_state(sandbox_state_dir(self.config, name) / "terraform", name)

    def status(self, name: str) -> str:
        inventory = open_inventory(self.config)
        try:
            return inventory.get(name).status.value
        finally:
            inventory.close()

    def entry(self, name: str) -> dict[str, Any]:
        """The sandbox as ``sandbox list --output json`` shows it."""
        result = self.cli("list", "--output", "json")
        assert result.returncode == 0, result.stderr
        [entry] = [e for e in json.loads(result.stdout) if e["name"] == name]
        return entry


@pytest.fixture(scope="module")
def demo(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    # Short per-tier waits: a blocked tier is reported after 2 seconds.
    config_path = demo_setup(tmp_path_factory.mktemp("destroy"), teardown_timeout_seconds=2)
    return Demo(config_path, load_config(config_path), prefect_server)


def _teardown_line(stdout: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.startswith("  teardown  ")]
    return line


def test_destroy_deletes_tiers_in_order_then_the_state_and_a_rerun_has_nothing_to_do(demo: Demo) -> None:
    demo.create("sandbox-tiers", "OPS-21")
    cluster = demo.cluster("sandbox-tiers")
    assert cluster.external_resources()  # load balancers and volumes the controllers created
    assert demo.has_state("sandbox-tiers")

    result = demo.cli("destroy", "sandbox-tiers")

    assert result.returncode == 0, result.stderr[-3000:]
    line = _teardown_line(result.stdout)
    assert " executed " in line
    assert re.search(r"tiers applications \(\d+\) -> custom-objects \(\d+\) -> controllers \(\d+\)", line), line
    assert line.endswith("terraform state destroyed")
    log = result.stdout + result.stderr
    deleted = [log.index(f"tier {tier}: deleting") for tier in ("applications", "custom-objects", "controllers")]
    assert deleted == sorted(deleted)
    assert not demo.has_state("sandbox-tiers")
    assert not cluster.simulation_dir.exists()  # removed by the module's destroy
    assert demo.status("sandbox-tiers") == "destroyed"

    again = demo.cli("destroy", "sandbox-tiers")

    assert again.returncode == 0, again.stderr[-3000:]
    rerun = _teardown_line(again.stdout)
    assert " executed " not in rerun and re.search(r" (cached|already completed) ", rerun), rerun
    entry = demo.entry("sandbox-tiers")
    assert (entry["status"], entry["forced_destroy"]) == ("destroyed", False)
    [teardown] = [s for s in entry["stages"] if s["name"] == "teardown"]
    assert (teardown["status"], teardown["executions"]) == ("completed", 1)  # the rerun ran nothing


def test_a_finalizer_that_never_clears_blocks_destroy_until_forced(demo: Demo) -> None:
    demo.create("sandbox-stuck", "OPS-22")
    cluster = demo.cluster("sandbox-stuck")

    # A long-lived environment is refused before anything is touched.
    refused = demo.cli("destroy", "production")
    assert refused.returncode == 2, refused.stderr
    assert "flow run" not in refused.stdout
    root = cluster.get(ROOT)
    assert root is not None and not root["spec"].get("suspend")
    assert demo.status("sandbox-stuck") == "active"

    # Test setup: a finalizer no controller will ever remove, on an object the
    # applications tier's HelmRelease uninstalls.
    cluster.merge_patch(PODINFO_DEPLOYMENT, {"metadata": {"finalizers": [STUCK_FINALIZER]}})

    blocked = demo.cli("destroy", "sandbox-stuck")

    assert blocked.returncode == 1, blocked.stdout
    error = error_line(blocked.stderr)
    assert error.startswith("sandbox: error: teardown blocked in tier applications: finalizers pending on ")
    assert f"Deployment/podinfo/podinfo ({STUCK_FINALIZER})" in error
    assert "the infrastructure was not destroyed" in error
    assert "Traceback" not in blocked.stdout + blocked.stderr
    assert demo.has_state("sandbox-stuck")
    assert cluster.simulation_dir.is_dir()
    assert demo.status("sandbox-stuck") == "teardown-blocked"

    # A rerun continues where it stopped: the deleted tier's leftovers still block it.
    rerun = demo.cli("destroy", "sandbox-stuck")
    assert rerun.returncode == 1, rerun.stdout
    assert f"Deployment/podinfo/podinfo ({STUCK_FINALIZER})" in error_line(rerun.stderr)
    assert demo.has_state("sandbox-stuck")

    forced = demo.cli("destroy", "sandbox-stuck", "--force")

    assert forced.returncode == 0, forced.stderr[-3000:]
    line = _teardown_line(forced.stdout)
    assert "torn down (forced)" in line
    assert f"forced past pending finalizers on Deployment/podinfo/podinfo ({STUCK_FINALIZER})" in line
    assert not demo.has_state("sandbox-stuck")
    assert not cluster.simulation_dir.exists()
    entry = demo.entry("sandbox-stuck")
    assert (entry["status"], entry["forced_destroy"]) == ("destroyed", True)
