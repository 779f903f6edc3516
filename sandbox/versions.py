"""Semver ranges exactly as Flux evaluates an OCIRepository's ``.spec.ref.semver``.

Flux's source-controller lists the repository's tags, keeps the ones that parse as
versions, checks each against the range with Masterminds/semver v3
(``semver.NewConstraint`` + ``Constraints.Check``) and pulls the highest match. This
module reproduces both halves in Python, with the ``semver`` package's
:class:`semver.Version` as the public version type.

Range grammar (Masterminds/semver v3.5.0, ``constraints.go``)
-------------------------------------------------------------
* A range is ``||``-separated OR groups; each group is comparators joined by
  whitespace or commas (AND). ``a.b.c - x.y.z`` (spaces around the hyphen required)
  is rewritten first to ``>= a.b.c, <= x.y.z``.
* Operators: ``=`` (or none), ``!=``, ``>``, ``<``, ``>=``/``=>``, ``<=``/``=<``,
  ``~``/``~>``, ``^``. Versions take an optional lowercase ``v``, may be partial
  (``1``, ``1.2``) and may use ``x``/``X``/``*`` wildcards; a partial or wildcard
  version makes the comparator "dirty" and each operator widens it its own way
  (``<=1.1`` admits ``1.1.9``, ``>1.1`` needs ``1.2.0`` or more, ``1.2.x`` is
  ``>=1.2.0 <1.3.0``, ``~1.2.3`` is ``>=1.2.3 <1.3.0``, ``^0.2.3`` is
  ``>=0.2.3 <0.3.0``, ``^0.0.3`` is ``=0.0.3``, ``*`` is any release).
* Prereleases: a version with a prerelease satisfies an OR group only when some
  comparator of *that* group carries a prerelease (v3.4 ``containsPre``); then every
  comparator of the group compares it by plain semver precedence. Hence ``>0`` rejects
  ``0.0.1-alpha`` and ``>=1.0.0-0 <2.0.0`` admits ``1.5.0-rc.1``.
* The comparator logic is ported branch for branch, quirks included: ``^*`` admits
  only ``0.0.0`` and ``<=*`` only ``0.x`` versions (Masterminds' code, not its comments,
  decides), and a hyphen range that follows another comparator after a mere space
  (``>=1 1 - 2``) is invalid because the rewrite swallows that space; use a comma.
* Limits from newer Masterminds releases guard the backtracking regular expressions:
  at most :data:`MAX_CONSTRAINT_LENGTH` characters and :data:`MAX_OR_GROUPS` groups.
* The empty range ``""`` (or blanks only) is invalid, as ``NewConstraint("")`` says
  ("improper constraint"); Flux never resolves an empty ``.spec.ref.semver`` (it means
  "no semver ref"). Use ``*`` for any release.
* Versions longer than :data:`MAX_VERSION_LENGTH` characters are not versions (v3.5
  ``MaxVersionLen``): such a tag is skipped, such a comparator makes the range invalid.

Which tags are candidates (``parse_tag``)
-----------------------------------------
Flux calls ``github.com/fluxcd/pkg/version.ParseVersion`` on each tag. Its current
form (the one shipping with Flux 2.6/2.7) requires at least two dots and then accepts
whatever Masterminds ``NewVersion`` accepts: an optional lowercase ``v``, ASCII digits
(leading zeros are coerced, so ``v2025.07.03`` is ``2025.7.3``), an optional
prerelease and build metadata. So ``1.2.3``, ``v1.2.4``, ``v1.2.3-rc.1`` and
``1.2.3+build.7`` are candidates; ``latest``, ``1.2``, ``v1``, ``V1.2.3`` and
``1.2.3.4`` are not. (Older Flux releases used ``StrictNewVersion`` after stripping
the ``v``, which also rejected leading zeros; the tags this product creates are plain
``X.Y.Z`` and parse the same under both.) The one oddity kept on purpose: a tag whose
dots sit in its prerelease, such as ``1.2-rc.1``, passes the two-dot test and parses
as ``1.2.0-rc.1``, as in Flux.

:func:`satisfies` and :meth:`Constraint.check` parse a version string with
Masterminds ``NewVersion`` itself (no two-dot rule), so ``satisfies(">0", "1")`` works
as Masterminds' own test-suite expects.

Choosing among matches (``resolve``)
------------------------------------
The highest match by semver precedence wins; build metadata does not count. Equal
precedence (``1.2.4`` and ``v1.2.4``, or ``1.2.4+a`` and ``1.2.4+b``) is decided as
Flux decides it: it sorts all matches with Go's ``sort.Sort`` (descending) and takes
the first. Up to 12 matches that is an insertion sort, so the tie goes to the tag met
first in the given order; with more matches Go's pattern-defeating quicksort may put
another of the tied tags first, deterministically, and :mod:`sandbox.gosort` replays
it (only when the top is tied and more than 12 tags match; otherwise no sort is run).
``tests/integration/test_semver_peer.py`` checks all of this against the Go peer.

Releasing (``next_version``)
----------------------------
:func:`next_version` bumps the highest *release* candidate (prereleases ignored) and
returns bare ``X.Y.Z`` (no ``v``). With no release tag yet the first version is
``0.1.0`` for a patch or minor bump and ``1.0.0`` for a major bump.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Literal, NamedTuple

import semver

from sandbox.errors import InvalidInputError
from sandbox.gosort import INSERTION_SORT_MAX, sort_like_go

__all__ = [
    "MAX_CONSTRAINT_LENGTH",
    "MAX_OR_GROUPS",
    "MAX_VERSION_LENGTH",
    "Bump",
    "Constraint",
    "InvalidConstraintError",
    "InvalidVersionError",
    "next_version",
    "parse_constraint",
    "parse_tag",
    "resolve",
    "satisfies",
]

#: Longest range accepted (Masterminds ``MaxConstraintLen``).
MAX_CONSTRAINT_LENGTH: Final = 512
#: Most ``||`` alternatives accepted (Masterminds ``MaxConstraintGroups``).
MAX_OR_GROUPS: Final = 32
#: Longest version string ``NewVersion`` parses (Masterminds v3.5 ``MaxVersionLen``): a longer tag
#: is skipped, and a comparator whose version is longer makes the range invalid.
MAX_VERSION_LENGTH: Final = 256

_UINT64_MAX: Final = 2**64 - 1
_UINT64_DIGITS: Final = len(str(_UINT64_MAX))


class InvalidConstraintError(ValueError, InvalidInputError):
    """A semver range does not follow the Masterminds/Flux grammar."""


class InvalidVersionError(ValueError, InvalidInputError):
    """A version string given to :func:`satisfies` or :meth:`Constraint.check` is not a version."""


# --- Regular expressions: the same patterns Masterminds compiles -----------------------
# Go's \s is exactly these five characters (Python's would also match Unicode spaces),
# and Python's `$` would accept a trailing newline, so every anchored use is fullmatch().
_WS = r"[\t\n\f\r ]"
# Masterminds' constraint version; its character class really does contain "|".
_CONSTRAINT_VERSION = (
    r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
# The empty alternative (between "=" and "!=") is the bare operator, i.e. "=".
_OPERATORS = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^"

_COMPARATOR_RE = re.compile(rf"{_WS}*({_OPERATORS}){_WS}*({_CONSTRAINT_VERSION}){_WS}*")
_HYPHEN_RANGE_RE = re.compile(rf"{_WS}*({_CONSTRAINT_VERSION}){_WS}+-{_WS}+({_CONSTRAINT_VERSION}){_WS}*")
_FIND_COMPARATOR_RE = re.compile(rf"({_OPERATORS}){_WS}*({_CONSTRAINT_VERSION})")
# Masterminds validates an AND group with
#     ^(\s*(OP)\s*(CV)\s*)((?:\s+|,\s*)(OP)\s*(CV)\s*)*$
# which Go runs in linear time but which backtracks exponentially in Python on input
# such as "1   1   1 ... !". This is the same language, regrouped so that each term's
# trailing \s* joins the next separator (\s*(\s+|,\s*) is \s+|\s*,\s*) and with
# possessive/atomic parts: whitespace runs, separators and whole terms each have only
# one way to match (a version can hold neither whitespace nor commas), so forbidding
# backtracking into them removes no match.
_TERM = rf"(?:{_OPERATORS}){_WS}*+(?:{_CONSTRAINT_VERSION})"
_SEPARATOR = rf"(?:{_WS}*+,{_WS}*+|{_WS}++)"
_VALID_GROUP_RE = re.compile(rf"{_WS}*+{_TERM}(?>{_SEPARATOR}{_TERM})*+{_WS}*+")
# Masterminds NewVersion (coercing mode, the v3.4+ default): its looseSemVerRegex, with the
# dots and signs left out of the groups (the same language, fewer slices when parsing).
_LOOSE_VERSION_RE = re.compile(
    r"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
    r"(?:-([0-9A-Za-z\-]+(?:\.[0-9A-Za-z\-]+)*))?"
    r"(?:\+([0-9A-Za-z\-]+(?:\.[0-9A-Za-z\-]+)*))?"
)
# Second group of the hyphen-range pattern: 1 + the nine groups of a constraint version.
_RANGE_UPPER_GROUP: Final = 11
_WILDCARDS: Final = frozenset({"x", "X", "*"})


# --- Versions --------------------------------------------------------------------------
PrereleaseKey = tuple[tuple[int, int | str], ...]
# (major, minor, patch, is-release, prerelease identifiers)
PrecedenceKey = tuple[int, int, int, int, PrereleaseKey]


class _Version(NamedTuple):
    """A parsed version; ``key`` orders versions as Masterminds ``Compare`` does."""

    major: int
    minor: int
    patch: int
    prerelease: str
    build: str
    key: PrecedenceKey


def _parse_uint64(digits: str) -> int | None:
    """Parse ASCII digits as Go's ``strconv.ParseUint(s, 10, 64)``: None on overflow."""
    if len(digits) < _UINT64_DIGITS:  # the common case: 19 digits or fewer always fit
        return int(digits)
    significant = digits.lstrip("0") or "0"
    if len(significant) > _UINT64_DIGITS:  # also keeps int() clear of its digit limit
        return None
    value = int(significant)
    return value if value <= _UINT64_MAX else None


