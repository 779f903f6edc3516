"""Bounded reads (issue 17 item 5): regular files only, a size cap, no alias bomb, no duplicate key.

Each case would hang, eat memory or silently pick a value before the fix: a FIFO
blocked the reader forever, ``/dev/zero`` grew without end, an alias bomb on a
typed key expanded to billions of values, a second ``fleet_repo:`` won.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from sandbox.bounded import FileRefusedError, load_yaml_document, read_bounded
from sandbox.config import load_config
from sandbox.demo import demo_config
from sandbox.deprecations import scan_path
from sandbox.errors import ConfigError
from sandbox.validation import plan_scan

#: Ten levels of ten aliases each: 10**10 values once expanded.
ALIAS_BOMB = 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 10)
)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return path


def test_a_fifo_is_refused_without_waiting_for_a_writer(fifo: Path) -> None:
    with pytest.raises(FileRefusedError, match=r"not a regular file \(a FIFO\)"):
        read_bounded(fifo, 1024)


def test_a_link_to_dev_zero_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    with pytest.raises(FileRefusedError, match=r"not a regular file \(a character device\)"):
        read_bounded(tmp_path / "zero.yaml", 1024)


def test_a_file_over_the_cap_is_refused_and_one_at_the_cap_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a" * 1025)
    with pytest.raises(FileRefusedError, match="larger than 1024 bytes"):
        read_bounded(path, 1024)
    path.write_bytes(b"a" * 1024)
    assert read_bounded(path, 1024) == b"a" * 1024


def test_an_alias_bomb_is_refused_and_ordinary_aliases_kept() -> None:
    with pytest.raises(yaml.YAMLError, match="once its aliases are expanded"):
        load_yaml_document(ALIAS_BOMB)
    assert load_yaml_document("a: &x {k: 1, j: 2}\nb:\n  <<: *x\n  j: 3\n") == {
        "a": {"k": 1, "j": 2},
        "b": {"k": 1, "j": 3},
    }


def test_a_duplicate_key_is_an_error_naming_both_lines() -> None:
    with pytest.raises(yaml.YAMLError) as caught:
        load_yaml_document("fleet_repo: {remote: a}\nsandbox: {}\nfleet_repo: {remote: b}\n")
    assert "duplicate key 'fleet_repo' (first at line 1)" in str(caught.value)
    assert caught.value.problem_mark.line == 2  # type: ignore[attr-defined]


@pytest.fixture
def config_text(tmp_path: Path) -> str:
    return yaml.safe_dump(demo_config(tmp_path))


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        (ALIAS_BOMB, "not valid YAML: more than 100000 values once its aliases are expanded"),
        ("fleet_repo: {remote: /elsewhere.git}\n", "duplicate key 'fleet_repo' (first at line 1)"),
        ("# " + "x" * (1024 * 1024) + "\n", "larger than 1048576 bytes; refused"),
    ],
    ids=["alias-bomb", "duplicate-key", "too-large"],
)
def test_fleet_yaml_is_read_bounded(tmp_path: Path, config_text: str, prefix: str, message: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(prefix + config_text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)


def test_config_dev_zero_and_a_fifo_are_refused(fifo: Path) -> None:
    with pytest.raises(ConfigError, match=r"/dev/zero: not a regular file \(a character device\); refused"):
        load_config("/dev/zero")
    with pytest.raises(ConfigError, match=r"pipe.yaml: not a regular file \(a FIFO\); refused"):
        load_config(fifo)


def test_scan_names_what_it_skipped_and_why(tmp_path: Path, fifo: Path) -> None:
    (tmp_path / "big.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n" + "# padding\n" * 200)
    (tmp_path / "ok.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    report = scan_path(tmp_path, max_file_bytes=1024)
    assert {(Path(s.file).name, s.reason) for s in report.skipped} == {
        ("big.yaml", "larger than 1024 bytes; not read"),
        ("pipe.yaml", "not a regular file (a FIFO); not read"),
    }
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    given = scan_path(zero)  # the link itself given: judged by what it points at
    assert [s.reason for s in given.skipped] == ["not a regular file (a character device); not read"]


def test_the_validate_stages_plan_reads_no_fifo_and_no_huge_file(tmp_path: Path) -> None:
    cluster = tmp_path / "clusters" / "sandbox-a"
    cluster.mkdir(parents=True)
    os.mkfifo(cluster / "pipe.yaml")
    (cluster / "huge.yaml").write_text(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n" + "# x\n" * 2000
    )
    plan = plan_scan(tmp_path, "clusters/sandbox-a", repo_urls=set(), max_file_bytes=1024)
    assert plan.roots == ["clusters/sandbox-a"]
