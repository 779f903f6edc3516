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
* Files other than ``.yaml``/``.yml``/``.json`` (``.md``, ``.tf``, ``.tpl``...) are not
  scanned and not reported. ``.git`` directories are not walked.
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
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sandbox import bounded, paths
from sandbox.deprecation_report import FLUX, KUBERNETES, Finding, ScanReport, SkippedFile
from sandbox.errors import InvalidInputError

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

# libyaml parses several times faster than the pure-Python parser; fall back when PyYAML lacks it.
_YAML_LOADER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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
        raw = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader (CSafeLoader/SafeLoader)
    except yaml.YAMLError as exc:
        raise DeprecationDataError(f"deprecation data file {path} is not valid YAML: {_yaml_problem(exc)}") from None
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
    k8s_target = parse_version(k8s_version, what="Kubernetes version") if k8s_version is not None else None
    flux_target = parse_version(flux_version, what="Flux version") if flux_version is not None else None
    data = load_data(extra_data)
    targets = _targets(data, {KUBERNETES: k8s_target, FLUX: flux_target})

    root = Path(path)
    if not root.exists():
        raise ScanPathError(f"path not found: {root}")
    scanner = _Scanner(data, targets, max_file_bytes)
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
            # A file that is a link is read only when it stays inside the boundary. Only links need
            # the check: the walk never descends into a linked directory and the root was checked
            # above, so a plain file here is inside (and the full check, three realpaths a file,
            # was four fifths of a 10,000-file scan).
            if os.path.islink(file_path):
                paths.inside(boundary, Path(file_path), label=label)
            scanner.scan_file(file_path)
    elif root.suffix.lower() in YAML_SUFFIXES | JSON_SUFFIXES:
        if not os.access(root, os.R_OK):
            raise ScanPathError(f"cannot read file {root}: permission denied")
        scanner.scan_file(str(root))
    beyond_data = {
        component: str(covered)
        for component, target in targets.items()
        if (covered := data.covered_version(component)) is not None and target > covered
    }
    return ScanReport(
        findings=scanner.findings,
        skipped=sorted(scanner.skipped, key=lambda skipped: skipped.file),
        targets={component: str(version) for component, version in sorted(targets.items())},
        beyond_data=beyond_data,
    )


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


@dataclass(frozen=True)
class _Object:
    """The few fields of a manifest object the scanner needs."""

    api_version: str
    kind: str
    name: str | None
    namespace: str | None


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
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            self.skip(file, "not UTF-8 text")
            return
        has_template = _TEMPLATE_MARK in text
        if has_template and self._in_chart_templates(file):
            self.skip(file, "Helm chart template (contains {{ }}); render it with 'helm template' to scan it")
            return
        is_json = os.path.splitext(file)[1].lower() in JSON_SUFFIXES
        try:
            objects, odd_type_fields = _json_objects(text) if is_json else _yaml_objects(text)
        except ValueError as exc:
            if has_template:
                self.skip(file, "not plain YAML: contains Go/Helm template actions ({{ }}); render it to scan it")
            else:
                self.skip(file, str(exc))
            return
        if has_template and (odd_type_fields or any(_TEMPLATE_MARK in o.api_version + o.kind for _, o in objects)):
            self.skip(file, "apiVersion or kind is a Go/Helm template action ({{ }}); render it to scan it")
            return
        if os.path.basename(file).lower() in KUSTOMIZE_BUILD_FILES:
            return  # a kustomize build file says how to build objects; it is not one
        for index, obj in objects:
            self._check(file, index, obj)

    def _check(self, file: str, index: int, obj: _Object) -> None:
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


# --- YAML: read four fields, not whole documents ------------------------------------------
#
# The scanner needs apiVersion, kind, metadata.name/namespace (and List items) per object,
# while constructing whole documents into Python objects is what makes YAML loading slow
# (measured: constructing ~2.5x the time of parsing, composing nodes ~1.8x, mostly in the
# pure-Python resolver). So the fast path walks libyaml's event stream, reads those fields
# and skips everything else while checking anchors and aliases as the composer would. A
# document whose fields depend on an alias, a merge key (<<) or an explicit tag is composed
# instead and the fields are read from the nodes; only a mapping with a merge key is
# constructed, to honour the merge. Both paths are checked against each other in the tests.

_STR_TAG: Final = "tag:yaml.org,2002:str"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class _TolerantConstructor(yaml.constructor.SafeConstructor):
    """A safe constructor that builds unknown tags (``!Ref``, ``!vault``) as plain values."""


