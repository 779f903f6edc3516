"""Tests for sandbox.versions: Masterminds/Flux semver ranges and Flux tag selection."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import semver
from hypothesis import assume, given
from hypothesis import strategies as st

from sandbox import versions
from sandbox.errors import InvalidInputError
from sandbox.versions import (
    MAX_CONSTRAINT_LENGTH,
    MAX_OR_GROUPS,
    Constraint,
    InvalidConstraintError,
    InvalidVersionError,
    next_version,
    parse_constraint,
    parse_tag,
    resolve,
    satisfies,
)
from tests.hypothesis_profiles import property_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_NAME = "masterminds-constraint-check.json"
# The tests' own copy of Masterminds/semver's table (provenance: tests/fixtures/semver/README.md).
LOCAL_FIXTURE_DIR = PROJECT_ROOT / "tests" / "fixtures" / "semver"


def _fixture_path() -> Path:
    return LOCAL_FIXTURE_DIR / FIXTURE_NAME


def _load_masterminds_cases() -> list[Any]:
    data = json.loads(_fixture_path().read_text(encoding="utf-8"))
    return [
        pytest.param(
            case["constraint"],
            case["version"],
            case["satisfies"],
            id=f"{index:03d}:{case['constraint']!r}~{case['version']!r}",
        )
        for index, case in enumerate(data["cases"])
    ]


MASTERMINDS_CASES = _load_masterminds_cases()


# --- Masterminds' own single-comparator table ------------------------------------------
def test_masterminds_fixture_is_complete() -> None:
    data = json.loads(_fixture_path().read_text(encoding="utf-8"))
    assert "Masterminds" in data["source"]
    assert len(MASTERMINDS_CASES) == len(data["cases"]) > 100
    for case in data["cases"]:
        assert set(case) == {"constraint", "version", "satisfies"}


@pytest.mark.parametrize(("constraint", "version", "expected"), MASTERMINDS_CASES)
def test_masterminds_constraint_check(constraint: str, version: str, expected: bool) -> None:
    if constraint == "":
        # The table tests Masterminds' internal parseConstraint, which reads "" as "*"; NewConstraint,
        # which Flux calls, rejects "" (checked against the Go peer in tests/integration/test_semver_peer.py).
        with pytest.raises(InvalidConstraintError):
            satisfies(constraint, version)
        return
    assert satisfies(constraint, version) is expected


# --- The grammar, case by case ---------------------------------------------------------
GRAMMAR_CASES: dict[str, list[tuple[str, str, bool]]] = {
    "operators": [
        ("=1.2.3", "1.2.3", True),
        ("=1.2.3", "1.2.4", False),
        ("1.2.3", "1.2.3", True),
        ("!=1.2.3", "1.2.4", True),
        ("!=1.2.3", "1.2.3", False),
        (">1.2.3", "1.2.4", True),
        (">1.2.3", "1.2.3", False),
        ("<1.2.3", "1.2.2", True),
        ("<1.2.3", "1.2.3", False),
        (">=1.2.3", "1.2.3", True),
        ("=>1.2.3", "1.2.3", True),
        (">=1.2.3", "1.2.2", False),
        ("<=1.2.3", "1.2.3", True),
        ("=<1.2.3", "1.2.3", True),
        ("<=1.2.3", "1.2.4", False),
        (">= 1.2.3", "1.3.0", True),
        ("~>1.2.3", "1.2.9", True),
        ("~>1.2.3", "1.3.0", False),
    ],
    "partial versions": [
        ("1", "1.9.9", True),
        ("1", "2.0.0", False),
        ("1.2", "1.2.7", True),
        ("1.2", "1.3.0", False),
        (">1", "1.9.9", False),
        (">1", "2.0.0", True),
        (">1.1", "1.1.9", False),
        (">1.1", "1.2.0", True),
        ("<=1", "1.99.99", True),
        ("<=1", "2.0.0", False),
        ("<=1.1", "1.1.1", True),
        ("<=1.1", "1.2.0", False),
        ("<1.2", "1.1.9", True),
        ("<1.2", "1.2.0", False),
        (">=1.2", "1.2.0", True),
        (">=1.2", "1.1.9", False),
    ],
    "wildcards": [
        ("1.2.x", "1.2.0", True),
        ("1.2.x", "1.2.99", True),
        ("1.2.x", "1.3.0", False),
        ("1.2.x", "1.1.9", False),
        ("1.X", "1.9.0", True),
        ("1.*.*", "2.0.0", False),
        ("1.x.3", "1.5.0", True),  # segments after a wildcard are dropped
        ("*", "0.0.0", True),
        ("*", "99.1.2", True),
        ("x", "3.0.0", True),
        (">=1.2.x", "1.2.0", True),
        ("<=2.x", "2.9.9", True),
        ("<=2.x", "3.0.0", False),
        ("<2.x", "1.9.9", True),
        ("<2.x", "2.0.0", False),
        ("!=1.2.x", "1.2.5", False),
        ("!=1.2.x", "1.3.0", True),
    ],
    "hyphen ranges": [
        ("1.2 - 1.4.5", "1.2.0", True),
        ("1.2 - 1.4.5", "1.4.5", True),
        ("1.2 - 1.4.5", "1.4.6", False),
        ("1.2 - 1.4.5", "1.1.9", False),
        ("1.2.3 - 2", "2.9.9", True),  # a partial upper bound covers its whole major
        ("1.2.3 - 2", "3.0.0", False),
        ("1 - 2.1", "2.1.9", True),
        ("1 - 2.1", "2.2.0", False),
        ("1.0.0 - 1.2.0 || >=3", "3.1.0", True),
        (">=1.1, 1 - 2", "1.1.0", True),  # after a comma a range is fine (see the invalid cases)
        ("1.2-1.4", "1.4.0", False),  # no spaces: version 1.2 with prerelease "1.4"
        ("1.2-1.4", "1.2.7", True),
    ],
    "tilde": [
        ("~1.2.3", "1.2.3", True),
        ("~1.2.3", "1.2.9", True),
        ("~1.2.3", "1.2.2", False),
        ("~1.2.3", "1.3.0", False),
        ("~1.2", "1.2.0", True),
        ("~1.2", "1.3.0", False),
        ("~1", "1.9.9", True),
        ("~1", "2.0.0", False),
        ("~0", "0.9.9", True),
        ("~0", "1.0.0", False),
        ("~0.0.3", "0.0.9", True),
        ("~0.0.3", "0.1.0", False),
        ("~0.0.0", "5.0.0", True),  # Masterminds: ~0.0.0 is >=0.0.0
    ],
    "caret": [
        ("^1.2.3", "1.2.3", True),
        ("^1.2.3", "1.9.0", True),
        ("^1.2.3", "1.2.2", False),
        ("^1.2.3", "2.0.0", False),
        ("^1.2.x", "1.9.0", True),
        ("^1", "1.99.0", True),
        ("^0.2.3", "0.2.3", True),
        ("^0.2.3", "0.2.9", True),
        ("^0.2.3", "0.3.0", False),
        ("^0.2", "0.2.0", True),
        ("^0.2", "0.3.0", False),
        ("^0.0.3", "0.0.3", True),
        ("^0.0.3", "0.0.4", False),
        ("^0.0", "0.0.9", True),
        ("^0.0", "0.1.0", False),
        ("^0", "0.9.0", True),
        ("^0", "1.0.0", False),
        ("^*", "0.0.0", True),  # Masterminds' code (not its comment): ^* is 0.0.0 only
        ("^*", "1.0.0", False),
    ],
    "v prefix": [
        ("v1.2.3", "1.2.3", True),
        ("1.2.3", "v1.2.3", True),
        (">=v1.2", "v1.3.0", True),
        ("^v1", "v1.9.9", True),
        ("~v1.2", "v1.3.0", False),
    ],
    "AND separators": [
        (">=1.2.0,<1.3.0", "1.2.5", True),
        (">=1.2.0,<1.3.0", "1.3.0", False),
        (">=1.2.0 , <1.3.0", "1.2.5", True),
        (">=1.2.0    <1.3.0", "1.3.0", False),
        ("\t>=1.2.0\t<1.3.0\t", "1.2.5", True),
        (">=1.2.0\n<1.3.0", "1.3.0", False),  # Go's \s includes newlines
        (">= 1.2.0, < 1.3.0, != 1.2.5", "1.2.5", False),
    ],
    "OR groups": [
        ("<1.0.0 || >=2.0.0", "1.5.0", False),
        ("<1.0.0 || >=2.0.0", "0.9.0", True),
        ("<1.0.0 || >=2.0.0", "2.0.0", True),
        ("1.2.x||1.4.x", "1.4.2", True),
        ("1.2.x || 1.4.x", "1.3.2", False),
    ],
    "prerelease rule": [
        (">=1.2.0", "1.2.1-rc.1", False),
        (">=1.2.0-0", "1.2.1-rc.1", True),
        # A prerelease anywhere in the AND group opens every comparator of the group...
        (">=1.2.0-0 <2.0.0", "1.9.0-beta", True),
        (">=1.2.0 <2.0.0-0", "1.9.0-beta", True),
        # ...but not the other OR groups.
        (">=1.2.0 <2.0.0 || >=3.0.0-0", "1.9.0-beta", False),
        (">=1.2.0 <2.0.0 || >=3.0.0-0", "3.1.0-beta", True),
        ("1.2.x", "1.2.5-rc.1", False),
        ("1.2.x-0", "1.2.5-rc.1", True),
        ("^1.2.3", "1.5.0-alpha", False),
        ("^1.2.3-0", "1.5.0-alpha", True),
        ("~1.2.3-0", "1.3.0-alpha", False),
        (">0", "0.0.1-alpha", False),
        ("!=4.1", "5.1.0-alpha.1", False),
        ("*", "1.0.0-rc.1", False),
    ],
    "precedence": [
        ("=1.2.3-rc.1", "1.2.3-rc.1", True),
        ("=1.2.3-rc.1", "1.2.3-rc.2", False),
        (">1.2.3-rc.1", "1.2.3", True),  # a release outranks its prereleases
        (">1.2.3-rc.2", "1.2.3-rc.10", True),  # numeric identifiers compare as numbers
        (">1.2.3-1", "1.2.3-alpha", True),  # alphanumeric outranks numeric
        (">1.2.3-alpha", "1.2.3-alpha.1", True),  # more identifiers outrank fewer
        ("<1.2.3-beta", "1.2.3-alpha.9", True),
        ("=1.2.3", "1.2.3+build.5", True),  # build metadata is ignored
        ("=1.2.3+a", "1.2.3+b", True),
        ("1.2.3", "01.02.03", True),  # NewVersion coerces leading zeros
    ],
    "any release": [
        ("*", "0.0.0", True),
        ("*", "4.5.6", True),
    ],
}


@pytest.mark.parametrize(
    ("constraint", "version", "expected"),
    [pytest.param(c, v, e, id=f"{topic}:{c!r}~{v!r}") for topic, cases in GRAMMAR_CASES.items() for c, v, e in cases],
)
def test_grammar(constraint: str, version: str, expected: bool) -> None:
    assert satisfies(constraint, version) is expected


# --- Invalid input ---------------------------------------------------------------------
INVALID_CONSTRAINTS = [
    "foo",
    ">= bar",
    "BAR >= 1.2.3",
    "1.2.3.4",
    "1.2.3 ||",
    "|| 1.2.3",
    "||",
    ">=1.2.3 ,, <2",
    ">>1",
    "> = 1",
    "~ >1",
    "12.3.34~ 1.2.3",
    "1.2.3 -",
    ">=1.2.3-01",  # numeric prerelease identifiers must not be 0-padded
    "1|2",  # Masterminds' pattern admits '|' in a segment; the version does not
    "1.x1",
    "V1.2.3",
    "v",
    "",  # NewConstraint("") is "improper constraint" (Flux never resolves an empty semver ref)
    "   ",
    ">=1.0.0-" + "a" * 251,  # a comparator version over Masterminds v3.5's 256 characters
    "1.2.3\n&&",
    "1.2.3 " * (MAX_CONSTRAINT_LENGTH // 6 + 1),
    " || ".join(["1"] * (MAX_OR_GROUPS + 1)),
    "1   " * 100 + "!",  # exponential for a naive backtracking translation
    # Masterminds quirk: the range rewrite eats the space before "1 - 2", leaving ">=1>= 1".
    ">=1 1 - 2",
]


@pytest.mark.parametrize("constraint", INVALID_CONSTRAINTS, ids=lambda c: repr(c[:40]))
def test_invalid_constraints_raise(constraint: str) -> None:
    with pytest.raises(InvalidConstraintError) as caught:
        parse_constraint(constraint)
    error = caught.value
    assert isinstance(error, ValueError)
    assert isinstance(error, InvalidInputError)
    message = str(error)
    assert "\n" not in message
    assert message.startswith("invalid semver range ")
    assert repr(constraint[:20]).strip("'") in message


def test_invalid_constraint_in_satisfies_and_resolve() -> None:
    with pytest.raises(InvalidConstraintError):
        satisfies(">= bar", "1.2.3")
    with pytest.raises(InvalidConstraintError):
        resolve(">= bar", [])


@pytest.mark.parametrize(
    "version",
    ["latest", "1.2.3.4", "", "1.2.3-01", "V1.2.3", "1.2.3\n", "1.2.3-", "18446744073709551616.0.0"],
)
def test_invalid_versions_raise(version: str) -> None:
    with pytest.raises(InvalidVersionError) as caught:
        satisfies(">=1.0.0", version)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, InvalidInputError)
    assert "\n" not in str(caught.value)


def test_uint64_versions_are_accepted_up_to_the_limit() -> None:
    assert satisfies(">=1.0.0", "18446744073709551615.0.0")


# --- The compiled object ---------------------------------------------------------------
def test_constraint_checks_strings_and_semver_versions() -> None:
    compiled = parse_constraint(">=1.2.0 <2.0.0")
    assert isinstance(compiled, Constraint)
    assert compiled.check("1.5.0")
    assert compiled.check(semver.Version(1, 9, 9))
    assert not compiled.check(semver.Version(1, 9, 9, prerelease="rc.1"))
    assert not compiled.check("v2.0.0")
    assert str(compiled) == ">=1.2.0 <2.0.0"
    assert "1.2.0" in repr(compiled)


def test_constraint_is_parsed_once_per_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = versions._parse_group

    def counting_parse_group(group: str, constraint: str) -> Any:
        calls.append(group)
        return original(group, constraint)

    monkeypatch.setattr(versions, "_parse_group", counting_parse_group)
    tags = [f"1.{minor}.{patch}" for minor in range(40) for patch in range(25)]
    # A range no other test uses, so the compile cache cannot hide a parse.
    assert resolve(">=1.3.0 <1.7.0 || =0.9.17", tags) == "1.6.24"
    assert len(calls) == 2


# --- Candidate tags --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("1.2.3", semver.Version(1, 2, 3)),
        ("v1.2.4", semver.Version(1, 2, 4)),
        ("v1.2.3-rc.1", semver.Version(1, 2, 3, prerelease="rc.1")),
        ("1.2.3+build.7", semver.Version(1, 2, 3, build="build.7")),
        ("v1.2.0-x.Y.0+metadata-with-hyphen", semver.Version(1, 2, 0, "x.Y.0", "metadata-with-hyphen")),
        ("v2025.07.03", semver.Version(2025, 7, 3)),  # current Flux coerces 0-padding
        ("1.2-rc.1", semver.Version(1, 2, 0, prerelease="rc.1")),  # two dots, as in Flux
    ],
)
def test_parse_tag_candidates(tag: str, expected: semver.Version) -> None:
    parsed = parse_tag(tag)
    assert parsed is not None
    assert parsed == expected
    assert parsed.build == expected.build


@pytest.mark.parametrize(
    "tag",
    [
        "latest",
        "main",
        "1.2",
        "v1",
        "v1.0",
        "V1.2.3",
        "vv1.2.3",
        "1.2.3.4",
        "v1.2-beta5",
        "v1.2.beta",
        "\nv1.2.3",
        "1.2.3\n",
        "",
        "sha-0a1b2c3",
        "1.2.3-",
        "1.2.3-01",
        "1.2.3+",
    ],
)
def test_parse_tag_rejects_non_candidates(tag: str) -> None:
    assert parse_tag(tag) is None


# --- resolve ---------------------------------------------------------------------------
def test_resolve_picks_the_highest_match() -> None:
    tags = ["1.2.0", "v1.2.4", "1.3.0", "2.0.0", "latest", "1.2", "1.10.0-rc.1"]
    assert resolve(">=1.2.0 <2.0.0", tags) == "1.3.0"
    assert resolve("1.2.x", tags) == "v1.2.4"  # the original tag string, v and all
    assert resolve("*", tags) == "2.0.0"


def test_resolve_ignores_non_candidates_even_when_they_would_satisfy() -> None:
    assert satisfies("1.2.x", "1.2")  # Masterminds itself accepts "1.2"...
    assert resolve("1.2.x", ["1.2", "latest", "v1"]) is None  # ...Flux never lists it


def test_resolve_takes_prereleases_only_when_the_range_allows_them() -> None:
    tags = ["1.2.3", "v1.2.4-rc.1", "1.1.0"]
    assert resolve(">=1.2.0", tags) == "1.2.3"
    assert resolve(">=1.2.0-0", tags) == "v1.2.4-rc.1"
    assert resolve("~1.2.4-0", tags) == "v1.2.4-rc.1"
    assert resolve("1.2.4", tags) is None


def test_resolve_breaks_ties_by_order() -> None:
    assert resolve("1.2.x", ["v1.2.4", "1.2.4", "1.2.3"]) == "v1.2.4"
    assert resolve("1.2.x", ["1.2.3", "1.2.4", "v1.2.4"]) == "1.2.4"
    assert resolve("1.2.x", ["1.2.4+b", "1.2.4+a"]) == "1.2.4+b"
    # Up to 12 matches Go's sort.Sort is an insertion sort: the first of the ties wins.
    assert resolve("1.2.x", [f"1.2.4+{i}" for i in range(12)]) == "1.2.4+0"


# Regressions found by the differential test against the Go peer (tests/integration/test_semver_peer.py):
# with more than 12 matches Flux's pdqsort does not keep the first of tied tags; the answers are the peer's.
_TIES_17 = ["v1.0.0+0", "0.1.4", "1.0.0+2", "0.7.6", "0.1.7", "1.0.0+5", "0.6.9", "0.0.7", "1.0.0+8", "0.9.1", "0.0.0"]
_TIES_17 += ["1.0.0+11", "v1.0.0+12", "0.6.3", "0.0.8", "1.0.0+15", "v1.0.0+16"]
_TIES_28 = ["v1.0.0+0", "1.0.0+1", "0.7.4", "0.6.8", "0.1.2", "0.4.1", "0.8.6", "v1.0.0+7", "0.3.4", "1.0.0+9", "0.7.8"]
_TIES_28 += ["1.0.0+11", "0.7.3", "0.6.6", "0.5.8", "0.5.1", "v1.0.0+16", "v1.0.0+17", "0.8.6", "1.0.0+19", "0.7.0"]
_TIES_28 += ["1.0.0+21", "0.9.9", "v1.0.0+23", "0.2.8", "1.0.0+25", "1.0.0+26", "1.0.0+27"]


@pytest.mark.parametrize(("tags", "flux_picks"), [(_TIES_17, "v1.0.0+12"), (_TIES_28, "1.0.0+21")])
def test_resolve_breaks_ties_beyond_twelve_matches_as_flux_does(tags: list[str], flux_picks: str) -> None:
    assert resolve(">=0", tags) == flux_picks
    assert resolve(">=0", iter(tags)) == flux_picks  # a generator is read once


def test_resolve_skips_tags_longer_than_masterminds_allows() -> None:
    longest = "2.0.0-" + "a" * (versions.MAX_VERSION_LENGTH - 6)
    assert resolve("*-0", ["1.0.0", longest + "a"]) == "1.0.0"
    assert resolve("*-0", ["1.0.0", longest]) == longest
    assert parse_tag(longest + "a") is None


def test_resolve_without_match() -> None:
    assert resolve(">=3", ["1.0.0", "2.9.9"]) is None
    assert resolve(">=1", []) is None


def test_resolve_accepts_compiled_constraints_and_generators() -> None:
    compiled = parse_constraint("^1.2")
    assert resolve(compiled, (f"1.{n}.0" for n in range(10))) == "1.9.0"


def test_resolve_over_ten_thousand_tags_matches_a_sort() -> None:
    tags = [
        f"{'v' if (major + minor + patch) % 3 == 0 else ''}{major}.{minor}.{patch}"
        + ("-rc.1" if patch % 7 == 0 else "")
        for major in range(4)
        for minor in range(50)
        for patch in range(50)
    ] + ["latest", "1.2"]
    assert len(tags) > 10_000
    constraint = ">=1.2.0 <3.0.0 || ^3.10.0-0"
    compiled = parse_constraint(constraint)
    matching: list[tuple[semver.Version, str]] = []
    for tag in tags:
        version = parse_tag(tag)
        if version is not None and compiled.check(version):
            matching.append((version, tag))
    expected = max(matching, key=lambda pair: pair[0])[1]
    assert resolve(constraint, tags) == expected


# --- next_version ----------------------------------------------------------------------
@pytest.mark.parametrize(("bump", "expected"), [("patch", "1.10.1"), ("minor", "1.11.0"), ("major", "2.0.0")])
def test_next_version_bumps_the_highest_release(bump: versions.Bump, expected: str) -> None:
    tags = ["v1.2.3", "1.10.0", "2.0.0-rc.1", "latest", "1.9.9", "1.2"]
    assert next_version(tags, bump) == expected


@pytest.mark.parametrize(("bump", "expected"), [("patch", "0.1.0"), ("minor", "0.1.0"), ("major", "1.0.0")])
def test_next_version_without_releases(bump: versions.Bump, expected: str) -> None:
    assert next_version([], bump) == expected
    assert next_version(["latest", "1.0.0-rc.1", "main"], bump) == expected


def test_next_version_normalises_tags() -> None:
    assert next_version(["v2025.07.03"], "patch") == "2025.7.4"


def test_next_version_rejects_unknown_bumps() -> None:
    with pytest.raises(InvalidInputError):
        next_version(["1.0.0"], "build")  # type: ignore[arg-type]


# --- Properties ------------------------------------------------------------------------
_numbers = st.integers(min_value=0, max_value=4)
_prereleases = st.sampled_from(["", "-0", "-rc.1", "-rc.2", "-rc.10", "-alpha", "-beta.1"])
_segments = st.sampled_from(["0", "1", "2", "3", "x", "*"])


@st.composite
def _range_versions(draw: st.DrawFn) -> str:
    segments = draw(st.lists(_segments, min_size=1, max_size=3))
    prefix = draw(st.sampled_from(["", "v"]))
    pre = draw(st.sampled_from(["", "", "", "-0", "-rc.1", "-alpha"]))
    return prefix + ".".join(segments) + pre


@st.composite
def _comparators(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 5)) == 0:
        return f"{draw(_range_versions())} - {draw(_range_versions())}"
    operator = draw(st.sampled_from(["", "=", "!=", ">", "<", ">=", "=>", "<=", "=<", "~", "~>", "^"]))
    space = draw(st.sampled_from(["", " "]))
    return operator + space + draw(_range_versions())


@st.composite
def _ranges(draw: st.DrawFn) -> str:
    groups = []
    for _ in range(draw(st.integers(1, 3))):
        comparators = draw(st.lists(_comparators(), min_size=1, max_size=3))
        # Masterminds breaks "A 1 - 2" (space before a hyphen range); commas are fine.
        has_range = any(" - " in comparator for comparator in comparators)
        separator = draw(st.sampled_from([", ", ","] if has_range else [" ", ", ", ","]))
        groups.append(separator.join(comparators))
    return " || ".join(groups)


@st.composite
def _tags(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["latest", "1.2", "v1", "main"]))
    prefix = draw(st.sampled_from(["", "v"]))
    build = draw(st.sampled_from(["", "", "", "+b1"]))
    core = f"{draw(_numbers)}.{draw(_numbers)}.{draw(_numbers)}"
    return prefix + core + draw(_prereleases) + build


@st.composite
def _strict_versions(draw: st.DrawFn) -> str:
    return f"{draw(_numbers)}.{draw(_numbers)}.{draw(_numbers)}{draw(_prereleases)}"


@st.composite
def _release_versions(draw: st.DrawFn) -> str:
    return f"{draw(_numbers)}.{draw(_numbers)}.{draw(_numbers)}"


PROPERTY_SETTINGS = property_settings(300)


@PROPERTY_SETTINGS
@given(constraint=_ranges(), tags=st.lists(_tags(), max_size=25))
def test_resolve_returns_the_first_highest_satisfying_candidate(constraint: str, tags: list[str]) -> None:
    compiled = parse_constraint(constraint)
    matching = []
    for tag in tags:
        version = parse_tag(tag)
        if version is not None and compiled.check(version):
            matching.append((tag, version))
    result = resolve(constraint, tags)
    if not matching:
        assert result is None
        return
    assert result is not None
    chosen = parse_tag(result)
    assert chosen is not None and compiled.check(chosen)
    # python-semver's ordering is the oracle: nothing satisfying ranks higher...
    assert all(version <= chosen for _, version in matching)
    # ...and among equals the first tag in registry order wins.
    assert result == next(tag for tag, version in matching if version == chosen)


@PROPERTY_SETTINGS
@given(constraint=_ranges(), version=_strict_versions())
def test_or_is_the_union_of_its_groups(constraint: str, version: str) -> None:
    groups = constraint.split(" || ")
    assert satisfies(constraint, version) == any(satisfies(g, version) for g in groups)


@PROPERTY_SETTINGS
@given(constraint=_ranges(), version=_strict_versions())
def test_v_prefix_changes_nothing(constraint: str, version: str) -> None:
    assert satisfies(constraint, "v" + version) == satisfies(constraint, version)
    assert parse_tag("v" + version) == parse_tag(version)


@PROPERTY_SETTINGS
@given(constraint=_ranges(), version=_strict_versions())
def test_comma_and_space_are_the_same_and(constraint: str, version: str) -> None:
    assume(" - " not in constraint)
    assert satisfies(constraint.replace(", ", " "), version) == satisfies(constraint, version)


@PROPERTY_SETTINGS
@given(
    first=_comparators().filter(lambda c: "-" not in c),
    second=_comparators().filter(lambda c: "-" not in c),
    version=_strict_versions(),
)
def test_release_only_and_is_an_intersection(first: str, second: str, version: str) -> None:
    both = satisfies(f"{first} {second}", version)
    assert both == (satisfies(first, version) and satisfies(second, version))
    if "-" in version:  # no comparator mentions a prerelease, so none is admitted
        assert both is False


def _equivalents(a: int, b: int, c: int) -> dict[str, str]:
    """Masterminds' README expansions of the shorthand forms, for release versions."""
    caret_upper = f"{a + 1}.0.0" if a > 0 else (f"0.{b + 1}.0" if b > 0 else f"0.0.{c + 1}")
    return {
        f"^{a}.{b}.{c}": f">={a}.{b}.{c}, <{caret_upper}",
        f"^{a}.{b}": f">={a}.{b}.0, <{a + 1}.0.0" if a > 0 else f">=0.{b}.0, <0.{b + 1}.0",
        f"^{a}": f">={a}.0.0, <{a + 1}.0.0",
        f"^{a}.x": f">={a}.0.0, <{a + 1}.0.0",
        f"~{a}.{b}.{c}": f">={a}.{b}.{c}, <{a}.{b + 1}.0" if (a, b, c) != (0, 0, 0) else ">=0.0.0",
        f"~{a}.{b}": f">={a}.{b}.0, <{a}.{b + 1}.0",
        f"~{a}": f">={a}.0.0, <{a + 1}.0.0",
        f"{a}.{b}.x": f">={a}.{b}.0, <{a}.{b + 1}.0",
        f"{a}.x": f">={a}.0.0, <{a + 1}.0.0",
        f"{a}.{b} - {a + b}.{c}.{b}": f">={a}.{b}.0, <={a + b}.{c}.{b}",
        f"<={a}.{b}": f"<{a}.{b + 1}.0",
        f"<={a}.x": f"<{a + 1}.0.0",
        f">{a}.{b}": f">={a}.{b + 1}.0",
        f">{a}": f">={a + 1}.0.0",
        f"<{a}.{b}": f"<{a}.{b}.0",
        f">={a}.{b}.x": f">={a}.{b}.0",
        f"!={a}.{b}": f"<{a}.{b}.0 || >={a}.{b + 1}.0",
        "*": ">=0.0.0",
    }


