"""The simulated kustomize-controller's build: ``kustomize build`` plus Flux's post-build substitution.

What it reproduces of kustomize-controller:

* A directory with a ``kustomization.yaml`` (``apiVersion:
  kustomize.config.k8s.io/*``) is built from its ``resources`` -- files and
  directories, recursively; each referenced directory needs its own
  kustomization file, as kustomize requires.
* A directory without one gets one generated, as Flux does: every ``*.yaml`` /
  ``*.yml`` file in the tree, except that a subdirectory holding a
  kustomization file is built as a kustomization (and not descended into).
  Files that are not valid YAML fail the build.
* The kustomization fields ``namespace``, ``commonLabels``, ``labels`` and
  ``commonAnnotations``; any other transformer (patches, images, generators,
  components, ...) fails the build with a message saying the simulation does
  not support it -- never silently skipped.
* ``spec.targetNamespace`` sets the namespace of every namespaced object.
* ``spec.postBuild.substitute`` / ``substituteFrom``: ``${var}``,
  ``${var:=default}`` / ``${var:-default}`` / ``${var=default}`` /
  ``${var-default}``, ``$${var}`` for a literal; an object annotated
  ``kustomize.toolkit.fluxcd.io/substitute: disabled`` is left alone. A variable
  that is not set and has no default fails the build (Flux's strict mode), so
  a missing variable shows up instead of becoming an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

KUSTOMIZATION_FILES: tuple[str, ...] = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZE_API_PREFIX = "kustomize.config.k8s.io/"
SUBSTITUTE_ANNOTATION = "kustomize.toolkit.fluxcd.io/substitute"
_SUPPORTED_FIELDS = frozenset(
    {"apiVersion", "kind", "metadata", "resources", "namespace", "commonLabels", "commonAnnotations", "labels"}
)
_VARIABLE_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_EXPRESSION = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_DEFAULT_OPERATORS = (":=", ":-", "=", "-")

#: Tells whether an ``(apiVersion, kind)`` is namespaced.
ScopeLookup = Callable[[str, str], bool]


class BuildError(Exception):
    """The build failed; ``str`` is the message the Kustomization reports (reason :attr:`reason`)."""

    reason = "BuildFailed"


class PathNotFoundError(BuildError):
    """``spec.path`` is not in the source artifact.

    kustomize-controller checks the path before it builds, and reports it as ``ArtifactFailed`` (seen on a real
    cluster with Flux 2.9: tests/conformance/test_simulated_vs_real.py::test_readiness_names_a_missing_path).
    """

    reason = "ArtifactFailed"


def _load_documents(path: Path, root: Path) -> list[Manifest]:
    """The objects of a YAML file (empty documents skipped)."""
    shown = _shown(path, root)
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"failed to read {shown}: {type(exc).__name__}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise BuildError(f"failed to decode Kubernetes YAML from {shown}{where}: {problem}") from None
    objects = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            raise BuildError(f"failed to decode Kubernetes YAML from {shown}: not a YAML object")
        if not document.get("apiVersion") or not document.get("kind"):
            raise BuildError(f"{shown}: missing Resource metadata (apiVersion and kind are required)")
        if not isinstance(document.get("metadata"), dict) or not document["metadata"].get("name"):
            raise BuildError(f"{shown}: {document['kind']} has no metadata.name")
        objects.append(document)
    return objects


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _kustomize_config(path: Path, root: Path) -> Manifest | None:
    """The kustomization file's content when it is a kustomize config (else None: a plain manifest)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        raise BuildError(f"failed to decode kustomization file {_shown(path, root)}: invalid YAML") from None
    if not isinstance(document, dict):
        return None
    api_version = str(document.get("apiVersion") or "")
    if api_version.startswith(KUSTOMIZE_API_PREFIX) or (not api_version and "resources" in document):
        return document
    return None


