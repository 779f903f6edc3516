"""The simulated API server: stored objects and the rules a real API server enforces.

Everything here works on one :class:`SimulatedApiServer`, the in-memory form of
``<simulation_dir>/cluster.json`` loaded under the simulation's lock (see
:func:`locked_state`). It knows nothing about Flux: controllers
(:mod:`sandbox.drivers.simulation.controllers`) call its methods as a real
controller calls the API. Which kinds it serves is in
:mod:`~sandbox.drivers.simulation.builtin_kinds`, what it does to an object it
writes in :mod:`~sandbox.drivers.simulation.admission`, and keys, errors and
label selectors in :mod:`~sandbox.drivers.simulation.apimachinery`.

Rules modelled because getting them wrong must fail a test:

* A kind is served only when it is built in or its CustomResourceDefinition
  exists and is ``Established``; API versions removed at the cluster's
  Kubernetes version are refused (``no matches for kind "Ingress" in version
  "extensions/v1beta1"``).
* A new CustomResourceDefinition is ``Established`` only after a delay (the
  real API server installs its storage and discovery asynchronously): until
  then its kind is not served, and creating one of its objects is answered
  ``the server could not find the requested resource``. A CRD whose plural or
  kind another CRD of its group already has is never Established
  (``NamesAccepted=False``). A CRD without exactly one ``storage`` version in
  ``spec.versions`` is refused, as apiextensions validation refuses it.
* Namespaced objects need an existing namespace that is not terminating.
* ``metadata.generation`` bumps when anything but metadata and status changes;
  ``metadata.resourceVersion`` increases on every write, cluster-wide.
* Deletion of an object with finalizers only sets ``deletionTimestamp``; it is
  removed when its last finalizer goes. No finalizer may be added while it is
  being deleted.
* Namespaces and CRDs carry the finalizers a real cluster gives them: a
  deleted namespace stays ``Terminating`` until everything in it is gone; a
  deleted CRD until all its custom objects are gone.
* A GitRepository's ``spec.url`` must be an http, https or ssh URL, as Flux's
  CRD schema requires; the simulation alone also accepts ``file://`` URLs and
  absolute paths, which its source-controller reads from disk.
* A ``Secret``'s ``stringData`` is folded into base64 ``data``; its values never
  appear in an error.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sandbox.drivers.simulation.admission import (
    crd_condition,
    crd_status,
    defaults_on_create,
    fold_string_data,
    generation_body,
    has_finalizers,
    validate_schema,
)
from sandbox.drivers.simulation.apimachinery import (
    Key,
    Manifest,
    Requirement,
    SimulatedApiError,
    SimulatedConflictError,
    key_of,
    key_to_str,
    merge_patch,
    object_key,
    resource_name,
    selector_matches,
    split_api_version,
    str_to_key,
    timestamp,
)
from sandbox.drivers.simulation.builtin_kinds import (
    BUILTIN_CLUSTER_SCOPED,
    BUILTIN_GROUPS,
    CORE_CLUSTER_KINDS,
    CORE_NAMESPACED_KINDS,
    CRD_GROUP,
    CRD_KIND,
    removed_api,
)
from sandbox.errors import ClusterError, InvalidInputError

STATE_FILE = "cluster.json"
LOCK_FILE = "cluster.lock"
STATE_FORMAT = 1

#: Namespaces every cluster starts with.
INITIAL_NAMESPACES: tuple[str, ...] = ("default", "kube-node-lease", "kube-public", "kube-system")

#: Namespaces the API server refuses to delete.
UNDELETABLE_NAMESPACES: frozenset[str] = frozenset({"default", "kube-public", "kube-system"})

# Internal record of the top-level spec keys set by merge patches (see ``apply``).
PATCHED_SPEC_KEYS = "patchedSpecKeys"

# Top-level fields that are not the object's body (what a write replaces).
_NOT_BODY = ("apiVersion", "kind", "metadata", "status")

# Fields of metadata the API server owns: writes never change them.
_SERVER_METADATA = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
)


@contextmanager
def locked_state(simulation_dir: Path) -> Iterator[None]:
    """Hold the simulation's exclusive lock (``flock``: across processes and threads alike).

    Each holder opens the lock file itself, so two threads of one process
    exclude each other as two processes do.
    """
    with open(simulation_dir / LOCK_FILE, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _empty_state(now: float) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "createdAt": now,
        "resourceVersion": 0,
        "objects": {},
        "internal": {},
        "failures": {},
    }


class SimulatedApiServer:
    """The simulated cluster's objects, loaded from and saved to ``cluster.json``.

    Args:
        state: The parsed state document.
        now: The simulation time (seconds since the epoch) of this session.
        kubernetes_version: The control plane's ``(major, minor)``.
    """

    def __init__(
        self,
        state: dict[str, Any],
        *,
        now: float,
        kubernetes_version: tuple[int, int],
        crd_established_delay_seconds: float = 0.0,
    ) -> None:
        self.state = state
        self.now = now
        self.kubernetes_version = kubernetes_version
        self.crd_established_delay_seconds = crd_established_delay_seconds
        self.dirty = False
        self.objects: dict[str, Manifest] = state["objects"]
        self._crd_index: dict[tuple[str, str], Manifest] | None = None

    # -- loading and saving ----------------------------------------------------

    @classmethod
    def load(
        cls,
        simulation_dir: Path,
        *,
        now: float,
        kubernetes_version: tuple[int, int],
        crd_established_delay_seconds: float = 0.0,
    ) -> SimulatedApiServer:
        """Read ``cluster.json`` (a fresh cluster with its initial namespaces when absent).

        CustomResourceDefinitions whose delay has passed by ``now`` are
        Established first. Call only while holding :func:`locked_state`.

        Raises:
            ClusterError: The state file is unreadable or not a simulated cluster's state.
        """
        path = simulation_dir / STATE_FILE
        if not path.exists():
            server = cls(
                _empty_state(now),
                now=now,
                kubernetes_version=kubernetes_version,
                crd_established_delay_seconds=crd_established_delay_seconds,
            )
            for name in INITIAL_NAMESPACES:
                server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            return server
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ClusterError(f"simulated cluster state {path} is unreadable: {type(exc).__name__}") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ClusterError(f"simulated cluster state {path} has an unknown format")
        server = cls(
            state,
            now=now,
            kubernetes_version=kubernetes_version,
            crd_established_delay_seconds=crd_established_delay_seconds,
        )
        server.establish_crds()
        return server

    def save(self, simulation_dir: Path) -> None:
        """Write the state atomically when anything changed (owner-only: it holds Secrets, as etcd does)."""
        if not self.dirty:
            return
        path = simulation_dir / STATE_FILE
        temporary = path.with_name(path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(self.state, handle, sort_keys=True, separators=(",", ":"))
        os.replace(temporary, path)
        self.dirty = False

    # -- bookkeeping -------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The cluster-wide resourceVersion of the last write."""
        return int(self.state["resourceVersion"])

    def _next_version(self) -> str:
        self.state["resourceVersion"] = self.resource_version + 1
        self.dirty = True
        return str(self.state["resourceVersion"])

    def internal(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Controller bookkeeping for one object (kept beside the object, never served; dropped with it)."""
        uid = str(obj["metadata"]["uid"])
        return self.state["internal"].setdefault(uid, {})

    def set_internal(self, obj: Mapping[str, Any], name: str, value: Any) -> None:
        """Record controller bookkeeping (a write of the state, not of the object)."""
        record = self.internal(obj)
        if record.get(name) != value:
            record[name] = value
            self.dirty = True

    def failures(self) -> dict[str, dict[str, str]]:
        """Injected failures by key string."""
        return self.state["failures"]

    # -- reads -----------------------------------------------------------------------

    def get(self, key: Key) -> Manifest | None:
        """The stored object (not a copy: callers inside the simulation must not mutate it)."""
        return self.objects.get(key_to_str(key))

    def select(
        self,
        group: str,
        kind: str,
        namespace: str | None = None,
        requirements: list[Requirement] | None = None,
    ) -> list[Manifest]:
        """Stored objects of a kind (not copies), sorted by namespace and name."""
        found = []
        for text, obj in self.objects.items():
            obj_group, obj_kind, obj_namespace, _ = str_to_key(text)
            if obj_group != group or obj_kind != kind:
                continue
            if namespace is not None and obj_namespace != namespace:
                continue
            if requirements and not selector_matches(requirements, obj["metadata"].get("labels") or {}):
                continue
            found.append(obj)
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def in_namespace(self, namespace: str) -> list[Manifest]:
        """Every namespaced object in ``namespace``."""
        return [obj for text, obj in self.objects.items() if str_to_key(text)[2] == namespace]

    # -- what is served --------------------------------------------------------------

    def _crds(self) -> dict[tuple[str, str], Manifest]:
        if self._crd_index is None:
            index = {}
            for crd in self.select(CRD_GROUP, CRD_KIND):
                spec = crd.get("spec") or {}
                names = spec.get("names") or {}
                if spec.get("group") and names.get("kind"):
                    index[(str(spec["group"]), str(names["kind"]))] = crd
            self._crd_index = index
        return self._crd_index

    def establish_crds(self) -> list[str]:
        """The apiextensions controllers' work: Establish every CRD whose delay has passed.

        Returns:
            The names of the CRDs Established now.
        """
        established = []
        for crd in self.select(CRD_GROUP, CRD_KIND):
            if crd_condition(crd, "Established") == "True" or crd_condition(crd, "NamesAccepted") == "False":
                continue
            if self.now < float(self.internal(crd).get("establishAt", 0.0)):
                continue
            self.write_status(object_key(crd), crd_status(established=True))
            established.append(str(crd["metadata"]["name"]))
        return established

    def _crd_names_conflict(self, crd: Mapping[str, Any]) -> str | None:
        """Why another CRD of the group already holds ``crd``'s plural or kind (``None`` when none does)."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        for other in self.select(CRD_GROUP, CRD_KIND):
            if other["metadata"]["name"] == crd["metadata"]["name"]:
                continue
            other_spec = other.get("spec") or {}
            other_names = other_spec.get("names") or {}
            if other_spec.get("group") != spec.get("group"):
                continue
            if names.get("plural") and other_names.get("plural") == names.get("plural"):
                return f'"{names["plural"]}" is already in use'
            if names.get("kind") and other_names.get("kind") == names.get("kind"):
                return f'"{names["kind"]}" is already in use'
        return None

    def served(self, api_version: str, kind: str) -> bool:
        """Whether ``kind`` is namespaced; raises when the API server does not serve it.

        Raises:
            SimulatedApiError: ``no matches for kind ...`` (removed version, no CRD, unknown kind).
        """
        group, version = split_api_version(api_version)
        no_match = f'no matches for kind "{kind}" in version "{api_version}"'
        if not version or not kind:
            raise SimulatedApiError(no_match)
        removed = removed_api(api_version, kind, self.kubernetes_version)
        if removed:
            raise SimulatedApiError(removed)
        if group == "":
            if version != "v1" or kind not in CORE_NAMESPACED_KINDS | CORE_CLUSTER_KINDS:
                raise SimulatedApiError(no_match)
            return kind not in CORE_CLUSTER_KINDS
        if group in BUILTIN_GROUPS:
            return (group, kind) not in BUILTIN_CLUSTER_SCOPED
        crd = self._crds().get((group, kind))
        if crd is None:
            raise SimulatedApiError(no_match + " (is its CustomResourceDefinition installed?)")
        if crd_condition(crd, "Established") != "True":
            # Not in discovery yet: a request to its URL is a plain 404.
            raise SimulatedApiError(
                "the server could not find the requested resource "
                f"(CustomResourceDefinition {crd['metadata']['name']} is not Established)"
            )
        versions = (crd.get("spec") or {}).get("versions")
        if versions and not any(v.get("name") == version and v.get("served", True) for v in versions):
            raise SimulatedApiError(no_match)
        return (crd.get("spec") or {}).get("scope", "Namespaced") != "Cluster"

    def served_or_none(self, api_version: str, kind: str) -> bool | None:
        """Like :meth:`served`, ``None`` when not served (reads of unserved kinds see nothing)."""
        try:
            return self.served(api_version, kind)
        except SimulatedApiError:
            return None

    def namespaced(self, api_version: str, kind: str) -> bool:
        """Whether a kind is namespaced, assuming namespaced for kinds not served (as kustomize does)."""
        served = self.served_or_none(api_version, kind)
        return True if served is None else served

    # -- writes ----------------------------------------------------------------------

    def _check_namespace(self, namespace: str, *, creating: bool) -> None:
        ns = self.get(("", "Namespace", "", namespace))
        if ns is None:
            raise SimulatedApiError(f'namespaces "{namespace}" not found')
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise SimulatedApiError(
                f"unable to create new content in namespace {namespace} because it is being terminated"
            )

    def apply(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> Manifest:
        """Create or update an object, server-side-apply style.

        Fields given replace the stored ones (``spec``, ``data``, ...); labels and
        annotations given are merged into the stored ones; finalizers given are
        added; ``status`` is the controllers' and ignored.

        Args:
            manifest: The object.
            dry_run: Check everything, store nothing.

        Returns:
            The stored object (a copy), or the would-be object on a dry run.

        Raises:
            InvalidInputError: No apiVersion/kind/name, or a namespaced kind without namespace.
            SimulatedApiError: The kind is not served, the namespace is missing or terminating, ...
        """
        api_version = manifest.get("apiVersion")
        kind = manifest.get("kind")
        meta = manifest.get("metadata")
        if not api_version or not kind or not isinstance(meta, Mapping) or not meta.get("name"):
            raise InvalidInputError("apply: the manifest needs apiVersion, kind and metadata.name")
        api_version, kind, name = str(api_version), str(kind), str(meta["name"])
        namespaced = self.served(api_version, kind)
        namespace = str(meta.get("namespace") or "") if namespaced else ""
        if namespaced and not namespace:
            raise InvalidInputError(f"apply {kind}/{name}: {kind} is namespaced; a namespace is required")
        key = key_of(api_version, kind, namespace, name)
        existing = self.get(key)
        if namespaced:
            self._check_namespace(namespace, creating=existing is None)
        body = {k: copy.deepcopy(v) for k, v in manifest.items() if k not in _NOT_BODY}
        validate_schema(key, body)
        if kind == "Secret" and key[0] == "":
            body = fold_string_data(body)
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
        finalizers = [str(f) for f in meta.get("finalizers") or []]
        if existing is None:
            obj: Manifest = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}
            if namespace:
                obj["metadata"]["namespace"] = namespace
            if labels:
                obj["metadata"]["labels"] = labels
            if annotations:
                obj["metadata"]["annotations"] = annotations
            if finalizers:
                obj["metadata"]["finalizers"] = list(dict.fromkeys(finalizers))
            if meta.get("ownerReferences"):
                obj["metadata"]["ownerReferences"] = copy.deepcopy(meta["ownerReferences"])
            obj.update(body)
            defaults_on_create(obj)
            is_crd = key[0] == CRD_GROUP and kind == CRD_KIND
            conflict = self._crd_names_conflict(obj) if is_crd else None
            if is_crd and (conflict or self.crd_established_delay_seconds > 0):
                obj["status"] = crd_status(established=False, conflict=conflict)
            if dry_run:
                return copy.deepcopy(obj)
            obj["metadata"]["uid"] = str(uuid.uuid4())
            obj["metadata"]["creationTimestamp"] = timestamp(self.now)
            obj["metadata"]["generation"] = 1
            self.internal(obj)["generationChangedAt"] = self.now
            if is_crd:
                self.internal(obj)["establishAt"] = self.now + self.crd_established_delay_seconds
            self._store(key, obj)
            return copy.deepcopy(obj)
        updated = copy.deepcopy(existing)
        updated["apiVersion"] = api_version
        updated_meta = updated["metadata"]
        if labels:
            updated_meta["labels"] = {**(updated_meta.get("labels") or {}), **labels}
        if annotations:
            updated_meta["annotations"] = {**(updated_meta.get("annotations") or {}), **annotations}
        if finalizers:
            merged = list(dict.fromkeys([*(updated_meta.get("finalizers") or []), *finalizers]))
            self._check_new_finalizers(existing, merged)
            updated_meta["finalizers"] = merged
        patched_keys = set(self.internal(existing).get(PATCHED_SPEC_KEYS) or [])
        given_spec = body.get("spec")
        if patched_keys and isinstance(given_spec, dict) and isinstance(existing.get("spec"), dict):
            # Server-side apply leaves fields another manager set alone: keys a
            # merge patch set (``flux suspend``'s spec.suspend) survive an apply
            # that does not name them; an apply that names them takes them over.
            named = set(given_spec)
            for spec_key in sorted(patched_keys - named):
                if spec_key in existing["spec"]:
                    given_spec[spec_key] = copy.deepcopy(existing["spec"][spec_key])
            if not dry_run:
                self.set_internal(existing, PATCHED_SPEC_KEYS, sorted(patched_keys - named))
        for field, value in body.items():
            updated[field] = value
        return self._replace(key, existing, updated, dry_run=dry_run)

    def patch(self, key: Key, patch: Mapping[str, Any]) -> Manifest:
        """Apply an RFC 7386 merge patch to an object (``status`` and server-owned metadata excluded).

        Raises:
            SimulatedApiError: The object does not exist, or new finalizers on a deleting object.
            SimulatedConflictError: The patch names a stale ``metadata.resourceVersion``.
        """
        existing = self.get(key)
        if existing is None:
            raise SimulatedApiError(f'{resource_name(key[1], key[0])} "{key[3]}" not found')
        wanted_version = ((patch.get("metadata") or {}) if isinstance(patch.get("metadata"), Mapping) else {}).get(
            "resourceVersion"
        )
        if wanted_version is not None and str(wanted_version) != existing["metadata"]["resourceVersion"]:
            raise SimulatedConflictError(
                f'Operation cannot be fulfilled on {resource_name(key[1], key[0])} "{key[3]}": '
                "the object has been modified; please apply your changes to the latest version and try again"
            )
        clean_patch = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "status")}
        updated = merge_patch(copy.deepcopy(existing), clean_patch)
        validate_schema(key, updated)
        for field in _SERVER_METADATA:
            if field in existing["metadata"]:
                updated["metadata"][field] = existing["metadata"][field]
            else:
                updated["metadata"].pop(field, None)
        if "status" in existing:
            updated["status"] = copy.deepcopy(existing["status"])
        if key[1] == "Secret" and key[0] == "":
            updated = fold_string_data(updated)
        self._check_new_finalizers(existing, updated["metadata"].get("finalizers") or [])
        for name in ("labels", "annotations", "finalizers"):
            if name in updated["metadata"] and not updated["metadata"][name]:
                del updated["metadata"][name]
        if isinstance(clean_patch.get("spec"), Mapping):
            # The patch's manager now owns these spec keys (see ``apply``).
            owned = set(self.internal(existing).get(PATCHED_SPEC_KEYS) or []) | set(clean_patch["spec"])
            self.set_internal(existing, PATCHED_SPEC_KEYS, sorted(owned))
        return self._replace(key, existing, updated, dry_run=False)

    def _check_new_finalizers(self, existing: Manifest, finalizers: list[str]) -> None:
        if not existing["metadata"].get("deletionTimestamp"):
            return
        new = [f for f in finalizers if f not in (existing["metadata"].get("finalizers") or [])]
        if new:
            raise SimulatedApiError(
                f"Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {new}"
            )

    def _replace(self, key: Key, existing: Manifest, updated: Manifest, *, dry_run: bool) -> Manifest:
        if generation_body(updated) != generation_body(existing):
            updated["metadata"]["generation"] = int(existing["metadata"].get("generation", 1)) + 1
        if dry_run:
            return copy.deepcopy(updated)
        if updated == existing:
            return copy.deepcopy(existing)  # a no-op write changes nothing, not even the resourceVersion
        if updated["metadata"].get("generation") != existing["metadata"].get("generation"):
            self.internal(existing)["generationChangedAt"] = self.now
        if existing["metadata"].get("deletionTimestamp") and not has_finalizers(updated):
            self._remove(key)
            return copy.deepcopy(updated)
        self._store(key, updated)
        return copy.deepcopy(updated)

    def write_status(self, key: Key, status: Mapping[str, Any]) -> None:
        """Replace an object's status (the status subresource); no write when unchanged."""
        obj = self.get(key)
        if obj is None or obj.get("status") == status:
            return
        updated = copy.deepcopy(obj)
        updated["status"] = copy.deepcopy(dict(status))
        self._store(key, updated)

    def write_metadata(self, key: Key, *, labels: Mapping[str, str] | None = None) -> None:
        """Merge labels into an object's metadata (a controller adopting an object)."""
        obj = self.get(key)
        if obj is None or not labels:
            return
        current = obj["metadata"].get("labels") or {}
        if all(current.get(k) == v for k, v in labels.items()):
            return
        updated = copy.deepcopy(obj)
        updated["metadata"]["labels"] = {**current, **labels}
        self._store(key, updated)

    def add_finalizer(self, key: Key, finalizer: str) -> None:
        """Add a finalizer (never to an object being deleted, which the API server forbids)."""
        obj = self.get(key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if finalizer in finalizers:
            return
        updated = copy.deepcopy(obj)
        updated["metadata"]["finalizers"] = [*finalizers, finalizer]
        self._store(key, updated)

    def remove_finalizer(self, key: Key, finalizer: str) -> None:
        """Drop a finalizer; a deleting object without finalizers left is removed."""
        obj = self.get(key)
        if obj is None or finalizer not in (obj["metadata"].get("finalizers") or []):
            return
        updated = copy.deepcopy(obj)
        remaining = [f for f in obj["metadata"]["finalizers"] if f != finalizer]
        if remaining:
            updated["metadata"]["finalizers"] = remaining
        else:
            del updated["metadata"]["finalizers"]
        if obj["metadata"].get("deletionTimestamp") and not has_finalizers(updated):
            self._remove(key)
        else:
            self._store(key, updated)

    def delete(self, key: Key) -> bool:
        """Request deletion: objects with finalizers get ``deletionTimestamp``, others go at once.

        Namespaces always stay ``Terminating`` until the namespace controller has
        emptied them. Returns ``False`` when the object does not exist.

        Raises:
            SimulatedApiError: A namespace that may not be deleted.
        """
        obj = self.get(key)
        if obj is None:
            return False
        group, kind, _, name = key
        if group == "" and kind == "Namespace" and name in UNDELETABLE_NAMESPACES:
            raise SimulatedApiError(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        if obj["metadata"].get("deletionTimestamp"):
            return True
        if not has_finalizers(obj):
            self._remove(key)
            return True
        updated = copy.deepcopy(obj)
        updated["metadata"]["deletionTimestamp"] = timestamp(self.now)
        updated["metadata"]["deletionGracePeriodSeconds"] = 0
        if kind == "Namespace" and group == "":
            updated.setdefault("status", {})["phase"] = "Terminating"
        self._store(key, updated)
        return True

    def finalize_namespace(self, key: Key) -> None:
        """The namespace controller's last step: drop the ``kubernetes`` finalizer of an emptied namespace.

        The namespace goes when no other finalizer (in ``metadata.finalizers``) holds it.
        """
        obj = self.get(key)
        if obj is None or not obj["metadata"].get("deletionTimestamp"):
            return
        if not obj["metadata"].get("finalizers"):
            self._remove(key)
            return
        if (obj.get("spec") or {}).get("finalizers"):
            updated = copy.deepcopy(obj)
            updated["spec"]["finalizers"] = []
            self._store(key, updated)

    def _store(self, key: Key, obj: Manifest) -> None:
        obj["metadata"]["resourceVersion"] = self._next_version()
        self.objects[key_to_str(key)] = obj
        if key[0] == CRD_GROUP and key[1] == CRD_KIND:
            self._crd_index = None

    def _remove(self, key: Key) -> None:
        obj = self.objects.pop(key_to_str(key), None)
        if obj is None:
            return
        self._next_version()
        self.state["internal"].pop(str(obj["metadata"].get("uid")), None)
        if key[0] == CRD_GROUP and key[1] == CRD_KIND:
            self._crd_index = None
