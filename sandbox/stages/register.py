"""The register step: check a lifecycle request, then create (or find) the sandbox's inventory record."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sandbox.config import FleetConfig
from sandbox.cost import estimate as estimate_cost
from sandbox.errors import ConflictError, InvalidInputError
from sandbox.inventory import Inventory, utcnow
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus
from sandbox.naming import branch_name, parse_duration, validate_sandbox_name


@dataclass(frozen=True)
class ValidatedRequest:
    """A request that passed every input check (nothing created yet)."""

    request: LifecycleRequest
    branch: str
    ttl: timedelta


def validate_request(config: FleetConfig, request: LifecycleRequest) -> ValidatedRequest:
    """Check a lifecycle request before anything is created.

    Raises:
        InvalidInputError: Naming the first problem found.
    """
    validate_sandbox_name(request.name, config.protected_names())
    config.environment(request.source_env)
    ttl = parse_duration(request.ttl or config.sandbox.default_ttl)
    max_ttl = parse_duration(config.sandbox.max_ttl)
    if ttl > max_ttl:
        raise InvalidInputError(f"ttl {request.ttl} is longer than the maximum {config.sandbox.max_ttl}")
    if request.kind is SandboxKind.platform:
        if request.source_env != "development" and not config.environments[request.source_env].canary:
            raise InvalidInputError(f"platform sandboxes clone development (or a canary), not {request.source_env!r}")
        if not request.ticket or not request.summary:
            raise InvalidInputError("platform sandboxes need --ticket and --summary (branch <ticket>-<summary>)")
        branch = branch_name(request.ticket, request.summary, config.fleet_repo.ticket_pattern)
    elif request.ticket and request.summary:
        branch = branch_name(request.ticket, request.summary, config.fleet_repo.ticket_pattern)
    else:
        # Performance sandboxes are never merged; their branch only carries the
        # cluster directory Flux reconciles.
        branch = f"perf-{request.name}"
    for key in request.overrides:
        if not key.isidentifier():
            raise InvalidInputError(f"invalid terraform variable name {key!r} in overrides")
    if request.change:
        for edit in request.change.edits:
            if Path(edit.file).is_absolute() or ".." in Path(edit.file).parts:
                raise InvalidInputError(f"change file {edit.file!r} must be inside the sandbox directory")
    return ValidatedRequest(request=request, branch=branch, ttl=ttl)


def register(config: FleetConfig, inventory: Inventory, validated: ValidatedRequest, *, resume: bool) -> SandboxRecord:
    """Create the sandbox's inventory record, or return the existing one when resuming.

    Raises:
        ConflictError: The sandbox exists and ``resume`` is false.
    """
    request = validated.request
    existing = inventory.find(request.name)
    if existing is not None:
        if resume:
            return existing
        raise ConflictError(
            f"sandbox {request.name!r} already exists (status {existing.status.value}); "
            f"use 'sandbox resume {request.name}'"
        )
    now = utcnow()
    cost = estimate_cost(config, request.source_env, request.overrides)
    return inventory.create(
        SandboxRecord(
            name=request.name,
            kind=request.kind,
            source_env=request.source_env,
            ticket=request.ticket,
            summary=request.summary,
            branch=validated.branch,
            owner=request.owner,
            lifecycle_id=uuid.uuid4().hex[:12],
            status=SandboxStatus.creating,
            created_at=now,
            expires_at=now + validated.ttl,
            keep=request.keep,
            overrides=dict(request.overrides),
            scale=cost.scale,
            hourly_cost=cost.hourly_cost,
            stages=[],
        )
    )
