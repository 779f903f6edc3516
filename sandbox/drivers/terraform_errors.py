"""Terraform's failures, mapped to the product's errors.

Terraform prints its failures as diagnostics (``Error:`` blocks, boxed when
coloured); :func:`classify` reads them from a failed command and picks the
error: a held state lock is retryable and names its holder, rejected
credentials and everything unknown are permanent, network errors, timeouts
and rate limits between Terraform and an API are retryable. Messages carry
Terraform's own (bounded, redacted) account of the failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

from sandbox.errors import CommandFailedError, CommandTransientError, SandboxError, StateLockedError
from sandbox.proc import STDERR_TAIL_CHARS, CompletedCommand, tail


class TerraformError(CommandFailedError):
    """Terraform refused or failed the operation; retrying will fail the same way.

    Invalid configuration, missing variables, rejected credentials, a failing
    provisioner. ``str(error)`` carries Terraform's own (bounded) message.
    """


class TerraformAuthError(TerraformError):
    """The backend or a provider rejected the credentials (expired or invalid token, 403)."""


class TerraformTransientError(CommandTransientError):
    """A network error, timeout or rate limit between Terraform and an API; try again later."""


@dataclass
class Diagnostic:
    """One ``Error:`` or ``Warning:`` block of Terraform's output."""

    severity: str
    summary: str
    detail_lines: list[str] = field(default_factory=list)

    @property
    def detail(self) -> str:
        """The block's body without source snippets, on one line."""
        kept = [line for line in self.detail_lines if not _SNIPPET_LINE.match(line)]
        text = " ".join(" ".join(kept).split())
        # A failing provisioner's message repeats its whole script; keep its outcome.
        return _LOCAL_EXEC_COMMAND.sub(r"the command failed (\1).", text)


_DIAGNOSTIC_START = re.compile(r"(Error|Warning): ?(.*)")  # fullmatch, on one line


# Source excerpts ("  2:   input = var.nope") and expression-value trees ("├────").
_SNIPPET_LINE = re.compile(r"^\s+(\d+:\s|[├│└─])")


_LOCAL_EXEC_COMMAND = re.compile(r"Error running command '.*?': (exit status \d+|signal: [\w ]+)\.")


# Printed before any command output when ~/.terraformrc (or TF_CLI_CONFIG_FILE) is
# unreadable; its warnings must never be mistaken for the failure.
_CLI_CONFIG_HEADER = "There are some problems with the CLI configuration:"


_LOCK_SUMMARY = "Error acquiring the state lock"


_LOCK_FIELD = re.compile(r"\s*(ID|Path|Operation|Who|Version|Created|Info):\s*(.*?)\s*")


_STATUS = r"(?:status\s*code|statuscode|error|http(?:/[\d.]+)?)[\s:=]*"


_AUTH = re.compile(
    r"ExpiredToken|InvalidClientTokenId|UnrecognizedClientException|SignatureDoesNotMatch|"
    r"InvalidAccessKeyId|AccessDenied|UnauthorizedOperation|AuthFailure|"
    r"no valid credential sources|invalid_grant|"
    rf"{_STATUS}(?:401|403)\b|\b(?:401|403)\s+(?:Unauthorized|Forbidden)",
    re.IGNORECASE,
)


_TRANSIENT = re.compile(
    r"connection reset|connection refused|i/o timeout|TLS handshake timeout|"
    r"context deadline exceeded|temporary failure in name resolution|unexpected EOF|"
    r"Too Many Requests|RequestLimitExceeded|Throttl(?:ing|ed)|Rate exceeded|SlowDown|"
    r"ServiceUnavailable|Service Unavailable|"
    rf"{_STATUS}(?:429|502|503|504)\b|\b(?:429|502|503|504)\s+(?:Too Many|Bad Gateway|Service|Gateway)",
    re.IGNORECASE,
)


def _plain_lines(text: str) -> Iterator[str]:
    """Terraform's output with the box drawing of coloured diagnostics removed."""
    for line in text.splitlines():
        if line.strip() in ("╷", "╵"):
            continue
        if line.startswith("│"):
            line = line[1:].removeprefix(" ")
        yield line.rstrip()


def parse_diagnostics(text: str) -> tuple[list[Diagnostic], list[str]]:
    """Split Terraform's stderr into diagnostics and the lines outside any.

    Returns:
        The ``Error:``/``Warning:`` blocks in order, and the loose lines (errors
        Terraform prints without a diagnostic, such as ``No state file was found!``).
        The CLI-configuration preamble is dropped.
    """
    diagnostics: list[Diagnostic] = []
    loose: list[str] = []
    current: Diagnostic | None = None
    for line in _plain_lines(text):
        start = _DIAGNOSTIC_START.fullmatch(line)
        if start:
            current = Diagnostic(start.group(1).lower(), start.group(2).strip())
            diagnostics.append(current)
        elif line.strip() == _CLI_CONFIG_HEADER:
            current = None
        elif current is not None:
            current.detail_lines.append(line)
        elif line.strip():
            loose.append(line.strip())
    return diagnostics, loose


