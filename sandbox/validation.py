"""The validate stage's checks, Prefect-free: static scan, fleet policy, live readiness.

What a sandbox is validated on (:func:`validate_checkout`):

1. **Static scan** of the sandbox's cluster directory *and every path its Flux
   Kustomizations build* (followed transitively: a Kustomization applied from a
   scanned path that points at another path gets that path scanned too; local
   ``resources``/``components`` of kustomize build files that lie outside the scanned
   paths are added as well), at the sandbox's control-plane version and the
   configured Flux version. A path built from a source this repository does not hold
   (another git repository, a Helm chart) is listed as *not scanned* with the reason,
   never dropped silently. Removed API versions fail the validation with one line per
   object; deprecated ones are warnings.
2. **Fleet policy** (:mod:`sandbox.policy`) on the sandbox branch's long-lived
   environments, plus the sandbox's own ``gotk-sync.yaml`` (its own path and branch).
3. **Live readiness**: every Kustomization and HelmRelease ``Ready=True`` for its
   current generation, and every Kustomization that applies the sandbox branch at the
   branch's head commit (so a fix pushed a moment ago is what passes, not the state
   before it), waited for with a watch and a timeout. On timeout, each object not ready
   is named with its condition's reason and message.

A removed API fails fast: the API server refuses those objects, so the cluster cannot
converge and waiting for readiness would only burn the timeout.
"""

from __future__ import annotations

import os.path
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml
from pydantic import BaseModel, Field

from sandbox import appstacks, bounded, deprecations, fleetrepo, paths, policy
from sandbox.config import FleetConfig
from sandbox.drivers.cluster import GITREPOSITORY_API, ClusterDriver, Manifest, ObjectRef
from sandbox.errors import PermanentError
from sandbox.flux import Readiness, not_ready_message, readiness, watch_readiness
from sandbox.manifest_objects import load_mappings
from sandbox.models import SandboxRecord, SandboxStatus, Stage, StageResult, StageStatus
from sandbox.progress import Progress, quiet

#: The directory of the fleet repository an OCI artifact of the platform stack holds
#: (what ``sandbox release`` packages and the simulated registry serves).
PLATFORM_STACK_DIR = "platform"

_KUSTOMIZE_TOOLKIT = "kustomize.toolkit.fluxcd.io/"
_SOURCE_TOOLKIT = "source.toolkit.fluxcd.io/"
_KUSTOMIZE_BUILD_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_KUSTOMIZE_REFERENCE_KEYS = ("resources", "components", "bases")


# -- the report ---------------------------------------------------------------------------------


class NotScanned(BaseModel):
    """A path a Flux Kustomization builds that the static scan could not read."""

    path: str = Field(description="The Kustomization's path, or the build file's reference")
    reason: str


class PolicyFinding(BaseModel):
    """A fleet-policy violation seen while validating, and whether it fails the validation."""

    file: str
    rule: str
    message: str
    blocking: bool = Field(description="The sandbox branch changed this file (else inherited from the default branch)")

    def line(self) -> str:
        """``<file>: <rule>: <message>``."""
        return f"{self.file}: {self.rule}: {self.message}"


class ObjectReadiness(BaseModel):
    """One Flux object's readiness."""

    object: str = Field(description="Kind/namespace/name")
    ready: bool
    reason: str
    message: str

    def line(self) -> str:
        """``Kind/ns/name: Reason: message``."""
        return f"{self.object}: {self.reason or 'NoStatus'}: {self.message or 'no Ready condition reported yet'}"


