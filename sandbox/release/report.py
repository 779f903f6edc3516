"""What a release run reports: the published release, the plan for it, and the range changes it proposed."""

from __future__ import annotations

from pydantic import BaseModel, Field

from sandbox.release.plan import ReleasePlan
from sandbox.release.proposals import ProposedChange
from sandbox.release.publish import PublishedRelease


class ReleaseReport(BaseModel):
    """A published release, what it changes per environment, and the range changes it proposed."""

    published: PublishedRelease
    plan: ReleasePlan = Field(description="Before -> after of every environment, for the published version")
    range_proposals: list[ProposedChange] = Field(
        default_factory=list, description="Pull requests widening a semver range that does not admit the release"
    )
    warnings: list[str] = Field(default_factory=list)

    def lines(self) -> list[str]:
        """What happened, one line each (warnings first)."""
        out = [f"warning: {warning}" for warning in self.warnings]
        out.append(self.published.summary)
        by_env = {change.environment: change for change in self.range_proposals}
        for row in self.plan.environments:
            change = by_env.get(row.environment)
            if row.tracking == "semver" and change is not None:
                out.append(
                    f"{row.environment}: range {row.reference} does not admit {self.published.version}: "
                    f"range change proposed: {change.summary}"
                )
            elif row.tracking == "semver":
                moves = f"moves {row.before or '(nothing)'} -> {row.after}" if row.changes else "does not move"
                out.append(f"{row.environment}: range {row.reference} {moves}")
            elif row.tracking in ("tag", "digest"):
                out.append(f"{row.environment}: stays at {row.before} until an approved pull request moves it")
        if self.plan.major_bump:
            out.append(f"MAJOR BUMP: {self.published.version} is a breaking release")
        return out
