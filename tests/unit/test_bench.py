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
    assert lines[0].startswith("| `lifecycle_overhead_ratio` | 1.300 x | ≤ 1.25 | **FAILS**")
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
