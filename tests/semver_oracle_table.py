"""The semver oracle's table: ranges over tag sets, and the tag Flux's source-controller picks for each.

Held to the real source-controller by tests/real/test_flux_semver_oracle.py (every ``expected`` below is what
Flux picked there, and the project's resolver must agree); the simulated source-controller is held to the same
column by tests/unit/test_simulated_semver_oracle.py.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Tag sets, one registry repository each (``semver/<name>``), pushed in the order given. A registry lists tags in
#: lexical order, whatever the push order (to Flux and to the project alike): that decides ties.
TAG_SETS: dict[str, tuple[str, ...]] = {
    # Releases, non-version tags ("latest", two-part "1.4", four-part "3.0.0.1", upper-case "V1.5.0").
    "rel": ("0.9.0", "1.0.0", "1.1.0", "1.1.5", "1.2.0", "1.2.1", "1.3.0", "2.0.0", "2.1.0")
    + ("latest", "1.4", "3.0.0.1", "V1.5.0"),
    # Prereleases beside releases; "1.3-rc.1" has its dots in the prerelease (Flux reads 1.3.0-rc.1).
    "pre": ("1.0.0-rc.1", "1.0.0", "1.1.0-beta.1", "1.2.0", "1.2.2", "1.2.3-rc.1", "1.3-rc.1", "2.0.0-alpha.1"),
    # Build metadata as OCI tags carry it: "_" for "+".
    "build": ("1.0.0", "1.0.0_build.1", "1.0.1_build.2", "1.0.1-rc.1", "1.1.0_build.3"),
    # "v" prefixes, a tie of equal precedence (v1.2.4 pushed before 1.2.4, listed after), 0-padded calendar versions.
    "v": ("v1.2.3", "v1.2.4", "1.2.4", "v1.3.0", "v2.0.0-rc.1", "v2025.07.03", "2025.8.0"),
    # Caret and tilde below 1.0.0.
    "zero": ("0.0.3", "0.0.4", "0.2.3", "0.2.9", "0.3.0"),
    # Helm charts whose versions carry build metadata, tagged as helm push tags them ("+" as "_").
    "chart": ("1.0.0", "1.0.0_build.1", "1.0.1_build.2", "1.1.0-rc.1_b.1"),
}
#: The tag sets of Helm charts, read through a Helm chart ``layerSelector``.
CHART_SETS = frozenset({"chart"})
#: A range Masterminds refuses: Flux and the project both say so.
INVALID = "<invalid>"


@dataclass(frozen=True)
class Case:
    """One range over one tag set; ``expected`` is what Flux picked when the table was written.

    None: no tag matches; :data:`INVALID`: the range is refused.
    """

    range: str
    tags: str
    expected: str | None

    @property
    def id(self) -> str:
        return f"{self.tags}:{self.range}"


CASES: tuple[Case, ...] = (
    # Plain ranges, `||`, hyphen ranges, tilde, caret, `!=`, partial versions.
    Case(">=1.0.0", "rel", "2.1.0"),
    Case("*", "rel", "2.1.0"),
    Case("1.0.0 - 1.2.0", "rel", "1.2.0"),
    Case("1.0 - 1.1", "rel", "1.1.5"),
    Case("1.1.x || 2.0.x", "rel", "2.0.0"),
    Case("<1.0.0 || >=2.1.0", "rel", "2.1.0"),
    Case("<1.0.0 || 1.1.x", "rel", "1.1.5"),
    Case("~1.1.0", "rel", "1.1.5"),
    Case("~1", "rel", "1.3.0"),
    Case("^1.1.0", "rel", "1.3.0"),
    Case("^2", "rel", "2.1.0"),
    Case(">1.1 <2", "rel", "1.3.0"),
    Case("<=1.1", "rel", "1.1.5"),
    Case("!=2.1.0", "rel", "2.0.0"),
    Case(">=1.2.0, <1.3.0", "rel", "1.2.1"),
    Case("1.2.0", "rel", "1.2.0"),
    # No match: above every tag, only non-version tags ("1.4", "3.0.0.1", "V1.5.0") would match.
    Case(">2.1.0", "rel", None),
    Case("1.4.x", "rel", None),
    Case("3.x", "rel", None),
    Case("1.5.0", "rel", None),
    # Prereleases: admitted only by a range (an OR group) that names one.
    Case(">=1.0.0", "pre", "1.2.2"),
    Case(">=1.0.0-0", "pre", "2.0.0-alpha.1"),
    Case(">=1.0.0-0 <2.0.0-0", "pre", "1.3-rc.1"),
    Case("1.2.x", "pre", "1.2.2"),
    Case("~1.2.3-0", "pre", "1.2.3-rc.1"),
    Case("^1.0.0-rc.1", "pre", "1.3-rc.1"),
    Case("1.2.3-rc.1", "pre", "1.2.3-rc.1"),
    Case("<1.0.0", "pre", None),
    Case("2.x", "pre", None),
    Case(">=2.0.0-0 || 1.2.x", "pre", "2.0.0-alpha.1"),
    # Build metadata: "_" tags are not versions for a Flux artifact.
    Case(">=1.0.0", "build", "1.0.0"),
    Case("1.0.1", "build", None),
    Case("1.1.x", "build", None),
    Case(">=1.0.1-0", "build", "1.0.1-rc.1"),
    Case("1.0.0+build.1", "build", "1.0.0"),
    # "v" prefixes, in tags and in ranges; a tie goes to the tag listed first; 0-padded numbers are coerced.
    Case("~1.2", "v", "1.2.4"),
    Case("v1.2.x", "v", "1.2.4"),
    Case("=v1.2.3", "v", "v1.2.3"),
    Case("^1", "v", "v1.3.0"),
    Case(">=v1.3.0 <2025", "v", "v1.3.0"),
    Case(">=2.0.0-0 <3", "v", "v2.0.0-rc.1"),
    Case("2025.7.x", "v", "v2025.07.03"),
    Case(">=2025.7.0", "v", "2025.8.0"),
    Case("v3.x", "v", None),
    # Below 1.0.0.
    Case("^0.2.3", "zero", "0.2.9"),
    Case("^0.0.3", "zero", "0.0.3"),
    Case("~0.2", "zero", "0.2.9"),
    Case("0.x", "zero", "0.3.0"),
    Case("^0.1", "zero", None),
    # Build metadata does not count: 1.0.0 and 1.0.0+build.1 tie, the tag listed first wins.
    Case(">=1.0.0", "chart", "1.0.1_build.2"),
    Case("1.0.0", "chart", "1.0.0"),
    Case("1.0.0+build.1", "chart", "1.0.0"),
    Case(">1.0.0 <1.0.2", "chart", "1.0.1_build.2"),
    Case(">=1.1.0-0", "chart", "1.1.0-rc.1_b.1"),
    Case("2.x", "chart", None),
    # Refused by both.
    Case("1.2.x ~> ^", "rel", INVALID),
)
