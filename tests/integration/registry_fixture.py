"""A real OCI registry for the tests: Debian's ``docker-registry`` on loopback.

Import the fixture into a test module (``from tests.integration.registry_fixture import
oci_registry``). The registry gets a fresh filesystem root and a free port, and is
stopped afterwards. Without the binary the tests are skipped, except in CI (the ``CI``
environment variable set), where a missing registry is a failure: install it with
``scripts/install-system-deps.sh``.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.drivers.registry import RegistryConfig
from tests.realparts import require_tool

REGISTRY_BINARY = "docker-registry"
STARTUP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class LocalRegistry:
    """A running registry: ``host`` is ``127.0.0.1:<port>`` (plain HTTP)."""

    host: str
    root: Path

    def settings(self, repository: str) -> RegistryConfig:
        """Settings for one repository in this registry."""
        # oras, even where a flux CLI is on PATH: the tests check the bytes built here.
        return RegistryConfig(
            url=f"oci://{self.host}/{repository}", insecure=True, timeout_seconds=20, push_with="oras"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback test URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _config(root: Path, port: int) -> str:
    return "\n".join(
        [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {root / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{port}",
            "  secret: fleet-sandbox-tests",
            "",
        ]
    )


@pytest.fixture(scope="module")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A real registry on a free loopback port for the module's tests."""
    binary = require_tool(REGISTRY_BINARY)
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(_config(root, port))
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not _answers(f"http://127.0.0.1:{port}/v2/"):
            if process.poll() is not None:
                pytest.fail(
                    f"{REGISTRY_BINARY} exited with {process.returncode}: {(root / 'registry.log').read_text()[-800:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{REGISTRY_BINARY} did not answer on 127.0.0.1:{port} within {STARTUP_TIMEOUT_SECONDS}s")
            time.sleep(0.1)
        yield LocalRegistry(host=f"127.0.0.1:{port}", root=root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
