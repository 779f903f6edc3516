"""Static scan for deprecated and removed Kubernetes and Flux API versions (what pluto/kubent do).

:func:`scan_path` reads every YAML (``.yaml``/``.yml``) and JSON (``.json``) file under a
path, splits multi-document YAML, expands ``kind: List`` (and any ``*List`` with ``items``)
keeping the document index of the list, and reports each object whose ``apiVersion`` +
``kind`` is deprecated or removed at the target versions according to
``sandbox/data/api-deprecations.yaml`` (plus any user data files in the same schema).

Target versions
---------------
* ``k8s_version`` / ``flux_version`` accept ``X.Y``, ``vX.Y`` or ``X.Y.Z`` (the patch is
  ignored); anything else raises :class:`InvalidVersionError`.
* Like pluto, a scan always has a target: when a version is not given, the target of
  that component is the **newest release the data cover** for it (the data file's
  ``covers``, else its largest ``deprecated_in``/``removed_in``), so everything deprecated
  or removed so far is reported. With the bundled data that is Kubernetes 1.36 and Flux
  2.9. Components other than ``kubernetes`` and ``flux`` (user data files may add e.g.
  ``cert-manager``) are always checked at their newest known release.
* A target newer than the data cover is scanned like any other (as pluto does: its
  findings decide the exit code), but the report says the data end there
  (:attr:`ScanReport.beyond_data`): "no findings" at such a target means only that
  nothing the data know of is deprecated.
* An object is *deprecated* at target ``T`` when ``deprecated_in <= T`` and *removed*
  when ``removed_in <= T``; a removed object is also deprecated. Only objects that are at
  least deprecated are findings.

What is read, skipped or ignored
--------------------------------
* Files other than ``.yaml``/``.yml``/``.json`` found in a directory are not scanned and not
  reported (one named as the path is reported skipped). ``.git`` directories are not walked.
* Files that cannot be scanned are listed in ``ScanReport.skipped`` with a one-line
  reason, never dropped silently: Go/Helm templates (``{{ }}`` that break the YAML, sit in
  a Helm chart's ``templates/`` directory or template ``apiVersion``/``kind``), invalid
  YAML or JSON, unreadable or non-UTF-8 files. A file that contains ``{{`` but parses as
  plain YAML outside a chart (a PrometheusRule's ``{{ $value }}``) is scanned normally.
* Kustomize build files are not cluster objects: documents of a ``kustomization.yaml``
  / ``kustomization.yml`` and any object of the ``kustomize.config.k8s.io`` group are never
  findings. Documents without a string ``apiVersion`` and ``kind`` (Helm ``values.yaml``,
  CI configs) are ignored.

The bundled data is loaded once per process (user files are read per scan); YAML is read
with libyaml's ``CSafeLoader`` event stream when available, taking only the fields the
scan needs, so a tree of ten thousand manifests scans in one to two seconds.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sandbox import bounded, paths
from sandbox.deprecation_report import FLUX, KUBERNETES, Finding, ScanReport, SkippedFile
from sandbox.errors import InvalidInputError
from sandbox.manifest_objects import YAML_LOADER, ManifestObject, json_objects, yaml_objects, yaml_problem

__all__ = [
    "DATA_FILE",
    "ApiDeprecation",
    "DeprecationData",
    "DeprecationDataError",
    "Finding",
    "InvalidVersionError",
    "MinorVersion",
    "ScanPathError",
    "ScanReport",
    "SkippedFile",
    "load_data",
    "parse_version",
    "scan_path",
]

DATA_FILE: Final = Path(__file__).resolve().parent / "data" / "api-deprecations.yaml"


YAML_SUFFIXES: Final = frozenset({".yaml", ".yml"})
JSON_SUFFIXES: Final = frozenset({".json"})
KUSTOMIZE_BUILD_FILES: Final = frozenset({"kustomization.yaml", "kustomization.yml"})
KUSTOMIZE_CONFIG_GROUP: Final = "kustomize.config.k8s.io"
SKIPPED_DIRECTORIES: Final = frozenset({".git"})

_VERSION_RE: Final = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?")  # fullmatch
_COMPONENT_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]*")
_TEMPLATE_MARK: Final = "{{"


class InvalidVersionError(InvalidInputError):
    """A target or data version is not ``X.Y``, ``vX.Y`` or ``X.Y.Z``."""


class DeprecationDataError(InvalidInputError):
    """A deprecation data file is missing, not YAML, or does not follow the schema."""


class ScanPathError(InvalidInputError):
    """The path to scan does not exist or cannot be read."""


@dataclass(frozen=True, order=True)
class MinorVersion:
    """A release as major.minor; patch levels never change which APIs are served."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


