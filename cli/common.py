"""What every command shares: exit codes, one-line errors, output helpers.

Exit codes (see ../shared/CLI.md): 0 success, 1 a failed operation, 2 invalid
input or usage. ``scan`` uses pluto's codes and handles its own.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

from sandbox.errors import InvalidInputError, SandboxError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``sandbox: error: <message>`` on one line to stderr and exit."""
    one_line = " ".join(str(message).split())
    print(f"sandbox: error: {one_line}", file=sys.stderr)
    raise typer.Exit(code)


def exit_code_for(error: BaseException) -> int:
    """The CLI exit code for an error raised by the core or the flows."""
    if isinstance(error, InvalidInputError):
        return EXIT_USAGE
    return EXIT_FAILED


def fail_from(error: SandboxError) -> NoReturn:
    """Fail with the error's one-line message and its exit code."""
    fail(str(error), exit_code_for(error))


def echo(message: str = "") -> None:
    """Print a line of normal output (stdout)."""
    print(message, flush=True)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    print(json.dumps(data, indent=2, sort_keys=False, default=str), flush=True)
