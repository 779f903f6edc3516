"""Watching Flux objects: a watch nobody needs any more is told to stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from sandbox.drivers.cluster import KUSTOMIZATION_API, Manifest, WatchEvent
from sandbox.flux import watch_until

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
