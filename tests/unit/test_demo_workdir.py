"""Where ``sandbox demo`` may write (issue 17 item 9): a new, empty or demo directory, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.demo import DEMO_CONFIG_HEADER, DEMO_MARKER, claim_demo_workdir
from sandbox.errors import InvalidInputError


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_a_new_directory_is_made_and_marked(tmp_path: Path) -> None:
    workdir = claim_demo_workdir(tmp_path / "new" / "demo")
    assert (workdir / DEMO_MARKER).is_file()
    assert claim_demo_workdir(workdir) == workdir  # a rerun takes it again


def test_an_empty_directory_is_taken(tmp_path: Path) -> None:
    assert (claim_demo_workdir(tmp_path) / DEMO_MARKER).is_file()


def test_a_demo_made_before_the_marker_is_recognised_by_its_config(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(DEMO_CONFIG_HEADER + "\nfleet_repo: {}\n")
    assert claim_demo_workdir(tmp_path) == tmp_path.resolve()


def test_a_foreign_directory_is_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text("fleet_repo: {remote: git@example.test:org/fleet.git}\n")
    (tmp_path / "remote.git").mkdir()
    before = _listing(tmp_path)
    with pytest.raises(InvalidInputError, match="is not empty and not a demo directory"):
        claim_demo_workdir(tmp_path)
    assert _listing(tmp_path) == before


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("x")
    with pytest.raises(InvalidInputError, match="is not a directory"):
        claim_demo_workdir(tmp_path / "notes")
    with pytest.raises(InvalidInputError, match="cannot be written: Not a directory"):
        claim_demo_workdir(tmp_path / "notes" / "demo")
