"""Under CI a missing real part fails the run, naming it; elsewhere it is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.realparts import require_tool

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ABSENT = "fleet-sandbox-no-such-tool"


def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"^{ABSENT} is not installed: .*CI must run every real part"):
        require_tool(ABSENT)


def test_a_missing_tool_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"^{ABSENT} is not installed"):
        require_tool(ABSENT)


def test_an_alternative_on_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_tool(ABSENT, "git").endswith("/git")


def _run_suite_of_one(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    """Run pytest, with this project's hooks, on one test that skips and one that needs an absent tool."""
    test_file = tmp_path / "test_skips.py"
    test_file.write_text(
        "import pytest\n\n"
        "def test_skips_itself():\n"
        "    pytest.skip('no reason at all')\n\n"
        f"@pytest.mark.requires_tool('{ABSENT}')\n"
        "def test_needs_a_tool():\n"
        "    pass\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci:
        env["CI"] = "1"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    argv += ["-p", "no:xdist", "--rootdir", str(tmp_path), "-W", "ignore::pytest.PytestUnknownMarkWarning"]
    return subprocess.run(
        [*argv, str(test_file)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_under_ci_every_skip_fails_the_run(tmp_path: Path) -> None:
    done = _run_suite_of_one(tmp_path, ci=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 error" in done.stdout  # the tool is checked at setup: an error
    assert "skipped under CI, where nothing may be skipped: Skipped: no reason at all" in done.stdout
    assert f"{ABSENT} is not installed" in done.stdout


def test_without_ci_the_same_tests_are_skipped(tmp_path: Path) -> None:
    done = _run_suite_of_one(tmp_path, ci=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 skipped" in done.stdout
