"""Watching Flux objects: a watch nobody needs any more is told to stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.drivers.cluster import KUSTOMIZATION_API, Manifest, ObjectRef, WatchEvent
from sandbox.errors import NotReadyError
from sandbox.flux import inventory_refs, readiness, wait_ready, watch_until

KUSTOMIZATION: Manifest = {
    "apiVersion": KUSTOMIZATION_API,
    "kind": "Kustomization",
    "metadata": {"name": "apps", "namespace": "flux-system"},
}


class QuietCluster:
    """A cluster whose watches report one object, then nothing until they are stopped."""

    def __init__(self) -> None:
        self.stops: list[threading.Event] = []
        self.ended = threading.Semaphore(0)

    def list(self, api_version: str, kind: str, *args: Any, **kwargs: Any) -> list[Manifest]:
        return []

    def watch(
        self, api_version: str, kind: str, *args: Any, stop: threading.Event | None = None, **kwargs: Any
    ) -> Iterator[WatchEvent]:
        assert stop is not None, "the watcher must give its watches a way to stop"
        self.stops.append(stop)
        try:
            yield WatchEvent("ADDED", KUSTOMIZATION)
            stop.wait()
        finally:
            self.ended.release()


def test_the_watches_behind_a_finished_wait_are_stopped() -> None:
    cluster = QuietCluster()
    done, snapshot = watch_until(cluster, [(KUSTOMIZATION_API, "Kustomization")], bool, timeout=600)  # type: ignore[arg-type]
    assert done and len(snapshot) == 1
    assert [stop.is_set() for stop in cluster.stops] == [True]
    # The watch thread's stream ends now, not at its ten-minute timeout.
    assert cluster.ended.acquire(timeout=30)


class DeletedBeforeTheWatch:
    """A cluster whose object is deleted between the watcher's first list and its watch's own list.

    The watch reports what exists when it starts (nothing) and then nothing more, so it never says ``DELETED``:
    on a real cluster kustomize-controller deletes a Kustomization's objects that fast during teardown.
    """

    def __init__(self) -> None:
        self.lists = 0

    def list(self, api_version: str, kind: str, *args: Any, **kwargs: Any) -> list[Manifest]:
        self.lists += 1
        return [KUSTOMIZATION] if self.lists == 1 else []

    def watch(
        self, api_version: str, kind: str, *args: Any, stop: threading.Event | None = None, **kwargs: Any
    ) -> Iterator[WatchEvent]:
        assert stop is not None
        stop.wait()
        return
        yield  # a generator that reports nothing


def test_an_object_deleted_before_the_watch_started_is_seen_gone() -> None:
    cluster = DeletedBeforeTheWatch()
    done, snapshot = watch_until(
        cluster,  # type: ignore[arg-type]
        [(KUSTOMIZATION_API, "Kustomization")],
        lambda seen: not seen,
        timeout=600,
    )
    assert done and snapshot == {}


# -- readiness semantics -------------------------------------------------------------------


def _applier(name: str, *, suspend: bool = False, stalled: tuple[str, str] | None = None) -> Manifest:
    """A Kustomization Ready=True for its current generation, optionally suspended or Stalled."""
    conditions: list[dict[str, Any]] = [
        {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded", "message": "Applied revision: main@x"}
    ]
    if stalled is not None:
        conditions = [
            {"type": "Ready", "status": "False", "reason": "ArtifactFailed", "message": "retrying"},
            {"type": "Stalled", "status": "True", "reason": stalled[0], "message": stalled[1], "observedGeneration": 3},
        ]
    obj: Manifest = {
        "apiVersion": KUSTOMIZATION_API,
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system", "generation": 3},
        "spec": {"suspend": True} if suspend else {},
        "status": {"observedGeneration": 3, "conditions": conditions},
    }
    return obj


class ListedCluster:
    """A cluster that lists fixed objects; a watch means the wait did not end on what the list showed."""

    def __init__(self, *objects: Manifest) -> None:
        self.objects = list(objects)

    def list(self, api_version: str, kind: str, *args: Any, **kwargs: Any) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] == kind]

    def watch(self, *args: Any, **kwargs: Any) -> Iterator[WatchEvent]:
        raise AssertionError("waited on: the listed objects should have decided the outcome")


def test_a_suspended_object_is_not_ready_whatever_its_stale_condition_says() -> None:
    state = readiness(_applier("apps", suspend=True))
    assert not state.ready
    assert state.reason == "Suspended"
    assert "spec.suspend" in state.message


def test_stalled_is_a_terminal_failure_named_with_its_reason_without_waiting() -> None:
    cluster = ListedCluster(
        _applier("infra"), _applier("apps", stalled=("InvalidPathReason", "spec.path './nope' not found"))
    )
    state = readiness(cluster.objects[1])
    assert not state.ready and state.stalled and state.reason == "InvalidPathReason"
    with pytest.raises(NotReadyError) as failed:
        wait_ready(cluster, timeout=600)  # type: ignore[arg-type]
    assert "Kustomization/flux-system/apps: InvalidPathReason: spec.path './nope' not found" in str(failed.value)
    assert str(failed.value).startswith("stalled")


def test_a_stalled_condition_of_an_older_generation_is_not_terminal() -> None:
    obj = _applier("apps", stalled=("InvalidPathReason", "spec.path './nope' not found"))
    obj["metadata"]["generation"] = 4  # the spec was fixed since; Flux has not looked yet
    state = readiness(obj)
    assert not state.ready and not state.stalled


def test_cli_utils_inventory_ids_are_decoded() -> None:
    ks = {
        "status": {
            "inventory": {
                "entries": [
                    {"id": "_system__controller__foo_rbac.authorization.k8s.io_ClusterRole", "v": "v1"},
                    {"id": "kube-system_extension-apiserver-authentication__reader_rbac.authorization.k8s.io_Role"},
                    {"id": "_platform__Namespace", "v": "v1"},
                ]
            }
        }
    }
    assert inventory_refs(ks) == [
        ObjectRef("rbac.authorization.k8s.io/v1", "ClusterRole", "system:controller:foo", None),
        ObjectRef("rbac.authorization.k8s.io/v1", "Role", "extension-apiserver-authentication:reader", "kube-system"),
        ObjectRef("v1", "Namespace", "platform", None),
    ]
