from __future__ import annotations

import difflib

import pytest

from sandbox.yamledit import YamlEditError, set_scalar

SOURCE = """# leading comment
# --8<-- [start:repo]
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: platform   # trailing comment
  namespace: flux-system
spec:
  ref:
    branch: main # tracks main
  url: ssh://git@example.com/fleet
# --8<-- [end:repo]
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: platform
spec:
  ref:
    tag: "1.2.3"   # pinned
    semver: '1.2.x'
"""


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_only_the_scalar_changes() -> None:
    after, edits = set_scalar(SOURCE, lambda d: d["kind"] == "GitRepository", ("spec", "ref", "branch"), "OPS-1-x")
    assert changed_lines(SOURCE, after) == ["-    branch: main # tracks main", "+    branch: OPS-1-x # tracks main"]
    assert [(e.document, e.old, e.new) for e in edits] == [(0, "main", "OPS-1-x")]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "ref", "tag"), "1.3.0", '    tag: "1.3.0"   # pinned'),
        (("spec", "ref", "semver"), "2.x", "    semver: '2.x'"),
    ],
)
def test_quoting_style_is_kept(path: tuple[str, ...], value: str, expected: str) -> None:
    after, _ = set_scalar(SOURCE, lambda d: d["kind"] == "OCIRepository", path, value)
    assert changed_lines(SOURCE, after)[1] == "+" + expected
    assert len(changed_lines(SOURCE, after)) == 2


def test_plain_value_that_would_change_type_gets_quoted() -> None:
    text = "kind: X\nspec:\n  v: abc\n"
    after, _ = set_scalar(text, lambda d: True, ("spec", "v"), "1.20")
    assert after == 'kind: X\nspec:\n  v: "1.20"\n'


def test_no_match_changes_nothing() -> None:
    after, edits = set_scalar(SOURCE, lambda d: d["kind"] == "HelmRelease", ("spec", "ref", "branch"), "x")
    assert after == SOURCE and edits == []


def test_invalid_yaml_is_a_one_line_error() -> None:
    with pytest.raises(YamlEditError, match=r"f\.yaml: line 3: invalid YAML"):
        set_scalar("a: 1\nb: [\n", lambda d: True, ("a",), "2", source="f.yaml")
