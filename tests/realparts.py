"""The real outside parts the integration tests run, and what happens when one is missing.

A developer's machine without, say, Chromium still runs the rest of the suite: the
tests that need it are skipped, naming what to install. Under CI (the ``CI``
environment variable set) a missing real part fails the test instead, with one line
naming it: a CI run that silently tested less than the suite claims is worse than a
red one. ``tests/conftest.py`` also turns any other skip into a failure under CI.

Use the ``requires_tool`` marker on a module or test::

    pytestmark = [pytest.mark.integration, pytest.mark.requires_tool("terraform")]

or call :func:`require_tool` where the binary's path is needed.
"""

from __future__ import annotations

import os
import shutil

import pytest

from sandbox import localcluster

#: Where each real part comes from, named in the one-line message when it is missing.
INSTALL_HINTS: dict[str, str] = {
    "terraform": "the terraform binary (or OpenTofu: make toolchain builds tofu when terraform is missing)",
    "docker-registry": "Debian's docker-registry (scripts/install-system-deps.sh installs it)",
    "chromium": "Debian's chromium (scripts/install-system-deps.sh installs it)",
    "git": "git",
    "kubectl": "kubectl (the Kubernetes client; Debian's kubernetes-client)",
    "semver-peer": "the Go peer of Flux's semver selection: run `make peers` (seconds; `make toolchain` builds it too)",
}

#: The toolchain binaries a local cluster runs (``make toolchain`` builds them).
LOCAL_CLUSTER_BINARIES = localcluster.BINARIES


def under_ci() -> bool:
    """True when the suite runs under CI, where nothing may be skipped."""
    return bool(os.environ.get("CI"))


def missing(name: str, why: str | None = None) -> None:
    """Fail (under CI) or skip (elsewhere) the running test: the real part ``name`` is missing."""
    message = f"{name} is not installed: {why or INSTALL_HINTS.get(name, name)}"
    if under_ci():
        pytest.fail(f"{message} (CI must run every real part)", pytrace=False)
    pytest.skip(message)


def require_tool(name: str, *alternatives: str) -> str:
    """The path of executable ``name`` (or the first alternative found); fail under CI, skip elsewhere."""
    for candidate in (name, *alternatives):
        found = shutil.which(candidate)
        if found:
            return found
    missing(name)
    raise AssertionError("unreachable: missing() fails or skips")  # pragma: no cover


def require_toolchain(*names: str) -> dict[str, str]:
    """The paths of toolchain binaries (default: every one a local cluster runs); fail under CI, skip elsewhere.

    The binaries come from ``make toolchain`` (sandbox.toolchain), not from PATH; the message names the first
    one missing and says how to build it.
    """
    from sandbox import toolchain
    from sandbox.errors import ToolNotFoundError

    found: dict[str, str] = {}
    for name in names or LOCAL_CLUSTER_BINARIES:
        try:
            found[name] = str(toolchain.locate(name))
        except ToolNotFoundError as exc:
            missing(name, f"{INSTALL_HINTS[name]} ({exc})" if name in INSTALL_HINTS else f"{exc}")
    return found
