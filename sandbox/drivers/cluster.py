"""The cluster driver Protocol: the subset of the Kubernetes API this product uses.

Two implementations:

* :mod:`sandbox.drivers.kubernetes_cluster` -- the real driver over the
  ``kubernetes`` client, for any cluster in a kubeconfig.
* :mod:`sandbox.drivers.simulated_cluster` -- a **simulated** cluster persisted
  on disk, with simulated Flux controllers. No Kubernetes API server can run on
  the machines this project is developed on; the simulation stands in for one
  and is named as a simulation everywhere.

Objects are plain dicts shaped like Kubernetes manifests
(``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

Manifest = dict[str, Any]

# API versions of the Flux objects this product drives.
KUSTOMIZATION_API = "kustomize.toolkit.fluxcd.io/v1"
HELMRELEASE_API = "helm.toolkit.fluxcd.io/v2"
GITREPOSITORY_API = "source.toolkit.fluxcd.io/v1"
OCIREPOSITORY_API = "source.toolkit.fluxcd.io/v1"
FLUX_NAMESPACE = "flux-system"


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identifies one object in a cluster.

    Attributes:
        api_version: ``group/version`` (or ``v1`` for the core group).
        kind: The object's kind, e.g. ``Kustomization``.
        name: ``metadata.name``.
        namespace: ``metadata.namespace``; ``None`` for cluster-scoped objects.
    """

    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> ObjectRef:
        """The reference of a manifest or stored object."""
        meta = manifest.get("metadata") or {}
        return cls(
            api_version=str(manifest["apiVersion"]),
            kind=str(manifest["kind"]),
            name=str(meta["name"]),
            namespace=meta.get("namespace"),
        )

    @property
    def group(self) -> str:
        """The API group ('' for the core group)."""
        return self.api_version.rpartition("/")[0]

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch, as the Kubernetes API reports it."""

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: Manifest


@runtime_checkable
class ClusterDriver(Protocol):
    """What this product needs from a Kubernetes cluster.

    Errors: :class:`~sandbox.errors.ClusterUnreachableError` (retryable) when the
    API does not answer, :class:`~sandbox.errors.ClusterError` when it refuses.
    """

    def server_version(self) -> str:
        """The control plane's ``major.minor`` version, e.g. ``"1.31"``."""
        ...

    def apply(self, manifest: Mapping[str, Any]) -> Manifest:
        """Create or update an object (server-side apply semantics); return the stored object."""
        ...

    def get(self, ref: ObjectRef) -> Manifest | None:
        """The stored object, or ``None`` when it does not exist."""
        ...

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Manifest]:
        """All objects of a kind (in one namespace, or all namespaces when ``None``)."""
        ...

    def merge_patch(self, ref: ObjectRef, patch: Mapping[str, Any]) -> Manifest:
        """Apply a JSON merge patch (``application/merge-patch+json``); return the object."""
        ...

    def delete(self, ref: ObjectRef) -> bool:
        """Request deletion (finalizers may delay it). ``False`` when it did not exist."""
        ...

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float = 60.0,
        stop: threading.Event | None = None,
    ) -> Iterator[WatchEvent]:
        """Stream changes of a kind until ``timeout_seconds`` pass or ``stop`` is set.

        The stream starts with an ``ADDED`` event for every existing object (as a
        list followed by a watch from its resourceVersion does), then reports
        changes as they happen. It ends quietly at the timeout, or soon after
        ``stop`` is set by the thread that no longer needs it (a watch with no
        events to deliver would otherwise run on until its timeout).
        """
        ...


@runtime_checkable
class DiscoveryCache(Protocol):
    """A driver that caches API discovery (the real one): told to look again once new kinds are served."""

    def refresh_discovery(self) -> None:
        """Forget cached discovery; the next lookup asks the API server again."""
        ...


def parse_inventory_id(entry_id: str) -> tuple[str, str, str, str] | None:
    """``(namespace, name, group, kind)`` of a cli-utils inventory id; ``None`` when malformed.

    As cli-utils' ``ParseObjMetadata``: the namespace ends at the first ``_``,
    kind and group are the last two fields, and what is between is the name,
    in which ``__`` stands for ``:`` (``system:foo`` is stored as ``system__foo``).
    Here, beside :class:`ObjectRef`, because both sides read these ids: the product
    (:func:`sandbox.flux.inventory_refs`) and the simulated kustomize-controller.
    """
    namespace, separator, rest = entry_id.partition("_")
    rest, _, kind = rest.rpartition("_")
    name, _, group = rest.rpartition("_")
    if not separator or not kind or not name:
        return None
    return namespace, name.replace("__", ":"), group, kind
