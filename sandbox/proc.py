"""The one subprocess helper.

Every external command in this product is built as a :class:`Command` (an argv
list, an explicit working directory and a timeout) and run by :func:`run`.
Building a command is kept separate from running it (as ansible-runner does),
so drivers can be unit-tested on the commands they build.

Never ``shell=True``. Failures raise :class:`~sandbox.errors.CommandFailedError`
(or a retryable error chosen by the caller's classifier) carrying a bounded tail
of stderr. The command's own secrets (:attr:`Command.redact`) are masked in what
it printed; every other secret the process knows (:mod:`sandbox.redaction`) is
masked where the text leaves the process -- the error made from it, a log line --
and not in the data returned here: a caller parses ``terraform output -json``, and
a masked value there would be a wrong value, not a safe one.

A command runs in its own session (process group), so a Ctrl-C in the terminal
reaches this process alone, which then stops the command itself: SIGTERM to its
group, and SIGKILL after :data:`STOP_GRACE_SECONDS` if it is still there. The same
happens when an interrupt (``KeyboardInterrupt``) or any other exception arrives
while it runs -- the command never outlives the call -- and at its timeout.

A command that outlives its timeout is stopped that way. Whether trying it again is safe
depends on the command, so every caller says so (``timeout_is_retryable``): a
read, or a command whose rerun finds its work done or does it, may be retried;
one killed half-way through a change (``terraform apply``, a git command
writing the local repository) may have left that change half made and a lock
held, and is not retried blindly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.errors import (
    CommandFailedError,
    CommandTransientError,
    SandboxError,
    ToolNotFoundError,
)
from sandbox.redaction import redact as _redact

#: How many characters of stderr an error message carries at most.
STDERR_TAIL_CHARS = 600

#: Seconds a command has between SIGTERM and SIGKILL when it is stopped (interrupt
#: or timeout): terraform uses them to stop its providers and release the state lock.
STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Command:
    """An external command, fully described before it runs.

    Attributes:
        argv: Program and arguments; ``argv[0]`` is looked up on PATH.
        cwd: Working directory (always explicit).
        timeout: Seconds before the command is killed.
        env: Extra environment variables layered over the current environment.
        redact: Secret values that must never appear in errors or logs.
        input: Text passed on standard input.
    """

    argv: tuple[str, ...]
    cwd: Path
    timeout: float
    env: Mapping[str, str] = field(default_factory=dict)
    redact: tuple[str, ...] = ()
    input: str | None = None

    def describe(self) -> str:
        """A printable, redacted form of the command line."""
        return redact(" ".join(self.argv), self.redact)


@dataclass(frozen=True)
class CompletedCommand:
    """What a finished command produced."""

    command: Command
    returncode: int
    stdout: str
    stderr: str


#: A classifier looks at a failed command and may return a more specific error
#: (for example a retryable one for a held lock); ``None`` means "generic failure".
Classifier = Callable[[CompletedCommand], SandboxError | None]


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with ``secrets`` and every registered secret (:mod:`sandbox.redaction`) replaced by ``***``."""
    return _redact(text, secrets)


def _mask(text: str, secrets: Sequence[str]) -> str:
    """``text`` with each of a command's own ``secrets`` replaced by ``***`` (the registry is not applied)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def tail(text: str, limit: int = STDERR_TAIL_CHARS) -> str:
    """The last ``limit`` characters of ``text``, stripped, on one line, redacted.

    Redacted before it is cut: a secret across the cut would otherwise leave a
    piece of itself that no registered form matches.
    """
    text = " ".join(redact(text).strip().split())
    return text if len(text) <= limit else "…" + text[-limit:]


def _name(command: Command) -> str:
    """The program and its subcommand (``terraform apply``, ``git commit``), redacted."""
    words = [Path(command.argv[0]).name]
    for arg in command.argv[1:3]:
        if arg.startswith("-"):
            break
        words.append(arg)
    return redact(" ".join(words), command.redact)


def _signal_group(proc: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(proc.pid, signum)  # the command's own session: its children too


def stop(proc: subprocess.Popen[str], grace: float = STOP_GRACE_SECONDS) -> tuple[str, str]:
    """Stop a command started by :func:`run`: SIGTERM to its process group, SIGKILL after ``grace``.

    Returns:
        What it printed (stdout, stderr) until it stopped.
    """
    _signal_group(proc, signal.SIGTERM)
    try:
        return proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        return proc.communicate()
    except BaseException:
        # A second Ctrl-C while it stops: do not wait for the grace period.
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        raise


def run(
    command: Command,
    *,
    timeout_is_retryable: bool,
    timeout_note: str = "",
    check: bool = True,
    classify: Classifier | None = None,
) -> CompletedCommand:
    """Run ``command`` and return what it produced.

    Args:
        command: The command to run.
        timeout_is_retryable: Whether running the command again after it was killed
            at its timeout is safe (a read, or a command whose rerun finds its work
            done or does it). The caller decides, per command.
        timeout_note: What to check before running it again, when that is not safe
            (added to the error's message).
        check: Raise when the command exits non-zero.
        classify: Optional hook that maps a failed run to a specific error.

    Raises:
        ToolNotFoundError: ``argv[0]`` is not installed.
        CommandTransientError: The command timed out and ``timeout_is_retryable``.
        CommandFailedError: The command exited non-zero (unless ``classify`` chose another
            error), or timed out and is not safe to run again blindly.
    """
    env = {**os.environ, **command.env}
    try:
        proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
            list(command.argv),
            cwd=command.cwd,
            env=env,
            stdin=subprocess.PIPE if command.input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop the command (see stop)
        )
    except FileNotFoundError as exc:
        if not Path(command.cwd).is_dir():
            raise CommandFailedError(f"working directory {command.cwd} does not exist") from exc
        raise ToolNotFoundError(f"{command.argv[0]} is not installed or not on PATH") from exc
    try:
        stdout, stderr = proc.communicate(input=command.input, timeout=command.timeout)
    except subprocess.TimeoutExpired as exc:
        stop(proc)
        what = f"{redact(command.argv[0], command.redact)} timed out after {command.timeout:g}s"
        if timeout_is_retryable:
            raise CommandTransientError(what) from exc
        note = f": {timeout_note}" if timeout_note else ""
        raise CommandFailedError(
            f"{_name(command)} in {command.cwd} timed out after {command.timeout:g}s and was killed; "
            f"not retried, as it may have stopped half-way{note}"
        ) from exc
    except BaseException:
        stop(proc)  # interrupted (Ctrl-C, a cancelled run): the command does not outlive the call
        raise
    done = CompletedCommand(
        command=command,
        returncode=proc.returncode,
        stdout=_mask(stdout, command.redact),
        stderr=_mask(stderr, command.redact),
    )
    if check and proc.returncode != 0:
        specific = classify(done) if classify else None
        if specific is not None:
            raise specific
        detail = tail(done.stderr or done.stdout)
        raise CommandFailedError(
            f"{command.describe()} failed (exit {proc.returncode}): {detail}",
            returncode=proc.returncode,
            stderr_tail=detail,
        )
    return done