def _inside(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    return resolved == root or root in resolved.parents


def _build_kustomization(directory: Path, root: Path, config: Manifest) -> list[Manifest]:
    shown = _shown(directory, root) or "."
    unsupported = sorted(set(config) - _SUPPORTED_FIELDS)
    if unsupported:
        raise BuildError(
            f"{shown}/kustomization.yaml: the simulated kustomize build does not support {', '.join(unsupported)} "
            f"(supported: {', '.join(sorted(_SUPPORTED_FIELDS - {'apiVersion', 'kind', 'metadata'}))})"
        )
    objects: list[Manifest] = []
    for entry in config.get("resources") or []:
        text = str(entry)
        if "://" in text or text.startswith(("github.com/", "git@")):
            raise BuildError(f"{shown}: remote resource {text!r} is not supported by the simulated kustomize build")
        target = directory / text
        if not _inside(target, root):
            raise BuildError(f"{shown}: resource {text!r} is outside the source artifact")
        if target.is_dir():
            nested = _kustomization_file(target)
            if nested is None:
                raise BuildError(
                    f"accumulating resources from {text!r} in {shown}: unable to find one of "
                    f"'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory {_shown(target, root)}"
                )
            nested_config = _kustomize_config(nested, root)
            if nested_config is None:
                raise BuildError(f"{_shown(nested, root)} is not a kustomize.config.k8s.io Kustomization")
            objects.extend(_build_kustomization(target, root, nested_config))
        elif target.is_file():
            objects.extend(_load_documents(target, root))
        else:
            raise BuildError(f"accumulating resources in {shown}: {text!r}: no such file or directory")
    return _transform(objects, config)


def _transform(objects: list[Manifest], config: Manifest) -> list[Manifest]:
    """The kustomization's own transformers (namespace, labels, annotations)."""
    namespace = config.get("namespace")
    labels: dict[str, str] = {str(k): str(v) for k, v in (config.get("commonLabels") or {}).items()}
    for group in config.get("labels") or []:
        labels.update({str(k): str(v) for k, v in (group.get("pairs") or {}).items()})
    annotations = {str(k): str(v) for k, v in (config.get("commonAnnotations") or {}).items()}
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if namespace and not _looks_cluster_scoped(obj):
            meta["namespace"] = str(namespace)
        if labels:
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
        if annotations:
            meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return objects


def _looks_cluster_scoped(obj: Manifest) -> bool:
    # kustomize's own namespace transformer knows the built-in cluster-scoped kinds.
    return str(obj.get("kind")) in {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
        "CSIDriver",
        "RuntimeClass",
    }


def _generate(directory: Path, root: Path) -> list[Manifest]:
    """What Flux's generated kustomization yields: every manifest in the tree, sorted as a walk finds them."""
    objects: list[Manifest] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            nested = _kustomization_file(entry)
            if nested is not None:
                config = _kustomize_config(nested, root)
                if config is not None:
                    objects.extend(_build_kustomization(entry, root, config))
                    continue
            objects.extend(_generate(entry, root))
        elif entry.suffix in (".yaml", ".yml"):
            if entry.name in KUSTOMIZATION_FILES and _kustomize_config(entry, root) is not None:
                continue
            objects.extend(_load_documents(entry, root))
    return objects


def build(
    artifact_root: Path,
    path: str,
    *,
    target_namespace: str | None = None,
    namespaced: ScopeLookup | None = None,
    substitute: Mapping[str, str] | None = None,
) -> list[Manifest]:
    """Build a Kustomization's ``spec.path`` inside a source artifact.

    Args:
        artifact_root: The artifact's directory (a checkout of the source revision).
        path: ``spec.path`` (relative to the artifact root; ``./`` when empty).
        target_namespace: ``spec.targetNamespace``.
        namespaced: Tells which kinds are namespaced (for ``targetNamespace``).
        substitute: Post-build variables; ``None`` when the Kustomization has
            no ``spec.postBuild`` (then nothing is substituted, as in Flux).

    Returns:
        The objects, in build order.

    Raises:
        BuildError: Missing path, invalid YAML, unsupported kustomize features,
            duplicate objects, or a substitution failure.
    """
    root = artifact_root.resolve()
    relative = path.strip() or "./"
    directory = (root / relative).resolve()
    if not _inside(directory, root):
        raise BuildError(f"kustomization path {relative!r} is outside the source artifact")
    if not directory.is_dir():
        raise PathNotFoundError(f"kustomization path not found: stat {relative}: no such file or directory")
    top = _kustomization_file(directory)
    config = _kustomize_config(top, root) if top is not None else None
    objects = _build_kustomization(directory, root, config) if config is not None else _generate(directory, root)
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        group = str(obj["apiVersion"]).rpartition("/")[0]
        identity = (group, str(obj["kind"]), str(obj["metadata"].get("namespace") or ""), str(obj["metadata"]["name"]))
        if identity in seen:
            raise BuildError(
                f"may not add resource with an already registered id: {identity[1]}.{group or 'v1'} "
                f"{identity[2] or '[noNs]'}/{identity[3]}"
            )
        seen.add(identity)
    if target_namespace:
        for obj in objects:
            is_namespaced = namespaced(str(obj["apiVersion"]), str(obj["kind"])) if namespaced else True
            if is_namespaced and not _looks_cluster_scoped(obj):
                obj["metadata"]["namespace"] = target_namespace
    if substitute is not None:
        objects = [_substitute_object(obj, substitute) for obj in objects]
    return objects


def _substitute_object(obj: Manifest, variables: Mapping[str, str]) -> Manifest:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(SUBSTITUTE_ANNOTATION, "")).lower() == "disabled":
        return obj
    text = yaml.safe_dump(obj, sort_keys=False)
    where = f"{obj['kind']}/{obj['metadata'].get('namespace', '') + '/' if obj['metadata'].get('namespace') else ''}"
    where += str(obj["metadata"]["name"])
    try:
        substituted = envsubst(text, variables)
    except BuildError as exc:
        raise BuildError(f"{where}: post build substitution failed: {exc}") from None
    try:
        result = yaml.safe_load(substituted)
    except yaml.YAMLError:
        raise BuildError(f"{where}: post build substitution produced invalid YAML") from None
    if not isinstance(result, dict):
        raise BuildError(f"{where}: post build substitution produced no object")
    return result


