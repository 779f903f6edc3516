"""The **simulated** cluster driver: a Kubernetes API and Flux controllers simulated on disk.

No Kubernetes API server can run where this product is developed and tested,
so :class:`SimulatedCluster` stands in for one behind the same
:class:`~sandbox.drivers.cluster.ClusterDriver` Protocol as the real driver. It
is built to fail the way a real cluster fails, because a simulation that
only succeeds would let the teardown-order and readiness logic pass tests
it fails on a real cluster:

* controllers and their custom objects -- a load balancer's finalizer is
  removed only while the controller installed by its HelmRelease runs;
  deleting the controller first leaves the finalizer pending forever;
* volumes -- a claim of a CSI driver's StorageClass gets a PersistentVolume
  (with the external-provisioner's finalizer) and a cloud volume; once the
  claim is gone the running driver deletes both (reclaim policy ``Delete``),
  an uninstalled one leaves them behind;
* suspension -- deleting a *suspended* Kustomization or HelmRelease leaves
  everything it applied (and their external resources) behind;
* self-healing -- a Kustomization re-applies what was deleted from its
  inventory until it is suspended;
* external resources -- recorded as files in ``<simulation_dir>/external/``,
  which the local cluster module's destroy-time check refuses to leave behind;
* readiness -- after a configurable delay, with injectable failures, and
  ``observedGeneration`` as Flux reports it;
* API versions removed at the cluster's Kubernetes version are refused;
* CustomResourceDefinitions become Established (their kinds served) only after
  a configurable delay, as a real API server installs them asynchronously.

State lives in ``<simulation_dir>/cluster.json`` under an ``flock`` lock, so two
processes (two CLI invocations) see one cluster. There are no background
threads: every call first runs the simulated controllers to a fixed point
(:func:`~sandbox.drivers.simulation.controllers.simulation_tick`), and watches
poll. Time is the wall clock, or an injected clock in tests.

The pieces live in :mod:`sandbox.drivers.simulation` (its docstring lists them):
the API server and its rules, one module per controller (the built-in ones,
source-, kustomize- and helm-controller, the custom-object ones) and the tick
that runs them, and what the controllers use (the kustomize build, git sources
and the simulated OCI registry, what a simulated Helm chart renders).
"""

from __future__ import annotations

import builtins
import copy
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sandbox.drivers.cluster import Manifest, ObjectRef, WatchEvent
from sandbox.drivers.simulation.apimachinery import (
    SimulatedApiError,
    describe_key,
    key_of,
    key_to_str,
    parse_label_selector,
    parse_minor_version,
)
from sandbox.drivers.simulation.apiserver import SimulatedApiServer, locked_state
from sandbox.drivers.simulation.controllers import simulation_tick
from sandbox.drivers.simulation.reconciling import ready_condition
from sandbox.drivers.simulation.settings import (
    DEFAULT_CONTROLLER_CATALOG,
    ReconciledKind,
    SimulatedController,
    SimulationSettings,
)
from sandbox.drivers.simulation.sources import GitTools
from sandbox.errors import ClusterError, ClusterUnreachableError, InvalidInputError

#: How often a watch looks at the simulated cluster again.
DEFAULT_WATCH_POLL_SECONDS = 0.075

_FLUX_KINDS: tuple[tuple[str, str], ...] = (
    ("source.toolkit.fluxcd.io", "GitRepository"),
    ("source.toolkit.fluxcd.io", "OCIRepository"),
    ("source.toolkit.fluxcd.io", "HelmRepository"),
    ("kustomize.toolkit.fluxcd.io", "Kustomization"),
    ("helm.toolkit.fluxcd.io", "HelmRelease"),
)


