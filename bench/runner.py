"""Running the benchmark groups so that one cannot stop the others, and the exit status.

A group that raises (a setup that went wrong, a server that did not start in time
on a loaded machine) is recorded with its error and the other groups still run;
a metric that misses its bar is a measurement like any other, reported with how
far it missed. Prefect-free, so the unit tests run it without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bench.common import Metric, log

#: Exit statuses of ``python -m bench``.
EXIT_MEASURED = 0  # every group measured (bars missed are reported, not an error)
EXIT_ERROR = 1  # a group could not measure (its error is in results.json), or --strict and a bar missed


@dataclass
class Outcome:
    """What the groups produced: their metrics, the groups that measured, and the error of each that could not."""

    metrics: list[Metric] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    measured: list[str] = field(default_factory=list)


def describe(exc: BaseException) -> str:
    """One line: the error's type and message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_groups(groups: Iterable[str], run: Callable[[str], list[Metric]], outcome: Outcome | None = None) -> Outcome:
    """Run each group; an exception is recorded for its group and the next group runs.

    Args:
        groups: Group names, in order.
        run: Runs one group and returns its metrics.
        outcome: Where to add (a new one by default).
    """
    outcome = outcome or Outcome()
    for group in groups:
        log(f"--- {group}")
        try:
            metrics = run(group)
            for metric in metrics:
                metric.value  # noqa: B018 - a metric without a figure is this group's error, found here
        except Exception as exc:  # noqa: BLE001 - any failure of one group is recorded, not fatal
            fail_group(outcome, group, exc)
            continue
        outcome.metrics += metrics
        outcome.measured.append(group)
    return outcome


def fail_group(outcome: Outcome, group: str, exc: BaseException) -> None:
    """Record that ``group`` could not measure, and say so on the console."""
    outcome.errors[group] = describe(exc)
    log(f"--- {group}: ERROR, not measured: {outcome.errors[group]}")


def miss(metric: Metric) -> str:
    """How far a metric missed its bar, e.g. ``missed: 1.40 > 1.25 (12% over)``; empty when it met it."""
    if metric.passed:
        return ""
    if metric.better == "lower":
        over = (metric.value / metric.bar - 1) if metric.bar else float("inf")
        return f"missed: {metric.value:,.3g} > {metric.bar:,g} ({over:.0%} over)"
    under = 1 - metric.value / metric.bar if metric.bar else 0.0
    return f"missed: {metric.value:,.3g} < {metric.bar:,g} ({under:.0%} under)"


def exit_status(outcome: Outcome, *, strict: bool = False) -> int:
    """0 when every group measured (missed bars are reported), 1 when one could not; ``strict``: also 1 on a miss."""
    if outcome.errors:
        return EXIT_ERROR
    if strict and not all(m.passed for m in outcome.metrics):
        return EXIT_ERROR
    return EXIT_MEASURED
