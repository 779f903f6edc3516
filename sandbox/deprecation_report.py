"""What a deprecation scan reports (:func:`sandbox.deprecations.scan_path`): findings, skipped files, targets.

Kept apart from the scanner so each stays a module one can read; :mod:`sandbox.deprecations`
re-exports these names.
"""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

KUBERNETES: Final = "kubernetes"
FLUX: Final = "flux"


def _label(component: str) -> str:
    return {KUBERNETES: "Kubernetes", FLUX: "Flux"}.get(component, component)


class Finding(BaseModel):
    """One object that uses a deprecated or removed API version at the target."""

    model_config = ConfigDict(frozen=True)

    file: str
    document: int
    kind: str
    apiVersion: str  # noqa: N815 - the JSON contract's key
    name: str | None
    namespace: str | None
    deprecated: bool
    removed: bool
    deprecated_in: str | None
    removed_in: str | None
    replacement: str | None


class SkippedFile(BaseModel):
    """A YAML/JSON file that could not be scanned, with a one-line reason."""

    model_config = ConfigDict(frozen=True)

    file: str
    reason: str


class ScanReport(BaseModel):
    """The result of :func:`scan_path`.

    ``targets`` (component -> ``X.Y``) records the versions the scan was evaluated at; it
    is not part of :meth:`to_json`.
    """

    findings: list[Finding] = Field(default_factory=list)
    skipped: list[SkippedFile] = Field(default_factory=list)
    targets: dict[str, str] = Field(default_factory=dict, exclude=True)
    scanned: int = Field(default=0, exclude=True, description="Files read and parsed (skipped ones not counted)")
    beyond_data: dict[str, str] = Field(
        default_factory=dict,
        exclude=True,
        description="Component -> the newest release the data cover, for each target newer than that",
    )

    @property
    def warnings(self) -> list[str]:
        """One line per target newer than the data cover (empty when the data cover every target)."""
        return [
            f"the deprecation data cover {_label(component)} up to {covered}; the target {self.targets[component]} "
            f"is newer, so APIs deprecated or removed after {covered} are not reported"
            for component, covered in sorted(self.beyond_data.items())
        ]

    @property
    def removed(self) -> list[Finding]:
        """Findings whose API version is no longer served at the target."""
        return [finding for finding in self.findings if finding.removed]

    @property
    def deprecated_only(self) -> list[Finding]:
        """Findings that are deprecated but still served at the target."""
        return [finding for finding in self.findings if not finding.removed]

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready mapping ``{"findings": [...], "skipped": [...]}`` (see docs/cli.md).

        A target newer than the data adds ``"warnings"`` (the lines of :attr:`warnings`) and
        the releases the data cover: ``"data_covers"`` for Kubernetes (``"1.36"``),
        ``"<component>_data_covers"`` for another component (``"flux_data_covers"``).
        """
        document: dict[str, Any] = {
            "findings": [finding.model_dump() for finding in self.findings],
            "skipped": [skipped.model_dump() for skipped in self.skipped],
        }
        if self.beyond_data:
            document["warnings"] = self.warnings
            for component, covered in sorted(self.beyond_data.items()):
                document["data_covers" if component == KUBERNETES else f"{component}_data_covers"] = covered
        return document

    def to_json_text(self, indent: int | None = 2) -> str:
        """:meth:`to_json` serialised as a JSON document."""
        return json.dumps(self.to_json(), indent=indent)
