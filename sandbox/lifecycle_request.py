"""The sandbox lifecycle's request: what a user asks for, validated before anything is created.

These are the ``sandbox_lifecycle`` flow's parameter models (a performance run's
request carries a :class:`SandboxChange` too), so the Prefect UI renders them as
forms. Their JSON schema is written for that form: human titles, the sandbox
name's rules as ``pattern``/``maxLength`` (the server checks them before a run
is made), ticket and summary required for platform sandboxes, and optional
text fields as plain text boxes (see :func:`optional`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox.models import SandboxKind, Stage
from sandbox.naming import MAX_SANDBOX_NAME

#: Environment variable naming the fleet.yaml a run uses when its request names none: ``make serve``
#: sets it to the served fleet's, so a run started by the API without ``config_path`` uses that fleet.
CONFIG_ENV = "FLEET_SANDBOX_CONFIG"


def default_config_path() -> str:
    """The fleet.yaml a request names by default: ``$FLEET_SANDBOX_CONFIG``, else ``fleet.yaml``."""
    return os.environ.get(CONFIG_ENV) or "fleet.yaml"


def config_path_field() -> Any:
    """The ``config_path`` field of a request model (default :func:`default_config_path`)."""
    return Field(
        default_factory=default_config_path,
        title="Fleet configuration",
        description=f"Path of fleet.yaml on the worker (default ${CONFIG_ENV}, else fleet.yaml)",
        json_schema_extra={"default": "fleet.yaml"},
    )


def plain_optional(extra: dict[str, Any] | None = None) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` that shows an optional field (``X | None``) as a plain ``X`` field.

    Pydantic writes ``anyOf: [X, null]``, which the Prefect UI renders as a
    "X / None" switch before the field can be typed into. Without the ``null``
    branch and the ``null`` default the field is a plain text box (or select,
    or number), and leaving it empty leaves the parameter out: the model's
    default (``None``) applies. ``extra`` is added to the field (``pattern``,
    ``examples``, ...).
    """

    def rewrite(schema: dict[str, Any]) -> None:
        branches = schema.get("anyOf")
        if isinstance(branches, list):
            kept = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            if len(kept) == 1 and isinstance(kept[0], dict):
                del schema["anyOf"]
                schema.update({k: v for k, v in kept[0].items() if k not in schema})
        if schema.get("default", 0) is None:
            del schema["default"]
        schema.update(extra or {})
        if "enum" in schema:
            # Choices inline (a ``$ref`` cannot take the null below), and null among them: Prefect's
            # server lets an optional field be null by its ``type`` alone, not past an ``enum``, and
            # API clients send ``null`` for a field they leave out.
            schema.pop("$ref", None)
            if None not in schema["enum"]:
                schema["enum"] = [*schema["enum"], None]

    return rewrite


def optional(description: str, *, title: str, schema: dict[str, Any] | None = None, **constraints: Any) -> Any:
    """A ``Field`` for an optional value shown as a plain form field (:func:`plain_optional`).

    Args:
        description: What the field is, with an example.
        title: The form's label.
        schema: Added to the field's JSON schema (``pattern``, ``examples``, ...).
        constraints: Pydantic's constraints (``ge``, ``gt``, ...), checked and in the schema.
    """
    return Field(
        default=None, title=title, description=description, json_schema_extra=plain_optional(schema), **constraints
    )


def _empty_is_none(value: Any) -> Any:
    """A form's emptied text box ("" or blanks) means "not given"."""
    return None if isinstance(value, str) and not value.strip() else value


class ScalarChange(BaseModel):
    """Set one scalar in a YAML object of the sandbox's cluster directory."""

    model_config = ConfigDict(title="Scalar edit")

    file: str = Field(title="File", description="File relative to the sandbox's cluster directory, e.g. apps.yaml")
    kind: str = Field(title="Object kind", description="Kind of the object to edit, e.g. Kustomization")
    name: str = Field(title="Object name", description="metadata.name of the object to edit")
    path: list[str] = Field(title="Path", description="Keys from the object root to the scalar, e.g. spec, interval")
    value: str = Field(title="New value", description="New value")