def _prerelease_key(prerelease: str) -> PrereleaseKey:
    """Sort key of a prerelease, identifier by identifier.

    Masterminds compares identifiers that parse as uint64 numerically and below every
    other identifier, the rest bytewise, and a missing identifier lowest of all; tuple
    ordering of ``(0, number)`` / ``(1, text)`` pairs gives exactly that.
    """
    parts: list[tuple[int, int | str]] = []
    for identifier in prerelease.split("."):
        number = _parse_uint64(identifier) if identifier.isdigit() else None
        parts.append((1, identifier) if number is None else (0, number))
    return tuple(parts)


def _make_version(major: int, minor: int, patch: int, prerelease: str, build: str) -> _Version:
    pre_key = _prerelease_key(prerelease) if prerelease else ()
    # A release (flag 1) outranks every prerelease (flag 0) of the same X.Y.Z.
    key = (major, minor, patch, 0 if prerelease else 1, pre_key)
    return _Version(major, minor, patch, prerelease, build, key)


def _has_leading_zero_number(prerelease: str) -> bool:
    return any(
        len(identifier) > 1 and identifier[0] == "0" and identifier.isdigit() for identifier in prerelease.split(".")
    )


def _parse_loose(text: str) -> _Version | None:
    """Parse like Masterminds ``NewVersion``: ``v`` prefix, partial and 0-padded numbers."""
    if len(text) > MAX_VERSION_LENGTH:  # characters here, bytes in Go: only ASCII can match below anyway
        return None
    match = _LOOSE_VERSION_RE.fullmatch(text)
    if match is None:
        return None
    major_digits, minor_digits, patch_digits, prerelease, build = match.groups("")
    # The hot path of resolve() over a big registry, so the common case is inlined: numbers of
    # up to 19 digits always fit in a uint64; longer ones go through _parse_uint64.
    if len(major_digits) < _UINT64_DIGITS and len(minor_digits) < _UINT64_DIGITS and len(patch_digits) < _UINT64_DIGITS:
        major = int(major_digits)
        minor = int(minor_digits) if minor_digits else 0
        patch = int(patch_digits) if patch_digits else 0
    else:
        parsed = _parse_uint64(major_digits), _parse_uint64(minor_digits or "0"), _parse_uint64(patch_digits or "0")
        if None in parsed:
            return None
        major, minor, patch = parsed  # type: ignore[assignment]
    if not prerelease:
        return _Version(major, minor, patch, "", build, (major, minor, patch, 1, ()))
    # The pattern already checks the characters; numeric identifiers must not be 0-padded.
    if _has_leading_zero_number(prerelease):
        return None
    return _Version(major, minor, patch, prerelease, build, (major, minor, patch, 0, _prerelease_key(prerelease)))