def _construct_untagged(loader: yaml.constructor.SafeConstructor, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_TolerantConstructor.add_multi_constructor("", _construct_untagged)


def _yaml_objects(text: str) -> tuple[list[tuple[int, _Object]], bool]:
    """(document index, object) for every object of a YAML stream; empty documents count.

    The second value is True when some mapping has an ``apiVersion`` or ``kind`` that is
    not a string (a sign of an unrendered template such as ``apiVersion: {{ .Values.x }}``).

    Raises:
        ValueError: The text is not valid YAML (one-line message with the line number).
    """
    try:
        try:
            return _EventReader(text).read_stream()
        except _NeedsComposition:
            return _composed_objects(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ValueError("invalid YAML: nested too deeply") from None


class _NeedsComposition(Exception):
    """The fast reader met an alias, merge key or explicit tag on a field it reads."""


# Resolves plain scalars exactly as the loader's composer would (int, bool, null, str...).
_RESOLVER: Final = yaml.resolver.Resolver()


class _EventReader:
    """Reads apiVersion, kind, metadata.name/namespace and List items from the event stream.

    Everything else is skipped event by event without building nodes. The reader checks
    what the composer would (undefined or duplicate anchors) so that a file it accepts is
    one the composer accepts; anything whose value depends on an alias, a merge key or an
    explicit tag raises :class:`_NeedsComposition` and the document is composed instead.
    """

    def __init__(self, text: str) -> None:
        self._next = iter(yaml.parse(text, Loader=_YAML_LOADER)).__next__  # noqa: S506 - events only
        self._anchors: set[str] = set()
        self.odd_type_fields = False

    def read_stream(self) -> tuple[list[tuple[int, _Object]], bool]:
        objects: list[tuple[int, _Object]] = []
        index = -1
        while True:
            event = self._next()
            if isinstance(event, yaml.StreamEndEvent):
                return objects, self.odd_type_fields
            if isinstance(event, yaml.DocumentStartEvent):
                index += 1
                self._anchors = set()
                objects.extend((index, obj) for obj in self._objects(self._next()))

    def _objects(self, event: yaml.Event) -> list[_Object]:
        if isinstance(event, yaml.AliasEvent):
            raise _NeedsComposition
        if not isinstance(event, yaml.MappingStartEvent):
            self._skip(event)
            return []
        self._anchor(event)
        api_version = kind = None
        metadata: dict[str, str] = {}
        items: list[_Object] | None = None
        while True:
            key = self._next()
            if isinstance(key, yaml.MappingEndEvent):
                break
            name = self._key(key)
            value = self._next()
            if name == "apiVersion":
                api_version = self._string(value, typed_field=True)
            elif name == "kind":
                kind = self._string(value, typed_field=True)
            elif name == "metadata":
                metadata = self._metadata(value)
            elif name == "items":
                items = self._items(value)
            else:
                self._skip(value)
        if api_version is None or kind is None:
            return []
        if kind.endswith("List") and items is not None:
            return items
        return [_Object(api_version.strip(), kind.strip(), metadata.get("name"), metadata.get("namespace"))]

    def _metadata(self, event: yaml.Event) -> dict[str, str]:
        if isinstance(event, yaml.AliasEvent):
            raise _NeedsComposition
        if not isinstance(event, yaml.MappingStartEvent):
            self._skip(event)
            return {}
        self._anchor(event)
        fields: dict[str, str] = {}
        while True:
            key = self._next()
            if isinstance(key, yaml.MappingEndEvent):
                return fields
            name = self._key(key)
            value = self._next()
            if name in ("name", "namespace"):
                text = self._string(value)
                if text is None:
                    fields.pop(name, None)
                else:
                    fields[name] = text
            else:
                self._skip(value)

    def _items(self, event: yaml.Event) -> list[_Object] | None:
        if isinstance(event, yaml.AliasEvent):
            raise _NeedsComposition
        if not isinstance(event, yaml.SequenceStartEvent):
            self._skip(event)
            return None
        self._anchor(event)
        objects: list[_Object] = []
        while True:
            item = self._next()
            if isinstance(item, yaml.SequenceEndEvent):
                return objects
            objects.extend(self._objects(item))

    def _key(self, event: yaml.Event) -> str | None:
        """The key's text when it is a string scalar; None for other keys (skipped)."""
        if isinstance(event, yaml.AliasEvent):
            raise _NeedsComposition
        if not isinstance(event, yaml.ScalarEvent):
            self._skip(event)
            return None
        self._anchor(event)
        tag = self._tag(event)
        if tag == _MERGE_TAG:
            raise _NeedsComposition
        return event.value if tag == _STR_TAG else None

    def _string(self, event: yaml.Event, *, typed_field: bool = False) -> str | None:
        """The value when it is a string scalar, else None (the value is skipped)."""
        if isinstance(event, yaml.AliasEvent):
            raise _NeedsComposition
        if isinstance(event, yaml.ScalarEvent):
            self._anchor(event)
            if event.tag not in (None, "!"):
                raise _NeedsComposition
            if self._tag(event) == _STR_TAG:
                return str(event.value)
        else:
            self._skip(event)
        if typed_field:
            self.odd_type_fields = True
        return None

    @staticmethod
    def _tag(event: yaml.ScalarEvent) -> str:
        if event.tag not in (None, "!"):
            return str(event.tag)
        return str(_RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit))

    def _anchor(self, event: yaml.NodeEvent) -> None:
        anchor = event.anchor
        if anchor is not None:
            if anchor in self._anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found duplicate anchor {anchor!r}", cast(Any, event.start_mark)
                )
            self._anchors.add(anchor)

    def _skip(self, event: yaml.Event) -> None:
        """Consume one whole node, checking its anchors and aliases as the composer would."""
        depth = 0
        while True:
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in self._anchors:
                    raise yaml.composer.ComposerError(None, None, "found undefined alias", cast(Any, event.start_mark))
            elif isinstance(event, yaml.NodeEvent):
                self._anchor(event)
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if depth == 0:
                return
            event = self._next()


