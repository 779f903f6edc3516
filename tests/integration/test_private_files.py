"""Files holding secrets are private (issue 17, item 3).

Terraform's state and its backup hold the cluster's credential (on real clusters
the kubeconfig), the inventory names every sandbox and its failures. They were
0644 in 0755 directories, and the backup kept the credential after teardown.
Now every product process sets umask 077 itself (the CLI here runs under a
caller's umask of 022 to prove it is not assumed): the whole state directory is
0700 directories and 0600 files, and ``terraform destroy`` takes the backup with
it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from sandbox.config import load_config
from sandbox.demo import prepare_demo
from tests.integration.reliability_support import cli_env
from tests.integration.sandbox_cli import BIN, error_line
from tests.integration.secret_scan import file_texts

pytestmark = pytest.mark.integration

NAME = "sandbox-private"


def _open_to_others(root: Path) -> list[str]:
    """Every file or directory below (and including) ``root`` that its group or others may use.

    Git objects a local clone hard-linked from the (local) fleet remote are the remote's
    files with the remote's modes, not the product's; they sit in 0700 directories anyway.
    """
    found = []
    for path in [root, *sorted(root.rglob("*"))]:
        if path.is_symlink() or (".git" in path.parts and "objects" in path.parts and path.stat().st_nlink > 1):
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:04o}")
    return found


def _cluster_token(workdir: Path) -> str:
    """The cluster credential in the sandbox's terraform state (its ``cluster_token`` output)."""
    for path in workdir.rglob("terraform.tfstate"):
        outputs = json.loads(path.read_text()).get("outputs") or {}
        if "cluster_token" in outputs:
            return str(outputs["cluster_token"]["value"])
    raise AssertionError(f"no cluster_token output in the terraform state under {workdir}")


def test_state_is_private_and_the_backup_goes_with_the_cluster(prefect_server: str, tmp_path: Path) -> None:
    config_path = prepare_demo(tmp_path / "fleet", development=False)
    state = load_config(config_path).state_dir

    def sandbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "sandbox"), *args, "--config", str(config_path)],
            capture_output=True,
            text=True,
            env=cli_env(prefect_server),
            preexec_fn=lambda: os.umask(0o022),  # the caller's usual umask: not what the product relies on
            timeout=600,
            check=False,
        )

    created = sandbox("create", NAME, "--ticket", "OPS-8", "--summary", "private files")
    assert created.returncode == 0, created.stderr[-3000:]
    workdir = state / "sandboxes" / NAME / "terraform"
    states = sorted(p.name for p in workdir.rglob("terraform.tfstate*") if p.is_file())
    assert "terraform.tfstate" in states, states
    assert (state / "inventory.db").is_file()
    token = _cluster_token(workdir)
    assert not _open_to_others(state)

    destroyed = sandbox("destroy", NAME)
    assert destroyed.returncode == 0, error_line(destroyed.stderr)
    # The state stays (terraform's record of an empty workspace); its backup, the credential with it, is gone.
    assert [p.name for p in workdir.rglob("terraform.tfstate*") if p.is_file()] == ["terraform.tfstate"]
    assert not [text for text in file_texts(state) if token in text]
    assert not _open_to_others(state)
