"""Publishing a release: an annotated git tag on the default branch, then its Flux OCI artifact."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from sandbox import paths
from sandbox.drivers.git import GitDriver
from sandbox.drivers.oci_artifact import FluxArtifact
from sandbox.release.context import ReleaseContext
from sandbox.release.decision import decide_release
from sandbox.release.errors import ReleaseError, ReleaseExistsError
from sandbox.release.settings import source_url
from sandbox.release.versions import validate_release_version
from sandbox.versions import Bump

#: The platform stack's directory in the fleet repository (the artifact's root).
PLATFORM_DIR = "platform"


class TaggedRelease(BaseModel):
    """The release's git tag, made now or found from an interrupted run."""

    version: str
    commit: str
    tag_created: bool
    warnings: list[str] = Field(default_factory=list)


class PublishedRelease(BaseModel):
    """A release whose git tag and artifact both exist."""

    version: str
    commit: str
    revision: str = Field(description="org.opencontainers.image.revision: <tag>@sha1:<commit>")
    source: str = Field(description="org.opencontainers.image.source")
    artifact: str = Field(description="oci://host/repository:tag")
    digest: str = Field(description="Manifest digest")
    tag_created: bool = Field(description="False when an existing git tag was published (resume)")
    already_published: bool = Field(default=False, description="The artifact was there from an earlier attempt")
    warnings: list[str] = Field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line for people."""
        how = "tagged and published" if self.tag_created else "published existing git tag"
        if self.already_published:
            how = "already published"
        return f"release {self.version} {how}: {self.artifact} ({self.digest}) from {self.revision}"


def _commit_time(git: GitDriver, repo: Path, commit: str) -> str:
    """The committer time of ``commit`` as RFC 3339 UTC (the artifact's ``created``).

    The commit's time rather than the push time keeps the artifact reproducible: the
    same tag always yields the same manifest digest.
    """
    return datetime.fromtimestamp(git.commit_time(repo, commit), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tag_release(
    ctx: ReleaseContext,
    *,
    bump: Bump | None = None,
    version: str | None = None,
    existing_tag: bool = False,
) -> TaggedRelease:
    """Decide the version (see :func:`decide_release`) and push its annotated tag.

    Raises:
        InvalidInputError: Invalid version or flags.
        ReleaseExistsError: The tag exists already (registry, or git elsewhere).
    """
    if version is not None:
        validate_release_version(version)
    with ctx.checkout() as repo:
        main_commit = ctx.head(repo)
        git_tags = ctx.git.remote_tags(ctx.remote)
        registry_tags = ctx.registry.list_tags()
        decision = decide_release(
            git_tags=git_tags,
            registry_tags=registry_tags,
            main_commit=main_commit,
            bump=bump,
            version=version,
            existing_tag=existing_tag,
            registry_url=ctx.registry.url,
            default_branch=ctx.default_branch,
        )
        for warning in decision.warnings:
            ctx.progress(f"warning: {warning}")
        if decision.create_tag:
            ctx.git.tag(repo, decision.version, f"platform {decision.version}")
            ctx.git.push_tag(repo, decision.version)
            ctx.progress(f"tagged {ctx.default_branch} ({main_commit[:12]}) as {decision.version}")
        else:
            ctx.progress(f"git tag {decision.version} exists at {decision.commit[:12]}: publishing its artifact")
    return TaggedRelease(
        version=decision.version,
        commit=decision.commit,
        tag_created=decision.create_tag,
        warnings=decision.warnings,
    )


def publish_artifact(ctx: ReleaseContext, tagged: TaggedRelease) -> PublishedRelease:
    """Package ``platform/`` at the tagged commit as a Flux artifact and push it under the tag.

    Idempotent: an artifact already carrying this tag's revision counts as published.

    Raises:
        ReleaseError: The tag vanished or moved, or the commit has no ``platform/``.
        ReleaseExistsError: The registry tag holds a different artifact.
    """
    version = tagged.version
    revision = f"{version}@sha1:{tagged.commit}"
    source = source_url(ctx.remote)
    with ctx.checkout() as repo:
        now_tagged = ctx.git.remote_tags(ctx.remote).get(version)
        if now_tagged != tagged.commit:
            where = f"now at {now_tagged[:12]}" if now_tagged else "gone"
            raise ReleaseError(f"git tag {version} moved since it was made ({where}); nothing published")
        existing = ctx.registry.get_manifest(version)
        if existing is not None:
            if existing.revision != revision:
                raise ReleaseExistsError(
                    f"registry tag {version} in {ctx.registry.url} holds {existing.revision or 'another artifact'}, "
                    f"not {revision}; it is never overwritten"
                )
            ctx.progress(f"{ctx.registry.url}:{version} already holds {revision}")
            return PublishedRelease(
                version=version,
                commit=tagged.commit,
                revision=revision,
                source=source,
                artifact=f"{ctx.registry.url}:{version}",
                digest=existing.digest,
                tag_created=tagged.tag_created,
                already_published=True,
                warnings=tagged.warnings,
            )
        ctx.git.reset_hard(repo, tagged.commit)
        # Links are not packaged (see build_flux_tarball); the directory itself must not lead outside.
        content = paths.inside(repo, PLATFORM_DIR)
        if not content.is_dir():
            raise ReleaseError(f"{version} ({tagged.commit[:12]}) has no {PLATFORM_DIR}/ directory to package")
        artifact = FluxArtifact(
            directory=content,
            source=source,
            revision=revision,
            created=_commit_time(ctx.git, repo, tagged.commit),
        )
        pushed = ctx.registry.push_artifact(version, artifact)
    ctx.progress(f"pushed {pushed.url} ({pushed.digest})")
    return PublishedRelease(
        version=version,
        commit=tagged.commit,
        revision=revision,
        source=source,
        artifact=pushed.url,
        digest=pushed.digest,
        tag_created=tagged.tag_created,
        warnings=tagged.warnings,
    )


def release(
    ctx: ReleaseContext,
    *,
    bump: Bump | None = None,
    version: str | None = None,
    existing_tag: bool = False,
) -> PublishedRelease:
    """Tag and publish in one call (the flow runs the two steps as separate tasks)."""
    tagged = tag_release(ctx, bump=bump, version=version, existing_tag=existing_tag)
    return publish_artifact(ctx, tagged)