def _composed_objects(text: str) -> tuple[list[tuple[int, _Object]], bool]:
    """The slower path: compose every document and read the fields from the nodes."""
    nodes = list(yaml.compose_all(text, Loader=_YAML_LOADER))  # noqa: S506 - compose only, no construction
    objects: list[tuple[int, _Object]] = []
    odd = False
    for index, node in enumerate(nodes):
        objects.extend((index, obj) for obj in _node_objects(node))
        odd = odd or _has_odd_type_fields(node)
    return objects, odd


def _has_odd_type_fields(node: yaml.Node | None) -> bool:
    if not isinstance(node, yaml.MappingNode):
        return False
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name in ("apiVersion", "kind") and not (isinstance(value, yaml.ScalarNode) and value.tag == _STR_TAG):
            return True
        if name == "items" and isinstance(value, yaml.SequenceNode) and any(map(_has_odd_type_fields, value.value)):
            return True
    return False


def _node_objects(node: yaml.Node | None) -> Iterator[_Object]:
    if not isinstance(node, yaml.MappingNode):
        return
    if any(key.tag == _MERGE_TAG for key, _ in node.value):
        yield from _objects(_TolerantConstructor().construct_document(node))
        return
    fields = _scalar_fields(node, ("apiVersion", "kind"))
    api_version, kind = fields.get("apiVersion"), fields.get("kind")
    if api_version is None or kind is None:
        return
    items = _child(node, "items")
    if kind.endswith("List") and isinstance(items, yaml.SequenceNode):
        for item in items.value:
            yield from _node_objects(item)
        return
    metadata = _child(node, "metadata")
    meta: dict[str, str] = {}
    if isinstance(metadata, yaml.MappingNode):
        if any(key.tag == _MERGE_TAG for key, _ in metadata.value):
            constructed = _TolerantConstructor().construct_document(metadata)
            meta = {key: value for key, value in constructed.items() if isinstance(value, str)}
        else:
            meta = _scalar_fields(metadata, ("name", "namespace"))
    yield _Object(api_version.strip(), kind.strip(), meta.get("name"), meta.get("namespace"))


def _scalar_fields(node: yaml.MappingNode, names: tuple[str, ...]) -> dict[str, str]:
    """String values of the named keys of a mapping node (last occurrence wins, as in construction)."""
    found: dict[str, str] = {}
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value in names:
            if isinstance(value, yaml.ScalarNode) and value.tag == _STR_TAG:
                found[key.value] = value.value
            else:
                found.pop(key.value, None)
    return found


def _child(node: yaml.MappingNode, name: str) -> yaml.Node | None:
    child = None
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == name:
            child = value
    return child


# --- JSON ----------------------------------------------------------------------------------


def _json_objects(text: str) -> tuple[list[tuple[int, _Object]], bool]:
    """(document index, object) for a JSON file; a top-level array is one document per element."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
    documents = value if isinstance(value, list) else [value]
    objects = [(index, obj) for index, document in enumerate(documents) for obj in _objects(document)]
    return objects, any(map(_dict_has_odd_type_fields, documents))


def _dict_has_odd_type_fields(document: Any) -> bool:
    if not isinstance(document, dict):
        return False
    if any(key in document and not isinstance(document[key], str) for key in ("apiVersion", "kind")):
        return True
    items = document.get("items")
    return isinstance(items, list) and any(map(_dict_has_odd_type_fields, items))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "syntax error"
        mark = exc.problem_mark or exc.context_mark
        return f"{problem} (line {mark.line + 1})" if mark is not None else problem
    return " ".join(str(exc).split()) or type(exc).__name__


def _objects(document: Any) -> Iterator[_Object]:
    """The objects of a constructed document; List kinds yield their items instead."""
    if not isinstance(document, dict):
        return
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return
    items = document.get("items")
    if kind.endswith("List") and isinstance(items, list):
        for item in items:
            yield from _objects(item)
        return
    metadata = document.get("metadata")
    name = namespace = None
    if isinstance(metadata, dict):
        name, namespace = _text(metadata.get("name")), _text(metadata.get("namespace"))
    yield _Object(api_version.strip(), kind.strip(), name, namespace)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
