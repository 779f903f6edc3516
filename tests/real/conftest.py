"""The real tier: real local clusters (Kubernetes and Flux built by ``make toolchain``), run with ``make test-real``.

Every test here is marked ``real`` (and ``integration``, so ``make test-unit`` leaves it out). The toolchain's
binaries are required through :func:`tests.realparts.require_toolchain`: missing, a test is skipped naming the
binary and ``make toolchain``, or fails under CI. After every test, no process of a local cluster started under
this run's temporary directory may be left: one that is left is stopped and the test fails naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.localcluster.processes import LocalProcess, below, find_local_cluster_processes, terminate
from tests.realparts import require_tool, require_toolchain


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real)
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _needs_the_toolchain() -> dict[str, str]:
    """Every real test runs the local cluster's binaries."""
    return require_toolchain()


def left_behind(under: Path) -> list[LocalProcess]:
    """The local-cluster processes (found by their marker) whose cluster directory is ``under`` or below it."""
    return below(under, find_local_cluster_processes())


@pytest.fixture(autouse=True)
def _no_local_cluster_process_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After every real test no process of a local cluster it started is running (they are stopped if they are)."""
    yield
    left = left_behind(tmp_path_factory.getbasetemp().resolve())
    if left:
        terminate(left, grace=5.0)
        named = ", ".join(f"{p.component} (pid {p.pid}, {p.cluster_dir})" for p in left)
        pytest.fail(f"local-cluster processes left running after the test: {named}", pytrace=False)


@pytest.fixture(scope="session")
def terraform() -> str:
    """terraform (or OpenTofu's tofu) on PATH."""
    return require_tool("terraform", "tofu")


@pytest.fixture(scope="session")
def kubectl() -> str:
    """kubectl on PATH."""
    return require_tool("kubectl")
