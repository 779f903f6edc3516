"""Bounded reads: regular files only, never more than a cap.

A fleet repository or a directory given to ``sandbox scan`` may hold names that
are not files: a link to ``/dev/zero`` (endless), a FIFO (a read blocks
forever), or simply a huge file. Every manifest the product reads, and
``fleet.yaml`` itself, goes through :func:`read_bounded`: it opens without
blocking, checks on the opened descriptor (so a link is judged by what it points
at, with no race between check and read) that it is a regular file, and reads at
most ``limit`` bytes. What is refused is named with the reason, so a caller can
list it as skipped.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from sandbox.errors import PermanentError
from sandbox.redaction import redact_value

#: Default cap on one manifest file read by ``sandbox scan`` and the validate stage
#: (``validation.max_file_bytes``): Kubernetes refuses objects over about 1.5 MiB, so
#: a legitimate file of several documents stays well below it.
DEFAULT_MAX_FILE_BYTES = 4 * 1024 * 1024

#: Cap on ``fleet.yaml``: a real one is a few kilobytes.
MAX_CONFIG_BYTES = 1024 * 1024

#: Cap on the nodes of a configuration document once its aliases are expanded: a
#: real fleet.yaml has a few hundred; a "billion laughs" alias bomb has billions
#: (PyYAML shares aliased objects, but validating them walks every copy).
MAX_CONFIG_NODES = 100_000

_CHUNK = 64 * 1024


class FileRefusedError(PermanentError):
    """A file was not read: not a regular file, or larger than the cap.

    Attributes:
        path: The file.
        reason: Why, e.g. ``not a regular file (a FIFO)`` or ``larger than 4194304 bytes``.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), redact_value((self.path, self.reason)))


def _too_large(path: Path | str, limit: int) -> FileRefusedError:
    # Made only when raised: a scan reads thousands of files, and an error is not free to build.
    return FileRefusedError(path, f"larger than {limit} bytes; not read")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def read_bounded(path: Path | str, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (links followed), at most ``limit`` of them.

    Args:
        path: The file.
        limit: The most bytes read; a file with more is refused, not cut.

    Raises:
        FileRefusedError: ``path`` is not a regular file (FIFO, device, socket,
            directory), or holds more than ``limit`` bytes.
        OSError: It cannot be opened (missing, permission denied, ...).
    """
    # O_NONBLOCK: opening a FIFO must not wait for a writer. It changes nothing for regular files.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefusedError(path, f"not a regular file ({_kind(info.st_mode)}); not read")
        if info.st_size > limit:
            raise _too_large(path, limit)
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow while it is read: never read more than limit + 1
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _too_large(path, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader refusing duplicate keys (a second ``fleet_repo:`` would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: dict[object, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a merge key (<<) brings defaults that own keys may override
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: the base constructor names it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """Nodes in ``node`` with every alias expanded, counted without expanding (stops past ``limit``)."""
    sizes: dict[int, int] = {}

    def size(current: yaml.Node, depth: int) -> int:
        known = sizes.get(id(current))
        if known is not None:
            return known  # an alias: the same node again, counted again by the caller
        if depth > 1000:
            return limit + 1
        total = 1
        if isinstance(current, yaml.SequenceNode):
            for item in current.value:
                total += size(item, depth + 1)
                if total > limit:
                    break
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                total += size(key, depth + 1) + size(value, depth + 1)
                if total > limit:
                    break
        sizes[id(current)] = total
        return total

    return size(node, 0)


def load_yaml_document(text: str, max_nodes: int = MAX_CONFIG_NODES) -> object:
    """One YAML document, safe-loaded with duplicate keys refused and alias expansion capped.

    Raises:
        yaml.YAMLError: Not YAML, a duplicate key (a ``ConstructorError`` with its
            line), or more than ``max_nodes`` nodes once aliases are expanded.
    """
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, max_nodes) > max_nodes:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"more than {max_nodes} values once its aliases are expanded (an alias bomb?); refused",
                None,
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()