class SandboxChange(BaseModel):
    """A change to make in the sandbox right after it is cloned (committed on its branch)."""

    model_config = ConfigDict(title="Change")

    message: str = Field(title="Commit message", description="Commit message")
    edits: list[ScalarChange] = Field(default_factory=list, title="Edits", description="Scalar edits to make")


#: :data:`~sandbox.naming.SANDBOX_NAME_RE` as the form's JSON-schema ``pattern``. The same language,
#: written so that the UI's error message, which it renders as Markdown, shows it whole
#: (``[a-z](`` would read as a link there).
NAME_PATTERN = "^[a-z]{1}([-a-z0-9]*[a-z0-9])?$"

#: JSON schema rule of the lifecycle form: platform sandboxes need a ticket and a summary (their branch is
#: ``<ticket>-<summary>``). ``kind`` left out is the default, platform: ``properties`` then matches.
PLATFORM_NEEDS_TICKET: dict[str, Any] = {
    "if": {"properties": {"kind": {"const": SandboxKind.platform.value}}},
    "then": {
        "required": ["ticket", "summary"],
        "properties": {"ticket": {"minLength": 1}, "summary": {"minLength": 1}},
    },
}


class LifecycleRequest(BaseModel):
    """Parameters of a sandbox lifecycle run."""

    model_config = ConfigDict(title="Sandbox", json_schema_extra=PLATFORM_NEEDS_TICKET)

    config_path: str = config_path_field()
    name: str = Field(
        title="Sandbox name",
        description=(
            f"Lowercase letters, digits and '-', starting with a letter, at most {MAX_SANDBOX_NAME} characters, "
            "e.g. ops-42-ingress"
        ),
        json_schema_extra={"pattern": NAME_PATTERN, "minLength": 1, "maxLength": MAX_SANDBOX_NAME},
    )
    source_env: str = Field(
        default="development", title="Source environment", description="Long-lived environment to clone"
    )
    kind: SandboxKind = Field(
        default=SandboxKind.platform,
        title="Sandbox kind",
        description="platform: a change to promote (needs ticket and summary); performance: a load test",
    )
    ticket: str | None = optional("Ticket id, e.g. OPS-42 (required for platform sandboxes)", title="Ticket")
    summary: str | None = optional(
        "Short summary, becomes the branch's suffix, e.g. upgrade ingress (required for platform sandboxes)",
        title="Summary",
    )
    ttl: str | None = optional(
        "How long the sandbox may live before the nightly cleanup removes it, e.g. 72h (default from fleet.yaml)",
        title="Time to live",
    )
    keep: bool = Field(
        default=False, title="Keep past its time to live", description="Protect from the nightly cleanup"
    )
    keep_on_failure: bool = Field(
        default=False,
        title="Keep on failure",
        description="Keep what was created if provision or bootstrap fails (default: roll it back)",
    )
    overrides: dict[str, str] = Field(
        default_factory=dict,
        title="Terraform variable overrides",
        description='Terraform variables replacing the source environment\'s, e.g. {"kubernetes_version": "1.31"}',
        json_schema_extra={"examples": [{"kubernetes_version": "1.31"}]},
    )
    change: SandboxChange | None = Field(
        default=None, title="Change after cloning", description="A change to make in the sandbox after cloning"
    )
    stop_after: Stage | None = optional(
        "Run stages up to and including this one (default: all seven)",
        title="Stop after stage",
        schema={"type": "string", "enum": [stage.value for stage in Stage]},
    )
    owner: str | None = optional("Who owns the sandbox, e.g. an e-mail address", title="Owner")

    _empty_text_is_none = field_validator("ticket", "summary", "owner", "stop_after", mode="before")(_empty_is_none)
