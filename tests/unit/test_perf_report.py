"""Scenario settings, the comparison with a baseline, its gates, and the reports made from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.config import FleetConfig, PerformanceConfig, PerformanceGate
from sandbox.errors import ConfigError, InvalidInputError
from sandbox.perf.chart import write_chart
from sandbox.perf.compare import compare, markdown_summary, render_table, table_rows
from sandbox.perf.scenario import LoadOverrides, PerformanceRequest, ScaleOverride, ScenarioSettings, resolve_scenario
from sandbox.redaction import redact_url


def metrics(rps: float, p50: float, p95: float, p99: float, requests: int = 1000, failures: int = 0) -> dict[str, Any]:
    return {
        "requests": requests,
        "failures": failures,
        "duration_seconds": 10.0,
        "requests_per_second": rps,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "error_rate": failures / requests if requests else 0.0,
    }


GATES = PerformanceConfig(
    gates=[
        PerformanceGate(metric="p95_ms", max_worse_percent=10),
        PerformanceGate(metric="requests_per_second", max_worse_percent=10),
    ],
    max_error_rate=0.01,
)


def row(comparison: Any, metric: str) -> Any:
    return next(r for r in comparison.rows if r.metric == metric)


def test_p95_more_than_ten_percent_worse_fails() -> None:
    comparison = compare(metrics(100, 20, 33.5, 40), metrics(100, 20, 30, 40), GATES, baseline_run_id="b1")
    assert not comparison.passed
    assert row(comparison, "p95_ms").change_percent == pytest.approx(11.7)
    assert row(comparison, "p95_ms").verdict == "fail"
    assert comparison.failures == ["p95 latency 33.5 ms vs 30.0 ms (+11.7%, limit +10%)"]


def test_within_the_gate_passes_and_improvements_never_fail() -> None:
    within = compare(metrics(95, 20, 32.9, 40), metrics(100, 20, 30, 40), GATES)
    assert within.passed and row(within, "p95_ms").verdict == "pass"
    better = compare(metrics(300, 5, 6, 7), metrics(100, 20, 30, 40), GATES)
    assert better.passed
    assert row(better, "requests_per_second").change_percent == 200.0
    assert row(better, "p95_ms").change_percent == -80.0


def test_throughput_is_worse_when_it_drops() -> None:
    comparison = compare(metrics(85, 20, 30, 40), metrics(100, 20, 30, 40), GATES)
    assert row(comparison, "requests_per_second").verdict == "fail"
    assert comparison.failures == ["throughput 85.0 req/s vs 100.0 req/s (-15.0%, limit -10%)"]


def test_metrics_without_a_gate_are_reported_not_judged() -> None:
    comparison = compare(metrics(100, 40, 30, 400), metrics(100, 20, 30, 40), GATES)
    assert comparison.passed
    assert (row(comparison, "p99_ms").change_percent, row(comparison, "p99_ms").verdict) == (900.0, "n/a")


def test_without_a_baseline_only_the_error_rate_is_judged() -> None:
    clean = compare(metrics(100, 20, 30, 40), None, GATES)
    assert clean.passed and clean.baseline_run_id is None
    assert all(r.baseline is None and r.change_percent is None for r in clean.rows)
    assert "no accepted baseline yet" in clean.notes[0]
    failing = compare(metrics(100, 20, 30, 40, requests=100, failures=5), None, GATES)
    assert not failing.passed
    assert failing.failures == ["error rate 5.00% above the maximum 1.00%"]


def test_a_zero_baseline_has_no_percentage() -> None:
    comparison = compare(metrics(100, 1, 1, 1), metrics(100, 0, 0, 0), GATES)
    assert row(comparison, "p95_ms").change_percent is None
    assert row(comparison, "p95_ms").verdict == "n/a"
    assert any("baseline is 0" in note for note in comparison.notes)
    same = compare(metrics(100, 0, 0, 0), metrics(100, 0, 0, 0), GATES)
    assert row(same, "p95_ms").change_percent == 0.0 and same.passed


def test_the_strictest_of_two_gates_on_one_metric_applies() -> None:
    gates = PerformanceConfig(
        gates=[
            PerformanceGate(metric="p95_ms", max_worse_percent=50),
            PerformanceGate(metric="p95_ms", max_worse_percent=5),
        ]
    )
    assert not compare(metrics(100, 20, 32, 40), metrics(100, 20, 30, 40), gates).passed


def test_table_and_markdown() -> None:
    comparison = compare(metrics(90, 20, 36, 40), metrics(100, 20, 30, 40), GATES, baseline_run_id="b1")
    rows = table_rows(comparison, 0.01)
    assert rows[2] == {
        "metric": "p95 latency (ms)",
        "baseline": "30.0",
        "run": "36.0",
        "change": "+20.0%",
        "gate": "fail (+10%)",
    }
    assert rows[0]["gate"] == "pass (-10%)" and rows[4]["gate"] == "pass (max 1%)"
    text = render_table(comparison, 0.01)
    lines = text.splitlines()
    assert lines[0].split() == ["METRIC", "BASELINE", "RUN", "CHANGE", "GATE"]
    assert "p95 latency (ms)" in lines[3] and "+20.0%" in lines[3] and lines[3].endswith("fail (+10%)")
    settings = ScenarioSettings(scenario="smoke", generator="locust", users=4, duration_seconds=2)
    summary = markdown_summary(
        run_id="r2",
        settings=settings,
        source_env="production",
        sandbox="perf-production-1",
        comparison=comparison,
        max_error_rate=0.01,
        chart_path="/x/comparison.png",
    )
    assert summary.startswith("# Performance run `r2`: FAILED")
    assert "| p95 latency (ms) | 30.0 | 36.0 | +20.0% | fail (+10%) |" in summary
    assert "- p95 latency 36.0 ms vs 30.0 ms (+20.0%, limit +10%)" in summary
    assert "`sandbox perf accept r2`" in summary


def test_chart_is_a_png(tmp_path: Path) -> None:
    with_baseline = write_chart(
        tmp_path / "a" / "chart.png",
        metrics(90, 20, 36, 40),
        metrics(100, 20, 30, 40),
        title="smoke from production",
        failed_metrics=frozenset({"p95_ms"}),
    )
    alone = write_chart(tmp_path / "b.png", metrics(90, 20, 36, 40), None, title="first run")
    for path in (with_baseline, alone):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_same_figures_are_not_drawn_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.perf import chart

    drawn: list[str] = []
    draw = chart._draw

    def counting(path: Path, *args: Any, **kwargs: Any) -> None:
        drawn.append(kwargs["title"])
        draw(path, *args, **kwargs)

    monkeypatch.setattr(chart, "_draw", counting)
    target = tmp_path / "comparison.png"
    for _ in range(2):  # the stage draws it, then the lifecycle summary (and each resume) asks again
        write_chart(target, metrics(90, 20, 36, 40), metrics(100, 20, 30, 40), title="run r1")
    assert drawn == ["run r1"]
    write_chart(target, metrics(95, 20, 36, 40), metrics(100, 20, 30, 40), title="run r1")  # other figures
    write_chart(target, metrics(95, 20, 36, 40), metrics(100, 20, 30, 40), title="run r1 again")  # another title
    assert drawn == ["run r1", "run r1", "run r1 again"]
    target.unlink()  # gone: drawn anew whatever its record says
    write_chart(target, metrics(95, 20, 36, 40), metrics(100, 20, 30, 40), title="run r1 again")
    assert len(drawn) == 4 and target.read_bytes()[:4] == b"\x89PNG"


def config(**performance: Any) -> FleetConfig:
    return FleetConfig.model_validate(
        {
            "fleet_repo": {"remote": "remote.git"},
            "environments": {
                "production": {
                    "cluster_dir": "clusters/production",
                    "tracking": {"type": "tag", "tag": "1.2.3"},
                    "terraform": {"module": "infra/cluster"},
                }
            },
            "drivers": {"load_generator": {"type": "locust", "users": 4, "duration_seconds": 2, "spawn_rate": 2}},
            "performance": performance,
            "base_dir": "/srv/fleet",
        }
    )


def test_scenario_settings_layer_overrides_over_scenario_over_generator_defaults() -> None:
    cfg = config(
        scenarios={"smoke": {}, "peak": {"users": 50, "duration_seconds": 60, "locustfile": "load/peak.py"}},
        local_target_delay_ms=15,
    )
    smoke = resolve_scenario(cfg, None)
    assert (smoke.scenario, smoke.generator, smoke.users, smoke.duration_seconds, smoke.spawn_rate) == (
        "smoke",
        "locust",
        4,
        2.0,
        2.0,
    )
    assert smoke.local_target_delay_ms == 15 and smoke.target_url is None
    peak = resolve_scenario(cfg, "peak", LoadOverrides(users=80, generator="http", target_url="http://lb:80/"))
    assert (peak.users, peak.duration_seconds, peak.generator, peak.target_url) == (80, 60.0, "http", "http://lb:80/")
    assert peak.locustfile == "/srv/fleet/load/peak.py"


def test_unknown_scenario_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match=r"unknown performance scenario 'soak' \(known: smoke\)"):
        resolve_scenario(config(), "soak")


def test_default_scenario_must_exist() -> None:
    with pytest.raises(ValueError, match="default_scenario 'smoke' is not in scenarios"):
        config(scenarios={"peak": {}})
    assert isinstance(ConfigError("x"), InvalidInputError)


def test_settings_that_differ_from_the_baseline_are_named() -> None:
    settings = ScenarioSettings(scenario="smoke", generator="locust", users=8, duration_seconds=2)
    assert settings.comparable_with({"generator": "http", "users": 8, "duration_seconds": 2}) == [
        "generator http -> locust"
    ]


def test_performance_request_defaults_to_production_at_its_scale() -> None:
    request = PerformanceRequest()
    assert (request.source_env, request.scale, request.terraform_overrides()) == ("production", "source", {})
    override = PerformanceRequest.model_validate({"scale": {"variables": {"node_count": "6"}}})
    assert isinstance(override.scale, ScaleOverride) and override.terraform_overrides() == {"node_count": "6"}
    schema = PerformanceRequest.model_json_schema()
    assert {"source_env", "scenario", "scale", "change", "ttl", "load"} <= set(schema["properties"])


def test_target_credentials_never_reach_stored_settings_or_reports() -> None:
    settings = ScenarioSettings(
        scenario="smoke", generator="http", users=1, duration_seconds=1, target_url="https://load:s3cret@shop.example/"
    )
    assert settings.target_url == "https://load:s3cret@shop.example/"  # the load itself uses them
    assert settings.model_dump()["target_url"] == "https://***@shop.example/"
    assert "s3cret" not in settings.model_dump_json()
    comparison = compare(metrics(100, 20, 30, 40), None, GATES)
    summary = markdown_summary(
        run_id="r", settings=settings, source_env="production", sandbox="s", comparison=comparison
    )
    assert "s3cret" not in summary and "https://***@shop.example/" in summary
    assert redact_url("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/x" and redact_url(None) is None


def test_a_run_that_completed_no_request_fails_whatever_the_gates_say() -> None:
    # All zeros: no latency is "worse" and the error rate is 0, so only this rule catches it.
    empty = metrics(0, 0, 0, 0, requests=0)

    against_baseline = compare(empty, metrics(100, 20, 30, 40), PerformanceConfig(gates=[]))
    without_baseline = compare(empty, None, GATES)

    for comparison in (against_baseline, without_baseline):
        assert not comparison.passed
        assert comparison.failures[-1] == "no request completed during the run: nothing was measured"
