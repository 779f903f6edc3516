"""Round-trip YAML edits that change one scalar and no other byte.

ruamel.yaml's round-trip loader finds the node (with its line and column), and
the edit splices the new value into the original text at that position. Comments,
key order, quoting, document markers and snippet markers (``# --8<--``) all
survive because nothing else is re-serialised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from io import StringIO
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from sandbox.errors import InvalidInputError

_PLAIN_SAFE = re.compile(r"[A-Za-z_./][A-Za-z0-9_./-]*")  # fullmatch: no trailing newline
_NOT_STRINGS = re.compile(r"(true|false|yes|no|on|off|null|~|[-+]?[0-9.]+(e[-+]?[0-9]+)?)", re.IGNORECASE)


class YamlEditError(InvalidInputError):
    """A file is not valid YAML or lacks the node an edit needs."""


@dataclass(frozen=True)
class ScalarEdit:
    """One scalar changed in a file."""

    document: int
    path: tuple[str, ...]
    old: str
    new: str


def load_documents(text: str, *, source: str = "<yaml>") -> list[Any]:
    """All documents of a YAML stream, round-trip loaded (comments kept).

    Raises:
        YamlEditError: Invalid YAML.
    """
    try:
        return list(YAML(typ="rt").load_all(StringIO(text)))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise YamlEditError(f"{source}:{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None


def iter_objects(docs: Sequence[Any]) -> Iterator[tuple[int, CommentedMap]]:
    """(document index, mapping) for every mapping document."""
    for index, doc in enumerate(docs):
        if isinstance(doc, CommentedMap):
            yield index, doc


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for match in re.finditer("\n", text):
        offsets.append(match.end())
    return offsets


def _scalar_extent(text: str, start: int) -> tuple[int, str]:
    """End offset of the scalar token starting at ``start`` and its quote char ('' if plain)."""
    quote = text[start] if text[start] in "\"'" else ""
    if quote:
        i = start + 1
        while i < len(text):
            if text[i] == "\\" and quote == '"':
                i += 2
                continue
            if text[i] == quote:
                if quote == "'" and text[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                return i + 1, quote
            i += 1
        raise YamlEditError("unterminated quoted scalar")
    line_end = text.find("\n", start)
    line_end = len(text) if line_end == -1 else line_end
    segment = text[start:line_end]
    comment = re.search(r"\s#", segment)
    if comment:
        segment = segment[: comment.start()]
    return start + len(segment.rstrip()), ""


def _render(value: str, quote: str) -> str:
    if quote == "'":
        return "'" + value.replace("'", "''") + "'"
    if quote == '"' or not _PLAIN_SAFE.fullmatch(value) or _NOT_STRINGS.fullmatch(value):
        return json.dumps(value)
    return value


def set_scalar(
    text: str,
    select: Callable[[CommentedMap], bool],
    path: Sequence[str],
    value: str,
    *,
    source: str = "<yaml>",
) -> tuple[str, list[ScalarEdit]]:
    """Set the scalar at ``path`` in every document ``select`` accepts.

    Only the scalar's characters change; its quoting style is kept.

    Args:
        text: The file's text.
        select: Chooses the documents to edit.
        path: Keys from the document root to the scalar, e.g. ``("spec", "ref", "branch")``.
        value: The new value.
        source: File name for error messages.

    Returns:
        The new text and the edits made (empty when nothing matched or nothing changed).
    """
    docs = load_documents(text, source=source)
    offsets = _line_offsets(text)
    edits: list[tuple[int, int, str, ScalarEdit]] = []
    for index, doc in iter_objects(docs):
        if not select(doc):
            continue
        node: Any = doc
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, CommentedMap) else None
        if not isinstance(node, CommentedMap) or path[-1] not in node:
            continue
        old = node[path[-1]]
        if not isinstance(old, str) or old == value:
            continue
        line, col = node.lc.value(path[-1])
        start = offsets[line] + col
        end, quote = _scalar_extent(text, start)
        edits.append((start, end, _render(value, quote), ScalarEdit(index, tuple(path), old, value)))
    for start, end, rendered, _ in sorted(edits, key=lambda e: e[0], reverse=True):
        text = text[:start] + rendered + text[end:]
    return text, [e[3] for e in edits]
