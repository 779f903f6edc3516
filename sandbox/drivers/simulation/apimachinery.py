"""What every part of the simulated API works with, as Kubernetes' apimachinery provides it.

Object keys (version-independent, as a real API server stores objects), API
versions, the API's errors, RFC 7386 merge patches, timestamps, resource names
in messages, and label selectors.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Mapping
from typing import Any

from sandbox.errors import ClusterError, InvalidInputError

Manifest = dict[str, Any]

#: ``(group, kind, namespace, name)``; the namespace is ``""`` for cluster-scoped objects.
Key = tuple[str, str, str, str]


class SimulatedApiError(ClusterError):
    """The simulated API server refused a request.

    ``str(error)`` is the API's message alone (``namespaces "x" not found``); the
    driver prefixes the verb, the object and the simulation's directory.
    """


class SimulatedConflictError(SimulatedApiError):
    """A write carried a stale ``metadata.resourceVersion`` (HTTP 409 on a real cluster)."""


def split_api_version(api_version: str) -> tuple[str, str]:
    """``("networking.k8s.io", "v1")`` for ``networking.k8s.io/v1``; ``("", "v1")`` for ``v1``."""
    group, _, version = api_version.rpartition("/")
    return group, version


def parse_minor_version(version: str) -> tuple[int, int]:
    """``(1, 31)`` for ``"1.31"`` (a trailing patch or ``v`` prefix is tolerated).

    Raises:
        InvalidInputError: Not a Kubernetes ``major.minor`` version.
    """
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", version.strip())
    if not match:
        raise InvalidInputError(f"invalid Kubernetes version {version!r}: use MAJOR.MINOR, e.g. 1.31")
    return int(match.group(1)), int(match.group(2))


def key_of(api_version: str, kind: str, namespace: str | None, name: str) -> Key:
    """The storage key of an object (version-independent, as a real API server stores it)."""
    return (split_api_version(api_version)[0], kind, namespace or "", name)


def key_to_str(key: Key) -> str:
    """The JSON form of a key: ``group/kind/namespace/name``."""
    return "/".join(key)


def str_to_key(text: str) -> Key:
    """The inverse of :func:`key_to_str`."""
    group, kind, namespace, name = text.split("/", 3)
    return (group, kind, namespace, name)


def describe_key(key: Key) -> str:
    """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped), as Flux prints objects."""
    group, kind, namespace, name = key
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def resource_name(kind: str, group: str) -> str:
    """The ``plural.group`` resource name a real API server uses in messages (``ingresses.networking.k8s.io``)."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        plural = lower + "es"
    elif lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        plural = lower[:-1] + "ies"
    else:
        plural = lower + "s"
    return f"{plural}.{group}" if group else plural


def timestamp(seconds: float) -> str:
    """RFC 3339 UTC, second precision, as Kubernetes writes times."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


_LABEL_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_LABEL_VALUE = r"[-A-Za-z0-9_.]*"


_EXISTS = re.compile(rf"(!?)\s*({_LABEL_KEY})")


_EQUALITY = re.compile(rf"({_LABEL_KEY})\s*(==|!=|=)\s*({_LABEL_VALUE})")


_SET = re.compile(rf"({_LABEL_KEY})\s+(in|notin)\s+\(([^)]*)\)")

#: One requirement of a selector: ``(key, operator, values)``.
Requirement = tuple[str, str, tuple[str, ...]]


def parse_label_selector(selector: str | None) -> list[Requirement]:
    """Parse a Kubernetes label selector (``a=b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, comma = AND).

    Raises:
        SimulatedApiError: The selector does not parse (a real API server answers 400).
    """
    if not selector or not selector.strip():
        return []
    terms: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    requirements: list[Requirement] = []
    for raw in terms:
        term = raw.strip()
        if match := _EQUALITY.fullmatch(term):
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append((match.group(1), operator, (match.group(3),)))
        elif match := _SET.fullmatch(term):
            values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append((match.group(1), match.group(2), values))
        elif match := _EXISTS.fullmatch(term):
            requirements.append((match.group(2), "!exists" if match.group(1) else "exists", ()))
        else:
            raise SimulatedApiError(f"unable to parse requirement: {term!r} in label selector {selector!r}")
    return requirements


def selector_matches(requirements: list[Requirement], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every requirement."""
    for label, operator, values in requirements:
        present = label in labels
        value = labels.get(label)
        if operator == "=" and value != values[0]:
            return False
        if operator == "!=" and value == values[0]:
            return False
        if operator == "exists" and not present:
            return False
        if operator == "!exists" and present:
            return False
        if operator == "in" and value not in values:
            return False
        if operator == "notin" and present and value in values:
            return False
    return True


def object_key(obj: Mapping[str, Any]) -> Key:
    """The storage key of a stored object."""
    meta = obj["metadata"]
    return key_of(str(obj["apiVersion"]), str(obj["kind"]), meta.get("namespace"), str(meta["name"]))
