"""A command killed at its timeout is retried only where running it again is safe.

Each caller of :func:`sandbox.proc.run` decides (``timeout_is_retryable``). Fake
``terraform`` and ``git`` binaries that hang show the drivers' decisions: reads and
commands whose rerun finds their work done are retried; ``terraform apply`` and
``destroy`` (a change killed half-way, its state lock possibly still held) and git
commands writing the local repository (a lock file such as ``.git/index.lock`` possibly
left behind) are not, and their message says what to check first.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sandbox.drivers.git import GitCli
from sandbox.drivers.terraform import PythonTerraformDriver
from sandbox.errors import CommandFailedError, CommandTransientError
from sandbox.proc import Command, run

TIMEOUT = 0.3


def hanging(tmp_path: Path, name: str, hang_on: str, answers: str = "") -> str:
    """A fake binary that hangs (``exec sleep``: the kill reaches it) on the subcommands ``hang_on`` matches."""
    binary = tmp_path / name
    binary.write_text(f'#!/bin/sh\ncase "$1" in\n  {hang_on}) exec sleep 30 ;;\nesac\n{answers}\n', encoding="utf-8")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return str(binary)


# -- the helper ------------------------------------------------------------------------


def test_a_timeout_the_caller_calls_safe_is_retryable(tmp_path: Path) -> None:
    with pytest.raises(CommandTransientError) as failure:
        run(Command(argv=("sleep", "30"), cwd=tmp_path, timeout=TIMEOUT), timeout_is_retryable=True)
    assert failure.value.retryable
    assert str(failure.value) == f"sleep timed out after {TIMEOUT:g}s"


def test_a_timeout_the_caller_calls_unsafe_is_permanent_and_says_what_to_check(tmp_path: Path) -> None:
    command = Command(argv=("sleep", "30"), cwd=tmp_path, timeout=TIMEOUT)
    with pytest.raises(CommandFailedError) as failure:
        run(command, timeout_is_retryable=False, timeout_note="look at the thing first")
    assert not failure.value.retryable
    assert str(failure.value) == (
        f"sleep 30 in {tmp_path} timed out after {TIMEOUT:g}s and was killed; "
        "not retried, as it may have stopped half-way: look at the thing first"
    )


# -- terraform ----------------------------------------------------------------------------


def terraform_hanging_on(tmp_path: Path, subcommand: str) -> PythonTerraformDriver:
    binary = hanging(tmp_path, "terraform", subcommand, answers='[ "$1" = output ] && echo "{}"\nexit 0')
    return PythonTerraformDriver(binary=binary, timeout=TIMEOUT)


@pytest.mark.parametrize("subcommand", ["apply", "destroy"])
def test_a_killed_terraform_change_is_not_retried(tmp_path: Path, subcommand: str) -> None:
    driver = terraform_hanging_on(tmp_path, subcommand)
    with pytest.raises(CommandFailedError) as failure:
        getattr(driver, subcommand)(tmp_path, {"cluster_name": "sb-a"})
    assert not failure.value.retryable
    message = str(failure.value)
    assert message.startswith(f"terraform {subcommand} in {tmp_path} timed out after {TIMEOUT:g}s and was killed")
    assert "state lock may still be held" in message and "force-unlock" in message


def test_a_killed_terraform_plan_is_retried(tmp_path: Path) -> None:
    driver = terraform_hanging_on(tmp_path, "plan")
    with pytest.raises(CommandTransientError) as failure:
        driver.plan(tmp_path, {"cluster_name": "sb-a"})
    assert failure.value.retryable


@pytest.mark.parametrize(
    ("subcommand", "call"),
    [
        ("output", lambda driver, workdir: driver.outputs(workdir)),
        ("workspace", lambda driver, workdir: driver.workspaces(workdir)),
    ],
)
def test_killed_terraform_reads_are_retried(tmp_path: Path, subcommand: str, call: object) -> None:
    driver = terraform_hanging_on(tmp_path, subcommand)
    with pytest.raises(CommandTransientError):
        call(driver, tmp_path)  # type: ignore[operator]


# -- git -------------------------------------------------------------------------------------


def git_hanging_on(tmp_path: Path, subcommands: str) -> GitCli:
    return GitCli(binary=hanging(tmp_path, "git", subcommands), timeout=TIMEOUT)


def test_killed_git_commands_that_talk_to_the_remote_are_retried(tmp_path: Path) -> None:
    git = git_hanging_on(tmp_path, "fetch|ls-remote|push|clone")
    for call in (
        lambda: git.fetch(tmp_path),
        lambda: git.remote_branches("https://git.example/fleet.git"),
        lambda: git.push(tmp_path, "sb-a"),
        lambda: git.clone("https://git.example/fleet.git", tmp_path / "checkout"),
    ):
        with pytest.raises(CommandTransientError):
            call()


def test_a_killed_git_command_writing_the_checkout_is_not_retried(tmp_path: Path) -> None:
    git = git_hanging_on(tmp_path, "add|commit|reset|checkout")
    with pytest.raises(CommandFailedError) as failure:
        git.commit_all(tmp_path, "a change")
    assert not failure.value.retryable
    assert str(failure.value).startswith(f"git add in {tmp_path} timed out")
    assert f"lock file behind in {tmp_path}/.git (index.lock" in str(failure.value)
    with pytest.raises(CommandFailedError):
        git.reset_hard(tmp_path, "origin/main")