class ValidationReport(BaseModel):
    """Everything one validation found; plain data (a checkpoint, an artifact, JSON output)."""

    sandbox: str
    branch: str
    commit: str | None = None
    targets: dict[str, str] = Field(default_factory=dict, description="Versions scanned at (kubernetes, flux)")
    scanned: list[str] = Field(default_factory=list, description="Repository paths scanned")
    not_scanned: list[NotScanned] = Field(default_factory=list)
    findings: list[dict[str, Any]] = Field(default_factory=list, description="Deprecated/removed API findings")
    skipped: list[dict[str, str]] = Field(default_factory=list, description="Files the scanner could not read")
    policy: list[PolicyFinding] = Field(default_factory=list)
    readiness: list[ObjectReadiness] = Field(default_factory=list)
    readiness_checked: bool = False
    readiness_note: str = ""
    application_stacks: list[str] = Field(
        default_factory=list, description="Application stacks deployed onto the sandbox and waited for"
    )
    failures: list[str] = Field(default_factory=list, description="One line per cause of failure")

    @property
    def passed(self) -> bool:
        """No failure."""
        return not self.failures

    @property
    def removed(self) -> list[dict[str, Any]]:
        """Findings of removed APIs."""
        return [f for f in self.findings if f.get("removed")]

    def summary(self) -> str:
        """One line."""
        targets = targets_label(self.targets)
        ready = sum(1 for r in self.readiness if r.ready)
        live = (
            f"{ready}/{len(self.readiness)} Flux objects Ready" if self.readiness_checked else "readiness not checked"
        )
        warnings = len(self.findings) - len(self.removed)
        verdict = "passed" if self.passed else f"FAILED ({len(self.failures)} cause(s))"
        return (
            f"validation of {self.sandbox} {verdict}: {len(self.removed)} removed and {warnings} deprecated API(s) "
            f"at {targets}; {sum(1 for p in self.policy if p.blocking)} blocking policy violation(s); {live}"
        )

    def rows(self) -> list[dict[str, str]]:
        """The report as table rows (``result``, ``check``, ``subject``, ``detail``): the artifact and the CLI."""
        rows: list[dict[str, str]] = []
        for finding in self.findings:
            removed = bool(finding.get("removed"))
            rows.append(
                {
                    "result": "FAIL" if removed else "WARN",
                    "check": "removed-api" if removed else "deprecated-api",
                    "subject": f"{finding['file']}: {_object_name(finding)}",
                    "detail": _finding_detail(finding),
                }
            )
        for item in self.skipped:
            rows.append({"result": "NOTE", "check": "not-read", "subject": item["file"], "detail": item["reason"]})
        for unscanned in self.not_scanned:
            rows.append(
                {"result": "NOTE", "check": "not-scanned", "subject": unscanned.path, "detail": unscanned.reason}
            )
        for violation in self.policy:
            rows.append(
                {
                    "result": "FAIL" if violation.blocking else "WARN",
                    "check": f"policy/{violation.rule}",
                    "subject": violation.file,
                    "detail": violation.message
                    + ("" if violation.blocking else " (inherited from the default branch)"),
                }
            )
        if self.readiness_checked:
            for state in self.readiness:
                rows.append(
                    {
                        "result": "OK" if state.ready else "FAIL",
                        "check": "ready" if state.ready else "not-ready",
                        "subject": state.object,
                        "detail": f"{state.reason or 'NoStatus'}: {state.message or 'no Ready condition reported yet'}",
                    }
                )
        if self.readiness_note:
            rows.append(
                {
                    "result": "FAIL" if self.readiness_checked else "SKIP",
                    "check": "readiness",
                    "subject": self.sandbox,
                    "detail": self.readiness_note,
                }
            )
        return rows

    def text_lines(self) -> list[str]:
        """The report for a terminal: a header, one line per row, the failures, the verdict."""
        lines = [
            f"sandbox {self.sandbox}: branch {self.branch}" + (f" at {self.commit[:12]}" if self.commit else ""),
            f"scanned: {', '.join(self.scanned) or 'nothing'}",
        ]
        if self.application_stacks:
            lines.append(f"application stacks deployed: {', '.join(self.application_stacks)}")
        rows = self.rows()
        if rows:
            width = max(len(r["check"]) for r in rows)
            for row in rows:
                lines.append(f"  {row['result']:<4}  {row['check']:<{width}}  {row['subject']}: {row['detail']}")
        lines.append(self.summary())
        return lines

    def failure_message(self) -> str:
        """The failures on one line (for an error)."""
        return f"validation of {self.sandbox} failed: " + "; ".join(self.failures)