def _parse_candidate(tag: str) -> _Version | None:
    """Parse a tag as Flux's ``version.ParseVersion``: two dots, then ``NewVersion``."""
    if tag.count(".") < 2:
        return None
    return _parse_loose(tag)


def _from_semver(version: semver.Version) -> _Version:
    return _make_version(version.major, version.minor, version.patch, version.prerelease or "", version.build or "")


def _to_semver(version: _Version) -> semver.Version:
    return semver.Version(
        version.major,
        version.minor,
        version.patch,
        version.prerelease or None,
        version.build or None,
    )


def _coerce_version(version: str | semver.Version) -> _Version:
    if isinstance(version, semver.Version):
        return _from_semver(version)
    parsed = _parse_loose(version)
    if parsed is None:
        raise InvalidVersionError(f"invalid version {_shorten(version)}: not a semantic version")
    return parsed


# --- Comparators -----------------------------------------------------------------------
class _Comparator(NamedTuple):
    """One ``<operator><version>`` term; ``dirty`` flags mark partial/wildcard versions."""

    test: Callable[[_Comparator, _Version, bool], bool]
    version: _Version
    dirty: bool
    minor_dirty: bool
    patch_dirty: bool
    text: str


# Each test mirrors the Masterminds function of the same operator. `include_pre` is
# True when the comparator's AND group mentions a prerelease.
def _test_not_equal(c: _Comparator, v: _Version, include_pre: bool) -> bool:
    if v.prerelease and not include_pre:
        return False
    con = c.version
    if c.dirty:
        if con.major != v.major:
            return True
        if con.minor != v.minor and not c.minor_dirty:
            return True
        if c.minor_dirty:
            return False
        if con.patch != v.patch and not c.patch_dirty:
            return True
        if c.patch_dirty:
            # Same X.Y: only a differing prerelease makes the version "not equal".
            return v.prerelease != con.prerelease
    return v.key != con.key


