"""The simulated API server: stored objects and the rules a real API server enforces.

Everything here works on one :class:`SimulatedApiServer`, the in-memory form of
``<simulation_dir>/cluster.json`` loaded under the simulation's lock (see
:func:`locked_state`). It knows nothing about Flux: controllers
(:mod:`sandbox.drivers.simulation.controllers`) call its methods as a real
controller calls the API.

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

import base64
import copy
import fcntl
import functools
import json
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sandbox.errors import ClusterError, InvalidInputError

Manifest = dict[str, Any]

#: ``(group, kind, namespace, name)``; the namespace is ``""`` for cluster-scoped objects.
Key = tuple[str, str, str, str]

STATE_FILE = "cluster.json"
LOCK_FILE = "cluster.lock"
STATE_FORMAT = 1

CRD_GROUP = "apiextensions.k8s.io"
CRD_KIND = "CustomResourceDefinition"
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
NAMESPACE_FINALIZER = "kubernetes"
#: Added on create by the StorageObjectInUseProtection admission plugin; the
#: pvc-protection / pv-protection controllers remove them once nothing uses the object.
PVC_PROTECTION_FINALIZER = "kubernetes.io/pvc-protection"
PV_PROTECTION_FINALIZER = "kubernetes.io/pv-protection"

#: Namespaces every cluster starts with.
INITIAL_NAMESPACES: tuple[str, ...] = ("default", "kube-node-lease", "kube-public", "kube-system")
#: Namespaces the API server refuses to delete.
UNDELETABLE_NAMESPACES: frozenset[str] = frozenset({"default", "kube-public", "kube-system"})

#: API versions removed from Kubernetes: ``(apiVersion, kind) -> (removed in, replacement)``.
#: A small built-in table of the removals fleets still trip over, used when the
#: static scanner's full data (``sandbox.deprecations``) is unavailable or silent.
REMOVED_APIS: dict[tuple[str, str], tuple[str, str]] = {
    ("extensions/v1beta1", "Deployment"): ("1.16", "apps/v1"),
    ("extensions/v1beta1", "DaemonSet"): ("1.16", "apps/v1"),
    ("extensions/v1beta1", "ReplicaSet"): ("1.16", "apps/v1"),
    ("extensions/v1beta1", "NetworkPolicy"): ("1.16", "networking.k8s.io/v1"),
    ("extensions/v1beta1", "PodSecurityPolicy"): ("1.16", "policy/v1beta1"),
    ("extensions/v1beta1", "Ingress"): ("1.22", "networking.k8s.io/v1"),
    ("apps/v1beta1", "Deployment"): ("1.16", "apps/v1"),
    ("apps/v1beta1", "StatefulSet"): ("1.16", "apps/v1"),
    ("apps/v1beta2", "Deployment"): ("1.16", "apps/v1"),
    ("apps/v1beta2", "StatefulSet"): ("1.16", "apps/v1"),
    ("apps/v1beta2", "DaemonSet"): ("1.16", "apps/v1"),
    ("apps/v1beta2", "ReplicaSet"): ("1.16", "apps/v1"),
    ("networking.k8s.io/v1beta1", "Ingress"): ("1.22", "networking.k8s.io/v1"),
    ("networking.k8s.io/v1beta1", "IngressClass"): ("1.22", "networking.k8s.io/v1"),
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"): ("1.22", "apiextensions.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRole"): ("1.22", "rbac.authorization.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding"): ("1.22", "rbac.authorization.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1beta1", "Role"): ("1.22", "rbac.authorization.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1beta1", "RoleBinding"): ("1.22", "rbac.authorization.k8s.io/v1"),
    ("batch/v1beta1", "CronJob"): ("1.25", "batch/v1"),
    ("policy/v1beta1", "PodSecurityPolicy"): ("1.25", ""),
    ("policy/v1beta1", "PodDisruptionBudget"): ("1.25", "policy/v1"),
    ("discovery.k8s.io/v1beta1", "EndpointSlice"): ("1.25", "discovery.k8s.io/v1"),
    ("events.k8s.io/v1beta1", "Event"): ("1.25", "events.k8s.io/v1"),
    ("autoscaling/v2beta1", "HorizontalPodAutoscaler"): ("1.25", "autoscaling/v2"),
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler"): ("1.26", "autoscaling/v2"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema"): ("1.26", "flowcontrol.apiserver.k8s.io/v1"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "PriorityLevelConfiguration"): (
        "1.26",
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    ("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema"): ("1.29", "flowcontrol.apiserver.k8s.io/v1"),
    ("flowcontrol.apiserver.k8s.io/v1beta2", "PriorityLevelConfiguration"): (
        "1.29",
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    ("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema"): ("1.32", "flowcontrol.apiserver.k8s.io/v1"),
    ("flowcontrol.apiserver.k8s.io/v1beta3", "PriorityLevelConfiguration"): (
        "1.32",
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    ("storage.k8s.io/v1beta1", "CSIStorageCapacity"): ("1.27", "storage.k8s.io/v1"),
}

_CORE_NAMESPACED_KINDS = frozenset(
    {
        "ConfigMap",
        "Endpoints",
        "Event",
        "LimitRange",
        "PersistentVolumeClaim",
        "Pod",
        "PodTemplate",
        "ReplicationController",
        "ResourceQuota",
        "Secret",
        "Service",
        "ServiceAccount",
    }
)
_CORE_CLUSTER_KINDS = frozenset({"Namespace", "Node", "PersistentVolume", "ComponentStatus"})
_BUILTIN_GROUPS = frozenset(
    {
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "extensions",
        "flowcontrol.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)
_BUILTIN_CLUSTER_SCOPED = frozenset(
    {
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("extensions", "PodSecurityPolicy"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("networking.k8s.io", "IngressClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("policy", "PodSecurityPolicy"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "VolumeAttachment"),
    }
)
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


@functools.lru_cache(maxsize=512)
def _removal(api_version: str, kind: str) -> tuple[str, str] | None:
    """``(removed in, replacement)`` of a Kubernetes API version, or None when it is not removed.

    The static scanner's data (``sandbox.deprecations``) is the full table and is
    asked first; the small built-in :data:`REMOVED_APIS` answers when it is not
    available or does not know the API. Flux's own API versions are left to the
    CRDs (``spec.versions``): their removal depends on the Flux release, not on
    the Kubernetes version.
    """
    try:
        from sandbox import deprecations

        entry = deprecations.load_data().lookup(api_version, kind)
    except (ImportError, InvalidInputError):
        entry = None
    if entry is not None and entry.component == "kubernetes":
        return (entry.removed_in, entry.replacement or "") if entry.removed_in else None
    return REMOVED_APIS.get((api_version, kind))


def removed_api(api_version: str, kind: str, kubernetes_version: tuple[int, int]) -> str | None:
    """The refusal message when ``api_version``/``kind`` is removed at ``kubernetes_version``, else None."""
    entry = _removal(api_version, kind)
    if entry is None:
        return None
    removed_in, replacement = entry
    if kubernetes_version < parse_minor_version(removed_in):
        return None
    advice = f"; use {replacement}" if replacement else "; it has no replacement"
    return f'no matches for kind "{kind}" in version "{api_version}" (removed in Kubernetes {removed_in}{advice})'


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


# -- label selectors -----------------------------------------------------------

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


# -- persistence ---------------------------------------------------------------


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
            self.write_status(_object_key(crd), _crd_status(established=True))
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
            if version != "v1" or kind not in _CORE_NAMESPACED_KINDS | _CORE_CLUSTER_KINDS:
                raise SimulatedApiError(no_match)
            return kind not in _CORE_CLUSTER_KINDS
        if group in _BUILTIN_GROUPS:
            return (group, kind) not in _BUILTIN_CLUSTER_SCOPED
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
        _validate_schema(key, body)
        if kind == "Secret" and key[0] == "":
            body = _fold_string_data(body)
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
            _defaults_on_create(obj)
            is_crd = key[0] == CRD_GROUP and kind == CRD_KIND
            conflict = self._crd_names_conflict(obj) if is_crd else None
            if is_crd and (conflict or self.crd_established_delay_seconds > 0):
                obj["status"] = _crd_status(established=False, conflict=conflict)
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
        _validate_schema(key, updated)
        for field in _SERVER_METADATA:
            if field in existing["metadata"]:
                updated["metadata"][field] = existing["metadata"][field]
            else:
                updated["metadata"].pop(field, None)
        if "status" in existing:
            updated["status"] = copy.deepcopy(existing["status"])
        if key[1] == "Secret" and key[0] == "":
            updated = _fold_string_data(updated)
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
        if _body(updated) != _body(existing):
            updated["metadata"]["generation"] = int(existing["metadata"].get("generation", 1)) + 1
        if dry_run:
            return copy.deepcopy(updated)
        if updated == existing:
            return copy.deepcopy(existing)  # a no-op write changes nothing, not even the resourceVersion
        if updated["metadata"].get("generation") != existing["metadata"].get("generation"):
            self.internal(existing)["generationChangedAt"] = self.now
        if existing["metadata"].get("deletionTimestamp") and not _has_finalizers(updated):
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
        if obj["metadata"].get("deletionTimestamp") and not _has_finalizers(updated):
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
        if not _has_finalizers(obj):
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


def _is_namespace(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "Namespace" and obj.get("apiVersion") == "v1"


def _has_finalizers(obj: Mapping[str, Any]) -> bool:
    """Whether anything still holds the object (a namespace's ``spec.finalizers`` count too)."""
    if (obj.get("metadata") or {}).get("finalizers"):
        return True
    return _is_namespace(obj) and bool((obj.get("spec") or {}).get("finalizers"))


def _body(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the generation tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def _fold_string_data(body: dict[str, Any]) -> dict[str, Any]:
    """Fold a Secret's ``stringData`` into base64 ``data``, as the API server does on write."""
    string_data = body.pop("stringData", None)
    if string_data:
        data = dict(body.get("data") or {})
        for name, value in string_data.items():
            data[str(name)] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
        body["data"] = data
    if "type" not in body:
        body["type"] = "Opaque"
    return body


#: Flux's GitRepository CRD: ``spec.url`` must match this pattern (its OpenAPI schema).
GIT_REPOSITORY_URL_PATTERN = r"^(http|https|ssh)://.*$"


def _validate_crd(name: str, body: Mapping[str, Any]) -> None:
    """The apiextensions validation the simulation enforces: exactly one storage version.

    Raises:
        SimulatedApiError: The CRD is invalid (a real API server answers 422).
    """
    spec = body.get("spec") if isinstance(body.get("spec"), Mapping) else {}
    versions = spec.get("versions") if isinstance(spec, Mapping) else None
    invalid = f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: spec.versions'
    if not isinstance(versions, list) or not versions:
        raise SimulatedApiError(f"{invalid}: Required value: must have exactly one version marked as storage version")
    storage = [str(v.get("name")) for v in versions if isinstance(v, Mapping) and v.get("storage") is True]
    if len(storage) != 1:
        raise SimulatedApiError(
            f'{invalid}: Invalid value: "{",".join(storage)}": must have exactly one version marked as storage version'
        )


def _validate_schema(key: Key, body: Mapping[str, Any]) -> None:
    """The schema rules the simulation enforces: a CRD's versions, a GitRepository's ``spec.url``.

    As Flux's CRD requires, the URL must be http, https or ssh -- except, in
    the simulation only, a ``file://`` URL or an absolute path: the simulated
    source-controller reads such a repository from disk (the demo's local
    remote), which a real cluster cannot. scp-style addresses and relative
    paths are refused as a real API server refuses them.

    Raises:
        SimulatedApiError: The object is invalid (a real API server answers 422).
    """
    if key[:2] == (CRD_GROUP, CRD_KIND):
        _validate_crd(key[3], body)
        return
    if key[:2] != ("source.toolkit.fluxcd.io", "GitRepository"):
        return
    url = (body.get("spec") or {}).get("url") if isinstance(body.get("spec"), Mapping) else None
    if not isinstance(url, str):
        return
    if re.match(GIT_REPOSITORY_URL_PATTERN, url) or url.startswith("file://") or url.startswith("/"):
        return
    raise SimulatedApiError(
        f'GitRepository.source.toolkit.fluxcd.io "{key[3]}" is invalid: spec.url: Invalid value: "{url}": '
        f"spec.url in body should match '{GIT_REPOSITORY_URL_PATTERN}'"
    )


def crd_condition(crd: Mapping[str, Any], condition: str) -> str | None:
    """The status (``"True"``, ``"False"``, ...) of a CRD's condition, or ``None`` when it has none."""
    for entry in (crd.get("status") or {}).get("conditions") or []:
        if entry.get("type") == condition:
            return str(entry.get("status"))
    return None


def _crd_status(*, established: bool, conflict: str | None = None) -> dict[str, Any]:
    """A CRD's status as the apiextensions controllers write it."""
    if conflict:
        names = {"type": "NamesAccepted", "status": "False", "reason": "NameConflict", "message": conflict}
    else:
        names = {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"}
    if established:
        state = {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
        }
    else:
        state = {"type": "Established", "status": "False", "reason": "Installing", "message": "the CRD is installing"}
    return {"conditions": [names, state]}


def _object_key(obj: Mapping[str, Any]) -> Key:
    """The storage key of a stored object."""
    meta = obj["metadata"]
    return key_of(str(obj["apiVersion"]), str(obj["kind"]), meta.get("namespace"), str(meta["name"]))


def _defaults_on_create(obj: Manifest) -> None:
    """Fields a real API server fills in on create."""
    group, _ = split_api_version(obj["apiVersion"])
    kind = obj["kind"]
    if group == "" and kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", [NAMESPACE_FINALIZER])
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif group == CRD_GROUP and kind == CRD_KIND:
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if CRD_CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CRD_CLEANUP_FINALIZER)
        obj["status"] = _crd_status(established=True)
    elif group == "" and kind == "Service":
        obj.setdefault("spec", {}).setdefault("type", "ClusterIP")
    elif group == "" and kind == "PersistentVolumeClaim":
        _add_finalizer_on_create(obj, PVC_PROTECTION_FINALIZER)
        obj["status"] = {"phase": "Pending"}
    elif group == "" and kind == "PersistentVolume":
        _add_finalizer_on_create(obj, PV_PROTECTION_FINALIZER)
        # The API server's default for a PV created without one (dynamic
        # provisioners set it from the StorageClass, usually Delete).
        obj.setdefault("spec", {}).setdefault("persistentVolumeReclaimPolicy", "Retain")
        obj["status"] = {"phase": "Pending"}


def _add_finalizer_on_create(obj: Manifest, finalizer: str) -> None:
    finalizers = obj["metadata"].setdefault("finalizers", [])
    if finalizer not in finalizers:
        finalizers.append(finalizer)


__all__ = [
    "Key",
    "Manifest",
    "REMOVED_APIS",
    "SimulatedApiError",
    "SimulatedApiServer",
    "SimulatedConflictError",
    "crd_condition",
    "describe_key",
    "key_of",
    "locked_state",
    "merge_patch",
    "parse_label_selector",
    "parse_minor_version",
    "removed_api",
]
