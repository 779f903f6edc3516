"""What every command shares: exit codes, one-line errors, running a flow, output helpers.

Exit codes (see docs/cli.md): 0 success, 1 a failed operation, 2 invalid
input or usage. ``scan`` uses pluto's codes and handles its own.

Everything printed goes through :func:`sandbox.redaction.redact`: no secret the
process knows reaches stdout or stderr, whatever produced the text.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from sandbox.errors import InvalidInputError, SandboxError
from sandbox.redaction import redact

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])

#: ``--config``, as every command takes it.
ConfigOption = Annotated[Path, typer.Option("--config", help="Path of fleet.yaml")]
#: ``--output``, for the commands that print text or JSON (see :func:`check_output`).
OutputOption = Annotated[str, typer.Option("--output", help="text or json")]


def error_line(message: object) -> str:
    """``sandbox: error: <message>`` on one line, redacted: the one way the CLI states a cause."""
    return f"sandbox: error: {redact(' '.join(str(message).split()))}"


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``sandbox: error: <message>`` on one line to stderr and exit."""
    print(error_line(message), file=sys.stderr)
    raise typer.Exit(code)


def exit_code_for(error: BaseException) -> int:
    """The CLI exit code for an error raised by the core or the flows."""
    if isinstance(error, InvalidInputError):
        return EXIT_USAGE
    return EXIT_FAILED


def fail_from(error: SandboxError) -> NoReturn:
    """Fail with the error's one-line message and its exit code."""
    fail(str(error), exit_code_for(error))


def check_output(output: str) -> None:
    """Refuse an ``--output`` other than text or json (exit 2)."""
    if output not in ("text", "json"):
        fail(f"--output must be text or json, not {output!r}", EXIT_USAGE)


def one_line_errors(command: F) -> F:
    """Turn the core's errors into the CLI's one-line messages and exit codes (1, or 2 for bad input)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SandboxError as exc:
            fail_from(exc)

    return wrapper  # type: ignore[return-value]


def flow_run_line(flow_name: str, state: Any) -> str:
    """``flow run '<name>' (<id>): <state>``: how every command names the run it made."""
    return f"flow run {flow_name!r} ({state.state_details.flow_run_id}): {state.name}"


def fail_from_flow(state: Any, error: object = None) -> NoReturn:
    """Fail with the cause of a flow run that did not complete.

    Args:
        state: The flow run's final state.
        error: What ``state.result(raise_on_failure=False)`` gave, if already read.
    """
    if error is None:
        error = state.result(raise_on_failure=False)
    if isinstance(error, SandboxError):
        fail_from(error)
    if isinstance(error, BaseException):
        fail(f"{type(error).__name__}: {error}", EXIT_FAILED)
    fail(str(state.message or f"the flow run ended {state.name}"), EXIT_FAILED)


def flow_result(flow_name: str, state: Any, *, json_output: bool = False) -> Any:
    """Print the flow run's line; its result when it completed, else fail with its cause.

    With ``json_output`` the line goes to stderr: JSON goes to stdout alone (docs/cli.md).
    """
    echo_status(flow_run_line(flow_name, state), json_output=json_output)
    if state.is_completed():
        return state.result()
    fail_from_flow(state)


def call_flow(flow_fn: Any, /, **parameters: Any) -> Any:
    """Run a flow in this process, as every command does, and return its final state.

    Ctrl-C (SIGINT) cancels it: the command running stops (see
    :func:`sandbox.proc.stop`), the sandbox lock is released on the way out, the
    run is marked Cancelled, and the ``KeyboardInterrupt`` goes on (exit 130).
    """
    from cli.prefect_env import (
        cancel_interrupted_runs,
        detach_temporary_server,
        in_process_run,
        quiet_expected_tracebacks,
    )
    from sandbox.redaction import install_log_redaction

    quiet_expected_tracebacks()
    install_log_redaction()  # again: Prefect made its handlers when it was imported
    detach_temporary_server()
    # The run this invocation starts, remembered when it turns Running, so that a Ctrl-C can
    # mark it Cancelled. Not a tag: every task run inherits its flow's tags, and Prefect then
    # asks the server for a tag concurrency slot around each task run (a quarter of a second a
    # stage on SQLite, a third of what the flow added to the demo's lifecycle).
    started: list[Any] = []

    def remember(flow: Any, flow_run: Any, state: Any) -> None:
        started.append(flow_run.id)

    runnable = flow_fn.with_options(on_running=[*flow_fn.on_running_hooks, remember])
    try:
        with in_process_run():
            return runnable(**parameters, return_state=True)
    except KeyboardInterrupt:
        try:
            cancel_interrupted_runs(list(dict.fromkeys(started)))
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: leave at once
        except Exception:  # noqa: BLE001, S110 - the interrupt is the one line the user sees; the run stays Crashed
            pass
        raise


def run_flow(flow_fn: Any, /, json_output: bool = False, **parameters: Any) -> Any:
    """Run a flow in-process and return its result; exit 1 (or 2) with the one-line cause when it fails.

    Args:
        flow_fn: The flow.
        json_output: The command prints JSON: the flow run's line goes to stderr.
        **parameters: The flow's parameters.
    """
    return flow_result(flow_fn.name, call_flow(flow_fn, **parameters), json_output=json_output)


def echo(message: str = "") -> None:
    """Print a line of normal output (stdout), redacted."""
    print(redact(message), flush=True)


def echo_status(message: str, *, json_output: bool) -> None:
    """Print a status line: on stdout, or on stderr when the command prints JSON (stdout holds the JSON alone)."""
    print(redact(message), file=sys.stderr if json_output else sys.stdout, flush=True)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout, redacted."""
    print(redact(json.dumps(data, indent=2, sort_keys=False, default=str)), flush=True)