@PROPERTY_SETTINGS
@given(a=_numbers, b=_numbers, c=_numbers, version=_release_versions())
def test_shorthands_expand_as_documented(a: int, b: int, c: int, version: str) -> None:
    for shorthand, expansion in _equivalents(a, b, c).items():
        assert satisfies(shorthand, version) == satisfies(expansion, version), (
            shorthand,
            expansion,
        )


@PROPERTY_SETTINGS
@given(first=_strict_versions(), second=_strict_versions())
def test_precedence_agrees_with_python_semver(first: str, second: str) -> None:
    # ">=0.0.0-0" admits every version, so resolve() is a pure "highest of" here.
    highest = resolve(">=0.0.0-0", [first, second])
    order = semver.Version.parse(second).compare(first)
    assert highest == (second if order > 0 else first)


# The AND-group pattern exactly as Masterminds writes it; fine for short inputs only.
_GO_VALID_GROUP = re.compile(
    rf"^({versions._WS}*({versions._OPERATORS}){versions._WS}*({versions._CONSTRAINT_VERSION})"
    rf"{versions._WS}*)((?:{versions._WS}+|,{versions._WS}*)({versions._OPERATORS})"
    rf"{versions._WS}*({versions._CONSTRAINT_VERSION}){versions._WS}*)*\Z"
)


@property_settings(2000)
@given(
    group=st.lists(
        st.sampled_from(
            [
                "1",
                "1.2",
                "v1.2.3-rc.1",
                "x",
                "*",
                "1.x",
                "-a",
                "+b",
                ".",
                ">=",
                ">",
                "~>",
                "^",
                "!=",
                "=",
                "<",
                " ",
                "  ",
                ",",
                "\t",
                "|",
                "v",
                "Z",
            ]
        ),
        max_size=7,
    ).map("".join)
)
def test_group_validation_matches_the_masterminds_pattern(group: str) -> None:
    expected = _GO_VALID_GROUP.match(group) is not None
    assert (versions._VALID_GROUP_RE.fullmatch(group) is not None) == expected
