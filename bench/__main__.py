"""``python -m bench``: run every benchmark group, write ``results.json`` and ``README.md``.

Exit status (see ``bench.runner``): 0 when every benchmark group measured, even if a
bar was missed (the miss and by how much are reported, in README.md and on the
console); 1 when a group could not measure at all (its error is recorded in
results.json under ``errors`` and named on the console; the other groups still
run and the files are still written). ``--strict`` also exits 1 on a missed bar.
"""

from __future__ import annotations

# Prefect reads its settings when first imported: point it into bench/.work first.
from bench.lifecycle import configure_prefect

configure_prefect()

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from bench import cleanup, lifecycle, readiness, real_cluster, report, resolve, scan  # noqa: E402
from bench.common import Metric, log  # noqa: E402
from bench.profiling import Profiler  # noqa: E402
from bench.runner import describe, exit_status, fail_group, run_groups  # noqa: E402

GROUPS = ("resolve", "resolve-peer", "scan", "readiness", "lifecycle", "cleanup", "real-cluster")
#: Groups that run flows against the Prefect server.
SERVER_GROUPS = ("lifecycle", "cleanup")


def _run_group(name: str, quick: bool, server: lifecycle.RunningServer | None = None) -> list[Metric]:
    runs: dict[str, Callable[[], list[Metric]]] = {
        "resolve": lambda: resolve.run(2 if quick else resolve.REPETITIONS),
        "resolve-peer": lambda: resolve.run_peer(2 if quick else resolve.REPETITIONS),
        "scan": lambda: scan.run(2 if quick else scan.REPETITIONS),
        "readiness": lambda: readiness.run(2 if quick else readiness.REPETITIONS),
        "lifecycle": lambda: lifecycle.run(2 if quick else lifecycle.REPETITIONS),
        "cleanup": lambda: cleanup.run(2 if quick else cleanup.SMALL_RUNS, server.pid if server else None),
        "real-cluster": lambda: real_cluster.run(1, 2) if quick else real_cluster.run(),
    }
    return runs[name]()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; 1 when a group could not measure (or, with ``--strict``, a bar was missed)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=GROUPS, help="run only this group (repeatable)")
    parser.add_argument("--quick", action="store_true", help="two repetitions each (a smoke run, not for the record)")
    parser.add_argument("--no-profile", action="store_true", help="skip profiling the metric closest to its bar")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a bar is missed, too")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: merge this run's figures into results.json and README.md (other figures kept)",
    )
    args = parser.parse_args(argv)
    if args.merge and (not args.only or args.quick):
        parser.error("--merge needs --only and a full (not --quick) run")
    groups = args.only or list(GROUPS)
    started, start = report.now(), time.monotonic()
    server_groups = [g for g in groups if g in SERVER_GROUPS]
    outcome = run_groups([g for g in groups if g not in server_groups], lambda g: _run_group(g, args.quick))
    metrics = outcome.metrics
    profiled: Metric | None = None
    profile_text: str | None = None

    def profile_worst() -> None:
        nonlocal profiled, profile_text
        candidates = [m for m in metrics if m.profile is not None]
        if args.no_profile or not candidates:
            return
        worst = max(candidates, key=lambda m: m.bar_used)
        log(f"--- profiling {worst.name} ({worst.bar_used:.0%} of its bar)")
        profiler = Profiler()
        assert worst.profile is not None
        try:
            worst.profile(profiler)
        except Exception as exc:  # noqa: BLE001 - the figures stand without their profile
            log(f"--- profiling {worst.name}: ERROR, no profile: {describe(exc)}")
            return
        profiled, profile_text = worst, report.profile_summary(profiler)

    if server_groups:
        log("--- starting a Prefect server")
        try:
            with lifecycle.prefect_server() as server:
                log(f"Prefect server up at {server.api_url}")
                run_groups(server_groups, lambda g: _run_group(g, args.quick, server), outcome)
                profile_worst()  # the worst may need the server
        except Exception as exc:  # noqa: BLE001 - no server (or it failed to stop): its groups are recorded
            log(f"--- Prefect server: ERROR: {describe(exc)}")
            for group in server_groups:
                if group not in outcome.measured and group not in outcome.errors:
                    fail_group(outcome, group, exc)
    else:
        profile_worst()
    metrics.sort(key=report.order)
    if args.merge:
        info = report.run_info(started)
        measured = {group: info for group in outcome.measured}
        report.write_results(metrics, errors=outcome.errors, path=report.RESULTS_FILE, merge=True, measured=measured)
        report.merge_readme(metrics, started=started, groups=groups, path=report.README_FILE)
        log(f"merged into {report.RESULTS_FILE} and {report.README_FILE}")
    elif args.only or args.quick:
        log("a partial or quick run: results.json and README.md are left as they are")
        if profiled is not None and profile_text is not None:
            log(f"profile of {profiled.name}:\n{profile_text}")
    else:
        info = report.run_info(started)
        measured = {group: info for group in outcome.measured}
        report.write_results(metrics, errors=outcome.errors, path=report.RESULTS_FILE, measured=measured)
        report.write_readme(
            metrics,
            started=started,
            seconds=time.monotonic() - start,
            profiled=profiled,
            profile=profile_text,
            errors=outcome.errors,
            path=report.README_FILE,
        )
        log(f"wrote {report.RESULTS_FILE} and {report.README_FILE}")
    report.print_summary(metrics, outcome.errors)
    return exit_status(outcome, strict=args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
