"""The errors of the release steps."""

from __future__ import annotations

from sandbox.errors import ConflictError, PermanentError


class ReleaseError(PermanentError):
    """A release step cannot proceed (missing directory, moved tag, no source to edit)."""


class ReleaseExistsError(ConflictError):
    """The release's tag already exists (in git or in the registry) and is never overwritten."""
