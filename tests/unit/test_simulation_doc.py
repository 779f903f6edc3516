"""docs/simulation.md: every "Modelled" line names a conformance test, and every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "simulation.md"
NAMED = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_modelled_line_names_a_conformance_test() -> None:
    rows = [
        line
        for line in _section(DOC.read_text(encoding="utf-8"), "Modelled").splitlines()
        if line.startswith("| ") and not line.startswith("| Behaviour") and not line.startswith("| ---")
    ]
    assert rows, "docs/simulation.md has no Modelled rows"
    for row in rows:
        named = NAMED.findall(row)
        assert named and all(path.startswith("tests/conformance/") for path, _ in named), f"names no test: {row}"


def test_every_test_the_page_names_exists() -> None:
    named = NAMED.findall(DOC.read_text(encoding="utf-8"))
    assert named
    for path, test in named:
        file = ROOT / path
        assert file.is_file(), f"docs/simulation.md names {path}, which does not exist"
        assert test in _tests_in(file), f"docs/simulation.md names {path}::{test}, which does not exist"
