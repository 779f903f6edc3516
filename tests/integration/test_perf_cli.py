"""Issue 7's acceptance: ``sandbox perf --from production --scenario smoke`` on the demo setup.

The real CLI runs the performance_sandbox flow (real git, terraform, the
simulated cluster, a real HTTP load against the local stand-in target, a Prefect
server). The first run has no baseline; once accepted, a second run compares
against it. Nothing of either sandbox is left behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.config import load_config
from sandbox.demo import prepare_demo
from sandbox.models import SandboxStatus
from sandbox.perf.store import PerfRunStatus, PerfStore
from sandbox.wiring import open_inventory, sandbox_state_dir

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def sandbox_cli(*args: str, api_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    return subprocess.run(
        [str(BIN / "sandbox"), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_demo(tmp_path_factory.mktemp("perf-demo"))


def run_id_of(stdout: str) -> str:
    match = re.search(r"^performance run ([0-9a-f]+): scenario smoke against a clone of production", stdout, re.M)
    assert match, stdout
    return match.group(1)


def assert_no_sandbox_left(config_path: Path, stdout: str) -> None:
    config = load_config(config_path)
    name = re.search(r"^sandbox (perf-production-[0-9a-f]+): destroyed$", stdout, re.M)
    assert name, stdout
    inventory = open_inventory(config)
    try:
        records = {r.name: r for r in inventory.list()}
    finally:
        inventory.close()
    assert records[name.group(1)].status is SandboxStatus.destroyed
    assert all(r.status is SandboxStatus.destroyed for r in records.values())
    assert not sandbox_state_dir(config, name.group(1)).exists()
    branches = subprocess.run(
        ["git", "--git-dir", str(config_path.parent / "remote.git"), "branch", "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "perf-" not in branches


def table(stdout: str) -> dict[str, list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["METRIC", "BASELINE", "RUN"])
    rows = {}
    for line in lines[start + 1 : start + 6]:
        label, _, rest = line.partition(")")
        rows[label + ")"] = rest.split()
    return rows


def test_perf_runs_compares_and_leaves_nothing_behind(demo: Path, prefect_server: str) -> None:
    config = str(demo)
    first = sandbox_cli(
        "perf", "--from", "production", "--scenario", "smoke", "--config", config, api_url=prefect_server
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert "flow run 'performance-sandbox'" in first.stdout and ": Completed" in first.stdout
    first_id = run_id_of(first.stdout)
    assert "baseline: none accepted for smoke from production yet" in first.stdout
    rows = table(first.stdout)
    assert list(rows) == [
        "throughput (req/s)",
        "p50 latency (ms)",
        "p95 latency (ms)",
        "p99 latency (ms)",
        "error rate (%)",
    ]
    assert rows["p95 latency (ms)"][0] == "-" and float(rows["p95 latency (ms)"][1]) >= 20  # 20 ms service time
    assert float(rows["throughput (req/s)"][1]) > 0
    chart = re.search(r"^chart: (\S+\.png)$", first.stdout, re.M)
    assert chart and first_id in chart.group(1) and Path(chart.group(1)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_no_sandbox_left(demo, first.stdout)

    accepted = sandbox_cli("perf", "accept", first_id, "--config", config, api_url=prefect_server)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == f"run {first_id} is the baseline of smoke from production"

    second = sandbox_cli(
        "perf", "--from", "production", "--scenario", "smoke", "--config", config, api_url=prefect_server
    )
    second_id = run_id_of(second.stdout)
    assert second_id != first_id
    assert f"baseline: run {first_id}" in second.stdout
    rows = table(second.stdout)
    for label, (baseline, run, change, *_gate) in rows.items():
        assert baseline != "-" and change.endswith("%"), (label, rows)
        if label != "error rate (%)" and float(baseline):
            # The table shows values to 0.1; the change is computed from the unrounded ones.
            tolerance = 0.1 / float(baseline) * 100 + 0.1
            assert float(change[:-1]) == pytest.approx(
                (float(run) - float(baseline)) / float(baseline) * 100, abs=tolerance
            )
    # The gates decide the exit code: 0 when they pass, 1 naming what regressed.
    with PerfStore(load_config(demo).inventory_url) as store:
        stored = store.get(second_id)
    assert stored.baseline_run_id == first_id and stored.comparison is not None
    if stored.comparison["passed"]:
        assert stored.status is PerfRunStatus.passed
        assert second.returncode == 0 and "gates: passed" in second.stdout, second.stderr[-3000:]
    else:
        assert stored.status is PerfRunStatus.failed
        assert second.returncode == 1 and "gates: FAILED" in second.stdout
        assert f"performance run {second_id} (smoke from production) failed its gates" in second.stderr
    chart = re.search(r"^chart: (\S+\.png)$", second.stdout, re.M)
    assert chart and Path(chart.group(1)).is_file() and second_id in chart.group(1)
    assert_no_sandbox_left(demo, second.stdout)

    listing = sandbox_cli("perf", "list", "--config", config, "--output", "json", api_url=prefect_server)
    assert listing.returncode == 0, listing.stderr
    runs = {r["run_id"]: r for r in json.loads(listing.stdout)}
    assert runs[first_id]["baseline"] is True and runs[first_id]["accepted"] is True
    assert runs[second_id]["baseline"] is False


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["perf", "--from", "qa"], 2, "unknown environment 'qa'"),
        (["perf", "--scenario", "soak"], 2, "unknown performance scenario 'soak' (known: smoke)"),
        (["perf", "--scale", "node count=3"], 2, "--scale 'node count=3' is not KEY=VALUE"),
        (["perf", "accept", "0123456789ab"], 1, "no performance run '0123456789ab' in the inventory"),
    ],
)
def test_bad_input_creates_nothing(demo: Path, prefect_server: str, args: list[str], code: int, message: str) -> None:
    before = load_config(demo)
    inventory = open_inventory(before)
    try:
        names = [r.name for r in inventory.list()]
    finally:
        inventory.close()
    result = sandbox_cli(*args, "--config", str(demo), api_url=prefect_server)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    inventory = open_inventory(before)
    try:
        assert [r.name for r in inventory.list()] == names
    finally:
        inventory.close()