def _test_greater_than(c: _Comparator, v: _Version, include_pre: bool) -> bool:
    if v.prerelease and not include_pre:
        return False
    con = c.version
    if not c.dirty:
        return v.key > con.key
    if v.major != con.major:
        return v.major > con.major
    if c.minor_dirty:  # >11 needs 12.0.0 or more
        return False
    if c.patch_dirty:  # >11.1 needs 11.2.0 or more
        return v.minor > con.minor
    return v.key > con.key


def _test_less_than(c: _Comparator, v: _Version, include_pre: bool) -> bool:
    if v.prerelease and not include_pre:
        return False
    return v.key < c.version.key


def _test_greater_equal(c: _Comparator, v: _Version, include_pre: bool) -> bool:
    if v.prerelease and not include_pre:
        return False
    return v.key >= c.version.key


def _test_less_equal(c: _Comparator, v: _Version, include_pre: bool) -> bool:
    if v.prerelease and not include_pre:
        return False
    con = c.version
    if not c.dirty:
        return v.key <= con.key
    if v.major > con.major:
        return False
    # <=1.1 admits every 1.1.z; <=1 every 1.y.z.
    return not (v.major == con.major and v.minor > con.minor and not c.minor_dirty)


def _test_tilde(c: _Comparator, v: _Version, include_pre: bool) -> bool:
    if v.prerelease and not include_pre:
        return False
    con = c.version
    if v.key < con.key:
        return False
    # ~0.0.0 (and *, x) is >=0.0.0.
    if (con.major, con.minor, con.patch) == (0, 0, 0) and not (c.minor_dirty or c.patch_dirty):
        return True
    if v.major != con.major:
        return False
    return v.minor == con.minor or c.minor_dirty


