"""Flux object helpers: readiness, and waiting on a cluster with watches.

Waiting never sleeps in a loop: one watch per kind feeds a queue, and the wait
re-evaluates its condition on each event, ending at the condition or the
timeout.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.drivers.cluster import (
    HELMRELEASE_API,
    KUSTOMIZATION_API,
    ClusterDriver,
    Manifest,
    ObjectRef,
    parse_inventory_id,
)
from sandbox.errors import NotReadyError, SandboxError
from sandbox.progress import Progress, quiet

#: The kinds whose readiness tells whether a cluster converged.
FLUX_APPLIERS: tuple[tuple[str, str], ...] = (
    (KUSTOMIZATION_API, "Kustomization"),
    (HELMRELEASE_API, "HelmRelease"),
)


@dataclass(frozen=True)
class Readiness:
    """One object's readiness as Flux reports it.

    ``stalled`` marks a terminal failure (``Stalled=True`` for the current
    generation): Flux will not retry until the object changes, so waiting on
    is pointless.
    """

    ref: ObjectRef
    ready: bool
    reason: str
    message: str
    stalled: bool = False

    def line(self) -> str:
        """``Kind/ns/name: Reason: message`` for reports."""
        return f"{self.ref}: {self.reason or 'NoStatus'}: {self.message or 'no Ready condition reported yet'}"


def condition_of(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The condition of type ``kind`` of an object, if any."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``Ready`` condition of an object, if any."""
    return condition_of(obj, "Ready")


def readiness(obj: Mapping[str, Any]) -> Readiness:
    """Ready means ``Ready=True`` for the object's current generation (``observedGeneration``).

    A suspended object (``spec.suspend: true``) is never ready: Flux no longer
    reconciles it, so its Ready condition describes an older state of the
    cluster, not the one being checked. ``Stalled=True`` for the current
    generation is a terminal failure (:attr:`Readiness.stalled`).
    """
    ref = ObjectRef.of(obj)
    condition = ready_condition(obj)
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if (obj.get("spec") or {}).get("suspend"):
        return Readiness(
            ref, False, "Suspended", "spec.suspend is true: Flux does not reconcile it (its Ready condition is stale)"
        )
    stalled = condition_of(obj, "Stalled")
    if stalled is not None and stalled.get("status") == "True":
        # A Stalled condition of an older generation is stale: the fix may be
        # what Flux is about to reconcile.
        stalled_generation = stalled.get("observedGeneration", observed)
        if generation is None or stalled_generation == generation:
            return Readiness(ref, False, str(stalled.get("reason", "Stalled")), str(stalled.get("message", "")), True)
    if condition is None:
        return Readiness(ref, False, "", "")
    current = generation is None or observed == generation
    ready = condition.get("status") == "True" and current
    reason = str(condition.get("reason", ""))
    message = str(condition.get("message", ""))
    if condition.get("status") == "True" and not current:
        reason, message = "Progressing", f"generation {generation} not yet observed (observed {observed})"
    return Readiness(ref, ready, reason, message)


#: Seconds without any event after which the watcher lists its kinds again. A watch reports what exists when it
#: (re)starts, never what was deleted before that, so an object gone between the first list and the watch's own
#: list would otherwise stay in the snapshot until the timeout (seen on a real cluster: kustomize-controller
#: prunes a deleted Kustomization's objects within milliseconds).
RESYNC_SECONDS = 5.0


class _Watcher:
    """Watches several kinds at once, keeping a live snapshot of their objects."""

    def __init__(self, cluster: ClusterDriver, kinds: Iterable[tuple[str, str]], timeout: float) -> None:
        self.cluster = cluster
        self.kinds = list(kinds)
        self.deadline = time.monotonic() + timeout
        self.events: queue.Queue[tuple[str, Manifest] | BaseException | None] = queue.Queue()
        self.snapshot: dict[ObjectRef, Manifest] = {}
        self._stop = threading.Event()

    def _pump(self, api_version: str, kind: str) -> None:
        try:
            while not self._stop.is_set():
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    break
                events = self.cluster.watch(api_version, kind, timeout_seconds=min(remaining, 30.0), stop=self._stop)
                for event in events:
                    if self._stop.is_set():
                        return
                    self.events.put((event.type, event.object))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.events.put(exc)

    def _relist(self) -> None:
        fresh: dict[ObjectRef, Manifest] = {}
        for api_version, kind in self.kinds:
            for obj in self.cluster.list(api_version, kind):
                fresh[ObjectRef.of(obj)] = obj
        self.snapshot = fresh

    def wait(self, done: Callable[[dict[ObjectRef, Manifest]], bool]) -> tuple[bool, dict[ObjectRef, Manifest]]:
        # Seed the snapshot with a list so "done" can hold before any event.
        self._relist()
        if done(self.snapshot):
            return True, self.snapshot
        threads = [threading.Thread(target=self._pump, args=kind, daemon=True) for kind in self.kinds]
        for thread in threads:
            thread.start()
        try:
            while True:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    return False, self.snapshot
                try:
                    item = self.events.get(timeout=min(remaining, RESYNC_SECONDS))
                except queue.Empty:
                    if time.monotonic() >= self.deadline:
                        return False, self.snapshot
                    self._relist()  # quiet: catch what no watch reported (see RESYNC_SECONDS)
                    if done(self.snapshot):
                        return True, self.snapshot
                    continue
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    continue
                event_type, obj = item
                ref = ObjectRef.of(obj)
                if event_type == "DELETED":
                    self.snapshot.pop(ref, None)
                else:
                    self.snapshot[ref] = obj
                if done(self.snapshot):
                    return True, self.snapshot
        finally:
            self._stop.set()


