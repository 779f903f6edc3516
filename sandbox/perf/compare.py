"""A run's metrics against its scenario's baseline: the comparison, its gates, and the reports made of it.

Prefect-free: the performance-test stage (:func:`sandbox.stages.performance.performance_test`)
compares what the load measured with the baseline from :mod:`sandbox.perf.store`;
the task layer turns the comparison into Prefect artifacts and the CLI prints it.

Direction matters: throughput is worse when it drops, latencies and the error
rate are worse when they rise. A gate (``performance.gates`` in fleet.yaml)
fails a run whose metric is worse than the baseline's by more than its
percentage; the error rate also has an absolute ceiling
(``performance.max_error_rate``) that applies with or without a baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from sandbox.config import PerformanceConfig
from sandbox.errors import PermanentError
from sandbox.perf.scenario import ScenarioSettings
from sandbox.redaction import redact_url


class MetricInfo(BaseModel):
    """How a metric is named, shown and judged."""

    label: str
    unit: str
    higher_is_better: bool


#: The metrics every run reports, in report order.
METRICS: dict[str, MetricInfo] = {
    "requests_per_second": MetricInfo(label="throughput", unit="req/s", higher_is_better=True),
    "p50_ms": MetricInfo(label="p50 latency", unit="ms", higher_is_better=False),
    "p95_ms": MetricInfo(label="p95 latency", unit="ms", higher_is_better=False),
    "p99_ms": MetricInfo(label="p99 latency", unit="ms", higher_is_better=False),
    "error_rate": MetricInfo(label="error rate", unit="%", higher_is_better=False),
}


class MetricRow(BaseModel):
    """One metric of a run next to its baseline."""

    metric: str
    label: str
    unit: str
    baseline: float | None = Field(description="The baseline's value; None without a baseline")
    current: float
    change_percent: float | None = Field(description="(current - baseline) / baseline in %; None when undefined")
    limit_percent: float | None = Field(default=None, description="The gate's tolerance (worse direction), if any")
    verdict: Literal["pass", "fail", "n/a"] = Field(description="The gate's verdict; n/a without a gate or baseline")


class Comparison(BaseModel):
    """A run compared with its baseline."""

    baseline_run_id: str | None = None
    rows: list[MetricRow]
    passed: bool
    failures: list[str] = Field(default_factory=list, description="One line per failed gate")
    notes: list[str] = Field(default_factory=list, description="Caveats (no baseline, unlike settings, ...)")

    def change_percent(self) -> dict[str, float]:
        """Metric -> percentage change, for the metrics that have one."""
        return {r.metric: r.change_percent for r in self.rows if r.change_percent is not None}


def _value(metrics: Mapping[str, Any], metric: str) -> float:
    if metric == "error_rate" and "error_rate" not in metrics:
        requests = float(metrics.get("requests") or 0)
        return float(metrics.get("failures") or 0) / requests if requests else 0.0
    return float(metrics.get(metric) or 0.0)


def _shown(metric: str, value: float) -> str:
    if metric == "error_rate":
        return f"{value * 100:.2f}%"
    return f"{value:.1f} {METRICS[metric].unit}"


def compare(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    perf: PerformanceConfig,
    *,
    baseline_run_id: str | None = None,
) -> Comparison:
    """Compare a run's metrics with its baseline's under the configured gates.

    Args:
        current: The run's metrics (``LoadMetrics.model_dump()``).
        baseline: The baseline's metrics, or ``None`` when the scenario has no accepted run yet.
        perf: The gates.
        baseline_run_id: Named in the comparison.
    """
    limits: dict[str, float] = {}
    for gate in perf.gates:
        limits[gate.metric] = min(limits.get(gate.metric, gate.max_worse_percent), gate.max_worse_percent)
    rows: list[MetricRow] = []
    failures: list[str] = []
    notes: list[str] = []
    if baseline is None:
        notes.append("no accepted baseline yet: accept a run with `sandbox perf accept RUN`")
    for metric, info in METRICS.items():
        now = _value(current, metric)
        before = _value(baseline, metric) if baseline is not None else None
        change: float | None = None
        if before is not None:
            if before:
                change = round((now - before) / before * 100, 1)
            elif not now:
                change = 0.0
        limit = limits.get(metric)
        verdict: Literal["pass", "fail", "n/a"] = "n/a"
        if limit is not None and change is not None:
            worse = -change if info.higher_is_better else change
            verdict = "fail" if worse > limit else "pass"
            if verdict == "fail":
                failures.append(
                    f"{info.label} {_shown(metric, now)} vs {_shown(metric, before or 0.0)} "
                    f"({change:+.1f}%, limit {'-' if info.higher_is_better else '+'}{limit:g}%)"
                )
        elif limit is not None and before is not None and change is None:
            notes.append(f"{info.label}: the baseline is 0, so no percentage change (gate not applied)")
        if metric == "error_rate" and now > perf.max_error_rate:
            verdict = "fail"
            failures.append(f"error rate {_shown(metric, now)} above the maximum {_shown(metric, perf.max_error_rate)}")
        elif metric == "error_rate" and verdict == "n/a":
            verdict = "pass"
            limit = None
        rows.append(
            MetricRow(
                metric=metric,
                label=info.label,
                unit=info.unit,
                baseline=before,
                current=now,
                change_percent=change,
                limit_percent=limit,
                verdict=verdict,
            )
        )
    if not current.get("requests"):
        # Zero latencies and zero errors would pass every gate: a run that measured
        # nothing (the generator never got going, the target never answered) fails.
        failures.append("no request completed during the run: nothing was measured")
    return Comparison(baseline_run_id=baseline_run_id, rows=rows, passed=not failures, failures=failures, notes=notes)


def _cell(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "error_rate":
        return f"{value * 100:.2f}%"
    return f"{value:.1f}"


def _gate_cell(row: MetricRow, max_error_rate: float | None = None) -> str:
    if row.verdict == "n/a":
        return "-"
    if row.limit_percent is not None:
        sign = "-" if METRICS[row.metric].higher_is_better else "+"
        return f"{row.verdict} ({sign}{row.limit_percent:g}%)"
    if row.metric == "error_rate" and max_error_rate is not None:
        return f"{row.verdict} (max {max_error_rate * 100:g}%)"
    return row.verdict


def table_rows(comparison: Comparison, max_error_rate: float | None = None) -> list[dict[str, str]]:
    """The comparison as rows of strings (Prefect table artifact, CLI table)."""
    return [
        {
            "metric": f"{row.label} ({row.unit})",
            "baseline": _cell(row.metric, row.baseline),
            "run": _cell(row.metric, row.current),
            "change": f"{row.change_percent:+.1f}%" if row.change_percent is not None else "-",
            "gate": _gate_cell(row, max_error_rate),
        }
        for row in comparison.rows
    ]


def render_table(comparison: Comparison, max_error_rate: float | None = None) -> str:
    """The comparison as an aligned plain-text table."""
    rows = table_rows(comparison, max_error_rate)
    headers = {"metric": "METRIC", "baseline": "BASELINE", "run": "RUN", "change": "CHANGE", "gate": "GATE"}
    widths = {key: max(len(headers[key]), *(len(r[key]) for r in rows)) for key in headers}
    right = {"baseline", "run", "change"}

    def line(values: Mapping[str, str]) -> str:
        cells = [values[k].rjust(widths[k]) if k in right else values[k].ljust(widths[k]) for k in headers]
        return "  ".join(cells).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def markdown_summary(
    *,
    run_id: str,
    settings: ScenarioSettings,
    source_env: str,
    sandbox: str,
    comparison: Comparison,
    max_error_rate: float | None = None,
    chart_path: str | None = None,
) -> str:
    """A markdown report of one run: verdict, settings, the comparison table, failures and notes."""
    verdict = "PASSED" if comparison.passed else "FAILED"
    baseline = f"run `{comparison.baseline_run_id}`" if comparison.baseline_run_id else "none yet"
    target = redact_url(settings.target_url) or f"local stand-in target{settings.path}"
    lines = [
        f"# Performance run `{run_id}`: {verdict}",
        "",
        f"- scenario **{settings.scenario}** against a clone of **{source_env}** (sandbox `{sandbox}`)",
        f"- load: {settings.generator}, {settings.users} users, {settings.duration_seconds:g}s, target {target}",
        f"- baseline: {baseline}",
        "",
        "| metric | baseline | run | change | gate |",
        "|---|---:|---:|---:|---|",
        *(
            f"| {r['metric']} | {r['baseline']} | {r['run']} | {r['change']} | {r['gate']} |"
            for r in table_rows(comparison, max_error_rate)
        ),
    ]
    if comparison.failures:
        lines += ["", "**Failed gates**", "", *(f"- {f}" for f in comparison.failures)]
    if comparison.notes:
        lines += ["", *(f"> {n}" for n in comparison.notes)]
    if chart_path:
        lines += ["", f"Chart: `{chart_path}`"]
    lines += ["", f"Accept this run as the new baseline: `sandbox perf accept {run_id}`"]
    return "\n".join(lines) + "\n"


class PerformanceGateError(PermanentError):
    """A performance run measured a regression beyond a gate (or too many errors)."""


class PerformanceReport(BaseModel):
    """What a performance-sandbox run measured and concluded."""

    run_id: str
    sandbox: str
    scenario: str
    source_env: str
    passed: bool
    settings: ScenarioSettings
    metrics: dict[str, Any]
    comparison: Comparison
    chart_path: str | None = None

    def gate_error(self) -> PerformanceGateError:
        """The error a failed run ends its flow run with."""
        return PerformanceGateError(
            f"performance run {self.run_id} ({self.scenario} from {self.source_env}) failed its gates: "
            + "; ".join(self.comparison.failures)
        )
