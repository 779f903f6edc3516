"""The README's local-cluster block runs as shown: ``make demo-local`` (tests/integration/test_readme_commands.py).

Run from the project root, ``make`` and all, with the demo's directory moved to a temporary one
(``FLEET_SANDBOX_DEMO_DIR``); afterwards no process of its clusters is left (tests/real/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.models import STAGE_ORDER
from tests.conftest import PROJECT_ROOT
from tests.integration.test_readme_commands import README, command_blocks

pytestmark = [pytest.mark.timeout(1800), pytest.mark.requires_tool("make")]


def test_make_demo_local_runs_as_the_readme_shows(tmp_path: Path, prefect_server: str) -> None:
    blocks = command_blocks(README.read_text(encoding="utf-8"))["A real local cluster (`make demo-local`)"]
    assert blocks == [["make demo-local"]]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLEET_SANDBOX_DEMO_DIR": str(tmp_path / ".demo-local"),
        "PREFECT_API_URL": prefect_server,
    }
    done = subprocess.run(
        ["make", "demo-local"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1700, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stage_lines = [line for line in done.stdout.splitlines() if line.startswith("  ")]
    for stage in STAGE_ORDER:
        assert any(line.split()[0] == stage.value for line in stage_lines), done.stdout[-3000:]
    assert (tmp_path / ".demo-local" / "fleet.yaml").is_file()
