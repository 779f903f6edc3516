"""The few fields of the objects in a YAML or JSON manifest: apiVersion, kind, name, namespace.

The deprecation scan (:mod:`sandbox.deprecations`) reads every manifest of a fleet; this is
how it reads them fast: from libyaml's event stream, not by constructing whole documents.
``kind: List`` (and any ``*List`` with ``items``) is expanded, keeping the document index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

import yaml

#: libyaml's safe loader when PyYAML was built with it (the scan's speed rests on it), else the pure-Python one.
YAML_LOADER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_mappings(text: str) -> list[dict[str, Any]]:
    """Every mapping document of a YAML stream, safely loaded with libyaml (about 8x the pure-Python loader).

    Flux's install (``gotk-components.yaml``, a quarter of a megabyte of CRD schemas) is read
    by several stages of every lifecycle: the loader is a visible share of their time.

    Raises:
        yaml.YAMLError: The text is not YAML (the pure-Python parser's error: it names what it expected and
            what it found, where libyaml's says less).
    """
    try:
        return [d for d in yaml.load_all(text, Loader=YAML_LOADER) if isinstance(d, dict)]  # noqa: S506 - safe
    except yaml.YAMLError:
        if YAML_LOADER is yaml.SafeLoader:
            raise
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]  # raises its own, clearer error


@dataclass(frozen=True)
class ManifestObject:
    """The few fields of a manifest object the scanner needs."""

    api_version: str
    kind: str
    name: str | None
    namespace: str | None


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


def yaml_objects(text: str) -> tuple[list[tuple[int, ManifestObject]], bool]:
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
        raise ValueError(f"invalid YAML: {yaml_problem(exc)}") from None
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
        self._next = iter(yaml.parse(text, Loader=YAML_LOADER)).__next__  # noqa: S506 - events only
        self._anchors: set[str] = set()
        self.odd_type_fields = False

    def read_stream(self) -> tuple[list[tuple[int, ManifestObject]], bool]:
        objects: list[tuple[int, ManifestObject]] = []
        index = -1
        while True:
            event = self._next()
            if isinstance(event, yaml.StreamEndEvent):
                return objects, self.odd_type_fields
            if isinstance(event, yaml.DocumentStartEvent):
                index += 1
                self._anchors = set()
                objects.extend((index, obj) for obj in self._objects(self._next()))

    def _objects(self, event: yaml.Event) -> list[ManifestObject]:
        if isinstance(event, yaml.AliasEvent):
            raise _NeedsComposition
        if not isinstance(event, yaml.MappingStartEvent):
            self._skip(event)
            return []
        self._anchor(event)
        api_version = kind = None
        metadata: dict[str, str] = {}
        items: list[ManifestObject] | None = None
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
        return [ManifestObject(api_version.strip(), kind.strip(), metadata.get("name"), metadata.get("namespace"))]

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

    def _items(self, event: yaml.Event) -> list[ManifestObject] | None:
        if isinstance(event, yaml.AliasEvent):
            raise _NeedsComposition
        if not isinstance(event, yaml.SequenceStartEvent):
            self._skip(event)
            return None
        self._anchor(event)
        objects: list[ManifestObject] = []
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


def _composed_objects(text: str) -> tuple[list[tuple[int, ManifestObject]], bool]:
    """The slower path: compose every document and read the fields from the nodes."""
    nodes = list(yaml.compose_all(text, Loader=YAML_LOADER))  # noqa: S506 - compose only, no construction
    objects: list[tuple[int, ManifestObject]] = []
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


def _node_objects(node: yaml.Node | None) -> Iterator[ManifestObject]:
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
    yield ManifestObject(api_version.strip(), kind.strip(), meta.get("name"), meta.get("namespace"))


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


def json_objects(text: str) -> tuple[list[tuple[int, ManifestObject]], bool]:
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


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line saying what is wrong with a YAML text, and on which line when PyYAML marks it."""
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "syntax error"
        mark = exc.problem_mark or exc.context_mark
        return f"{problem} (line {mark.line + 1})" if mark is not None else problem
    return " ".join(str(exc).split()) or type(exc).__name__


def _objects(document: Any) -> Iterator[ManifestObject]:
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
    yield ManifestObject(api_version.strip(), kind.strip(), name, namespace)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
