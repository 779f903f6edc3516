"""Shared fixtures.

Prefect's home, database and result storage point at a per-run temp directory
*before* Prefect is imported, so caches never leak between runs; the Prefect
test harness (one server) starts once per test run, only when a test needs it.
Hypothesis runs derandomized unless asked otherwise (tests/hypothesis_profiles.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_RUN_DIR = Path(tempfile.mkdtemp(prefix="fleet-sandbox-tests-"))
os.environ["PREFECT_HOME"] = str(_RUN_DIR / "prefect-home")
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(_RUN_DIR / "prefect-results")
os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{_RUN_DIR / 'prefect.db'}"
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest  # noqa: E402

from tests.hypothesis_profiles import register_profiles  # noqa: E402
from tests.realparts import require_tool, under_ci  # noqa: E402

# Before any test module builds its settings: ``ci`` by default (``make test``),
# ``--hypothesis-profile=explore`` for ``make test-explore``.
register_profiles()

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLE_REPO = PROJECT_ROOT / "examples" / "fleet-repo"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.requires_tool("terraform")``: the test needs that real part (fails under CI without it)."""
    for mark in item.iter_markers("requires_tool"):
        require_tool(*mark.args)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI a skip is a failure: a run that tested less than it claims must not pass."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if under_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may be skipped: {reason}"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One Prefect test server for the whole run; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    # A guard against a server that never starts, not a speed bar: a heavily loaded
    # machine (every CPU busy, other servers starting) took over 120 s once.
    with prefect_test_harness(server_startup_timeout=300):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def example_repo() -> Path:
    """The example fleet repository shipped in examples/."""
    return EXAMPLE_REPO