def _error_message(done: CompletedCommand) -> str:
    """Terraform's own account of the failure, bounded, on one line."""
    diagnostics, loose = parse_diagnostics(done.stderr)
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors:
        seen: list[str] = []
        for error in errors:
            # Bounded per error (keeping the end, where a provisioner's output is)
            # so one long diagnostic cannot push the others out of the message.
            detail = tail(error.detail, STDERR_TAIL_CHARS * 3 // 4).rstrip(":") if error.detail else ""
            item = f"{error.summary}: {detail}" if detail else error.summary
            if item not in seen:
                seen.append(item)
        return tail(" | ".join(seen))
    if loose:
        return tail(" ".join(loose))
    # Nothing on stderr: some failures (provisioner output) only reach stdout.
    return tail(done.stdout) or f"exit status {done.returncode}"


def _lock_info(diagnostic_text: str) -> dict[str, str]:
    info: dict[str, str] = {}
    for line in diagnostic_text.splitlines():
        found = _LOCK_FIELD.fullmatch(line)
        if found and found.group(2):
            info.setdefault(found.group(1), found.group(2))
    return info


def _what(done: CompletedCommand) -> str:
    """``terraform plan in <workdir>`` (the program, its subcommand, where)."""
    argv = done.command.argv
    words = [PurePath(argv[0]).name]
    for arg in argv[1:3]:
        if arg.startswith("-"):
            break
        words.append(arg)
    return f"{' '.join(words)} in {done.command.cwd}"


def classify(done: CompletedCommand) -> SandboxError:
    """Map a failed terraform command to the product's error hierarchy.

    * ``Error acquiring the state lock`` → :class:`~sandbox.errors.StateLockedError`
      (retryable), naming the lock holder when Terraform printed it;
    * rejected credentials (``ExpiredToken``, ``InvalidClientTokenId``, 403, ...)
      → :class:`TerraformAuthError` (permanent);
    * network errors, timeouts and rate limits → :class:`TerraformTransientError`
      (retryable);
    * everything else → :class:`TerraformError` (permanent).

    ``done`` is already redacted by :func:`sandbox.proc.run`; the CLI-configuration
    warnings Terraform prints on every run are ignored.
    """
    what = _what(done)
    message = _error_message(done)
    diagnostics, _ = parse_diagnostics(done.stderr)
    lock = next((d for d in diagnostics if d.severity == "error" and d.summary == _LOCK_SUMMARY), None)
    if lock is not None:
        body = "\n".join(lock.detail_lines)
        reason = next(
            (line.split(":", 1)[1].strip() for line in lock.detail_lines if line.startswith("Error message:")),
            "",
        )
        if _AUTH.search(reason):
            return TerraformAuthError(
                f"{what}: credentials rejected while locking the state: {tail(reason)}",
                returncode=done.returncode,
                stderr_tail=message,
            )
        info = _lock_info(body)
        if not info and _TRANSIENT.search(reason):
            return TerraformTransientError(
                f"{what}: temporary failure while locking the state: {tail(reason)}",
                returncode=done.returncode,
                stderr_tail=message,
            )
        return StateLockedError(f"{what}: the state is locked{_describe_holder(info, reason)}")
    if _AUTH.search(message):
        return TerraformAuthError(
            f"{what}: credentials rejected: {message}", returncode=done.returncode, stderr_tail=message
        )
    if _TRANSIENT.search(message):
        return TerraformTransientError(
            f"{what}: temporary failure: {message}", returncode=done.returncode, stderr_tail=message
        )
    return TerraformError(f"{what} failed: {message}", returncode=done.returncode, stderr_tail=message)


def _describe_holder(info: Mapping[str, str], reason: str) -> str:
    # The lock's free-form "Info" field is left out: anything may be written there.
    if not info:
        return f" ({tail(reason, 200)})" if reason else ""
    operation = info.get("Operation", "").removeprefix("OperationType").lower() or "an operation"
    parts = [f" by {info.get('Who', 'someone')} ({operation}"]
    if "Created" in info:
        parts.append(f" since {info['Created']}")
    if "ID" in info:
        parts.append(f", lock ID {info['ID']}")
    parts.append("); try again later, or force-unlock if that run is gone")
    return "".join(parts)
