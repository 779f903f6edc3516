"""Stand-in Flux controllers for the fake Kubernetes API server (:mod:`tests.fakes.kubeapi_server`).

The fake API server stores what the real cluster driver sends; nothing in it
reconciles. For a lifecycle against it to get past "wait until Ready", these
controllers do, in a background thread, the part of Flux a sandbox lifecycle
observes:

* source-controller: a ``GitRepository`` gets the commit its branch has on the
  fleet remote (``<branch>@sha1:<commit>``, any URL maps to that one remote, as
  the demo's simulated cluster does) and ``Ready=True``;
* kustomize-controller: a ``Kustomization`` whose source is Ready gets the
  ``finalizers.fluxcd.io`` finalizer, applies the top-level YAML documents of its
  path at that commit (only the root ``flux-system`` one: enough for the sandbox
  directory's Kustomizations to appear, labelled as Flux labels what it applies),
  records them in ``status.inventory`` with cli-utils IDs, and reports
  ``lastAppliedRevision`` and ``Ready=True``. A suspended Kustomization is left
  alone. When one is deleted, its inventory is garbage-collected (``prune``), then
  the finalizer is removed.

They work on the server's store directly, as controllers inside the cluster
would, so the recorded HTTP requests stay the driver's own.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tests.fakes.kubeapi_server import KubeApiServer

GIT_API = "source.toolkit.fluxcd.io/v1"
KS_API = "kustomize.toolkit.fluxcd.io/v1"
FINALIZER = "finalizers.fluxcd.io"
Manifest = dict[str, Any]


def _ready(generation: int, reason: str, message: str) -> list[Manifest]:
    return [
        {
            "type": "Ready",
            "status": "True",
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]


def _inventory_id(obj: Manifest) -> str:
    meta = obj["metadata"]
    group = str(obj["apiVersion"]).rpartition("/")[0]
    return f"{meta.get('namespace', '')}_{meta['name']}_{group}_{obj['kind']}"


class FakeFluxControllers:
    """Reconcile GitRepositories and Kustomizations in a :class:`KubeApiServer` from a bare git remote."""

    def __init__(self, server: KubeApiServer, remote: Path, interval: float = 0.05) -> None:
        self.server = server
        self.remote = remote
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-flux", daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> FakeFluxControllers:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # -- git -------------------------------------------------------------------

    def _git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "--git-dir", str(self.remote), *args], capture_output=True, text=True, timeout=30, check=False
        )
        return done.stdout if done.returncode == 0 else ""

    def _documents(self, commit: str, path: str) -> list[Manifest]:
        directory = str(PurePosixPath(path.removeprefix("./")))
        names = self._git("ls-tree", "--name-only", f"{commit}:{directory}").split()
        docs: list[Manifest] = []
        for name in sorted(n for n in names if n.endswith((".yaml", ".yml"))):
            text = self._git("show", f"{commit}:{directory}/{name}")
            docs.extend(d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind"))
        return docs

    # -- reconciling -----------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reconcile_once()
            except Exception as exc:  # noqa: BLE001 - a test double reports, the test asserts
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def reconcile_once(self) -> None:
        """One pass over every GitRepository, then every Kustomization."""
        objects = self.server.objects()
        for obj in objects:
            if obj["apiVersion"] == GIT_API and obj["kind"] == "GitRepository":
                self._source(obj)
        for obj in objects:
            if obj["apiVersion"] == KS_API and obj["kind"] == "Kustomization":
                self._kustomization(obj)

    def _source(self, repo: Manifest) -> None:
        meta = repo["metadata"]
        branch = ((repo.get("spec") or {}).get("ref") or {}).get("branch") or "main"
        commit = self._git("rev-parse", f"refs/heads/{branch}").strip()
        if not commit:
            return
        revision = f"{branch}@sha1:{commit}"
        status = repo.get("status") or {}
        if (status.get("artifact") or {}).get("revision") == revision and status.get("observedGeneration") == meta[
            "generation"
        ]:
            return
        self.server.patch_object(
            GIT_API,
            "GitRepository",
            meta["name"],
            meta["namespace"],
            {
                "status": {
                    "observedGeneration": meta["generation"],
                    "artifact": {"revision": revision},
                    "conditions": _ready(meta["generation"], "Succeeded", f"stored artifact for revision '{revision}'"),
                }
            },
        )

    def _kustomization(self, ks: Manifest) -> None:
        meta, spec = ks["metadata"], ks.get("spec") or {}
        name, namespace = meta["name"], meta["namespace"]
        if meta.get("deletionTimestamp"):
            self._finalize(ks)
            return
        if spec.get("suspend"):
            return
        source_ref = spec.get("sourceRef") or {}
        source = self.server.get_object(GIT_API, "GitRepository", source_ref.get("name", ""), namespace)
        revision = ((source or {}).get("status") or {}).get("artifact", {}).get("revision")
        status = ks.get("status") or {}
        if not revision or (
            status.get("lastAppliedRevision") == revision and status.get("observedGeneration") == meta["generation"]
        ):
            return
        applied: list[Manifest] = []
        if name == "flux-system":
            for doc in self._documents(revision.rpartition("sha1:")[2], str(spec.get("path") or ".")):
                if doc["metadata"].get("name") == "flux-system" or doc["kind"] == "CustomResourceDefinition":
                    continue  # what bootstrap applied; the controllers' own objects
                doc.setdefault("metadata", {}).setdefault("namespace", namespace)
                labels = doc["metadata"].setdefault("labels", {})
                labels.update(
                    {"kustomize.toolkit.fluxcd.io/name": name, "kustomize.toolkit.fluxcd.io/namespace": namespace}
                )
                if self.server.resource_for(str(doc["apiVersion"]), str(doc["kind"])) is not None:
                    applied.append(self.server.put_object(doc))
        finalizers = sorted({*meta.get("finalizers", []), FINALIZER})
        patch: Manifest = {
            "metadata": {"finalizers": finalizers},
            "status": {
                "observedGeneration": meta["generation"],
                "lastAppliedRevision": revision,
                "lastAttemptedRevision": revision,
                "conditions": _ready(meta["generation"], "ReconciliationSucceeded", f"Applied revision: {revision}"),
            },
        }
        if name == "flux-system":
            patch["status"]["inventory"] = {
                "entries": [{"id": _inventory_id(o), "v": str(o["apiVersion"]).rpartition("/")[2]} for o in applied]
            }
        self.server.patch_object(KS_API, "Kustomization", name, namespace, patch)

    def _finalize(self, ks: Manifest) -> None:
        """Garbage-collect a deleted Kustomization's inventory (when it prunes), then let it go."""
        meta = ks["metadata"]
        if (ks.get("spec") or {}).get("prune"):
            for entry in ((ks.get("status") or {}).get("inventory") or {}).get("entries") or []:
                namespace, name, group, kind = str(entry["id"]).split("_", 3)
                version = str(entry.get("v") or "v1")
                api_version = f"{group}/{version}" if group else version
                if self.server.resource_for(api_version, kind) is not None:
                    self.server.remove_object(api_version, kind, name, namespace or None)
        finalizers = [f for f in meta.get("finalizers", []) if f != FINALIZER]
        self.server.patch_object(
            KS_API, "Kustomization", meta["name"], meta["namespace"], {"metadata": {"finalizers": finalizers or None}}
        )
