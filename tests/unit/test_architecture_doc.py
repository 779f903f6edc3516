"""docs/architecture.md stays honest: every module it names exists, and every module is named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "docs" / "architecture.md"
#: Packages whose every module the map lists.
LISTED = ("sandbox", "tasks", "flows", "cli", "deployments")
#: Folders the map names whole, for the modules in them: the simulated cluster's parts and the migrations.
NAMED_WHOLE = ("sandbox/drivers/simulation/", "sandbox/migrations/")

_NAMED = re.compile(r"`((?:sandbox|tasks|flows|cli|bench|deployments|tests)/[A-Za-z0-9_./-]*)`")


def named_paths() -> list[str]:
    """Every project path the map names in backticks (``sandbox/stages/clone.py``, ``sandbox/stages/``)."""
    return _NAMED.findall(MAP.read_text(encoding="utf-8"))


def test_the_map_names_paths() -> None:
    assert len(named_paths()) > 50


def test_every_module_the_map_names_exists() -> None:
    missing = [path for path in named_paths() if not (ROOT / path).exists()]
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_every_module_is_on_the_map() -> None:
    named = named_paths()
    folders = [folder for folder in NAMED_WHOLE if folder in named]
    assert folders == list(NAMED_WHOLE)
    unnamed = [
        str(path.relative_to(ROOT))
        for package in LISTED
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py"
        and str(path.relative_to(ROOT)) not in named
        and not any(str(path.relative_to(ROOT)).startswith(folder) for folder in folders)
    ]
    assert not unnamed, f"modules missing from docs/architecture.md: {unnamed}"
