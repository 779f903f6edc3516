"""Watching a revision land: a simulated development cluster bootstrapped from the demo fleet repo, real git."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from sandbox.demo import prepare_demo
from sandbox.drivers.cluster import Manifest, ObjectRef, WatchEvent
from sandbox.drivers.git import GitCli
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.errors import InvalidInputError, NotReadyError
from sandbox.flux import readiness, watch_until
from sandbox.stages.bootstrap import install_flux
from sandbox.watch import (
    ROOT_KUSTOMIZATION,
    WATCHED_KINDS,
    assess,
    check_revision,
    git_contains,
    revision_sha,
    same_commit,
    wait_for_revision,
)

PODINFO = ObjectRef("helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", "podinfo")
SHA = "0123456789abcdef0123456789abcdef01234567"


# A generous budget for waits that must succeed: the simulation converges in a
# fixed number of its own looks (see TickingClock), so this only bounds a hang.
BUDGET = 60


class TickingClock:
    """Simulated time that moves a fixed step each time the simulation reads it.

    The simulated cluster reads its clock once per call (every look a watch
    takes), so readiness delays and source polls pass after a fixed number of
    looks, however slow the machine is: what the cluster shows next never
    depends on how much wall time went by.
    """

    def __init__(self, step: float, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._step = step
        self._lock = threading.Lock()  # the watch reads it from one thread per kind

    def __call__(self) -> float:
        with self._lock:
            self._now += self._step
            return self._now


class Development:
    """The demo's remote, a checkout to push from, and development's simulated cluster following main."""

    def __init__(self, root: Path) -> None:
        self.git = GitCli()
        prepare_demo(root / "demo", development=False)
        self.remote = root / "demo" / "remote.git"
        self.work = root / "work"
        self.git.clone(str(self.remote), self.work)
        # Objects are Ready two looks after a change; sources poll every fourth look.
        self.cluster = SimulatedCluster(
            root / "cluster",
            readiness_delay_seconds=0.5,
            oci_git_remote=str(self.remote),
            watch_poll_seconds=0.02,
            clock=TickingClock(step=0.25),
        )
        (root / "cluster").mkdir()
        install_flux(self.cluster, self.work / "clusters/development", repo=self.work, git_token=None)

    def tip(self) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.remote), "rev-parse", "main"], capture_output=True, text=True, check=True
        ).stdout.strip()

    def push(self, path: str, old: str, new: str) -> str:
        file = self.work / path
        file.write_text(file.read_text().replace(old, new))
        sha = self.git.commit_all(self.work, f"change {path}")
        self.git.push(self.work, "main")
        assert sha is not None
        return sha

    def contains(self) -> object:
        return git_contains(self.git, self.work, lambda: self.git.fetch(self.work))

    def wait_until(self, what: str, condition: Callable[[Mapping[ObjectRef, Manifest]], bool]) -> None:
        """Wait (within the budget) until the watched Flux objects satisfy ``condition``."""
        ok, _ = watch_until(self.cluster, WATCHED_KINDS, condition, BUDGET)
        assert ok, f"development never got to: {what}"


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Development]:
    yield Development(tmp_path)


def test_revision_forms() -> None:
    assert revision_sha(f"main@sha1:{SHA}") == SHA
    assert revision_sha(f"main/{SHA}") == SHA
    assert revision_sha(f"sha1:{SHA}") == SHA
    assert revision_sha("1.2.3@sha256:abc") is None
    assert check_revision(SHA[:7].upper()) == SHA[:7]
    with pytest.raises(InvalidInputError, match="not a commit id"):
        check_revision("main")


def test_lands_then_follows_a_merge(dev: Development) -> None:
    lines: list[str] = []
    first = wait_for_revision(dev.cluster, dev.tip(), BUDGET, environment="development", progress=lines.append)
    assert first.applied == f"main@sha1:{dev.tip()}"
    assert {str(o.ref) for o in first.objects} >= {str(ROOT_KUSTOMIZATION), str(PODINFO)}
    assert all(o.ready for o in first.objects)
    assert lines and lines[-1].endswith(
        f"{len(first.objects)}/{len(first.objects)} Kustomizations and HelmReleases Ready"
    )
    merged = dev.push("clusters/development/apps.yaml", '"6.7.1"', '"6.7.2"')
    landed = wait_for_revision(dev.cluster, merged[:10], BUDGET, environment="development")
    assert landed.applied == f"main@sha1:{merged}"
    release = dev.cluster.get(PODINFO)
    assert release is not None and release["spec"]["chart"]["spec"]["version"] == "6.7.2"
    assert landed.summary().startswith(f"development: revision {merged[:10]} applied")


def test_a_later_commit_on_main_includes_the_merge(dev: Development) -> None:
    merged = dev.push("clusters/development/apps.yaml", '"6.7.1"', '"6.7.2"')
    later = dev.push("clusters/development/platform.yaml", "interval: 1m0s", "interval: 2m0s")
    landed = wait_for_revision(dev.cluster, merged, BUDGET, contains=dev.contains())  # type: ignore[arg-type]
    assert landed.applied == f"main@sha1:{later}"
    with pytest.raises(NotReadyError):  # without git, only the exact commit counts
        wait_for_revision(dev.cluster, merged, 0.5, contains=same_commit)


def test_stuck_object_is_named_at_the_timeout(dev: Development) -> None:
    wait_for_revision(dev.cluster, dev.tip(), BUDGET)
    dev.cluster.inject_failure(PODINFO, "UpgradeFailed", "Helm upgrade failed: timed out waiting for the condition")
    merged = dev.push("clusters/development/apps.yaml", '"6.7.1"', '"6.7.2"')

    def applied_and_failing(snapshot: Mapping[ObjectRef, Manifest]) -> bool:
        root, release = snapshot.get(ROOT_KUSTOMIZATION), snapshot.get(PODINFO)
        return (
            assess(snapshot, merged, same_commit).root_has_revision
            and root is not None
            and readiness(root).ready
            and release is not None
            and readiness(release).reason == "UpgradeFailed"
        )

    # First the state to be named (the root applied the merge and is Ready, the release
    # failed its upgrade), then the short wait that must time out: what it names cannot
    # depend on how far the cluster got in 2 seconds of a loaded machine.
    dev.wait_until("the merge applied and podinfo failing", applied_and_failing)
    with pytest.raises(NotReadyError) as caught:
        wait_for_revision(dev.cluster, merged, 2, environment="development")
    message = str(caught.value)
    assert message.startswith(f"development: revision {merged[:12]} has not landed after 2s: ")
    assert (
        "HelmRelease/podinfo/podinfo: UpgradeFailed: Helm upgrade failed: timed out waiting for the condition"
        in message
    )
    assert "Kustomization/flux-system/flux-system" not in message  # the root did apply the merge


def test_a_revision_development_never_got_names_the_root(dev: Development) -> None:
    wait_for_revision(dev.cluster, dev.tip(), BUDGET)
    with pytest.raises(NotReadyError) as caught:
        wait_for_revision(dev.cluster, SHA, 1)
    assert f"Kustomization/flux-system/flux-system: last applied revision main@sha1:{dev.tip()}, waiting for" in str(
        caught.value
    )


def _ready_object(api: str, kind: str, name: str, spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """A flux-system object Ready for its generation, with ``status`` added."""
    ready = {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "ok"}
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": "flux-system", "generation": 1},
        "spec": spec,
        "status": {"observedGeneration": 1, "conditions": [ready], **status},
    }


def test_an_applier_behind_its_source_is_not_landed() -> None:
    source_api, ks_api = "source.toolkit.fluxcd.io/v1", "kustomize.toolkit.fluxcd.io/v1"
    obj = _ready_object

    repo: dict[str, object] = {"url": "file:///r.git", "ref": {"branch": "main"}}
    new, old = f"main@sha1:{SHA}", f"main@sha1:{'f' * 40}"
    objects = [
        obj(source_api, "GitRepository", "flux-system", repo, {"artifact": {"revision": new}}),
        obj(source_api, "GitRepository", "platform", repo, {"artifact": {"revision": new}}),
        obj(ks_api, "Kustomization", "flux-system", {"sourceRef": {"kind": "GitRepository", "name": "flux-system"}},
            {"lastAppliedRevision": new}),
        obj(ks_api, "Kustomization", "platform", {"sourceRef": {"kind": "GitRepository", "name": "platform"}},
            {"lastAppliedRevision": old}),
    ]  # fmt: skip
    state = assess({ObjectRef.of(o): o for o in objects}, SHA, same_commit)
    assert state.root_has_revision and not state.landed
    assert state.problems == [f"Kustomization/flux-system/platform: applied {old}, its source has {new}"]


def _landed_objects() -> list[dict[str, Any]]:
    """The root and a child Kustomization, both Ready at the revision their source has."""
    source_api, ks_api = "source.toolkit.fluxcd.io/v1", "kustomize.toolkit.fluxcd.io/v1"
    revision = f"main@sha1:{SHA}"
    obj = _ready_object

    sync = {"sourceRef": {"kind": "GitRepository", "name": "flux-system"}}
    return [
        obj(source_api, "GitRepository", "flux-system", {"url": "file:///r.git", "ref": {"branch": "main"}},
            {"artifact": {"revision": revision}}),
        obj(ks_api, "Kustomization", "flux-system", dict(sync), {"lastAppliedRevision": revision}),
        obj(ks_api, "Kustomization", "apps", dict(sync), {"lastAppliedRevision": revision}),
    ]  # fmt: skip


class ListedCluster:
    """Lists fixed objects; a watch would mean the outcome was not decided by what the list showed."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects

    def list(self, api_version: str, kind: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def watch(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        raise AssertionError("waited on: the listed objects should have decided the outcome")


def test_a_suspended_applier_has_not_landed_whatever_its_stale_condition_says() -> None:
    objects = _landed_objects()
    assert assess({ObjectRef.of(o): o for o in objects}, SHA, same_commit).landed
    objects[2]["spec"]["suspend"] = True
    state = assess({ObjectRef.of(o): o for o in objects}, SHA, same_commit)
    assert not state.landed
    assert [p.split(":")[:2] for p in state.problems] == [["Kustomization/flux-system/apps", " Suspended"]]


def test_a_stalled_applier_fails_the_landing_at_once_naming_its_reason() -> None:
    objects = _landed_objects()
    objects[2]["status"]["conditions"] = [
        {"type": "Ready", "status": "False", "reason": "BuildFailed", "message": "retrying"},
        {"type": "Stalled", "status": "True", "reason": "BuildFailed", "message": "kustomization.yaml: bad field"},
    ]
    with pytest.raises(NotReadyError) as failed:
        wait_for_revision(ListedCluster(objects), SHA, timeout=600, environment="development")  # type: ignore[arg-type]
    assert "stalled" in str(failed.value)
    assert "Kustomization/flux-system/apps: BuildFailed: kustomization.yaml: bad field" in str(failed.value)


class LaggingCluster:
    """A cluster whose HelmRelease watch has not delivered anything yet.

    The root Kustomization's stream reports it applied and Ready; the release
    it created exists (a list shows it, still upgrading) but its own stream lags,
    as one stream per kind can under load.
    """

    def __init__(self) -> None:
        ready = {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded", "message": "applied"}
        meta = {"name": "flux-system", "namespace": "flux-system", "generation": 1}
        self.root_before = {
            "apiVersion": ROOT_KUSTOMIZATION.api_version,
            "kind": "Kustomization",
            "metadata": meta,
            "spec": {},
            "status": {"observedGeneration": 1, "conditions": [ready], "lastAppliedRevision": f"main@sha1:{'f' * 40}"},
        }
        self.root_after = {
            **self.root_before,
            "status": {"observedGeneration": 1, "conditions": [ready], "lastAppliedRevision": f"main@sha1:{SHA}"},
        }
        upgrading = {"type": "Ready", "status": "Unknown", "reason": "Progressing", "message": "upgrading"}
        self.release = {
            "apiVersion": PODINFO.api_version,
            "kind": "HelmRelease",
            "metadata": {"name": "podinfo", "namespace": "podinfo", "generation": 2},
            "spec": {},
            "status": {"observedGeneration": 1, "conditions": [upgrading]},
        }
        self.applied = False

    def list(self, api_version: str, kind: str, *args: object, **kwargs: object) -> list[Manifest]:
        if kind == "Kustomization":
            return [self.root_after if self.applied else self.root_before]
        return [self.release] if kind == "HelmRelease" and self.applied else []

    def watch(
        self, api_version: str, kind: str, *args: object, stop: threading.Event | None = None, **kwargs: object
    ) -> Iterator[WatchEvent]:
        if kind == "Kustomization" and not self.applied:
            self.applied = True
            yield WatchEvent("MODIFIED", self.root_after)
        assert stop is not None
        stop.wait(float(str(kwargs.get("timeout_seconds", 1.0))))


def test_landed_is_judged_on_a_fresh_look_not_on_a_lagging_stream() -> None:
    """The release's stream lags: without a fresh look the root alone would make it 'landed'."""
    with pytest.raises(NotReadyError) as caught:  # the release never finishes: the wait must time out
        wait_for_revision(LaggingCluster(), SHA, 0.5, environment="development")  # type: ignore[arg-type]
    assert "HelmRelease/podinfo/podinfo: Progressing: upgrading" in str(caught.value)
