"""What the reliability tests share: a recording terraform, killing the CLI at a log line, reading the outcome."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox.config import FleetConfig, load_config
from sandbox.inventory import Inventory
from sandbox.models import SandboxRecord
from tests.integration.sandbox_cli import BIN

#: A terraform that records every command (working directory, subcommand, exit code,
#: terraform's own "Resources: …" summary) and otherwise is the real one.
_SHIM = """#!/bin/sh
# Test stand-in for terraform: runs the real binary, then records what it did.
out="$(mktemp)"
'{real}' "$@" >"$out"
rc=$?
cat "$out"
summary="$(grep -o 'Resources: [0-9]* added, [0-9]* changed, [0-9]* destroyed' "$out" | tail -n 1)"
printf '%s\\t%s\\t%s\\t%s\\n' "$PWD" "$1" "$rc" "$summary" >> '{log}'
rm -f "$out"
exit $rc
"""


@dataclass(frozen=True)
class TerraformCall:
    """One recorded terraform command."""

    cwd: str
    subcommand: str
    returncode: int
    added: int
    changed: int
    destroyed: int


def write_terraform_shim(directory: Path) -> tuple[Path, Path]:
    """A recording terraform in ``directory``; returns (the shim, its log)."""
    real = shutil.which("terraform")
    assert real, "terraform must be installed for the integration tests"
    directory.mkdir(parents=True, exist_ok=True)
    shim, log = directory / "terraform", directory / "terraform-calls.tsv"
    shim.write_text(_SHIM.format(real=real, log=log), encoding="utf-8")
    shim.chmod(0o755)
    log.touch()
    return shim, log


def terraform_calls(log: Path) -> list[TerraformCall]:
    """The commands a shim recorded, oldest first (a command killed mid-way is not there)."""
    calls = []
    for line in log.read_text(encoding="utf-8").splitlines():
        cwd, sub, rc, summary = (line.split("\t") + ["", "", "", ""])[:4]
        numbers = [int(n) for n in re.findall(r"\d+", summary)] or [0, 0, 0]
        calls.append(TerraformCall(cwd, sub, int(rc), *numbers[:3]))
    return calls


def _merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def edit_config(config_path: Path, **sections: Any) -> None:
    """Merge ``sections`` into fleet.yaml (mappings merged key by key, at any depth)."""
    document = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    _merge(document, sections)
    config_path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def cli_env(api_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``sandbox`` subprocess against the test Prefect server."""
    return {**os.environ, "PREFECT_API_URL": api_url, **extra}


@dataclass
class KilledRun:
    """A ``sandbox`` process killed (SIGKILL, its whole process group) when a log line appeared."""

    point: str
    trigger: str | None = None
    returncode: int | None = None
    stderr: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        """Whether the trigger appeared and the process died of SIGKILL."""
        return self.trigger is not None and self.returncode == -signal.SIGKILL


def run_until(
    args: list[str], pattern: re.Pattern[str], *, api_url: str, point: str, timeout: float = 240
) -> KilledRun:
    """Run ``sandbox ARGS``; SIGKILL its process group as soon as a stderr line matches ``pattern``.

    Nothing in the product knows: the test watches the log lines Prefect prints, as
    an operator would, and kills the way a lost machine or an OOM kill does.
    """
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: S603 - argv list
        [str(BIN / "sandbox"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(api_url),
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    run = KilledRun(point=point)
    deadline = started + timeout
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            run.stderr.append(line.rstrip("\n"))
            if pattern.search(line):
                os.killpg(proc.pid, signal.SIGKILL)
                run.trigger = line.rstrip("\n")
                break
    finally:
        if proc.poll() is None and run.trigger is None:
            os.killpg(proc.pid, signal.SIGKILL)
        run.returncode = proc.wait(timeout=60)
        run.seconds = time.monotonic() - started
    return run


def records(config: FleetConfig | Path) -> list[SandboxRecord]:
    """The inventory's records, read directly (what ``sandbox list`` shows)."""
    cfg = config if isinstance(config, FleetConfig) else load_config(config)
    inventory = Inventory(cfg.inventory_url)
    try:
        return inventory.list()
    finally:
        inventory.close()


def remote_branches(remote: Path) -> set[str]:
    """The branches of a bare repository."""
    out = subprocess.run(
        ["git", "--git-dir", str(remote), "for-each-ref", "--format=%(refname:short)", "refs/heads"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())
