#!/bin/sh
# Run `make test` several times in a row while other processes keep every CPU busy,
# as a loaded CI machine would: flaky tests (timing, races) show up here first.
#
#   sh scripts/test-under-load.sh [RUNS] [BUSY]    # defaults: 3 runs, one busy loop per CPU
#
# Stops at the first failing run (its exit status is the script's). The busy loops
# are plain `python3 -c 'while True: pass'` processes (no extra package), niced so
# they load the machine without starving it; they are killed on exit either way.
set -eu

runs="${1:-3}"
busy="${2:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"
pids=""

stop_load() {
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
}
trap stop_load EXIT INT TERM

i=0
while [ "$i" -lt "$busy" ]; do
    nice -n 5 python3 -c 'while True: pass' &
    pids="$pids $!"
    i=$((i + 1))
done
echo "test-under-load: $busy busy loop(s) running; $runs run(s) of make test"

run=1
while [ "$run" -le "$runs" ]; do
    start=$(date +%s)
    if make test; then
        echo "test-under-load: run $run/$runs passed in $(( $(date +%s) - start ))s"
    else
        status=$?
        echo "test-under-load: run $run/$runs FAILED (exit $status)"
        exit "$status"
    fi
    run=$((run + 1))
done
echo "test-under-load: all $runs runs passed"