def watch_until(
    cluster: ClusterDriver,
    kinds: Iterable[tuple[str, str]],
    done: Callable[[dict[ObjectRef, Manifest]], bool],
    timeout: float,
) -> tuple[bool, dict[ObjectRef, Manifest]]:
    """Watch ``kinds`` until ``done(snapshot)`` holds or ``timeout`` passes.

    Returns:
        Whether the condition held, and the last snapshot of the watched objects.
    """
    return _Watcher(cluster, kinds, timeout).wait(done)


def watch_readiness(
    cluster: ClusterDriver,
    timeout: float,
    progress: Progress = quiet,
    *,
    check: Callable[[Manifest], Readiness] = readiness,
) -> tuple[bool, list[Readiness]]:
    """Watch every Kustomization and HelmRelease until all are Ready or ``timeout`` passes.

    Args:
        cluster: The cluster.
        timeout: Seconds to wait at most.
        progress: Told each change of the ready count.
        check: An object's readiness (default :func:`readiness`); a stricter check
            can also ask for a revision.

    Returns:
        Whether all were Ready (and at least one exists), and the last state of each
        object, sorted by reference. The watch ends early, not Ready, as soon as
        an object is stalled (a terminal failure: Flux will not retry it).
    """
    last_report = [""]

    def all_ready(snapshot: dict[ObjectRef, Manifest]) -> bool:
        states = [check(o) for o in snapshot.values()]
        if any(s.stalled for s in states):
            return True
        waiting = sorted(str(s.ref) for s in states if not s.ready)
        line = f"{len(states) - len(waiting)}/{len(states)} Flux objects Ready"
        if line != last_report[0]:
            progress(
                line + (f" (waiting for {', '.join(waiting[:4])}{'…' if len(waiting) > 4 else ''})" if waiting else "")
            )
            last_report[0] = line
        return bool(states) and not waiting

    ok, snapshot = watch_until(cluster, FLUX_APPLIERS, all_ready, timeout)
    states = sorted((check(o) for o in snapshot.values()), key=lambda s: str(s.ref))
    return ok and bool(states) and all(s.ready for s in states), states


def not_ready_message(states: Iterable[Readiness], timeout: float) -> str:
    """One line naming each object that is not Ready with its condition's reason and message.

    When an object is stalled the line names the stalled objects (the wait
    ended there, before the timeout).
    """
    states = list(states)
    stalled = [s for s in states if s.stalled]
    if stalled:
        return f"stalled (Flux will not retry until the object changes): {'; '.join(s.line() for s in stalled)}"
    stuck = [s for s in states if not s.ready]
    detail = "; ".join(s.line() for s in stuck) or "no Kustomization or HelmRelease found"
    return f"not Ready after {timeout:g}s: {detail}"


def wait_ready(
    cluster: ClusterDriver,
    timeout: float,
    progress: Progress = quiet,
    *,
    check: Callable[[Manifest], Readiness] = readiness,
) -> list[Readiness]:
    """Wait until every Kustomization and HelmRelease is Ready for its current generation.

    Raises:
        NotReadyError: At the timeout, naming each object that is not ready with
            its condition's reason and message; at once when an object is stalled.
    """
    ok, states = watch_readiness(cluster, timeout, progress, check=check)
    if not ok:
        raise NotReadyError(not_ready_message(states, timeout))
    return states


def inventory_refs(kustomization: Mapping[str, Any]) -> list[ObjectRef]:
    """The objects a Kustomization applied, from ``status.inventory.entries``.

    Entry ids are cli-utils object metadata, ``<namespace>_<name>_<group>_<Kind>``
    (see :func:`parse_inventory_id`), with the version in ``v``.
    """
    refs = []
    for entry in ((kustomization.get("status") or {}).get("inventory") or {}).get("entries") or []:
        parsed = parse_inventory_id(str(entry.get("id", "")))
        if parsed is None:
            continue
        namespace, name, group, kind = parsed
        version = entry.get("v", "v1")
        refs.append(
            ObjectRef(
                api_version=f"{group}/{version}" if group else version,
                kind=kind,
                name=name,
                namespace=namespace or None,
            )
        )
    return refs


def describe_error(error: BaseException) -> str:
    """One line for an error raised while talking to a cluster."""
    return str(error) if isinstance(error, SandboxError) else f"{type(error).__name__}: {error}"
