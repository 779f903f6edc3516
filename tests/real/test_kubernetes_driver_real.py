"""The product's kubernetes driver on a real API server: server-side apply with its field manager, and watches.

One local cluster (no Flux: the control plane is enough), one test, several checks in turn, so the cluster starts
once. Another writer is kubectl, with its own field manager. What a real server cannot be made to produce on demand
(a 410 Gone after etcd compaction, a 429 with Retry-After) stays with the hand-written stub in tests/fakes.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sandbox.drivers.cluster import ObjectRef, WatchEvent
from sandbox.drivers.kubernetes_cluster import DEFAULT_FIELD_MANAGER, KubernetesClusterDriver
from tests.polling import poll
from tests.real.localstack import Kubectl, LocalStack

pytestmark = pytest.mark.timeout(1200)

NAMESPACE = "driver"
SETTINGS = ObjectRef("v1", "ConfigMap", "settings", NAMESPACE)


def _configmap(data: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": SETTINGS.name, "namespace": NAMESPACE},
        "data": data,
    }


def _owners(obj: dict[str, object], key: str) -> set[str]:
    """The field managers owning ``data.<key>`` of a ConfigMap (from ``metadata.managedFields``)."""
    owners = set()
    for entry in obj["metadata"].get("managedFields") or []:  # type: ignore[attr-defined]
        fields = (entry.get("fieldsV1") or {}).get("f:data") or {}
        if f"f:{key}" in fields:
            owners.add(entry["manager"])
    return owners


def test_the_kubernetes_driver_on_a_real_api_server(terraform: str, kubectl: str, tmp_path: Path) -> None:
    stack = LocalStack(terraform, tmp_path / "stack", "driver")
    try:
        stack.apply()
        k = Kubectl(kubectl, stack.kubeconfig)
        with KubernetesClusterDriver.from_kubeconfig_text(stack.kubeconfig.read_text(encoding="utf-8")) as driver:
            assert driver.server_version() == "1.36"
            driver.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})

            # Server-side apply: the driver's field manager owns what it applied.
            stored = driver.apply(_configmap({"owned": "by the sandbox"}))
            assert _owners(stored, "owned") == {DEFAULT_FIELD_MANAGER}

            # Another manager takes a field over; the driver's next apply forces it back (conflicts are forced:
            # the sandbox branch is the truth), and a field only the other manager set is left to it.
            k(
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=someone-else",
                "-f",
                "-",
                stdin='{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": '
                '"driver"}, "data": {"owned": "changed by hand", "theirs": "kept"}}',
            )
            taken = driver.get(SETTINGS)
            assert taken is not None and _owners(taken, "owned") == {"someone-else"}
            stored = driver.apply(_configmap({"owned": "by the sandbox"}))
            assert stored["data"] == {"owned": "by the sandbox", "theirs": "kept"}
            assert _owners(stored, "owned") == {DEFAULT_FIELD_MANAGER}
            assert _owners(stored, "theirs") == {"someone-else"}

            # Watch: what exists first (ADDED), then another writer's changes as they happen, until stopped.
            stop = threading.Event()
            events: list[WatchEvent] = []

            def watch() -> None:
                for event in driver.watch("v1", "ConfigMap", NAMESPACE, timeout_seconds=600, stop=stop):
                    if event.object["metadata"]["name"] == SETTINGS.name:
                        events.append(event)
                        if event.type == "DELETED":
                            stop.set()

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            poll("the watch's first event", lambda: events or None, 120)
            k("-n", NAMESPACE, "patch", "configmap", "settings", "--type=merge", "-p", '{"data":{"theirs":"new"}}')
            poll(
                "the watch reporting kubectl's patch",
                lambda: any(e.type == "MODIFIED" and e.object["data"].get("theirs") == "new" for e in events) or None,
                120,
            )
            k("-n", NAMESPACE, "delete", "configmap", "settings")
            poll("the watch reporting the deletion", lambda: stop.is_set() or None, 120)
            watcher.join(timeout=120)
            assert not watcher.is_alive(), "the watch did not end after stop was set"
            assert events[0].type == "ADDED" and events[-1].type == "DELETED"
            versions = [int(e.object["metadata"]["resourceVersion"]) for e in events]
            assert versions == sorted(versions), f"events out of resourceVersion order: {versions}"
            assert driver.get(SETTINGS) is None
    finally:
        stack.destroy()
