"""Ctrl-C during provision (issue 17 item 8): a real ``sandbox`` process, a real SIGINT, a real terraform.

Before the fix, SIGINT hung the CLI 65-140 s, it exited 1 with "unexpected
ConnectError", and the flow run stayed Running with its sandbox lock held. Now:
the in-flight terraform gets SIGTERM (SIGKILL after a grace period), the flow run
is Cancelled, the lock is released, the CLI exits 130 with one line, and
``sandbox resume`` finishes the lifecycle.

The terraform is a shim around the real one whose ``apply`` waits (trapping
SIGTERM and SIGINT, recording which it got) while a marker file exists, so the
signal lands while terraform is the command running. SIGINT goes to the CLI's
whole process group, as a terminal's Ctrl-C does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sandbox.config import load_config
from sandbox.demo import prepare_demo
from sandbox.locks import lock_name
from tests.integration.reliability_support import cli_env, edit_config, records
from tests.integration.sandbox_cli import BIN, error_line

pytestmark = pytest.mark.integration

SANDBOX = "sandbox-int"

_SHIM = """#!/usr/bin/env bash
for arg in "$@"; do
  if [ "$arg" = apply ] && [ -e "{slow}" ]; then
    trap 'echo TERM >> "{marks}"; exit 143' TERM
    trap 'echo INT >> "{marks}"' INT
    echo "apply-waiting $$" >> "{marks}"
    while :; do sleep 0.1; done
  fi
done
exec "{real}" "$@"
"""


def _flow_run_states(name: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return [run.state.type.value for run in runs if run.state is not None]


def _active_slots(name: str, fleet_id: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return int(client.read_global_concurrency_limit_by_name(lock_name(name, fleet_id)).active_slots)


def test_ctrl_c_during_provision_cancels_and_a_resume_finishes(tmp_path: Path, prefect_server: str) -> None:
    real = shutil.which("terraform")
    assert real, "terraform must be installed for the integration tests"
    slow, marks = tmp_path / "slow", tmp_path / "marks"
    slow.touch()
    shim = tmp_path / "bin" / "terraform"
    shim.parent.mkdir()
    shim.write_text(_SHIM.format(slow=slow, marks=marks, real=real))
    shim.chmod(0o755)
    config = prepare_demo(tmp_path / "fleet", development=False)
    edit_config(config, drivers={"terraform": {"binary": str(shim)}})
    args = [str(BIN / "sandbox"), "create", SANDBOX, "--ticket", "OPS-8", "--summary", "interrupt"]
    proc = subprocess.Popen(  # noqa: S603 - argv list
        [*args, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(prefect_server),
        start_new_session=True,  # its own group: the "terminal" the SIGINT is sent to
    )
    try:
        while "apply-waiting" not in (marks.read_text() if marks.exists() else ""):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=300)  # a guard against the old hang, not a speed bar
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, (out[-2000:], err[-3000:])
    assert error_line(err) == "sandbox: error: interrupted"
    assert "Traceback" not in out + err, err[-3000:]
    got = marks.read_text().split()
    assert "TERM" in got and "INT" not in got, got  # terraform was stopped by SIGTERM, not hit by the Ctrl-C
    assert _flow_run_states(SANDBOX) == ["CANCELLED"]
    assert _active_slots(SANDBOX, load_config(config).fleet_id) == 0  # the lock was released on the way out
    # A rerun resumes: provision runs again (real terraform now) and the lifecycle finishes.
    slow.unlink()
    resumed = subprocess.run(  # noqa: S603 - argv list
        [str(BIN / "sandbox"), "resume", SANDBOX, "--config", str(config)],
        capture_output=True,
        text=True,
        env=cli_env(prefect_server),
        timeout=600,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stdout + resumed.stderr
    [record] = records(config)
    # resume runs the lifecycle to its end: provision (again, for real) through teardown.
    assert record.status.value == "destroyed", record
    assert {stage.name.value: stage.status.value for stage in record.stages}.get("provision") == "completed"
