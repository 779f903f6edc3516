"""docs/cli.md, the command-line reference, names every command and option the real ``sandbox`` app has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from cli.main import app

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _commands(group: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Every command below ``group`` (typer's own click classes: groups are what have ``commands``)."""
    for name, command in sorted(group.commands.items()):
        yield f"{prefix} {name}", command
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix} {name}")


def test_every_command_and_option_is_in_docs_cli_md() -> None:
    doc = CLI_DOC.read_text(encoding="utf-8")
    root = typer.main.get_command(app)
    missing = []
    for path, command in _commands(root, "sandbox"):
        if f"`{path}" not in doc:
            missing.append(path)
        for param in command.params:
            for flag in [*param.opts, *param.secondary_opts]:
                if flag.startswith("--") and flag != "--help" and flag not in doc:
                    missing.append(f"{path} {flag}")
    assert not missing, f"docs/cli.md lacks: {', '.join(missing)}"


README = CLI_DOC.parents[1] / "README.md"


def test_every_command_the_readme_shows_exists_with_the_options_it_shows() -> None:
    """Each `sandbox ...` of the README names a real command, and each --option it shows is that command's."""
    import re

    root = typer.main.get_command(app)
    commands = dict(_commands(root, "sandbox"))
    shown = sorted(set(re.findall(r"`(sandbox [^`]+)`", README.read_text(encoding="utf-8"))))
    assert shown, "the README shows no sandbox command"
    wrong = []
    for text in shown:
        words = text.split()
        path = "sandbox"
        while len(words) > 1 and f"{path} {words[1]}" in commands:
            path = f"{path} {words.pop(1)}"
        if path == "sandbox":
            wrong.append(f"{text}: no such command")
            continue
        options = {flag for param in commands[path].params for flag in [*param.opts, *param.secondary_opts]}
        wrong += [f"{text}: {flag}" for flag in re.findall(r"--[a-z-]+", text) if flag not in options]
    assert not wrong, f"README commands that do not exist as shown: {'; '.join(wrong)}"