def _test_tilde_or_equal(c: _Comparator, v: _Version, include_pre: bool) -> bool:
    if v.prerelease and not include_pre:
        return False
    if c.dirty:  # 1.2.x, 1.2 and * behave as ~
        return _test_tilde(c, v, include_pre)
    return v.key == c.version.key


def _test_caret(c: _Comparator, v: _Version, include_pre: bool) -> bool:
    if v.prerelease and not include_pre:
        return False
    con = c.version
    if v.key < con.key:
        return False
    if con.major > 0 or c.minor_dirty:  # ^1.2.3, ^1, ^0: same major
        return v.major == con.major
    if v.major > 0:
        return False
    if con.minor > 0 or c.patch_dirty:  # ^0.2.3, ^0.0: same minor
        return v.minor == con.minor
    if v.minor > 0:
        return False
    return v.patch == con.patch  # ^0.0.3 is exactly 0.0.3


_TESTS: Final[dict[str, Callable[[_Comparator, _Version, bool], bool]]] = {
    "": _test_tilde_or_equal,
    "=": _test_tilde_or_equal,
    "!=": _test_not_equal,
    ">": _test_greater_than,
    "<": _test_less_than,
    ">=": _test_greater_equal,
    "=>": _test_greater_equal,
    "<=": _test_less_equal,
    "=<": _test_less_equal,
    "~": _test_tilde,
    "~>": _test_tilde,
    "^": _test_caret,
}


