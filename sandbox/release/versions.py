"""Release versions: which tags are releases, the newest and the previous one, and ranges that admit one."""

from __future__ import annotations

import re
from collections.abc import Collection

import semver

from sandbox.errors import InvalidInputError
from sandbox.versions import parse_constraint, parse_tag


def validate_release_version(version: str) -> str:
    """Check a version given for a release: strict ``X.Y.Z`` (optionally ``-prerelease``).

    Releases are tagged as bare versions (no ``v``), which every Flux version parses.

    Raises:
        InvalidInputError: Not a strict semantic version.
    """
    try:
        semver.Version.parse(version)
    except (ValueError, TypeError):
        raise InvalidInputError(f"invalid release version {version!r}: use X.Y.Z, e.g. 1.2.4") from None
    return version


def version_key(tag: str) -> semver.Version:
    parsed = parse_tag(tag)
    if parsed is None:
        raise ValueError(tag)
    return parsed.replace(build=None)


def release_tags(tags: Collection[str]) -> list[str]:
    """Tags Flux sees as versions, highest first."""
    return sorted((t for t in tags if parse_tag(t) is not None), key=version_key, reverse=True)


def newest_release(tags: Collection[str]) -> str | None:
    """The highest tag Flux would parse as a version, prereleases included."""
    candidates = release_tags(tags)
    return candidates[0] if candidates else None


def previous_release(tags: Collection[str], current: str) -> str | None:
    """The highest release (no prerelease) below ``current``: what a rollback goes back to."""
    current_version = parse_tag(current)
    if current_version is None:
        return None
    for tag in release_tags(tags):
        version = version_key(tag)
        if not version.prerelease and version < current_version.replace(build=None):
            return tag
    return None


def suggest_range(current: str, version: str) -> str:
    """A semver range in the style of ``current`` that admits ``version``.

    ``1.2.x`` -> ``1.3.x``; ``1.x``/``1`` -> ``2.x``; ``^1.2.0`` -> ``^2.0.0``; ``~1.2.0`` ->
    ``~1.3.0``; anything else -> ``X.Y.x``.
    """
    target = semver.Version.parse(version)
    text = current.strip()
    candidates: list[str] = []
    if re.fullmatch(r"[v=]?\s*\d+\.\d+\.[xX*]", text):
        candidates.append(f"{target.major}.{target.minor}.x")
    elif re.fullmatch(r"[v=]?\s*\d+(\.[xX*]){0,2}", text):
        candidates.append(f"{target.major}.x")
    elif text.startswith("^"):
        candidates.append(f"^{target.major}.{target.minor}.{target.patch}")
    elif text.startswith("~"):
        candidates.append(f"~{target.major}.{target.minor}.{target.patch}")
    candidates.append(f"{target.major}.{target.minor}.x")
    for candidate in candidates:
        if parse_constraint(candidate).check(version):
            return candidate
    return f"={version}"
