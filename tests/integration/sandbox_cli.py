"""Running the installed ``sandbox`` command line from integration tests, and the demo's setup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from sandbox.demo import prepare_demo

BIN = Path(sys.executable).parent


def sandbox_cli(*args: str, api_url: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``sandbox ARGS`` in a subprocess against the test Prefect server."""
    env = {**os.environ, "PREFECT_API_URL": api_url}
    return subprocess.run(
        [str(BIN / "sandbox"), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def error_line(stderr: str) -> str:
    """The command's one-line error (``sandbox: error: ...``), wherever Prefect's shutdown logging put it."""
    errors = [line for line in stderr.splitlines() if line.startswith("sandbox: error:")]
    assert len(errors) == 1, f"expected one error line, got {errors}: {stderr[-2000:]}"
    return errors[0]


def demo_setup(workdir: Path, **cluster_settings: Any) -> Path:
    """The demo's fleet repo, remote and fleet.yaml in ``workdir``, with cluster driver settings changed.

    Returns:
        The path of fleet.yaml.
    """
    config_path = prepare_demo(workdir)
    document = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    document["drivers"]["cluster"].update(cluster_settings)
    config_path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return config_path