def parse_version(text: str, *, what: str = "version") -> MinorVersion:
    """Parse ``X.Y``, ``vX.Y`` or ``X.Y.Z`` (patch ignored) into a :class:`MinorVersion`.

    Args:
        text: The version as typed by a user or written in a data file.
        what: What the version is, for the error message (``"Kubernetes version"``).

    Returns:
        The major and minor numbers.

    Raises:
        InvalidVersionError: ``text`` is not such a version (one-line message).
    """
    match = _VERSION_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidVersionError(f"invalid {what} {str(text)[:40]!r}: expected X.Y, vX.Y or X.Y.Z")
    return MinorVersion(int(match.group(1)), int(match.group(2)))


class ApiDeprecation(BaseModel):
    """One entry of a deprecation data file: an apiVersion + kind and its lifecycle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    apiVersion: str  # noqa: N815 - the manifest's own field name
    kind: str
    deprecated_in: str | None = None
    removed_in: str | None = None
    replacement: str | None = None
    replacement_available_in: str | None = None
    component: str
    note: str | None = None
    source: str | None = Field(default=None, description="Where the row's numbers come from (a URL)")

    @field_validator("apiVersion", "kind")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip() or value != value.strip():
            raise ValueError("must be a non-empty string without surrounding spaces")
        return value

    @field_validator("deprecated_in", "removed_in", "replacement_available_in", mode="before")
    @classmethod
    def _quoted_version(cls, value: object) -> object:
        # YAML reads an unquoted 1.20 as the float 1.2: insist on strings so that cannot happen.
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f'must be a quoted string like "1.22", got {value!r}')
        try:
            return str(parse_version(value))
        except InvalidVersionError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("component")
    @classmethod
    def _component_name(cls, value: str) -> str:
        if not _COMPONENT_RE.fullmatch(value):
            raise ValueError("must be a lowercase name such as kubernetes or flux")
        return value

    @property
    def deprecated_version(self) -> MinorVersion | None:
        """``deprecated_in`` parsed, or None."""
        return parse_version(self.deprecated_in) if self.deprecated_in else None

    @property
    def removed_version(self) -> MinorVersion | None:
        """``removed_in`` parsed, or None."""
        return parse_version(self.removed_in) if self.removed_in else None


class _DataFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    covers: dict[str, str] = Field(
        default_factory=dict, description="Component -> the newest release the data were checked against"
    )
    sources: list[str] = Field(default_factory=list)
    entries: list[ApiDeprecation] = Field(default_factory=list)

    @field_validator("covers", mode="before")
    @classmethod
    def _covered_versions(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        covered = {}
        for component, version in value.items():
            if not isinstance(version, str):
                raise ValueError(f'{component}: must be a quoted string like "1.36", got {version!r}')
            try:
                covered[component] = str(parse_version(version))
            except InvalidVersionError as exc:
                raise ValueError(f"{component}: {exc}") from None
        return covered


@dataclass(frozen=True)
class _Rule:
    """An entry with its versions parsed once, for the hot loop."""

    entry: ApiDeprecation
    deprecated: MinorVersion | None
    removed: MinorVersion | None


class DeprecationData:
    """The merged deprecation entries of the bundled file and any user files.

    Later files override earlier ones for the same apiVersion + kind, so a user file can
    correct or extend the bundled data.
    """

    def __init__(
        self,
        entries: Iterable[ApiDeprecation],
        sources: Iterable[str] = (),
        covers: Mapping[str, MinorVersion] | None = None,
    ) -> None:
        self._rules: dict[tuple[str, str], _Rule] = {}
        for entry in entries:
            self._rules[(entry.apiVersion, entry.kind)] = _Rule(entry, entry.deprecated_version, entry.removed_version)
        self.sources: tuple[str, ...] = tuple(dict.fromkeys(sources))
        self.covers: dict[str, MinorVersion] = dict(covers or {})

    @property
    def entries(self) -> list[ApiDeprecation]:
        """Every entry, in file order."""
        return [rule.entry for rule in self._rules.values()]

    @property
    def components(self) -> list[str]:
        """The component names the entries belong to, sorted."""
        return sorted({rule.entry.component for rule in self._rules.values()})

    def lookup(self, api_version: str, kind: str) -> ApiDeprecation | None:
        """The entry for an apiVersion + kind, or None if it is not deprecated anywhere."""
        rule = self._rules.get((api_version, kind))
        return rule.entry if rule else None

    def newest_version(self, component: str) -> MinorVersion | None:
        """The newest release the data mentions for ``component`` (None if it has no entry)."""
        versions = [
            version
            for rule in self._rules.values()
            if rule.entry.component == component
            for version in (rule.deprecated, rule.removed)
            if version is not None
        ]
        return max(versions) if versions else None

    def covered_version(self, component: str) -> MinorVersion | None:
        """The newest release of ``component`` the data were checked against.

        The data file's ``covers`` when it names the component, else the newest release
        its entries mention (None if it knows nothing of the component).
        """
        return self.covers.get(component) or self.newest_version(component)

    def merged_with(self, other: DeprecationData) -> DeprecationData:
        """A new data set: these entries overridden and extended by ``other``'s."""
        return DeprecationData(
            [*self.entries, *other.entries], [*self.sources, *other.sources], {**self.covers, **other.covers}
        )

    def rule_for(self, api_version: str, kind: str) -> _Rule | None:
        """The entry with parsed versions (internal fast path of the scanner)."""
        return self._rules.get((api_version, kind))


