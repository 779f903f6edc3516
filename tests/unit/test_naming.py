from __future__ import annotations

from datetime import timedelta

import pytest

from sandbox.errors import InvalidInputError, ProtectedEnvironmentError
from sandbox.naming import (
    branch_name,
    format_duration,
    parse_duration,
    validate_branch,
    validate_sandbox_name,
)

PROTECTED = {"development", "staging", "production"}
TICKET = r"[A-Z][A-Z0-9]+-[0-9]+"


@pytest.mark.parametrize("name", ["sandbox-a", "s1", "perf-2026-11-24"])
def test_valid_names(name: str) -> None:
    assert validate_sandbox_name(name, PROTECTED) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("Sandbox-A", "invalid sandbox name"),
        ("..", "invalid sandbox name"),
        ("a" * 41, "41 characters long"),
        ("-a", "invalid sandbox name"),
        ("a-", "invalid sandbox name"),
        ("1abc", "invalid sandbox name"),
        ("a_b", "invalid sandbox name"),
        ("a/b", "invalid sandbox name"),
    ],
)
def test_invalid_names(name: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        validate_sandbox_name(name, PROTECTED)


def test_protected_names_refused() -> None:
    with pytest.raises(ProtectedEnvironmentError, match="'production' is a long-lived or protected environment"):
        validate_sandbox_name("production", PROTECTED)


def test_branch_name_follows_ticket_summary() -> None:
    assert branch_name("OPS-1", "Try upgrade!", TICKET) == "OPS-1-try-upgrade"
    assert validate_branch("OPS-1-try-upgrade", TICKET) == "OPS-1-try-upgrade"
    with pytest.raises(InvalidInputError, match="ticket 'ops-1' does not match"):
        branch_name("ops-1", "x", TICKET)
    with pytest.raises(InvalidInputError, match="no letters or digits"):
        branch_name("OPS-1", "!!!", TICKET)
    with pytest.raises(InvalidInputError, match="does not follow <ticket>-<summary>"):
        validate_branch("feature/x", TICKET)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("72h", timedelta(hours=72)),
        ("3d", timedelta(days=3)),
        ("1d12h", timedelta(hours=36)),
        ("90m", timedelta(minutes=90)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "0h", "-1h", "3 days", "h", "1.5h", "1y"])
def test_invalid_durations(text: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid duration"):
        parse_duration(text)


# -- exact names (issue 17 item 6): ``$`` also matches before a trailing newline -----------------


@pytest.mark.parametrize("name", ["abc\n", "sandbox-a\n", "a\n"])
def test_a_name_with_a_trailing_newline_is_refused(name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid sandbox name"):
        validate_sandbox_name(name, set())


def test_a_branch_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="does not follow <ticket>-<summary>"):
        validate_branch("OPS-1-try-this\n", r"[A-Z][A-Z0-9]+-[0-9]+")


@pytest.mark.parametrize(
    ("check", "value"),
    [
        ("sandbox.watch:_REVISION", "abcdef1\n"),
        ("sandbox.config:is_flux_git_url", "https://git.example.test/fleet.git\nx"),
        ("sandbox.config:is_scp_style", "git@host:org/repo.git\n"),
        ("sandbox.deprecations:_COMPONENT_RE", "flux\n"),
        ("sandbox.drivers.terraform:_WORKSPACE_NAME", "sandbox-a\n"),
        ("sandbox.drivers.terraform:_VARIABLE_NAME", "node_count\n"),
    ],
)
def test_every_name_check_is_a_full_match(check: str, value: str) -> None:
    import importlib
    import re

    module, attribute = check.split(":")
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, re.Pattern):
        assert target.fullmatch(value) is None
        assert target.fullmatch(value.rstrip("\n")) is not None
    else:
        assert not target(value)
        assert target(value.split("\n")[0])


def test_no_regex_in_the_package_relies_on_dollar() -> None:
    """A pattern literal ending in ``$`` must be a Kubernetes or pydantic pattern (exact there), not Python's."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    allowed = ("FLUX_GIT_URL_PATTERN", "GIT_REPOSITORY_URL_PATTERN", "Field(pattern=", "pattern=r", "must match")
    found = []
    for package in ("sandbox", "cli", "tasks", "flows", "deployments"):
        for path in sorted((root / package).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"""\$\s*["']\s*[,)]""", line) and not any(word in line for word in allowed):
                    found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert found == []


# -- the contract's exit codes (issue 17 item 9) ---------------------------------------------------


@pytest.mark.parametrize("text", ["99999999999999d", "9" * 30 + "w", "1" * 5000 + "s"])
def test_a_huge_duration_is_invalid_input_not_an_overflow(text: str) -> None:
    with pytest.raises(InvalidInputError, match="too long"):
        parse_duration(text)
