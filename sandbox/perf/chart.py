"""The PNG chart of a performance run against its baseline (matplotlib, Agg backend).

Two panels: latency percentiles (p50, p95, p99 in ms) and throughput (req/s),
each with the baseline's bar beside the run's, labelled with the values and
the percentage change. Without a baseline only the run's bars are drawn.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LATENCIES = (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99"))
BASELINE_COLOR = "#9aa5b1"
RUN_COLOR = "#2f6fdf"
REGRESSION_COLOR = "#d64545"


def _change(before: float | None, now: float) -> str:
    if before is None:
        return ""
    if not before:
        return "±0%" if not now else "new"
    return f"{(now - before) / before * 100:+.1f}%"


def write_chart(
    path: Path,
    current: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    *,
    title: str,
    failed_metrics: frozenset[str] = frozenset(),
) -> Path:
    """Draw the run (and its baseline) to ``path`` as a PNG, unless it is drawn there already.

    The same figures draw the same chart: a chart whose inputs match those recorded
    beside it (``<path>.inputs``) is not drawn again (a lifecycle's summary shows the
    chart its performance stage drew, and every resume publishes the summary anew;
    drawing takes half a second).

    Args:
        path: Where the PNG goes (its directory is created).
        current: The run's metrics.
        baseline: The baseline's metrics, or ``None``.
        title: The chart's title.
        failed_metrics: Metrics whose gate failed; their run bars are drawn in red.

    Returns:
        ``path``.
    """
    inputs = json.dumps(
        [dict(current), dict(baseline) if baseline is not None else None, title, sorted(failed_metrics)],
        sort_keys=True,
        default=str,
    )
    fingerprint = hashlib.sha256(inputs.encode("utf-8")).hexdigest()
    recorded = path.with_name(f"{path.name}.inputs")
    if path.is_file() and recorded.is_file() and recorded.read_text(encoding="utf-8").strip() == fingerprint:
        return path
    _draw(path, current, baseline, title=title, failed_metrics=failed_metrics)
    recorded.write_text(fingerprint + "\n", encoding="utf-8")
    return path


def _draw(
    path: Path,
    current: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    *,
    title: str,
    failed_metrics: frozenset[str],
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display: render to files only
    from matplotlib import pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, (latency_ax, throughput_ax) = plt.subplots(
        1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [3, 1.3]}, dpi=100
    )
    try:
        width = 0.38 if baseline is not None else 0.6
        positions = [float(i) for i in range(len(LATENCIES))]
        base_values: list[float | None] = [None] * len(LATENCIES)
        run_values = [float(current.get(key) or 0.0) for key, _ in LATENCIES]
        run_colors = [REGRESSION_COLOR if key in failed_metrics else RUN_COLOR for key, _ in LATENCIES]
        if baseline is not None:
            measured = [float(baseline.get(key) or 0.0) for key, _ in LATENCIES]
            base_values = list(measured)
            bars = latency_ax.bar([p - width / 2 for p in positions], measured, width, color=BASELINE_COLOR)
            bars.set_label("baseline")
            latency_ax.bar_label(bars, labels=[f"{v:.1f}" for v in measured], fontsize=8, padding=2)
            run_positions = [p + width / 2 for p in positions]
        else:
            run_positions = positions
        bars = latency_ax.bar(run_positions, run_values, width, color=run_colors)
        bars.set_label("this run")
        latency_ax.bar_label(
            bars,
            labels=[f"{v:.1f}\n{_change(b, v)}".strip() for v, b in zip(run_values, base_values, strict=True)],
            fontsize=8,
            padding=2,
        )
        latency_ax.set_xticks(positions, [label for _, label in LATENCIES])
        latency_ax.set_ylabel("latency (ms)")
        latency_ax.set_title("latency percentiles")
        latency_ax.margins(y=0.25)
        latency_ax.legend(loc="upper left", fontsize=8)

        run_rps = float(current.get("requests_per_second") or 0.0)
        base_rps = float(baseline.get("requests_per_second") or 0.0) if baseline is not None else None
        labels, values, colors = [], [], []
        if base_rps is not None:
            labels.append("baseline")
            values.append(base_rps)
            colors.append(BASELINE_COLOR)
        labels.append("this run")
        values.append(run_rps)
        colors.append(REGRESSION_COLOR if "requests_per_second" in failed_metrics else RUN_COLOR)
        bars = throughput_ax.bar(labels, values, 0.6, color=colors)
        texts = [f"{v:.0f}" for v in values]
        texts[-1] = f"{run_rps:.0f}\n{_change(base_rps, run_rps)}".strip()
        throughput_ax.bar_label(bars, labels=texts, fontsize=8, padding=2)
        throughput_ax.set_ylabel("requests / s")
        throughput_ax.set_title("throughput")
        throughput_ax.margins(y=0.25)

        figure.suptitle(title, fontsize=10)
        figure.tight_layout()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        figure.savefig(tmp, format="png")
        tmp.replace(path)
    finally:
        plt.close(figure)
