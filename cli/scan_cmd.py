"""``sandbox scan PATH``: deprecated and removed Kubernetes/Flux API versions, like pluto.

Registered by ``cli/main.py`` as ``app.command("scan")(scan)``.

Exit codes are pluto's, not the rest of the CLI's: 0 nothing found, 2 deprecated APIs
found, 3 removed APIs found (removed wins), 1 for every error (unreadable path, invalid
version, invalid ``--output``, unusable ``--data`` file) with one line
``sandbox: error: ...`` on stderr. ``--output json`` prints exactly
``{"findings": [...], "skipped": [...]}`` (see docs/cli.md).

A target newer than the deprecation data cover is scanned as pluto scans one: the
findings decide the exit code. The output says where the data end (a ``warning:``
line; in JSON ``"warnings"`` and ``"data_covers"``), since "nothing found" there
means only that nothing the data know of was found.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cli.common import EXIT_FAILED, echo, echo_json, fail
from sandbox.bounded import DEFAULT_MAX_FILE_BYTES
from sandbox.deprecations import STDIN_NAME, Finding, ScanReport, scan_path, scan_stream
from sandbox.errors import SandboxError

EXIT_NOTHING_FOUND = 0
EXIT_DEPRECATED_FOUND = 2
EXIT_REMOVED_FOUND = 3

OUTPUT_FORMATS = ("text", "json")

_COLUMNS = (
    "FILE",
    "KIND",
    "APIVERSION",
    "NAME",
    "NAMESPACE",
    "DEPRECATED-IN",
    "REMOVED-IN",
    "REPLACEMENT",
    "STATUS",
)


def scan(
    path: Path = typer.Argument(
        ...,
        help="A YAML/JSON file, a directory to scan recursively, or - for one YAML stream on stdin "
        "(helm template ... | sandbox scan -)",
    ),
    k8s_version: str | None = typer.Option(
        None, "--k8s-version", help="Target Kubernetes version X.Y (default: the newest release in the data)"
    ),
    flux_version: str | None = typer.Option(
        None, "--flux-version", help="Target Flux version X.Y (default: the newest release in the data)"
    ),
    output: str = typer.Option("text", "--output", help="text or json"),
    data: list[Path] = typer.Option(
        [], "--data", help="Extra deprecation data file in the bundled schema (repeatable)"
    ),
    max_file_bytes: int = typer.Option(
        DEFAULT_MAX_FILE_BYTES,
        "--max-file-bytes",
        min=1,
        help="Largest file read; larger files and names that are not regular files (FIFOs, devices) are skipped",
    ),
) -> None:
    """Find deprecated and removed Kubernetes and Flux API versions (exit 0 none, 2 deprecated, 3 removed)."""
    if output not in OUTPUT_FORMATS:
        fail(f"invalid --output {output!r}: expected one of {', '.join(OUTPUT_FORMATS)}", EXIT_FAILED)
    try:
        if str(path) == STDIN_NAME:
            report = scan_stream(
                _read_stdin(max_file_bytes), k8s_version=k8s_version, flux_version=flux_version, extra_data=data
            )
        else:
            report = scan_path(
                path,
                k8s_version=k8s_version,
                flux_version=flux_version,
                extra_data=data,
                max_file_bytes=max_file_bytes,
            )
    except SandboxError as exc:
        fail(str(exc), EXIT_FAILED)
    except OSError as exc:
        fail(f"cannot scan {path}: {exc.strerror or type(exc).__name__}", EXIT_FAILED)

    if output == "json":
        echo_json(report.to_json())
    else:
        _print_text(report)
    code = exit_code(report)
    if code != EXIT_NOTHING_FOUND:
        raise typer.Exit(code)


def _read_stdin(limit: int) -> bytes:
    """Standard input, at most ``limit`` bytes: more is refused (exit 1), never read without end."""
    raw = sys.stdin.buffer.read(limit + 1)
    if len(raw) > limit:
        fail(f"standard input is larger than {limit} bytes (--max-file-bytes); not scanned", EXIT_FAILED)
    return raw


def exit_code(report: ScanReport) -> int:
    """pluto's exit code for a report: 3 if anything is removed, else 2 if deprecated, else 0."""
    if report.removed:
        return EXIT_REMOVED_FOUND
    if report.findings:
        return EXIT_DEPRECATED_FOUND
    return EXIT_NOTHING_FOUND


def _print_text(report: ScanReport) -> None:
    targets = ", ".join(f"{_component_label(name)} {version}" for name, version in report.targets.items())
    if report.findings:
        rows = [_COLUMNS, *(_row(finding) for finding in report.findings)]
        widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
        for row in rows:
            echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        removed, deprecated = len(report.removed), len(report.deprecated_only)
        echo()
        echo(f"{len(report.findings)} finding(s) at {targets}: {removed} removed, {deprecated} deprecated")
    elif report.scanned == 0:
        echo(f"Nothing scanned at {targets}: no YAML or JSON file was read.")
    else:
        echo(f"No deprecated or removed APIs found at {targets}.")
    if report.skipped:
        echo()
        echo(f"{len(report.skipped)} file(s) skipped:")
        for skipped in report.skipped:
            echo(f"  {skipped.file}: {skipped.reason}")
    for warning in report.warnings:
        echo(f"warning: {warning}")


def _row(finding: Finding) -> tuple[str, ...]:
    return (
        finding.file,
        finding.kind,
        finding.apiVersion,
        finding.name or "-",
        finding.namespace or "-",
        finding.deprecated_in or "-",
        finding.removed_in or "-",
        finding.replacement or "none",
        "removed" if finding.removed else "deprecated",
    )


def _component_label(component: str) -> str:
    return {"kubernetes": "Kubernetes", "flux": "Flux"}.get(component, component)


def register(app: typer.Typer) -> None:
    """Add ``sandbox scan`` to the command line."""
    app.command("scan")(scan)