def _read_data_file(path: Path) -> DeprecationData:
    try:
        text = bounded.read_bounded(path, bounded.DEFAULT_MAX_FILE_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise DeprecationDataError(f"deprecation data file not found: {path}") from None
    except bounded.FileRefusedError as exc:
        raise DeprecationDataError(f"cannot read deprecation data file {path}: {exc.reason}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise DeprecationDataError(f"cannot read deprecation data file {path}: {reason}") from None
    try:
        raw = yaml.load(text, Loader=YAML_LOADER)  # noqa: S506 - a safe loader (CSafeLoader/SafeLoader)
    except yaml.YAMLError as exc:
        raise DeprecationDataError(f"deprecation data file {path} is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise DeprecationDataError(f"deprecation data file {path} must be a mapping with 'sources' and 'entries'")
    try:
        parsed = _DataFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise DeprecationDataError(f"deprecation data file {path}: {where}: {message}") from None
    for index, entry in enumerate(parsed.entries):
        deprecated, removed = entry.deprecated_version, entry.removed_version
        if deprecated is None and removed is None:
            raise DeprecationDataError(
                f"deprecation data file {path}: entries.{index}: needs deprecated_in or removed_in"
            )
        if deprecated is not None and removed is not None and removed < deprecated:
            raise DeprecationDataError(
                f"deprecation data file {path}: entries.{index}: "
                f"removed_in {removed} is before deprecated_in {deprecated}"
            )
    covers = {component: parse_version(version) for component, version in parsed.covers.items()}
    return DeprecationData(parsed.entries, parsed.sources, covers)


@functools.lru_cache(maxsize=1)
def _bundled_data() -> DeprecationData:
    return _read_data_file(DATA_FILE)


def load_data(extra_data: Sequence[Path] = ()) -> DeprecationData:
    """The bundled deprecation data, overridden and extended by ``extra_data`` files.

    The bundled file is read once per process; user files are read on every call.

    Raises:
        DeprecationDataError: A file is missing, not YAML, or breaks the schema.
    """
    data = _bundled_data()
    for path in extra_data:
        data = data.merged_with(_read_data_file(Path(path)))
    return data


def scan_path(
    path: Path,
    k8s_version: str | None = None,
    flux_version: str | None = None,
    extra_data: Sequence[Path] = (),
    within: Path | None = None,
    max_file_bytes: int = bounded.DEFAULT_MAX_FILE_BYTES,
) -> ScanReport:
    """Scan a file or a directory tree for deprecated and removed API versions.

    Args:
        path: A YAML/JSON file or a directory (walked recursively, ``.git`` excluded).
        k8s_version: Target Kubernetes version (``X.Y``, ``vX.Y``, ``X.Y.Z``); None means
            the newest Kubernetes release in the data.
        flux_version: Target Flux version, same forms; None means the newest Flux release
            in the data.
        extra_data: User deprecation data files in the bundled file's schema; their
            entries override bundled ones for the same apiVersion + kind.
        within: The directory every file read must stay in (a fleet checkout, or the
            scanned directory): a symbolic link leading out of it is refused, never
            followed. ``None``: ``path`` itself when it is a directory.
        max_file_bytes: The largest file read; larger files, and names that are not
            regular files (FIFOs, devices), are skipped with the reason.

    Returns:
        The findings (file order, then document order) and the skipped files.

    Raises:
        InvalidVersionError: A target version is malformed.
        DeprecationDataError: A data file is unusable.
        ScanPathError: ``path`` does not exist or cannot be read.
        OutsideRepositoryError: ``path`` or a link below it leads outside ``within``.
    """
    scanner = _scanner(k8s_version, flux_version, extra_data, max_file_bytes)
    root = Path(path)
    if not root.exists():
        raise ScanPathError(f"path not found: {root}")
    label = paths.REPOSITORY if within is not None else "the scanned directory"
    if within is not None:
        paths.inside(within, root, label=label)
    if root.is_dir():
        try:
            os.listdir(root)
        except OSError as exc:
            raise ScanPathError(f"cannot read directory {root}: {exc.strerror or type(exc).__name__}") from None
        boundary = within if within is not None else root
        for file_path in _walk(root, scanner):
            # A link is read only when it stays inside; a plain file is (the walk never enters linked dirs).
            if os.path.islink(file_path):
                paths.inside(boundary, Path(file_path), label=label)
            scanner.scan_file(file_path)
    elif root.suffix.lower() not in YAML_SUFFIXES | JSON_SUFFIXES:
        scanner.skip(str(root), "not a .yaml, .yml or .json file; not read")  # not silence: "nothing found"
    elif not os.access(root, os.R_OK):
        raise ScanPathError(f"cannot read file {root}: permission denied")
    else:
        scanner.scan_file(str(root))
    return scanner.report()


#: How a stream read from standard input is named in a report (as on the command line).
STDIN_NAME = "-"


def scan_stream(
    raw: bytes,
    k8s_version: str | None = None,
    flux_version: str | None = None,
    extra_data: Sequence[Path] = (),
) -> ScanReport:
    """Scan one YAML stream already read, e.g. ``helm template`` or ``kustomize build`` output on stdin.

    Rendered output is plain YAML, so it is scanned like any file, document by document
    (findings are named ``-`` with their document index); text that is not YAML, or
    still holds template actions, is reported skipped with the reason.

    Args:
        raw: The stream's bytes (the caller bounds how many it reads).
        k8s_version: Target Kubernetes version, as for :func:`scan_path`.
        flux_version: Target Flux version, as for :func:`scan_path`.
        extra_data: User deprecation data files, as for :func:`scan_path`.

    Raises:
        InvalidVersionError: A target version is malformed.
        DeprecationDataError: A data file is unusable.
    """
    scanner = _scanner(k8s_version, flux_version, extra_data)
    scanner.scan_bytes(STDIN_NAME, raw, in_chart_templates=False)
    return scanner.report()


def _scanner(
    k8s_version: str | None,
    flux_version: str | None,
    extra_data: Sequence[Path],
    max_file_bytes: int = bounded.DEFAULT_MAX_FILE_BYTES,
) -> _Scanner:
    """A scanner at the given targets (each parsed; None: the newest the data cover) over the data."""
    k8s_target = parse_version(k8s_version, what="Kubernetes version") if k8s_version is not None else None
    flux_target = parse_version(flux_version, what="Flux version") if flux_version is not None else None
    data = load_data(extra_data)
    return _Scanner(data, _targets(data, {KUBERNETES: k8s_target, FLUX: flux_target}), max_file_bytes)


def _targets(data: DeprecationData, given: Mapping[str, MinorVersion | None]) -> dict[str, MinorVersion]:
    """The version each component is evaluated at: the given one, else the newest the data cover."""
    targets: dict[str, MinorVersion] = {}
    for component in {*data.components, *given}:
        version = given.get(component) or data.covered_version(component)
        if version is not None:
            targets[component] = version
    return targets


def _walk(root: Path, scanner: _Scanner) -> Iterator[str]:
    """YAML/JSON files under ``root`` in a stable (sorted) order; unreadable dirs are skipped."""

    def on_error(exc: OSError) -> None:
        scanner.skip(str(exc.filename or root), f"unreadable directory: {exc.strerror or type(exc).__name__}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        dirnames[:] = sorted(name for name in dirnames if name not in SKIPPED_DIRECTORIES)
        for name in sorted(filenames):
            suffix = os.path.splitext(name)[1].lower()
            if suffix in YAML_SUFFIXES or suffix in JSON_SUFFIXES:
                yield os.path.join(dirpath, name)


class _Scanner:
    """Accumulates findings and skipped files over many files."""

    def __init__(
        self,
        data: DeprecationData,
        targets: Mapping[str, MinorVersion],
        max_file_bytes: int = bounded.DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.data = data
        self.targets = targets
        self.max_file_bytes = max_file_bytes
        self.findings: list[Finding] = []
        self.skipped: list[SkippedFile] = []
        self._chart_template_dirs: dict[str, bool] = {}
        self.scanned = 0

    def report(self) -> ScanReport:
        """What was found and skipped, at the targets, saying where the data end."""
        beyond_data = {
            component: str(covered)
            for component, target in self.targets.items()
            if (covered := self.data.covered_version(component)) is not None and target > covered
        }
        return ScanReport(
            findings=self.findings,
            skipped=sorted(self.skipped, key=lambda skipped: skipped.file),
            targets={component: str(version) for component, version in sorted(self.targets.items())},
            scanned=self.scanned,
            beyond_data=beyond_data,
        )

    def skip(self, file: str, reason: str) -> None:
        """Record a file that could not be scanned, with a one-line reason."""
        self.skipped.append(SkippedFile(file=file, reason=" ".join(reason.split())))

    def scan_file(self, file: str) -> None:
        """Scan one YAML/JSON file, recording its findings or why it was skipped."""
        try:
            # Regular files only, at most max_file_bytes: a link to /dev/zero or a FIFO named
            # *.yaml is skipped with its reason, never read without end or waited on.
            raw = bounded.read_bounded(file, self.max_file_bytes)
        except bounded.FileRefusedError as exc:
            self.skip(file, exc.reason)
            return
        except OSError as exc:
            self.skip(file, f"unreadable: {exc.strerror or type(exc).__name__}")
            return
        self.scan_bytes(file, raw)

    def scan_bytes(self, file: str, raw: bytes, *, in_chart_templates: bool | None = None) -> None:
        """Scan the bytes of one YAML/JSON file (or stream) named ``file``.

        Args:
            file: Its name in the report.
            raw: Its bytes.
            in_chart_templates: Whether it is a Helm chart's template; ``None``: look beside ``file``.
        """
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            self.skip(file, "not UTF-8 text")
            return
        has_template = _TEMPLATE_MARK in text
        if has_template and (self._in_chart_templates(file) if in_chart_templates is None else in_chart_templates):
            self.skip(file, "Helm chart template (contains {{ }}); render it with 'helm template' to scan it")
            return
        is_json = os.path.splitext(file)[1].lower() in JSON_SUFFIXES
        try:
            objects, odd_type_fields = json_objects(text) if is_json else yaml_objects(text)
        except ValueError as exc:
            if has_template:
                self.skip(file, "not plain YAML: contains Go/Helm template actions ({{ }}); render it to scan it")
            else:
                self.skip(file, str(exc))
            return
        if has_template and (odd_type_fields or any(_TEMPLATE_MARK in o.api_version + o.kind for _, o in objects)):
            self.skip(file, "apiVersion or kind is a Go/Helm template action ({{ }}); render it to scan it")
            return
        self.scanned += 1
        if os.path.basename(file).lower() in KUSTOMIZE_BUILD_FILES:
            return  # a kustomize build file says how to build objects; it is not one
        for index, obj in objects:
            self._check(file, index, obj)

    def _check(self, file: str, index: int, obj: ManifestObject) -> None:
        if obj.api_version.split("/", 1)[0] == KUSTOMIZE_CONFIG_GROUP:
            return
        rule = self.data.rule_for(obj.api_version, obj.kind)
        if rule is None:
            return
        target = self.targets.get(rule.entry.component)
        if target is None:
            return
        removed = rule.removed is not None and target >= rule.removed
        deprecated = removed or (rule.deprecated is not None and target >= rule.deprecated)
        if not deprecated:
            return
        self.findings.append(
            Finding(
                file=file,
                document=index,
                kind=obj.kind,
                apiVersion=obj.api_version,
                name=obj.name,
                namespace=obj.namespace,
                deprecated=deprecated,
                removed=removed,
                deprecated_in=rule.entry.deprecated_in,
                removed_in=rule.entry.removed_in,
                replacement=rule.entry.replacement,
            )
        )

    def _in_chart_templates(self, file: str) -> bool:
        """Whether ``file`` sits under ``<chart>/templates/`` of a Helm chart (a Chart.yaml beside it)."""
        directory = os.path.dirname(os.path.abspath(file))
        cached = self._chart_template_dirs.get(directory)
        if cached is None:
            cached = False
            current = directory
            while True:
                parent = os.path.dirname(current)
                if os.path.basename(current) == "templates" and os.path.isfile(os.path.join(parent, "Chart.yaml")):
                    cached = True
                    break
                if parent == current:
                    break
                current = parent
            self._chart_template_dirs[directory] = cached
        return cached
