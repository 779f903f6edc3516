"""The validate stage: removed APIs, fleet policy, then live readiness (see :mod:`sandbox.validation`)."""

from __future__ import annotations

from pathlib import Path

from sandbox import appstacks, validation
from sandbox.context import SandboxContext
from sandbox.models import SandboxKind, StageResult
from sandbox.validation import ValidationFailedError, ValidationInputs, ValidationReport


def scan_paths(ctx: SandboxContext, repo: Path) -> list[Path]:
    """The sandbox's cluster directory and every repo path its Flux Kustomizations build (transitively).

    See :func:`sandbox.validation.plan_scan`; the paths do not overlap.
    """
    plan = validation.plan_scan(
        repo,
        ctx.sandbox_path,
        repo_urls={validation.normalize_git_url(url) for url in ctx.config.fleet_urls},
        max_file_bytes=ctx.config.validation.max_file_bytes,
    )
    return [repo / root for root in plan.roots]


def validation_report(ctx: SandboxContext) -> ValidationReport:
    """Validate the sandbox's branch head and cluster; the report, whatever the verdict.

    Static scan of :func:`scan_paths` at the sandbox's control-plane version and the
    configured Flux version, the fleet policy on the branch, then live readiness (see
    :mod:`sandbox.validation`).
    """
    record = ctx.record
    branch = record.branch or ""
    repo = ctx.on_branch(branch)
    git = ctx.drivers.git
    default = ctx.config.fleet_repo.default_branch
    base = git.merge_base(repo, f"origin/{default}", "HEAD")
    settings = ctx.config.validation
    inputs = ValidationInputs(
        sandbox=record.name,
        sandbox_dir=ctx.sandbox_path,
        branch=branch,
        commit=git.rev_parse(repo, "HEAD"),
        k8s_version=validation.minor_version_of(record.kubernetes_version),
        flux_version=settings.flux_version,
        extra_data=[ctx.config.path(p) for p in settings.extra_deprecation_data],
        repo_urls={validation.normalize_git_url(url) for url in ctx.config.fleet_urls},
        changed_files=git.changed_files(repo, base, "HEAD", "."),
        ready_timeout=ctx.config.drivers.cluster.ready_timeout_seconds,
    )
    if record.kind is SandboxKind.platform:
        # Performance sandboxes run production's own applications; platform sandboxes get the teams' stacks.
        inputs.application_stacks = appstacks.manifests_for(ctx.config, ctx.secrets.application_stack_tokens)
        inputs.application_stack_paths = appstacks.fleet_repo_paths(ctx.config)
    return validation.validate_checkout(repo, ctx.config, inputs, lambda: ctx.cluster(), ctx.progress)


def validate(ctx: SandboxContext) -> StageResult:
    """Static scan for removed APIs, fleet policy, then live readiness of every Flux object.

    Raises:
        ValidationFailedError: Carrying the report; one line per cause in its message.
    """
    report = validation_report(ctx)
    if not report.passed:
        raise ValidationFailedError(report)
    return validation.stage_result(report)
