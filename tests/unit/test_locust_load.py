"""The locust driver: the command it builds, the CSV it parses, and real locust runs against a local server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.config import PerformanceConfig, PerformanceGate
from sandbox.drivers.load import LoadGenerator, LoadMetrics
from sandbox.drivers.locust_load import (
    FINAL_STATS_ENV,
    LOCUSTFILE_NAME,
    STATS_PLUGIN_NAME,
    TARGET_PATH_ENV,
    LocustLoadGenerator,
    parse_locust_stats,
    prepare_locust_run,
    run_locust,
)
from sandbox.errors import CommandFailedError, InvalidInputError, ToolNotFoundError
from sandbox.perf.compare import compare
from tests.conftest import FIXTURES
from tests.fakes.load_target import TargetServer, running_target

STATS = FIXTURES / "perf"


def test_prepare_writes_files_and_builds_the_command_without_running(tmp_path: Path) -> None:
    prepared = prepare_locust_run(
        tmp_path / "run",
        target_url="http://127.0.0.1:8080/api/info?verbose=1",
        users=8,
        duration_seconds=2.5,
        spawn_rate=4,
    )
    argv = prepared.command.argv
    assert argv[:3] == (sys.executable, "-m", "locust")
    options = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert options["--locustfile"] == f"{tmp_path / 'run' / STATS_PLUGIN_NAME},{tmp_path / 'run' / LOCUSTFILE_NAME}"
    assert "--headless" in argv
    assert argv[argv.index("--users") + 1] == "8"
    assert argv[argv.index("--spawn-rate") + 1] == "4"
    assert argv[argv.index("--run-time") + 1] == "3s"  # whole seconds, rounded up
    assert argv[argv.index("--host") + 1] == "http://127.0.0.1:8080"
    assert argv[argv.index("--csv") + 1] == str(tmp_path / "run" / "locust")
    assert argv[argv.index("--exit-code-on-error") + 1] == "0"
    assert prepared.command.env[TARGET_PATH_ENV] == "/api/info?verbose=1"
    assert prepared.command.env[FINAL_STATS_ENV] == str(prepared.final_stats_csv)
    assert prepared.command.cwd == tmp_path / "run"
    assert prepared.command.timeout == 3 + 60
    assert (tmp_path / "run" / LOCUSTFILE_NAME).is_file() and (tmp_path / "run" / STATS_PLUGIN_NAME).is_file()
    assert not prepared.final_stats_csv.exists()  # nothing ran


def test_credentials_in_the_target_are_redacted_from_the_command(tmp_path: Path) -> None:
    prepared = prepare_locust_run(tmp_path, target_url="https://load:s3cret@shop.example/", users=1, duration_seconds=1)
    assert prepared.command.redact == ("s3cret",)
    assert "s3cret" not in prepared.command.describe()


def test_prepare_uses_the_scenario_locustfile_and_command(tmp_path: Path) -> None:
    own = tmp_path / "scenario.py"
    own.write_text("from locust import HttpUser\n")
    prepared = prepare_locust_run(
        tmp_path / "run",
        target_url="https://shop.example:8443/",
        users=1,
        duration_seconds=1,
        locust_command=["locust"],
        locustfile=own,
    )
    assert prepared.command.argv[0] == "locust"
    assert prepared.command.argv[prepared.command.argv.index("--locustfile") + 1].endswith(f",{own}")
    assert not (tmp_path / "run" / LOCUSTFILE_NAME).exists()
    assert prepared.command.argv[prepared.command.argv.index("--spawn-rate") + 1] == "1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_url": "ftp://x/"}, r"not an http\(s\) URL"),
        ({"users": 0}, "at least one user"),
        ({"duration_seconds": 0}, "positive duration"),
        ({"spawn_rate": -1.0}, "spawn rate must be positive"),
        ({"locustfile": Path("/nonexistent/locustfile.py")}, "does not exist"),
    ],
)
def test_prepare_refuses_bad_settings(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"target_url": "http://127.0.0.1:1/", "users": 1, "duration_seconds": 1.0}
    settings.update(kwargs)
    with pytest.raises(InvalidInputError, match=message):
        prepare_locust_run(tmp_path, **settings)  # type: ignore[arg-type]


def test_parse_aggregated_row() -> None:
    metrics = parse_locust_stats((STATS / "locust_final_stats.csv").read_text())
    assert (metrics.requests, metrics.failures) == (253, 0)
    assert (metrics.p50_ms, metrics.p95_ms, metrics.p99_ms) == (25.0, 27.0, 38.0)
    assert metrics.requests_per_second == pytest.approx(155.43)
    assert metrics.duration_seconds == pytest.approx(253 / 155.4272, rel=1e-3)
    assert metrics.error_rate == 0.0


def test_parse_counts_failures_as_the_error_rate() -> None:
    metrics = parse_locust_stats((STATS / "locust_final_stats_failures.csv").read_text())
    assert metrics.requests == metrics.failures == 26
    assert metrics.error_rate == 1.0


def test_parse_a_run_without_requests() -> None:
    header = (STATS / "locust_final_stats.csv").read_text().splitlines()[0]
    text = header + "\n,Aggregated,0,0,0,0,0,0,0,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
    metrics = parse_locust_stats(text, duration_seconds=2)
    assert (metrics.requests, metrics.p95_ms, metrics.duration_seconds, metrics.error_rate) == (0, 0.0, 2.0, 0.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Type,Name\n,Aggregated\n", "missing Request Count"),
        ((STATS / "locust_final_stats.csv").read_text().splitlines()[0] + "\n", "no 'Aggregated' row"),
    ],
)
def test_parse_refuses_what_is_not_locust_statistics(text: str, message: str) -> None:
    with pytest.raises(CommandFailedError, match=message):
        parse_locust_stats(text)


def test_missing_locust_is_a_tool_error(tmp_path: Path) -> None:
    generator = LocustLoadGenerator(locust_command=["/nonexistent/bin/locust"], workdir=tmp_path)
    with pytest.raises(ToolNotFoundError, match="/nonexistent/bin/locust is not installed"):
        generator.run("http://127.0.0.1:9/", users=1, duration_seconds=1)


def test_a_broken_locustfile_fails_with_locusts_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('scenario setup exploded')\n")
    prepared = prepare_locust_run(
        tmp_path / "run", target_url="http://127.0.0.1:9/", users=1, duration_seconds=1, locustfile=broken
    )
    with pytest.raises(CommandFailedError, match="locust failed .*scenario setup exploded"):
        run_locust(prepared)


# -- real load -----------------------------------------------------------------


@pytest.fixture(scope="module")
def target() -> Iterator[TargetServer]:
    with running_target(delay_seconds=0.005) as server:
        yield server


@pytest.fixture(scope="module")
def baseline_run(target: TargetServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadMetrics, Path, int]:
    workdir = tmp_path_factory.mktemp("locust-baseline")
    generator = LocustLoadGenerator(workdir=workdir)
    with target.lock:
        target.requests = 0
    # 4 s, not 2: on a loaded machine locust's users start late, and 2 s once measured nothing.
    metrics = generator.run(target.url + "health", users=4, duration_seconds=4, spawn_rate=4)
    return metrics, workdir, target.requests


def test_locust_loads_the_local_server(target: TargetServer, baseline_run: tuple[LoadMetrics, Path, int]) -> None:
    metrics, workdir, served = baseline_run
    assert isinstance(LocustLoadGenerator(), LoadGenerator)
    assert metrics.failures == 0 and metrics.requests >= 20
    assert target.paths == {"/health"}
    # The statistics cover the whole run: every request the server answered but
    # those in flight when locust stopped its users (at most one per user), not
    # the CSV writer's last one-second snapshot.
    assert 0 <= served - metrics.requests <= 4
    assert 0 < metrics.duration_seconds <= 6
    assert 5 <= metrics.p50_ms <= metrics.p95_ms <= metrics.p99_ms
    assert (workdir / "locust_final_stats.csv").is_file() and (workdir / "locust_stats.csv").is_file()


def test_an_injected_slowdown_fails_the_gate(
    target: TargetServer, baseline_run: tuple[LoadMetrics, Path, int], tmp_path: Path
) -> None:
    baseline, _, _ = baseline_run
    # The regression: +0.4 s per request, far above what a busy machine adds to a 5 ms service time.
    target.delay_seconds = 0.4
    try:
        # 4 s: each user completes several 0.4 s requests even when a loaded machine starts locust's users late
        # (a run that completes none fails the gate too, but for the wrong reason).
        slowed = LocustLoadGenerator(workdir=tmp_path).run(target.url + "health", users=4, duration_seconds=4)
    finally:
        target.delay_seconds = 0.005
    gates = PerformanceConfig(gates=[PerformanceGate(metric="p95_ms", max_worse_percent=10)])
    comparison = compare(slowed.model_dump(), baseline.model_dump(), gates, baseline_run_id="base")
    assert not comparison.passed
    p95 = next(r for r in comparison.rows if r.metric == "p95_ms")
    assert slowed.failures == 0 and slowed.p50_ms >= 400 and slowed.p95_ms > baseline.p95_ms
    assert p95.verdict == "fail" and p95.change_percent is not None and p95.change_percent > 10
    assert any(f.startswith("p95 latency") and "limit +10%" in f for f in comparison.failures)
    # The same load without the slowdown against itself passes.
    assert compare(baseline.model_dump(), baseline.model_dump(), gates).passed