class ValidationFailedError(PermanentError):
    """The sandbox failed validation (removed APIs, blocking policy violations, objects not Ready).

    Carries the whole report, so the task can publish it and the CLI print it.
    """

    def __init__(self, report: ValidationReport | dict[str, Any]) -> None:
        self.report = report if isinstance(report, ValidationReport) else ValidationReport.model_validate(report)
        super().__init__(self.report.failure_message())

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable with its report (Prefect persists a failed run's exception).
        return (type(self), (self.report.model_dump(mode="json"),))


def _component_label(component: str) -> str:
    return {"kubernetes": "Kubernetes", "flux": "Flux"}.get(component, component)


def targets_label(targets: Mapping[str, str]) -> str:
    """``Kubernetes 1.31, Flux 2.9`` (Kubernetes first, then Flux, then any other component)."""
    order = {"kubernetes": 0, "flux": 1}
    ranked = sorted(targets.items(), key=lambda item: (order.get(item[0], 2), item[0]))
    return ", ".join(f"{_component_label(k)} {v}" for k, v in ranked)


def _object_name(finding: Mapping[str, Any]) -> str:
    name = finding.get("name") or "(unnamed)"
    namespace = finding.get("namespace")
    return f"{finding['kind']} {namespace}/{name}" if namespace else f"{finding['kind']} {name}"


def _finding_detail(finding: Mapping[str, Any]) -> str:
    component = _component_label(str(finding.get("component") or ""))
    where = f"{component} " if component else ""
    replacement = finding.get("replacement")
    advice = f"use {replacement}" if replacement else "no replacement"
    if finding.get("removed"):
        return f"uses {finding['apiVersion']}, removed in {where}{finding['removed_in']} ({advice})"
    return f"uses {finding['apiVersion']}, deprecated in {where}{finding['deprecated_in']} ({advice})"


def removed_line(finding: Mapping[str, Any]) -> str:
    """One line for a removed-API finding: file, object, API version, release, replacement."""
    return f"{finding['file']}: {_object_name(finding)} {_finding_detail(finding)}"


# -- what to scan ---------------------------------------------------------------------------------


def normalize_git_url(url: str, base: Path | None = None) -> str:
    """A comparable form of a git URL: ``host/path`` without ``.git``; local paths resolved.

    ``ssh://git@github.com/org/fleet``, ``git@github.com:org/fleet.git`` and
    ``https://github.com/org/fleet`` are the same repository.
    """
    text = url.strip()
    if text.startswith("file://"):
        local = Path(unquote(urlparse(text).path))
    elif "://" in text:
        parsed = urlparse(text)
        return f"{(parsed.hostname or '').lower()}/{parsed.path.strip('/').removesuffix('.git')}"
    elif re.match(r"^[\w.-]+@[\w.-]+:", text):
        host, _, path = text.split("@", 1)[1].partition(":")
        return f"{host.lower()}/{path.strip('/').removesuffix('.git')}"
    else:
        local = Path(text).expanduser()
        if not local.is_absolute() and base is not None:
            local = base / local
    return "file:" + os.path.normpath(str(local.resolve())).removesuffix(".git")


@dataclass
class ScanPlan:
    """The repository paths to scan and those that cannot be."""

    roots: list[str] = field(default_factory=list)
    not_scanned: list[NotScanned] = field(default_factory=list)


def _load(path: Path, max_bytes: int = bounded.DEFAULT_MAX_FILE_BYTES) -> list[dict[str, Any]]:
    try:
        text = bounded.read_bounded(path, max_bytes).decode("utf-8")
        return load_mappings(text)
    except (OSError, bounded.FileRefusedError, UnicodeDecodeError, yaml.YAMLError):
        return []  # the scanner lists the file as skipped, with its reason


def _key(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(kind, namespace, name)`` of a Flux source."""
    meta = doc.get("metadata") or {}
    return (str(doc.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")))


def _inside(path: str, roots: Iterable[str]) -> bool:
    return any(root == "" or path == root or path.startswith(root + "/") for root in roots)


def plan_scan(
    repo: Path, start: str, *, repo_urls: Iterable[str], max_file_bytes: int = bounded.DEFAULT_MAX_FILE_BYTES
) -> ScanPlan:
    """The repository paths a sandbox's Flux objects build, starting from its cluster directory.

    Args:
        repo: The checkout of the sandbox branch.
        start: The sandbox's cluster directory (``clusters/<name>``).
        repo_urls: Normalized URLs (:func:`normalize_git_url`) of this fleet repository
            (the URL the start directory's ``gotk-sync.yaml`` pulls is added).

    Returns:
        Non-overlapping repository paths (files or directories) and what was not scanned.

    Raises:
        OutsideRepositoryError: A path read, or a link below one, leads outside the
            repository (see :mod:`sandbox.paths`).
        max_file_bytes: Larger files are not read (the scan names them as skipped).
    """
    repo = repo.resolve()
    urls = set(repo_urls)
    # The cluster's own bootstrap source pulls this repository by definition.
    for doc in _load(paths.inside(repo, f"{_normal(start)}/{fleetrepo.SYNC_FILE}"), max_file_bytes):
        if doc.get("kind") == "GitRepository" and str(doc.get("apiVersion", "")).startswith(_SOURCE_TOOLKIT):
            urls.add(normalize_git_url(str((doc.get("spec") or {}).get("url") or "")))
    roots: list[str] = []
    not_scanned: dict[str, NotScanned] = {}
    sources: dict[tuple[str, str, str], Manifest] = {}
    kustomizations: list[Manifest] = []
    build_refs: list[tuple[str, str]] = []  # (reference as written, repo path)
    seen_files: set[Path] = set()
    queue = [_normal(start)]

    def add_root(rel: str) -> None:
        if not _inside(rel, roots):
            roots[:] = [r for r in roots if not _inside(r, [rel])]
            roots.append(rel)
            queue.append(rel)

    def read(rel: str) -> None:
        target = paths.inside(repo, rel or ".")
        files = [target] if target.is_file() else list(paths.entries(repo, rel or ".").values())
        for path in files:
            if path in seen_files or path.suffix not in fleetrepo.YAML_SUFFIXES or not path.is_file():
                continue
            seen_files.add(path)
            for doc in _load(path, max_file_bytes):
                api = str(doc.get("apiVersion", ""))
                if api.startswith(_SOURCE_TOOLKIT):
                    sources[_key(doc)] = doc
                elif api.startswith(_KUSTOMIZE_TOOLKIT) and doc.get("kind") == "Kustomization":
                    kustomizations.append(doc)
                elif path.name in _KUSTOMIZE_BUILD_FILES or api.startswith("kustomize.config.k8s.io/"):
                    for key in _KUSTOMIZE_REFERENCE_KEYS:
                        for item in doc.get(key) or []:
                            if not isinstance(item, str):
                                continue
                            written = f"{path.relative_to(repo).as_posix()}: {item}"
                            if "://" in item or item.startswith(("github.com/", "git@")):
                                not_scanned.setdefault(
                                    written, NotScanned(path=written, reason="a remote kustomize resource")
                                )
                            else:
                                build_refs.append((written, _join(path.parent, item, repo)))

    roots.append(queue[0])
    waiting: list[Manifest] = []  # Kustomizations whose source is not read yet
    while queue:
        while queue:
            read(queue.pop(0))
        waiting, kustomizations[:] = [*waiting, *kustomizations], []
        unresolved = []
        for doc in waiting:
            resolved = _resolve_kustomization(doc, sources, urls, repo)
            if resolved is None:
                unresolved.append(doc)
            elif isinstance(resolved, NotScanned):
                not_scanned.setdefault(resolved.path, resolved)
            elif not _inside(resolved, roots):
                add_root(resolved)
        waiting = unresolved
        for written, rel in build_refs:
            if rel == ".." or rel.startswith("../"):
                not_scanned.setdefault(written, NotScanned(path=written, reason="outside the fleet repository"))
            elif (repo / rel).exists() and not _inside(rel, roots):
                add_root(rel)
        build_refs.clear()
    for doc in waiting:  # no scanned path declares their source
        label, (kind, namespace, name) = _label(doc), _source_key(doc)
        not_scanned.setdefault(
            label, NotScanned(path=label, reason=f"its source {kind}/{namespace}/{name} is not declared here")
        )
    return ScanPlan(roots=sorted(roots), not_scanned=sorted(not_scanned.values(), key=lambda n: n.path))


def _normal(path: str) -> str:
    cleaned = os.path.normpath(str(path).strip() or ".").replace("\\", "/")
    return "" if cleaned == "." else cleaned.lstrip("/")


def _join(directory: Path, reference: str, repo: Path) -> str:
    joined = os.path.normpath(os.path.join(directory, reference))
    return os.path.relpath(joined, repo).replace("\\", "/")


def _source_key(doc: Manifest) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    ref = (doc.get("spec") or {}).get("sourceRef") or {}
    return (
        str(ref.get("kind", "")),
        str(ref.get("namespace") or meta.get("namespace") or ""),
        str(ref.get("name", "")),
    )


def _label(doc: Manifest) -> str:
    meta = doc.get("metadata") or {}
    path = _normal(str((doc.get("spec") or {}).get("path") or ""))
    return f"Kustomization {meta.get('namespace', '')}/{meta.get('name', '')} ./{path}"


def _resolve_kustomization(
    doc: Manifest, sources: Mapping[tuple[str, str, str], Manifest], urls: set[str], repo: Path
) -> str | NotScanned | None:
    """The repository path a Flux Kustomization builds, why it cannot be scanned, or None (source not read yet)."""
    source_key = _source_key(doc)
    kind = source_key[0]
    path = _normal(str((doc.get("spec") or {}).get("path") or ""))
    label = _label(doc)
    source = sources.get(source_key)
    if source is None:
        return None
    if kind == "GitRepository":
        url = str((source.get("spec") or {}).get("url") or "")
        if normalize_git_url(url) not in urls:
            return NotScanned(path=label, reason=f"built from another git repository ({url})")
        base = ""
    elif kind == "OCIRepository":
        base = PLATFORM_STACK_DIR  # the platform stack's artifact: as this branch has it
    else:
        return NotScanned(path=label, reason=f"built from a {kind}, not from the fleet repository")
    rel = _normal(f"{base}/{path}" if base else path)
    if rel == ".." or rel.startswith("../"):
        return NotScanned(path=label, reason="outside the fleet repository")
    if not (repo / rel).is_dir():
        return NotScanned(path=label, reason=f"{rel or '.'}/ does not exist on this branch")
    return rel


def scan_repo_paths(
    repo: Path,
    roots: Iterable[str],
    *,
    k8s_version: str | None,
    flux_version: str | None,
    extra_data: Iterable[Path] = (),
    max_file_bytes: int = bounded.DEFAULT_MAX_FILE_BYTES,
) -> tuple[list[dict[str, Any]], list[dict[str, str]], dict[str, str]]:
    """Scan repository paths; findings and skipped files with repository-relative file names.

    Returns:
        ``(findings, skipped, targets)``; each finding also names its ``component``.

    Raises:
        OutsideRepositoryError: A root, or a link below one, leads outside the repository.
    """
    extra = list(extra_data)
    data = deprecations.load_data(extra)
    findings: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    targets: dict[str, str] = {}
    base = repo.resolve()
    for root in roots:
        report = deprecations.scan_path(
            paths.inside(base, root or "."),
            k8s_version=k8s_version,
            flux_version=flux_version,
            extra_data=extra,
            within=base,
            max_file_bytes=max_file_bytes,
        )
        targets = {k: v for k, v in report.targets.items() if k in ("kubernetes", "flux")} or targets
        for finding in report.findings:
            item = finding.model_dump()
            item["file"] = _relative(item["file"], base)
            entry = data.lookup(finding.apiVersion, finding.kind)
            item["component"] = entry.component if entry else None
            findings.append(item)
        for skip in report.skipped:
            skipped.append({"file": _relative(skip.file, base), "reason": skip.reason})
    return findings, skipped, targets


def _relative(file: str, base: Path) -> str:
    path = Path(file)
    try:
        return path.resolve().relative_to(base).as_posix() if path.is_absolute() else path.as_posix()
    except ValueError:
        return path.as_posix()


# -- policy on the sandbox branch -----------------------------------------------------------------


def policy_on_branch(
    repo: Path,
    config: FleetConfig,
    *,
    sandbox_dir: str,
    branch: str,
    changed: Iterable[str],
) -> list[PolicyFinding]:
    """The fleet policy on a sandbox branch's checkout.

    The long-lived environments' rules apply (the branch will be merged into them);
    the lingering-sandbox rule does not (the sandbox's directory belongs on its
    branch); the sandbox's own ``gotk-sync.yaml`` must point at its own path and
    branch. A violation *blocks* (fails the validation) only when the sandbox branch
    changed the file: a violation the branch merely inherited from the default branch
    is not the sandbox's doing, and failing every sandbox for it would block all work
    until someone fixes the default branch, so it is reported as a warning.
    """
    changed_files = set(changed)
    report = policy.check_tree(
        repo,
        policy.environments_from_config(config),
        default_branch=config.fleet_repo.default_branch,
        default_branch_clusters=None,
    )
    violations = [*report.violations, *policy.check_gotk_sync(repo, sandbox_dir, branch)]

    def blocking(file: str) -> bool:
        if file.endswith("/"):
            return any(c.startswith(file) for c in changed_files)
        return file in changed_files

    return [PolicyFinding(file=v.file, rule=v.rule, message=v.message, blocking=blocking(v.file)) for v in violations]


# -- readiness at the branch's head ----------------------------------------------------------------


def at_branch_head(branch: str, head: str) -> Callable[[Manifest], Readiness]:
    """Readiness that also asks a Kustomization applying ``branch`` to have applied ``head``.

    Flux writes ``status.lastAppliedRevision`` as ``<branch>@sha1:<commit>``; a
    Kustomization Ready at an older commit of the branch is still converging.
    """
    prefixes = (f"{branch}@", f"refs/heads/{branch}@")

    def check(obj: Manifest) -> Readiness:
        state = readiness(obj)
        if not state.ready or obj.get("kind") != "Kustomization":
            return state
        applied = str((obj.get("status") or {}).get("lastAppliedRevision") or "")
        if applied.startswith(prefixes) and not applied.endswith(head):
            return Readiness(state.ref, False, "Progressing", f"applied {applied}; waiting for {branch}@sha1:{head}")
        return state

    return check


def request_reconcile(cluster: ClusterDriver, branch: str, now: datetime | None = None) -> list[str]:
    """Ask every GitRepository tracking ``branch`` to fetch now (as ``flux reconcile source git`` does).

    Returns:
        The sources annotated.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    done = []
    for source in cluster.list(GITREPOSITORY_API, "GitRepository"):
        ref = (source.get("spec") or {}).get("ref") or {}
        if ref.get("branch") == branch and not any(ref.get(k) for k in ("commit", "name", "semver", "tag")):
            target = ObjectRef.of(source)
            cluster.merge_patch(target, {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}})
            done.append(str(target))
    return done


# -- the whole validation ---------------------------------------------------------------------------


@dataclass
class ValidationInputs:
    """What :func:`validate_checkout` needs to know about the sandbox."""

    sandbox: str
    sandbox_dir: str
    branch: str
    commit: str | None
    k8s_version: str | None
    flux_version: str | None
    extra_data: list[Path]
    repo_urls: set[str]
    changed_files: list[str]
    ready_timeout: float
    #: Flux objects of the application stacks to deploy before readiness (see :mod:`sandbox.appstacks`).
    application_stacks: list[Manifest] = field(default_factory=list)
    #: Fleet-repository paths of those stacks, scanned with the sandbox's own paths.
    application_stack_paths: list[str] = field(default_factory=list)


def validate_checkout(
    repo: Path,
    config: FleetConfig,
    inputs: ValidationInputs,
    cluster: Callable[[], ClusterDriver],
    progress: Progress = quiet,
) -> ValidationReport:
    """Validate a sandbox whose branch is checked out in ``repo``; never raises for what it finds.

    Args:
        repo: Checkout of the sandbox branch at its head.
        config: The fleet configuration.
        inputs: Versions, branch, URLs and changed files.
        cluster: Connects to the sandbox's cluster (called only when readiness is checked).
        progress: Told what happens.

    Returns:
        The report; ``report.passed`` tells the verdict.
    """
    report = ValidationReport(sandbox=inputs.sandbox, branch=inputs.branch, commit=inputs.commit)
    limit = config.validation.max_file_bytes
    plan = plan_scan(repo, inputs.sandbox_dir, repo_urls=inputs.repo_urls, max_file_bytes=limit)
    roots = list(plan.roots)
    for path in inputs.application_stack_paths:
        if (repo / path).is_dir() and not _inside(path, roots):
            roots = sorted([root for root in roots if not _inside(root, [path])] + [path])
    report.scanned, report.not_scanned = roots, plan.not_scanned
    report.findings, report.skipped, report.targets = scan_repo_paths(
        repo,
        roots,
        k8s_version=inputs.k8s_version,
        flux_version=inputs.flux_version,
        extra_data=inputs.extra_data,
        max_file_bytes=limit,
    )
    removed = [removed_line(f) for f in report.removed]
    report.failures.extend(removed)
    targets = targets_label(report.targets)
    progress(
        f"static scan of {', '.join(roots)} at {targets}: {len(report.findings)} finding(s), {len(removed)} removed"
    )
    for line in removed:
        progress(f"removed API: {line}")
    report.policy = policy_on_branch(
        repo, config, sandbox_dir=inputs.sandbox_dir, branch=inputs.branch, changed=inputs.changed_files
    )
    for violation in report.policy:
        progress(f"policy {'violation' if violation.blocking else 'warning'}: {violation.line()}")
        if violation.blocking:
            report.failures.append(violation.line())
    if removed:
        report.readiness_note = (
            "not checked: the API server refuses removed API versions, so the cluster cannot converge"
        )
        return report
    connected = cluster()
    if inputs.application_stacks:
        report.application_stacks = appstacks.deploy(connected, inputs.application_stacks, progress)
    asked = request_reconcile(connected, inputs.branch) if inputs.commit else []
    if asked:
        progress(f"asked {', '.join(asked)} to fetch {inputs.branch} now")
    check = at_branch_head(inputs.branch, inputs.commit) if inputs.commit else readiness
    ok, states = watch_readiness(connected, inputs.ready_timeout, progress, check=check)
    report.readiness_checked = True
    report.readiness = [
        ObjectReadiness(object=str(s.ref), ready=s.ready, reason=s.reason, message=s.message) for s in states
    ]
    if not ok:
        if not states:
            report.readiness_note = not_ready_message(states, inputs.ready_timeout)
            report.failures.append(report.readiness_note)
        # A stalled object ends the wait before the timeout.
        waited = "when the wait ended" if any(s.stalled for s in states) else f"after {inputs.ready_timeout:g}s"
        for state in states:
            if state.stalled:
                report.failures.append(f"stalled (Flux will not retry until it changes): {state.line()}")
            elif not state.ready:
                report.failures.append(f"not Ready {waited}: {state.line()}")
    return report


def stage_result(report: ValidationReport) -> StageResult:
    """The validate stage's result for a passed report (``details.passed`` gates promotion)."""
    return StageResult(
        stage=Stage.validate,
        summary=report.summary(),
        details={"passed": report.passed, "report": report.model_dump(mode="json")},
    )


#: Statuses in which a sandbox has no cluster left to validate.
_GONE = (SandboxStatus.tearing_down, SandboxStatus.teardown_blocked, SandboxStatus.destroyed)


def ensure_validatable(record: SandboxRecord) -> None:
    """Refuse to validate a sandbox that has no bootstrapped cluster.

    Raises:
        PermanentError: The sandbox is torn down (or being torn down), or was never bootstrapped.
    """
    if record.status in _GONE:
        raise PermanentError(f"sandbox {record.name} is {record.status.value}: there is no cluster to validate")
    bootstrapped = any(s.name is Stage.bootstrap and s.status is StageStatus.completed for s in record.stages)
    if not bootstrapped or not record.cluster_endpoint:
        raise PermanentError(
            f"sandbox {record.name} has not been bootstrapped yet; run 'sandbox resume {record.name}' first"
        )