# --- Parsing ranges --------------------------------------------------------------------
def _shorten(text: str, limit: int = 80) -> str:
    """Quote user text for a one-line message (repr escapes newlines)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _rewrite_hyphen_ranges(text: str) -> str:
    """Turn ``a - b`` into ``>= a, <= b `` (Masterminds ``rewriteRange``)."""
    if "-" not in text:  # cheap exit, as newer Masterminds releases take
        return text
    rewritten = text
    for match in _HYPHEN_RANGE_RE.finditer(text):
        replacement = f">= {match[1]}, <= {match[_RANGE_UPPER_GROUP]} "
        rewritten = rewritten.replace(match[0], replacement, 1)
    return rewritten


def _parse_comparator(term: str, constraint: str) -> _Comparator:
    match = _COMPARATOR_RE.fullmatch(term)
    if match is None:  # the group pattern already vetted it; kept as a guard
        raise InvalidConstraintError(
            f"invalid semver range {_shorten(constraint)}: {_shorten(term.strip())} is not a comparator"
        )
    operator, version_text = match[1], match[2]
    major, minor, patch = match[3], match[4] or "", match[5] or ""
    prerelease_suffix = match[6] or ""  # "-rc.1", kept when a wildcard drops segments
    dirty = minor_dirty = patch_dirty = False
    # Build the version Masterminds builds: wildcard/missing segments become 0 and the
    # segments after the first wildcard are dropped (1.x.3 is 1.x).
    if major in _WILDCARDS:
        expanded, dirty = "0.0.0" + prerelease_suffix, True
    elif not minor or minor[1:] in _WILDCARDS:
        expanded, dirty, minor_dirty = f"{major}.0.0{prerelease_suffix}", True, True
    elif not patch or patch[1:] in _WILDCARDS:
        expanded, dirty, patch_dirty = f"{major}{minor}.0{prerelease_suffix}", True, True
    else:
        expanded = version_text
    version = _parse_loose(expanded)
    if version is None:
        raise InvalidConstraintError(
            f"invalid semver range {_shorten(constraint)}: {_shorten(version_text)} is not a valid version"
        )
    return _Comparator(_TESTS[operator], version, dirty, minor_dirty, patch_dirty, term.strip())


def _parse_group(group: str, constraint: str) -> tuple[_Comparator, ...]:
    if _VALID_GROUP_RE.fullmatch(group) is None:
        what = "is empty" if not group.strip() else "is not a list of comparators"
        raise InvalidConstraintError(f"invalid semver range {_shorten(constraint)}: {_shorten(group.strip())} {what}")
    # Like Masterminds, re-parse each found term on its own.
    return tuple(_parse_comparator(m[0], constraint) for m in _FIND_COMPARATOR_RE.finditer(group))


class Constraint:
    """A compiled semver range: parse once with :func:`parse_constraint`, check many.

    Attributes:
        text: The range as given.
    """

    __slots__ = ("_groups", "text")

    def __init__(self, text: str, groups: tuple[tuple[tuple[_Comparator, ...], bool], ...]) -> None:
        self.text = text
        # Each OR group with its "mentions a prerelease" flag, computed once.
        self._groups = groups

    def check(self, version: str | semver.Version) -> bool:
        """Tell whether a version satisfies the range, as Masterminds ``Check`` does.

        Args:
            version: A :class:`semver.Version` or a version string in Masterminds
                ``NewVersion`` syntax (``v`` prefix and partial versions allowed).

        Returns:
            True when some OR group admits the version.

        Raises:
            InvalidVersionError: ``version`` is a string that is not a version.
        """
        return self._admits(_coerce_version(version))

    def _admits(self, version: _Version) -> bool:
        for comparators, include_pre in self._groups:
            for comparator in comparators:
                if not comparator.test(comparator, version, include_pre):
                    break
            else:
                return True
        return False

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Constraint({self.text!r})"


@functools.lru_cache(maxsize=256)
def parse_constraint(constraint: str) -> Constraint:
    """Compile a Masterminds/Flux semver range.

    Args:
        constraint: The range, e.g. ``">=1.2.0 <2"``, ``"1.2.x"``, ``"^0.3 || ~1.4"``.

    Returns:
        A :class:`Constraint` whose ``check`` evaluates versions without re-parsing.

    Raises:
        InvalidConstraintError: The range is too long, has too many ``||`` groups, or
            a group is not a list of comparators with valid versions.
    """
    if len(constraint) > MAX_CONSTRAINT_LENGTH:
        raise InvalidConstraintError(
            f"invalid semver range {_shorten(constraint)}: longer than {MAX_CONSTRAINT_LENGTH} characters"
        )
    groups = _rewrite_hyphen_ranges(constraint).split("||")
    if len(groups) > MAX_OR_GROUPS:
        raise InvalidConstraintError(
            f"invalid semver range {_shorten(constraint)}: more than {MAX_OR_GROUPS} '||' alternatives"
        )
    compiled = []
    for group in groups:
        comparators = _parse_group(group, constraint)
        mentions_prerelease = any(c.version.prerelease for c in comparators)
        compiled.append((comparators, mentions_prerelease))
    return Constraint(constraint, tuple(compiled))


def satisfies(constraint: str, version: str) -> bool:
    """Tell whether ``version`` satisfies the semver range ``constraint``.

    Args:
        constraint: A Masterminds/Flux semver range.
        version: A version in Masterminds ``NewVersion`` syntax (``1.2.3``, ``v1.2``, ``1``).

    Raises:
        InvalidConstraintError: The range is invalid.
        InvalidVersionError: The version is not a version.
    """
    return parse_constraint(constraint).check(version)


def parse_tag(tag: str) -> semver.Version | None:
    """Parse a registry tag the way Flux picks semver candidates.

    Args:
        tag: A tag such as ``v1.2.3``, ``1.2.3-rc.1`` or ``latest``.

    Returns:
        The version, or None when Flux would skip the tag (``latest``, ``1.2``, ...).
    """
    parsed = _parse_candidate(tag)
    return None if parsed is None else _to_semver(parsed)


def resolve(constraint: str | Constraint, tags: Iterable[str]) -> str | None:
    """Pick the tag a Flux OCIRepository with ``.spec.ref.semver: constraint`` would pull.

    Args:
        constraint: The semver range (or an already compiled :class:`Constraint`).
        tags: The repository's tags, in registry order.

    Returns:
        The highest candidate tag that satisfies the range, exactly as given (``v1.2.4``
        stays ``v1.2.4``). Among tags of equal precedence, the one Flux's unstable sort
        puts first: the first one given when at most 12 tags match, otherwise the one
        Go's ``sort.Sort`` leaves in front (see :mod:`sandbox.gosort`). None when no
        candidate matches.

    Raises:
        InvalidConstraintError: The range is invalid.
    """
    compiled = constraint if isinstance(constraint, Constraint) else parse_constraint(constraint)
    tags = tags if isinstance(tags, list | tuple) else list(tags)
    best_tag: str | None = None
    best_key: PrecedenceKey | None = None
    ties = 0
    for tag in tags:
        version = _parse_candidate(tag)
        if version is None or (best_key is not None and version.key < best_key):
            continue
        if version.key == best_key:
            # Admission depends on the precedence key alone, so an equal key is admitted too.
            ties += 1
        elif compiled._admits(version):
            best_tag, best_key, ties = tag, version.key, 1
    if ties <= 1:
        return best_tag
    return _pick_among_ties(compiled, tags, best_tag)


def _pick_among_ties(compiled: Constraint, tags: Sequence[str], first_best: str | None) -> str | None:
    """Several matches share the highest precedence: which one Flux's ``sort.Sort`` puts first."""
    matching = [(tag, version.key) for tag in tags if (version := _parse_candidate(tag)) and compiled._admits(version)]
    if len(matching) <= INSERTION_SORT_MAX:
        return first_best  # insertion sort: equal elements keep their order
    # sort.Reverse(Collection): Less(i, j) is "j's version < i's version".
    sort_like_go(matching, lambda first, second: second[1] < first[1])
    return matching[0][0]


Bump = Literal["patch", "minor", "major"]


def next_version(tags: Iterable[str], bump: Bump) -> str:
    """Compute the next release version after the highest release tag.

    Args:
        tags: Existing tags; non-candidates and prereleases are ignored.
        bump: Which part to increment; lower parts reset to 0.

    Returns:
        Bare ``X.Y.Z``. Without any release tag: ``0.1.0`` (patch or minor bump) or
        ``1.0.0`` (major bump).

    Raises:
        InvalidInputError: ``bump`` is not patch, minor or major.
    """
    if bump not in ("patch", "minor", "major"):
        raise InvalidInputError(f"invalid version bump {bump!r}: use patch, minor or major")
    highest: _Version | None = None
    for tag in tags:
        version = _parse_candidate(tag)
        if version is None or version.prerelease:
            continue
        if highest is None or version.key > highest.key:
            highest = version
    if highest is None:
        return "1.0.0" if bump == "major" else "0.1.0"
    if bump == "major":
        return f"{highest.major + 1}.0.0"
    if bump == "minor":
        return f"{highest.major}.{highest.minor + 1}.0"
    return f"{highest.major}.{highest.minor}.{highest.patch + 1}"
