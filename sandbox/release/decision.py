"""Deciding a release from the tags that exist (pure): which version, at which commit, whether to tag."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from pydantic import BaseModel, Field

from sandbox.errors import InvalidInputError
from sandbox.release.errors import ReleaseExistsError
from sandbox.release.versions import release_tags, validate_release_version, version_key
from sandbox.versions import Bump, next_version, parse_tag


class ReleaseDecision(BaseModel):
    """Which version to release at which commit, and whether the git tag must be made."""

    version: str
    commit: str
    create_tag: bool = Field(description="False when the git tag exists already (its artifact is missing)")
    warnings: list[str] = Field(default_factory=list)

    @property
    def resumed(self) -> bool:
        """The git tag existed: this run finishes an earlier release."""
        return not self.create_tag


def decide_release(
    *,
    git_tags: Mapping[str, str],
    registry_tags: Collection[str],
    main_commit: str,
    bump: Bump | None = None,
    version: str | None = None,
    existing_tag: bool = False,
    registry_url: str = "the registry",
    default_branch: str = "main",
) -> ReleaseDecision:
    """Decide the release from the tags that exist; refuse anything that would overwrite.

    * ``version`` names the release; otherwise ``bump`` (default patch) applies to the
      highest version among git *and* registry tags.
    * A git tag at ``main_commit`` without an artifact that this same ``bump`` would
      have produced is an interrupted release: it is finished, not bumped past.
    * A registry tag that exists is never overwritten; a git tag that exists elsewhere
      than ``main_commit`` is never moved (``existing_tag`` publishes it where it is).

    Args:
        git_tags: Tag -> tagged commit on the fleet remote.
        registry_tags: Tags in the OCI repository.
        main_commit: The default branch's head, which a new tag marks.
        bump: patch, minor or major.
        version: An explicit version (instead of ``bump``).
        existing_tag: Publish the artifact of the existing git tag ``version``.
        registry_url: For messages.
        default_branch: For messages.

    Raises:
        InvalidInputError: Both or an invalid version; ``existing_tag`` without a tag.
        ReleaseExistsError: The tag exists in the registry, or in git at another commit.
    """
    if bump is not None and version is not None:
        raise InvalidInputError("give --bump or --version, not both")
    if existing_tag and version is None:
        raise InvalidInputError("--existing-tag needs --version naming the git tag to publish")
    published = set(registry_tags)
    all_tags = set(git_tags) | published
    target: str | None = None
    if version is not None:
        target = validate_release_version(version)
    else:
        chosen: Bump = bump or "patch"
        interrupted = [
            tag for tag, commit in git_tags.items() if commit == main_commit and tag not in published and parse_tag(tag)
        ]
        for tag in release_tags(interrupted):
            if next_version(all_tags - {tag}, chosen) == tag:
                target = tag
                break
        target = target or next_version(all_tags, chosen)
    if target in published:
        raise ReleaseExistsError(
            f"release {target} already exists: registry tag {target} in {registry_url} is never overwritten"
        )
    target_version = version_key(target)
    for other in sorted(all_tags - {target}):
        if parse_tag(other) is not None and version_key(other) == target_version:
            raise ReleaseExistsError(f"release {target} already exists as tag {other} (the same version for Flux)")
    unpublished = [t for t in release_tags(set(git_tags) - published - {target})]
    warnings = [
        f"git tag {tag} has no artifact in {registry_url} (publish it: sandbox release --version {tag} --existing-tag)"
        for tag in unpublished[:3]
    ]
    tagged = git_tags.get(target)
    if tagged is None:
        if existing_tag:
            raise InvalidInputError(f"--existing-tag: git tag {target} does not exist")
        return ReleaseDecision(version=target, commit=main_commit, create_tag=True, warnings=warnings)
    if tagged == main_commit or existing_tag:
        return ReleaseDecision(version=target, commit=tagged, create_tag=False, warnings=warnings)
    raise ReleaseExistsError(
        f"git tag {target} already exists at {tagged[:12]}, not at {default_branch} ({main_commit[:12]}); "
        f"tags are never moved (publish it as it is with --version {target} --existing-tag)"
    )
