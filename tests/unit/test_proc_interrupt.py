"""Ctrl-C while a command runs (issue 17 item 8): a real process, a real SIGINT.

A child Python process calls :func:`sandbox.proc.run` on a command that traps
SIGTERM (as terraform does, to stop its providers) and writes what it got. The
test sends SIGINT to the child's whole process group, as a terminal does. Before
the fix the command shared the group, so the same Ctrl-C hit it directly and
nothing made sure it stopped; now it runs in its own session and ``run`` stops it
(SIGTERM, then SIGKILL after the grace period) before the interrupt propagates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: The command: records its start, then SIGTERM (and exits 143), or lingers when told to ignore it.
COMMAND = r"""
trap 'echo TERM >> "$MARKS"; exit 143' TERM
trap 'echo INT >> "$MARKS"' INT
echo "started $$" >> "$MARKS"
while :; do sleep 0.1; done
"""
STUBBORN = r"""
trap 'echo TERM-ignored >> "$MARKS"' TERM
trap 'echo INT >> "$MARKS"' INT
echo "started $$" >> "$MARKS"
while :; do sleep 0.1; done
"""

# The child takes SIGINT as a terminal's process does. A test run started in the background by a
# non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler: the Ctrl-C would never arrive (the `sandbox` CLI sets its own handler).
DRIVER = """
import signal
import sys
from pathlib import Path
from sandbox import proc
signal.signal(signal.SIGINT, signal.default_int_handler)
proc.STOP_GRACE_SECONDS = float(sys.argv[2])
try:
    proc.run(proc.Command(argv=("bash", "-c", sys.argv[1]), cwd=Path("."), timeout=600), timeout_is_retryable=False)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def _wait_for(path: Path, text: str, child: subprocess.Popen[str]) -> None:
    """Until ``path`` holds ``text`` (the child failing first ends the wait)."""
    while text not in (path.read_text() if path.exists() else ""):
        assert child.poll() is None, child.communicate()
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(("script", "grace", "expected"), [(COMMAND, "30", "TERM"), (STUBBORN, "1", "TERM-ignored")])
def test_sigint_stops_the_running_command(tmp_path: Path, script: str, grace: str, expected: str) -> None:
    marks = tmp_path / "marks"
    child = subprocess.Popen(
        [sys.executable, "-c", DRIVER, textwrap.dedent(script), grace],
        cwd=REPO,
        env={**os.environ, "MARKS": str(marks), "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, which receives the "terminal's" SIGINT
    )
    try:
        _wait_for(marks, "started", child)
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=120)  # a guard against a hang, not a speed bar
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 130, (out, err)
    assert out.strip() == "interrupted"
    lines = marks.read_text().split()
    assert "INT" not in lines  # the terminal's Ctrl-C did not reach the command: run stopped it
    assert lines[-1] == expected  # SIGTERM first; the stubborn one was then killed
    command_pid = int(lines[lines.index("started") + 1])
    assert not _pid_alive(command_pid)  # reaped by run before the interrupt went on
