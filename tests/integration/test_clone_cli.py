"""``sandbox clone`` on a local checkout: issue 4's clone acceptance, with real git."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.demo import prepare_demo

pytestmark = pytest.mark.integration

SANDBOX = str(Path(sys.executable).parent / "sandbox")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SANDBOX, *args], capture_output=True, text=True, timeout=120, check=False)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    prepare_demo(tmp_path / "demo", development=False)
    repo = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(tmp_path / "demo" / "remote.git"), str(repo)], check=True)
    git(repo, "config", "user.name", "t")
    git(repo, "config", "user.email", "t@t")
    return repo


def test_platform_clone_changes_only_the_branch_line(checkout: Path) -> None:
    result = run(
        "clone",
        "--repo",
        str(checkout),
        "--from",
        "development",
        "--name",
        "sandbox-a",
        "--branch",
        "OPS-1-try-upgrade",
    )
    assert result.returncode == 0, result.stderr
    assert git(checkout, "rev-parse", "--abbrev-ref", "HEAD").strip() == "OPS-1-try-upgrade"
    assert git(checkout, "rev-parse", "main") == git(checkout, "rev-parse", "origin/main")  # main never moves
    dev, sandbox = checkout / "clusters/development", checkout / "clusters/sandbox-a"
    assert not (sandbox / "flux-system/gotk-sync.yaml").exists()
    compared = filecmp.dircmp(dev, sandbox)
    assert compared.left_only == [] and compared.right_only == [] and compared.diff_files == ["platform.yaml"]
    assert filecmp.dircmp(dev / "flux-system", sandbox / "flux-system").left_only == ["gotk-sync.yaml"]
    before, after = (
        (dev / "platform.yaml").read_bytes().splitlines(),
        (sandbox / "platform.yaml").read_bytes().splitlines(),
    )
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [(b"    branch: main" + before[13][16:], b"    branch: OPS-1-try-upgrade" + before[13][16:])]
    # Rerun: identical target is a no-op.
    again = run(
        "clone",
        "--repo",
        str(checkout),
        "--from",
        "development",
        "--name",
        "sandbox-a",
        "--branch",
        "OPS-1-try-upgrade",
    )
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_conflicting_target_refused_and_no_branch_left(checkout: Path) -> None:
    run(
        "clone",
        "--repo",
        str(checkout),
        "--from",
        "development",
        "--name",
        "sandbox-a",
        "--branch",
        "OPS-1-try-upgrade",
    )
    git(checkout, "checkout", "-q", "main")
    git(checkout, "merge", "-q", "OPS-1-try-upgrade")
    result = run(
        "clone", "--repo", str(checkout), "--from", "staging", "--name", "sandbox-a", "--branch", "OPS-2-other"
    )
    assert result.returncode == 1
    assert result.stderr == "sandbox: error: clusters/sandbox-a/ already exists with different content\n"
    assert "OPS-2-other" not in git(checkout, "branch", "--list")


def test_performance_clone_keeps_version_tracking(checkout: Path) -> None:
    result = run("clone", "--repo", str(checkout), "--from", "production", "--name", "perf-a")
    assert result.returncode == 0, result.stderr
    assert git(checkout, "rev-parse", "--abbrev-ref", "HEAD").strip() == "perf-perf-a"
    assert (checkout / "clusters/perf-a/platform.yaml").read_bytes() == (
        checkout / "clusters/production/platform.yaml"
    ).read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "qa", "--name", "sandbox-b"], "unknown environment 'qa'"),
        (["--from", "development", "--name", "production"], "long-lived or protected"),
        (["--from", "development", "--name", "x", "--branch", "feature/x"], "does not follow <ticket>-<summary>"),
        (["--from", "development", "--name", "Bad"], "invalid sandbox name"),
    ],
)
def test_bad_input_exit_2_nothing_created(checkout: Path, args: list[str], message: str) -> None:
    branches = git(checkout, "branch", "--list")
    result = run("clone", "--repo", str(checkout), *args)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
    assert git(checkout, "branch", "--list") == branches
    assert git(checkout, "status", "--porcelain") == ""


def test_not_a_fleet_repo(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path / "r")], check=True)
    result = run("clone", "--repo", str(tmp_path / "r"), "--from", "development", "--name", "a")
    assert result.returncode == 2 and "no clusters/ directory" in result.stderr
