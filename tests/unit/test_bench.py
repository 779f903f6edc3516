"""The benchmark's own logic: bars, the results file, the README, and its generated inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import report, resolve
from bench.common import Metric, median
from bench.profiling import Profiler
from sandbox import versions


def _metric(name: str, value: float, bar: float, better: str = "lower", unit: str = "x") -> Metric:
    return Metric(
        name=name,
        bar=bar,
        better=better,  # type: ignore[arg-type]
        unit=unit,
        description="d",
        samples=[value],
    )


@pytest.mark.parametrize(
    ("value", "bar", "better", "passed"),
    [
        (1.2, 1.25, "lower", True),
        (1.3, 1.25, "lower", False),
        (2500, 2000, "higher", True),
        (1500, 2000, "higher", False),
    ],
)
def test_a_metric_meets_its_bar_in_its_direction(value: float, bar: float, better: str, passed: bool) -> None:
    metric = _metric("m", value, bar, better)
    assert metric.passed is passed
    assert (metric.bar_used <= 1.0) is passed


def test_median_of_repetitions_and_no_repetition_is_an_error() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    with pytest.raises(RuntimeError, match="no repetition"):
        median([])


def test_results_file_is_a_flat_map_of_metric_to_number(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    report.write_results([_metric("lifecycle_overhead_ratio", 1.23456, 1.25)], path=path)
    assert json.loads(path.read_text()) == {"lifecycle_overhead_ratio": 1.235}


def test_readme_names_machine_date_bars_and_failures(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    metrics = [_metric("resolve_10k_tags_ms", 30.0, 200.0, unit="ms"), _metric("lifecycle_overhead_ratio", 1.3, 1.25)]
    metrics.sort(key=report.order)
    profiler = Profiler()
    profiler.enable()
    sum(range(1000))
    profiler.disable()
    report.write_readme(
        metrics,
        started=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        seconds=90,
        profiled=metrics[0],
        profile=report.profile_summary(profiler),
        path=path,
    )
    text = path.read_text()
    assert "2026-01-02 03:04 UTC" in text
    assert "| cpu count | python | platform |" in text
    lines = [line for line in text.splitlines() if line.startswith("| `")]
    assert lines[0].startswith("| `lifecycle_overhead_ratio` | 1.300 x | ≤ 1.25 | **missed: 1.3 > 1.25 (4% over)**")
    assert lines[1].startswith("| `resolve_10k_tags_ms` | 30.0 ms | ≤ 200 | ok")
    assert "### Profile of `lifecycle_overhead_ratio`" in text


def test_generated_tags_give_the_range_a_match_on_its_minor_line() -> None:
    tags = resolve.generate_tags(2000)
    assert tags == resolve.generate_tags(2000)  # deterministic
    assert len(tags) == 2000
    range_, line = resolve.minor_line_range(tags)
    chosen = versions.resolve(range_, tags)
    assert chosen is not None and chosen.lstrip("v").startswith(line)
    assert any(versions.parse_tag(tag) is None for tag in tags)  # not every tag is a version


# -- one benchmark cannot stop the others; a missed bar is a result -------------------------


def test_a_missed_bar_is_reported_with_how_far_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench import runner

    missed = _metric("lifecycle_overhead_ratio", 1.4, 1.25)
    outcome = runner.run_groups(["lifecycle"], lambda group: [missed])
    assert outcome.metrics == [missed] and not outcome.errors
    assert runner.exit_status(outcome) == 0  # measured: the miss is a result
    assert runner.exit_status(outcome, strict=True) == 1
    assert runner.miss(missed) == "missed: 1.4 > 1.25 (12% over)"
    assert runner.miss(_metric("ops", 1500, 2000, "higher", "ops/s")) == "missed: 1.5e+03 < 2,000 (25% under)"
    report.print_summary(outcome.metrics)
    assert "missed: 1.4 > 1.25 (12% over)" in capsys.readouterr().out
    readme = tmp_path / "README.md"
    report.write_readme(
        outcome.metrics, started=datetime.now(UTC), seconds=60, profiled=None, profile=None, path=readme
    )
    assert "**missed: 1.4 > 1.25 (12% over)**" in readme.read_text()


def test_one_benchmark_raising_is_recorded_and_the_others_still_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import runner
    from bench.common import BenchError

    def run(group: str) -> list[Metric]:
        if group == "scan":
            raise BenchError("scan found 3 removed APIs (expected 4)")
        if group == "readiness":
            return [Metric("readiness_ms", 100, "lower", "ms", "d", samples=[])]  # no figure: its group's error
        return [_metric(f"{group}_ms", 10.0, 100.0, unit="ms")]

    outcome = runner.run_groups(["resolve", "scan", "readiness", "cleanup"], run)
    assert [m.name for m in outcome.metrics] == ["resolve_ms", "cleanup_ms"]
    assert outcome.errors == {
        "scan": "BenchError: scan found 3 removed APIs (expected 4)",
        "readiness": "BenchError: no repetition produced a figure",
    }
    assert runner.exit_status(outcome) == 1  # a benchmark could not run at all
    assert "--- scan: ERROR, not measured: BenchError: scan found 3 removed APIs" in capsys.readouterr().err
    results = tmp_path / "results.json"
    report.write_results(outcome.metrics, errors=outcome.errors, path=results)
    assert json.loads(results.read_text()) == {"resolve_ms": 10.0, "cleanup_ms": 10.0, "errors": outcome.errors}
    report.print_summary(outcome.metrics, outcome.errors)
    assert "scan: NOT MEASURED: BenchError: scan found 3 removed APIs (expected 4)" in capsys.readouterr().out


# -- peers: the outside programs a ratio is measured against, and partial runs merged ---------------------


def _peer_metric(value: float) -> Metric:
    metric = _metric("resolve_vs_masterminds_ratio", value, 2.0)
    metric.peers = {"semver-peer": "semver-peer v0.2.0 (github.com/Masterminds/semver/v3 v3.5.0, go1.26.8)"}
    metric.note = "project 30 ms, semver-peer 20 ms"
    return metric


def test_results_name_the_peers_and_a_merge_keeps_the_other_figures(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    report.write_results([_metric("lifecycle_overhead_ratio", 1.1, 1.25)], errors={"scan": "boom"}, path=path)
    report.write_results([_peer_metric(1.5)], path=path, merge=True)
    assert json.loads(path.read_text()) == {
        "lifecycle_overhead_ratio": 1.1,
        "resolve_vs_masterminds_ratio": 1.5,
        "errors": {"scan": "boom"},
        "peers": {"semver-peer": "semver-peer v0.2.0 (github.com/Masterminds/semver/v3 v3.5.0, go1.26.8)"},
    }
    report.write_results([_metric("lifecycle_overhead_ratio", 1.2, 1.25)], path=path)  # a full run: only its own
    assert json.loads(path.read_text()) == {"lifecycle_overhead_ratio": 1.2}


def test_a_merged_partial_run_replaces_its_rows_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    started = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    metrics = [_metric("lifecycle_overhead_ratio", 1.1, 1.25), _metric("resolve_10k_tags_ms", 30.0, 200.0, unit="ms")]
    report.write_readme(metrics, started=started, seconds=60, profiled=None, profile=None, path=path)
    for value in (1.5, 1.7):  # merged twice: one row, one note, one peer line
        merged = [_metric("resolve_10k_tags_ms", 20.0, 200.0, unit="ms"), _peer_metric(value)]
        report.merge_readme(merged, started=started, groups=["resolve", "resolve-peer"], path=path)
    text = path.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("|")[1].strip() for row in rows] == [
        "`lifecycle_overhead_ratio`",
        "`resolve_10k_tags_ms`",
        "`resolve_vs_masterminds_ratio`",
    ]
    assert "| `resolve_10k_tags_ms` | 20.0 ms |" in text
    assert "| `resolve_vs_masterminds_ratio` | 1.700 x | ≤ 2 | ok |" in text
    assert text.count("`resolve_vs_masterminds_ratio`: project 30 ms") == 1
    assert (
        text.count("in a partial run (`python -m bench --only resolve --only resolve-peer --merge`, load average") == 1
    )
    assert text.count(report.PEERS_HEADING) == 1
    assert "| semver-peer | semver-peer v0.2.0 (github.com/Masterminds/semver/v3 v3.5.0, go1.26.8) |" in text
    assert text.count("| semver-peer |") == 1
    assert text.index(report.PEERS_HEADING) < text.index("## What dominated")