class SimulatedCluster:
    """A simulated Kubernetes cluster with simulated Flux controllers, persisted in a directory.

    Args:
        simulation_dir: The cluster's directory (the local cluster module
            creates it at apply and removes it at destroy).
        kubernetes_version: The simulated control plane's ``MAJOR.MINOR``.
        readiness_delay_seconds: How long a Flux object takes to become Ready
            after its generation changed (or it applied a new revision).
        controller_catalog: The custom-object controllers Helm charts install
            (default: aws-load-balancer-controller and aws-ebs-csi-driver).
        oci_git_remote: The fleet repository (local path or ``file://`` URL)
            whose release tags the simulated OCI registry serves.
        oci_artifact_path: The fleet repository directory an OCI artifact holds.
        oci_layouts: OCI repository URL -> OCI image layout directory serving it
            (the pushed artifacts; see :class:`~sandbox.drivers.simulation.settings.SimulationSettings`).
        clock: Seconds since the epoch (tests inject one to step time).
        watch_poll_seconds: How often a watch looks again.
        git_binary: The git executable the simulated source-controller runs.
        git_timeout_seconds: Longest a git command may take.
        crd_established_delay_seconds: How long (by ``clock``) a new
            CustomResourceDefinition takes to become Established and served;
            ``0`` establishes it at once.
        volume_deletion_seconds: How long the simulated CSI driver takes to
            delete the cloud volume of a released PersistentVolume.

    Raises:
        InvalidInputError: An invalid Kubernetes version or a negative delay.
    """

    def __init__(
        self,
        simulation_dir: Path,
        *,
        kubernetes_version: str = "1.31",
        readiness_delay_seconds: float = 0.0,
        controller_catalog: builtins.list[SimulatedController] | None = None,
        oci_git_remote: str | None = None,
        oci_artifact_path: str = "platform",
        oci_layouts: Mapping[str, Path] | None = None,
        clock: Callable[[], float] = time.time,
        watch_poll_seconds: float = DEFAULT_WATCH_POLL_SECONDS,
        git_binary: str = "git",
        git_timeout_seconds: float = 60.0,
        crd_established_delay_seconds: float = 0.0,
        volume_deletion_seconds: float = 0.0,
    ) -> None:
        if min(readiness_delay_seconds, crd_established_delay_seconds, volume_deletion_seconds) < 0:
            raise InvalidInputError("the simulated readiness, CRD and volume deletion delays must not be negative")
        self._crd_established_delay_seconds = crd_established_delay_seconds
        self.simulation_dir = Path(simulation_dir).absolute()
        self._version = parse_minor_version(kubernetes_version)
        self.kubernetes_version = f"{self._version[0]}.{self._version[1]}"
        self._clock = clock
        self._watch_poll_seconds = max(0.01, watch_poll_seconds)
        self._settings = SimulationSettings(
            simulation_dir=self.simulation_dir,
            readiness_delay_seconds=readiness_delay_seconds,
            controller_catalog=tuple(DEFAULT_CONTROLLER_CATALOG if controller_catalog is None else controller_catalog),
            oci_git_remote=oci_git_remote,
            oci_artifact_path=oci_artifact_path.strip("/") or ".",
            oci_layouts=dict(oci_layouts or {}),
            git=GitTools(binary=git_binary, timeout_seconds=git_timeout_seconds),
            volume_deletion_seconds=volume_deletion_seconds,
        )

    def __repr__(self) -> str:
        return f"SimulatedCluster({str(self.simulation_dir)!r}, kubernetes_version={self.kubernetes_version!r})"

    # -- sessions ----------------------------------------------------------------

    def _unreachable(self) -> ClusterUnreachableError:
        return ClusterUnreachableError(f"simulated cluster at {self.simulation_dir} does not exist (not provisioned?)")

    @contextmanager
    def _session(self, verb: str, target: str) -> Iterator[SimulatedApiServer]:
        """Lock, load, run the controllers, hand over the API server, save."""
        if not self.simulation_dir.is_dir():
            raise self._unreachable()
        try:
            with locked_state(self.simulation_dir):
                server = SimulatedApiServer.load(
                    self.simulation_dir,
                    now=self._clock(),
                    kubernetes_version=self._version,
                    crd_established_delay_seconds=self._crd_established_delay_seconds,
                )
                try:
                    simulation_tick(server, self._settings)
                    yield server
                finally:
                    server.save(self.simulation_dir)
        except SimulatedApiError as exc:
            raise ClusterError(f"simulated cluster at {self.simulation_dir}: {verb} {target}: {exc}") from None
        except InvalidInputError as exc:
            raise InvalidInputError(f"simulated cluster at {self.simulation_dir}: {exc}") from None
        except FileNotFoundError:
            if not self.simulation_dir.is_dir():  # removed while we worked (a destroy)
                raise self._unreachable() from None
            raise

    def tick(self) -> None:
        """Let the simulated controllers act now (every call does this first anyway)."""
        with self._session("reconcile", "cluster"):
            pass

    # -- ClusterDriver -------------------------------------------------------------

    def server_version(self) -> str:
        """The simulated control plane's ``major.minor``.

        Raises:
            ClusterUnreachableError: The simulation directory does not exist.
        """
        with self._session("get", "/version"):
            return self.kubernetes_version

    def apply(self, manifest: Mapping[str, Any]) -> Manifest:
        """Create or update an object (server-side apply semantics); return the stored object.

        Raises:
            InvalidInputError: No apiVersion/kind/name, or a namespaced kind without a namespace.
            ClusterError: Refused: a removed API version, a kind without CRD, a
                missing or terminating namespace, new finalizers on a deleting object.
            ClusterUnreachableError: The simulation directory does not exist.
        """
        try:
            ref = ObjectRef.of(manifest)
        except (KeyError, TypeError):
            raise InvalidInputError("apply: the manifest needs apiVersion, kind and metadata.name") from None
        with self._session("apply", str(ref)) as server:
            return server.apply(manifest)

    def get(self, ref: ObjectRef) -> Manifest | None:
        """The stored object, or ``None`` when it (or its kind) does not exist.

        Raises:
            InvalidInputError: A namespaced kind without a namespace.
            ClusterUnreachableError: The simulation directory does not exist.
        """
        with self._session("get", str(ref)) as server:
            namespaced = server.served_or_none(ref.api_version, ref.kind)
            if namespaced is None:
                return None
            if namespaced and not ref.namespace:
                raise InvalidInputError(f"get {ref}: {ref.kind} is namespaced; a namespace is required")
            found = server.get(key_of(ref.api_version, ref.kind, ref.namespace if namespaced else None, ref.name))
            return _served_as(found, ref.api_version) if found is not None else None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> builtins.list[Manifest]:
        """All objects of a kind (in one namespace, or all when ``None``); ``[]`` for kinds not served.

        Raises:
            ClusterError: A malformed label selector.
            ClusterUnreachableError: The simulation directory does not exist.
        """
        target = f"{kind} in namespace {namespace}" if namespace else f"{kind} in all namespaces"
        with self._session("list", target) as server:
            return self._list(server, api_version, kind, namespace, label_selector)

    @staticmethod
    def _list(
        server: SimulatedApiServer,
        api_version: str,
        kind: str,
        namespace: str | None,
        label_selector: str | None,
    ) -> builtins.list[Manifest]:
        requirements = parse_label_selector(label_selector)
        namespaced = server.served_or_none(api_version, kind)
        if namespaced is None:
            return []
        group = key_of(api_version, kind, None, "")[0]
        found = server.select(group, kind, namespace if namespaced else None, requirements)
        return [_served_as(obj, api_version) for obj in found]

    def merge_patch(self, ref: ObjectRef, patch: Mapping[str, Any]) -> Manifest:
        """Apply a JSON merge patch (RFC 7386); return the patched object.

        Raises:
            ClusterError: The object or its kind does not exist, or the patch is refused.
            ClusterUnreachableError: The simulation directory does not exist.
        """
        with self._session("patch", str(ref)) as server:
            namespaced = server.served(ref.api_version, ref.kind)
            if namespaced and not ref.namespace:
                raise InvalidInputError(f"patch {ref}: {ref.kind} is namespaced; a namespace is required")
            key = key_of(ref.api_version, ref.kind, ref.namespace if namespaced else None, ref.name)
            return _served_as(server.patch(key, patch), ref.api_version)

    def delete(self, ref: ObjectRef) -> bool:
        """Request deletion (finalizers may delay it). ``False`` when it did not exist.

        Raises:
            ClusterError: The deletion is refused (e.g. ``kube-system``).
            ClusterUnreachableError: The simulation directory does not exist.
        """
        with self._session("delete", str(ref)) as server:
            namespaced = server.served_or_none(ref.api_version, ref.kind)
            if namespaced is None:
                return False
            if namespaced and not ref.namespace:
                raise InvalidInputError(f"delete {ref}: {ref.kind} is namespaced; a namespace is required")
            return server.delete(key_of(ref.api_version, ref.kind, ref.namespace if namespaced else None, ref.name))

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float = 60.0,
        stop: threading.Event | None = None,
    ) -> Iterator[WatchEvent]:
        """Stream changes of a kind until ``timeout_seconds`` (wall-clock) pass or ``stop`` is set.

        Starts with ``ADDED`` for every existing object, then polls the
        simulation (running its controllers) and reports ``ADDED``,
        ``MODIFIED`` (a new resourceVersion) and ``DELETED``. An object that
        stops matching the label selector is reported ``DELETED``, as a real
        watch does. A kind that is not served is waited for.

        Raises:
            ClusterError: A malformed label selector.
            ClusterUnreachableError: The simulation directory does not exist (or goes away).
        """
        deadline = time.monotonic() + timeout_seconds
        target = f"{kind} in namespace {namespace}" if namespace else f"{kind} in all namespaces"
        known: dict[tuple[str, str], Manifest] = {}
        while True:
            with self._session("watch", target) as server:
                items = self._list(server, api_version, kind, namespace, label_selector)
            fresh = {_name_key(item): item for item in items}
            for name_key, item in fresh.items():
                previous = known.get(name_key)
                if previous is None:
                    yield WatchEvent("ADDED", item)
                elif previous["metadata"].get("resourceVersion") != item["metadata"].get("resourceVersion"):
                    yield WatchEvent("MODIFIED", item)
            for name_key in sorted(known.keys() - fresh.keys()):
                yield WatchEvent("DELETED", known[name_key])
            known = fresh
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            pause = min(self._watch_poll_seconds, remaining)
            if stop is None:
                time.sleep(pause)
            elif stop.wait(pause):
                return

    # -- simulation helpers (tests, the demo, the CLI's status) ---------------------

    def external_resources(self) -> builtins.list[str]:
        """The external resources controllers created and not yet deleted (record names, sorted).

        Names are ``<kind>-<namespace>-<name>`` (e.g. ``load-balancer-platform-shared-entrypoint``):
        the files in ``<simulation_dir>/external/`` without their ``.json``.

        Raises:
            ClusterUnreachableError: The simulation directory does not exist.
        """
        if not self.simulation_dir.is_dir():
            raise self._unreachable()
        directory = self._settings.external_dir
        if not directory.is_dir():
            return []
        return sorted(path.name.removesuffix(".json") for path in directory.iterdir() if not path.name.startswith("."))

    def inject_failure(self, ref: ObjectRef, reason: str, message: str) -> None:
        """Make a Flux object report ``Ready=False`` with ``reason`` and ``message`` (persisted).

        The object need not exist yet; the failure shows once its controller
        reports on it, and lasts until :meth:`clear_failure`. A failing
        HelmRelease also stops the custom-object controller its chart installs.

        Raises:
            InvalidInputError: An empty reason.
            ClusterUnreachableError: The simulation directory does not exist.
        """
        if not reason.strip():
            raise InvalidInputError("an injected failure needs a reason")
        with self._session("inject failure into", str(ref)) as server:
            key = key_of(ref.api_version, ref.kind, ref.namespace, ref.name)
            server.failures()[key_to_str(key)] = {"reason": reason, "message": message}
            server.dirty = True
            simulation_tick(server, self._settings)

    def clear_failure(self, ref: ObjectRef) -> None:
        """Remove a failure injected with :meth:`inject_failure` (nothing when there is none).

        Raises:
            ClusterUnreachableError: The simulation directory does not exist.
        """
        with self._session("clear failure of", str(ref)) as server:
            key = key_of(ref.api_version, ref.kind, ref.namespace, ref.name)
            if server.failures().pop(key_to_str(key), None) is not None:
                server.dirty = True
                simulation_tick(server, self._settings)  # the controllers report the real condition again

    def status_summary(self) -> dict[str, Any]:
        """An overview for people: Flux objects' readiness, pending deletions, external resources.

        Raises:
            ClusterUnreachableError: The simulation directory does not exist.
        """
        with self._session("summarize", "cluster") as server:
            flux = []
            for group, kind in _FLUX_KINDS:
                for obj in server.select(group, kind):
                    condition = ready_condition(obj) or {}
                    flux.append(
                        {
                            "object": describe_key(
                                key_of(
                                    obj["apiVersion"], kind, obj["metadata"].get("namespace"), obj["metadata"]["name"]
                                )
                            ),
                            "ready": condition.get("status", "NoStatus"),
                            "reason": condition.get("reason", ""),
                            "message": condition.get("message", ""),
                            "suspended": bool((obj.get("spec") or {}).get("suspend")),
                        }
                    )
            pending = [
                {
                    "object": describe_key(
                        key_of(
                            obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]
                        )
                    ),
                    "finalizers": list(obj["metadata"].get("finalizers") or []),
                }
                for obj in server.objects.values()
                if obj["metadata"].get("deletionTimestamp")
            ]
            return {
                "simulated": True,
                "simulation_dir": str(self.simulation_dir),
                "kubernetes_version": self.kubernetes_version,
                "objects": len(server.objects),
                "resource_version": server.resource_version,
                "flux": flux,
                "pending_deletion": sorted(pending, key=lambda p: p["object"]),
                "external_resources": self.external_resources(),
                "injected_failures": sorted(server.failures()),
            }


def _served_as(obj: Mapping[str, Any], api_version: str) -> Manifest:
    """A copy of a stored object as served at ``api_version`` (the simulation converts by relabelling)."""
    served = copy.deepcopy(dict(obj))
    served["apiVersion"] = api_version
    return served


def _name_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


__all__ = [
    "DEFAULT_CONTROLLER_CATALOG",
    "ReconciledKind",
    "SimulatedCluster",
    "SimulatedController",
    "simulation_tick",
]