def envsubst(text: str, variables: Mapping[str, str]) -> str:
    """Substitute ``${var}`` expressions the way Flux's post-build substitution does.

    Raises:
        BuildError: A variable is not set and has no default, or an expression is malformed.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        expression = match.group(1)
        name_match = _VARIABLE_NAME.match(expression)
        if name_match is None:
            raise BuildError(f"invalid variable expression '${{{expression}}}'")
        name = name_match.group(0)
        rest = expression[name_match.end() :]
        if not rest:
            if name not in variables:
                raise BuildError(f"variable '{name}' is not set and has no default")
            return str(variables[name])
        for operator in _DEFAULT_OPERATORS:
            if rest.startswith(operator):
                default = rest[len(operator) :]
                value = variables.get(name)
                if value is None or (operator.startswith(":") and value == ""):
                    return default
                return str(value)
        raise BuildError(f"unsupported variable expression '${{{expression}}}'")

    return _EXPRESSION.sub(replace, text)


def check_variable_names(variables: Mapping[str, Any]) -> None:
    """Flux refuses substitution variables whose names are not shell-like identifiers.

    Raises:
        BuildError: A name such as ``chart-version``.
    """
    for name in variables:
        if not _VARIABLE_NAME.fullmatch(str(name)):
            raise BuildError(f"'{name}' var name is invalid, must match '^[_[:alpha:]][_[:alpha:][:digit:]]*$'")
