"""The README's commands run as shown (issue 23).

Each fenced command block of the README (the quickstart's and the usage sections') is
run literally from the project root, ``make`` and all; the demo's work directory is
moved to a temporary one with ``FLEET_SANDBOX_DEMO_DIR`` (the ``--workdir`` of
``sandbox demo``), so the checkout is left as it was. The concrete inline ``sandbox``
commands are then run as shown in the demo's directory, where its ``fleet.yaml`` is the
default configuration. ``make test`` is the command running this test: it is checked
to be the suite, not run again. ``make demo-local`` runs in the real tier
(tests/real/test_readme_local.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.models import STAGE_ORDER
from tests.conftest import PROJECT_ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires_tool("terraform", "tofu"),
    pytest.mark.requires_tool("make"),
]

README = PROJECT_ROOT / "README.md"


def command_blocks(text: str) -> dict[str, list[list[str]]]:
    """Fenced blocks without a language whose every line is a ``make`` or ``sandbox`` command, by section."""
    blocks: dict[str, list[list[str]]] = {}
    section: str = ""
    fence: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if fence is None and re.fullmatch(r"#{2,3} .+", line):
            section = line.lstrip("#").strip()
        elif fence is None and line.startswith("```"):
            fence, lines = line[3:].strip(), []
        elif fence is not None and line.startswith("```"):
            commands = [entry.strip() for entry in lines if entry.strip()]
            # A language names an example file (yaml, hcl); a bare fence holding commands is what to type.
            if not fence and commands and all(entry.split()[0] in ("make", "sandbox") for entry in commands):
                blocks.setdefault(section, []).append(commands)
            fence = None
        elif fence is not None:
            lines.append(line)
    return blocks


def inline_commands(text: str) -> list[str]:
    """The inline ``sandbox ...`` commands shown with concrete arguments (no NAME, ENV or [options] to fill in)."""
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("#"))  # a heading names its command
    shown = dict.fromkeys(re.findall(r"`(sandbox [^`]+)`", prose))
    return [command for command in shown if not re.search(r"[A-Z]{2,}|\[", command)]


def test_the_readme_shows_the_quickstart_and_the_local_demo_as_command_blocks() -> None:
    blocks = command_blocks(README.read_text(encoding="utf-8"))
    assert blocks["Quickstart"] == [["make demo", "make test"]]
    assert ["make demo-local"] in blocks["A real local cluster (`make demo-local`)"]
    assert set(blocks) == {"Quickstart", "A real local cluster (`make demo-local`)"}, blocks


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme") / ".demo"


@pytest.fixture(scope="module")
def env(demo_dir: Path, prefect_server: str) -> dict[str, str]:
    # The project's venv first on PATH, as for someone who ran `make setup` and activated it (`sandbox ...`).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "FLEET_SANDBOX_DEMO_DIR": str(demo_dir), "PREFECT_API_URL": prefect_server}


def test_the_quickstart_block_runs_as_shown(demo_dir: Path, env: dict[str, str]) -> None:
    [block] = command_blocks(README.read_text(encoding="utf-8"))["Quickstart"]
    for command in block:
        if command == "make test":
            # The command running this very test: it must be the suite, not be run again.
            dry = _run(["make", "-n", "test"], PROJECT_ROOT, env)
            assert dry.returncode == 0, dry.stderr
            assert re.search(r"^\S*pytest\b", dry.stdout, flags=re.MULTILINE), dry.stdout
            continue
        done = _run(shlex.split(command), PROJECT_ROOT, env)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
        for stage in STAGE_ORDER:
            assert f"  {stage.value} " in done.stdout, (command, done.stdout)
    assert (demo_dir / "fleet.yaml").is_file()
    # "Running `make demo` again ... re-executes nothing once it has finished."
    again = _run(["make", "demo"], PROJECT_ROOT, env)
    assert again.returncode == 0, again.stderr[-2000:]
    stage_lines = [line for line in again.stdout.splitlines() if line.startswith("  ")]
    assert len(stage_lines) == len(STAGE_ORDER) and not any(" executed " in line for line in stage_lines)


#: What each concrete inline command of the README does on the demo, as the README says it: where it runs (the
#: demo's parent for a command naming ``.demo/``, the demo's directory where ``fleet.yaml`` is the default
#: configuration, or a clone of the demo's fleet repository), its exit code and a line it prints.
INLINE_EXPECTED: dict[str, tuple[str, int, str]] = {
    "sandbox list --config .demo/fleet.yaml --output json": ("parent", 0, '"name": "sandbox-demo"'),
    "sandbox list": ("demo", 0, "sandbox-demo"),
    # "a symbolic link ... leading outside it is refused and `sandbox check` reports it": run in a checkout.
    "sandbox check": ("checkout", 0, "0 violation(s)"),
    # "... runs the performance-sandbox flow": a sandbox cloned from production, load, the verdict, teardown.
    "sandbox perf --from production --scenario smoke": ("demo", 0, "performance-test"),
    "sandbox perf list": ("demo", 0, "smoke"),
    # "Before the merge it exits 1": the demo's promotion has no merged alignment pull request.
    "sandbox align development --apply": ("demo", 1, "align"),
}


def _is_a_bare_name(command: str) -> bool:
    """Whether ``command`` is a CLI command named bare though it needs an argument (a name in prose, not a run)."""
    import typer.main

    from cli.main import app

    node = typer.main.get_command(app)
    words = command.split()[1:]
    while words and words[0] in getattr(node, "commands", {}):
        node = node.commands[words.pop(0)]  # type: ignore[attr-defined]
    return not words and any(param.required for param in node.params)


def test_the_inline_commands_run_as_shown_on_the_demo(demo_dir: Path, env: dict[str, str]) -> None:
    if not (demo_dir / "fleet.yaml").is_file():
        made = _run(["make", "demo"], PROJECT_ROOT, env)
        assert made.returncode == 0, made.stderr[-2000:]
    shown = inline_commands(README.read_text(encoding="utf-8"))
    names_only = [command for command in shown if _is_a_bare_name(command)]
    runnable = [command for command in shown if command not in names_only]
    assert sorted(names_only) == ["sandbox create", "sandbox destroy", "sandbox resume"]
    assert sorted(runnable) == sorted(INLINE_EXPECTED), "a README command without an expectation here"
    checkout = demo_dir.parent / "fleet-checkout"
    if not checkout.is_dir():
        cloned = _run(["git", "clone", "-q", str(demo_dir / "remote.git"), str(checkout)], demo_dir.parent, env)
        assert cloned.returncode == 0, cloned.stderr
    places = {"parent": demo_dir.parent, "demo": demo_dir, "checkout": checkout}
    for command in INLINE_EXPECTED:  # in this order: perf list reads what perf ran
        where, code, shows = INLINE_EXPECTED[command]
        done = _run(shlex.split(command), places[where], env)
        assert done.returncode == code, f"{command}: exit {done.returncode}: {(done.stderr or done.stdout)[-1500:]}"
        assert "Traceback" not in done.stderr, f"{command}: {done.stderr[-1500:]}"
        assert shows in done.stdout + done.stderr, f"{command}: {done.stdout[-1500:]} {done.stderr[-500:]}"
        if command.endswith("--output json"):
            [entry] = [e for e in json.loads(done.stdout) if e["name"] == "sandbox-demo"]
            assert entry["status"] == "destroyed"
