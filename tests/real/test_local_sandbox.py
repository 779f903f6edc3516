"""A ``local`` sandbox's whole lifecycle through the CLI on real clusters, then the promotion watched landing.

The example fleet's ``local`` environment (sandbox.demo.prepare_local_demo): each sandbox provisions its own local
cluster through ``infra/local-cluster`` with real terraform; the bootstrap installs Flux from ``clusters/local``;
the real source-controller fetches the sandbox branch from the demo remote served over smart HTTP on loopback.

One flow, in the order a user runs it (one module, one test: local clusters are slow to start on two cores):

1. ``sandbox create`` reaches Ready: Flux applied the sandbox branch's head, and what validation recorded is what
   the real objects' Ready conditions say;
2. an engineer commits a change on the sandbox branch; ``sandbox validate`` records it applied;
   ``sandbox resume`` with kustomize-controller stopped runs the performance test, then the teardown stops at the
   Kustomizations' pending finalizers: exit 1 naming them, the sandbox ``teardown-blocked``, its cluster running;
   with the controller back, ``sandbox resume`` goes on from the teardown (no process, port or data directory left)
   to the promotion: the directory of ``local`` (the canary the sandbox came from: never development's) gets the change,
   never its ``gotk-sync.yaml``; the pull request's body carries the validation and performance results and each
   object's state as read from the real cluster;
3. the ``local`` environment's own long-lived cluster (the demo has none: the test provisions it as the demo
   provisions development, :func:`sandbox.demo.ensure_development`, through the environment's terraform state and
   Flux from ``clusters/local`` following ``main``); the pull request merges on the demo's git host (a merge commit
   pushed to ``main``) and ``sandbox watch local`` exits 0 only once the real Kustomizations applied the merge
   commit (and the change); ``sandbox promote`` again (the promotion's own last step) says it landed at the merge;
   ``watch --timeout`` on a revision that never reaches ``main`` exits 1 naming what is stuck.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.config import load_config
from sandbox.demo import prepare_local_demo
from sandbox.localcluster.git_http import GitHttpServer
from sandbox.localcluster.ports import is_free, pick_ports
from sandbox.localcluster.processes import find_local_cluster_processes, terminate
from sandbox.models import Stage
from tests.integration.reliability_support import edit_config
from tests.integration.sandbox_cli import error_line, sandbox_cli
from tests.real.localstack import Kubectl, condition, running_components, scale_flux_controller

pytestmark = pytest.mark.timeout(2700)

NAME = "sb-local"
TICKET = "OPS-77"
ENV = "local"
#: The teardown's wait per tier while kustomize-controller is stopped: nothing will release its finalizers.
BLOCKED_TIER_WAIT = 20


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=eng", "-c", "user.email=eng@example.test", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _branch_head(remote: Path, branch: str) -> str:
    return _git("--git-dir", str(remote), "rev-parse", f"refs/heads/{branch}")


def _commit_on(remote: Path, work: Path, branch: str, path: str, old: str, new: str, message: str) -> str:
    """An engineer's checkout commits ``old`` -> ``new`` in ``path`` on ``branch`` and pushes it."""
    if not work.exists():
        _git("clone", "-q", str(remote), str(work))
    _git("fetch", "-q", "origin", cwd=work)
    _git("checkout", "-q", "-B", branch, f"origin/{branch}", cwd=work)
    file = work / path
    text = file.read_text(encoding="utf-8")
    assert text.count(old) == 1, (path, old)
    file.write_text(text.replace(old, new), encoding="utf-8")
    _git("commit", "-q", "-am", message, cwd=work)
    _git("push", "-q", "origin", branch, cwd=work)
    return _git("rev-parse", "HEAD", cwd=work)


def _kustomizations(k: Kubectl) -> dict[str, dict[str, Any]]:
    return {item["metadata"]["name"]: item for item in k.json("-n", "flux-system", "kustomizations")["items"]}


def _recorded(config_path: Path, stage: Stage) -> dict[str, Any]:
    """What the inventory recorded for the sandbox's ``stage`` (what promote and the pull request read)."""
    from sandbox.wiring import open_inventory

    inventory = open_inventory(load_config(config_path))
    try:
        record = inventory.get(NAME)
        result = inventory.stage_result(NAME, record.lifecycle_id, stage)
    finally:
        inventory.close()
    assert result is not None, f"{stage.value} not recorded"
    return result


def _assert_recorded_readiness_is_the_clusters(config_path: Path, k: Kubectl, branch: str, head: str) -> list[str]:
    """What validation recorded for each Kustomization is what the real object's Ready condition says, at ``head``.

    Returns:
        The pull-request lines those states make (``- `Kind/ns/name`: Ready: Reason: message``).
    """
    report = _recorded(config_path, Stage.validate)["details"]["report"]
    assert report["readiness_checked"] is True and report["commit"] == head
    recorded = {item["object"]: item for item in report["readiness"]}
    real = _kustomizations(k)
    assert set(real) == {"flux-system", "platform-configs"}
    lines = []
    for name, obj in sorted(real.items()):
        ready = condition(obj, "Ready")
        assert ready is not None and ready["status"] == "True", obj["status"]
        assert obj["status"]["lastAppliedRevision"] == f"{branch}@sha1:{head}"
        assert f"{branch}@sha1:{head}" in ready["message"]
        mine = recorded[f"Kustomization/flux-system/{name}"]
        assert (mine["ready"], mine["reason"], mine["message"]) == (True, ready["reason"], ready["message"])
        lines.append(f"- `Kustomization/flux-system/{name}`: Ready: {ready['reason']}: {ready['message']}")
    return lines


def test_a_local_sandbox_goes_from_create_to_a_promotion_watched_landing(
    prefect_server: str, kubectl: str, terraform: str, tmp_path: Path
) -> None:
    port = pick_ports(1)[0]
    config_path = prepare_local_demo(tmp_path / "fleet", sys.executable, port)
    config = str(config_path)
    workdir = config_path.parent
    remote = workdir / "remote.git"
    cluster_dir = workdir / "state" / "sandboxes" / NAME / "terraform" / ".local-cluster"
    env_cluster_dir = workdir / "state" / "environments" / ENV / "terraform" / ".local-cluster"

    def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return sandbox_cli(*args, "--config", config, api_url=prefect_server, timeout=timeout)

    ports: set[int] = set()
    torn_down = False
    with GitHttpServer(workdir, port=port):
        try:
            # 1. create: provision, clone, bootstrap, validate.
            created = cli("create", NAME, "--from", ENV, "--ticket", TICKET, "--summary", "real local", timeout=1200)
            assert created.returncode == 0, created.stderr[-3000:]
            info = json.loads((cluster_dir / "cluster.json").read_text(encoding="utf-8"))
            ports = {p for roles in info["ports"].values() for p in roles.values()}
            k = Kubectl(kubectl, cluster_dir / "admin.kubeconfig")
            listing = json.loads(cli("list", "--output", "json").stdout)
            branch = next(item for item in listing if item["name"] == NAME)["branch"]
            head = _branch_head(remote, branch)
            _assert_recorded_readiness_is_the_clusters(config_path, k, branch, head)
            # Applied by the real kustomize-controller: its field manager owns what the platform configs made.
            namespace = k.json("namespace", "platform", "--show-managed-fields")
            managers = {entry["manager"] for entry in namespace["metadata"]["managedFields"]}
            assert "kustomize-controller" in managers

            # 2. An engineer's change on the sandbox branch, validated on the sandbox (as docs/cli.md has it).
            changed = _commit_on(
                remote, tmp_path / "engineer", branch, f"clusters/{NAME}/platform.yaml",
                "interval: 10m0s", "interval: 5m0s", f"{TICKET}: sync the platform configs every 5 minutes",
            )  # fmt: skip
            validated = cli("validate", NAME)
            assert validated.returncode == 0, validated.stderr[-3000:]
            states = _assert_recorded_readiness_is_the_clusters(config_path, k, branch, changed)
            assert _kustomizations(k)["platform-configs"]["spec"]["interval"] == "5m0s"  # Flux applied the change

            # ... then the rest of the lifecycle: performance test, teardown, promote. First with kustomize-controller
            # gone (scaled to zero: its process stops), so the Kustomizations keep their finalizers: the teardown
            # stops at its tier, names them, and the cluster is not destroyed.
            scale_flux_controller(k, cluster_dir, "kustomize-controller", 0)
            edit_config(config_path, drivers={"cluster": {"teardown_timeout_seconds": BLOCKED_TIER_WAIT}})
            blocked = cli("resume", NAME, timeout=1200)
            assert blocked.returncode == 1, (blocked.stdout[-2000:], blocked.stderr[-2000:])
            line = error_line(blocked.stderr)
            assert line.startswith("sandbox: error: teardown blocked in tier "), line
            assert "finalizers pending on Kustomization/flux-system/platform-configs (finalizers.fluxcd.io)" in line
            assert "the infrastructure was not destroyed" in line and "Traceback" not in blocked.stderr
            assert "kube-apiserver" in running_components(cluster_dir) and k("get", "--raw", "/readyz").strip() == "ok"
            listed = {item["name"]: item for item in json.loads(cli("list", "--output", "json").stdout)}
            assert listed[NAME]["status"] == "teardown-blocked", listed[NAME]
            stages = {stage["name"]: stage for stage in listed[NAME]["stages"]}
            assert stages["performance-test"]["status"] == "completed", stages
            assert (stages["teardown"]["status"], stages["promote"]["status"]) == ("failed", "pending"), stages

            # The controller back, the rerun goes on from the teardown: Flux releases what it held, then the rest.
            scale_flux_controller(k, cluster_dir, "kustomize-controller", 1)
            edit_config(config_path, drivers={"cluster": {"teardown_timeout_seconds": 900}})
            resumed = cli("resume", NAME, timeout=1200)
            assert resumed.returncode == 0, resumed.stderr[-3000:]
            torn_down = True
            outcomes = {row.split()[0]: row for row in resumed.stdout.splitlines() if row.startswith("  ")}
            assert outcomes["performance-test"].split()[1] != "executed", resumed.stdout[-3000:]  # checkpointed
            for stage in ("teardown", "promote"):
                assert outcomes[stage].split()[1] == "executed", resumed.stdout[-3000:]
        finally:
            if not torn_down:  # the test failed: whatever holds a finalizer, leave no cluster behind
                cli("destroy", NAME, "--force")
        # The teardown left no process, port or data directory.
        assert find_local_cluster_processes(cluster_dir) == []
        assert not cluster_dir.exists()
        assert all(is_free(p) for p in ports)
        destroyed = cli("destroy", NAME)  # nothing left to destroy: says so, exit 0
        assert destroyed.returncode == 0, destroyed.stderr[-3000:]

        # The promotion: the canary's directory (the sandbox came from it) got the change, never its own
        # gotk-sync.yaml; development's directory is not touched.
        sync = f"clusters/{ENV}/flux-system/gotk-sync.yaml"
        files = _git("--git-dir", str(remote), "diff", "--name-only", f"main...{branch}").split()
        assert files == [f"clusters/{ENV}/platform.yaml"]
        git_show = lambda ref: _git("--git-dir", str(remote), "show", ref)  # noqa: E731
        assert git_show(f"{branch}:{sync}") == git_show(f"main:{sync}")
        assert f"clusters/{NAME}/" not in _git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", branch)
        assert "interval: 5m0s" in git_show(f"{branch}:clusters/{ENV}/platform.yaml")
        # The pull request on the demo's git host carries the real results.
        pr = json.loads((workdir / "state" / "pull-requests" / "1.json").read_text(encoding="utf-8"))
        assert (pr["head"], pr["base"], pr["state"]) == (branch, "main", "open")
        body = pr["body"]
        validation = body.split("### Validation\n", 1)[1].split("### Performance\n", 1)[0]
        recorded = _recorded(config_path, Stage.validate)
        assert validation.startswith(f"passed: {recorded['summary']}\n")
        assert "0 blocking policy violation(s); 2/2 Flux objects Ready" in recorded["summary"]
        assert f"Flux objects on the sandbox's cluster at `{branch}` commit `{changed}`:" in validation
        for line in states:  # each object's Ready condition as the real cluster reported it, at the change
            assert f"{line}\n" in validation, (line, validation)
        performance = body.split("### Performance\n", 1)[1]
        perf = _recorded(config_path, Stage.performance_test)
        assert performance.startswith(f"{perf['summary']}\n") and " req/s, p95 " in perf["summary"]
        assert f"{perf['details']['metrics']['requests_per_second']:.0f} req/s" in performance
        assert "Load target: the local stand-in, not the sandbox" in performance
        assert f"gotk-sync.yaml` is never copied back: `clusters/{ENV}/` keeps its own." in body
        assert "- `platform.yaml`: +1 -1" in body and "+  interval: 5m0s" in body

        # 3. The local environment's long-lived cluster, following main.
        env_cfg = load_config(config_path)
        from sandbox.environments import (
            bootstrap_environment,
            environment_terraform_dir,
            environment_variables,
            provision_environment,
        )
        from sandbox.wiring import build_drivers

        drivers = build_drivers(env_cfg)
        try:
            env_cluster = provision_environment(env_cfg, ENV, drivers.terraform, drivers.git)
            bootstrap_environment(env_cfg, ENV, env_cluster, drivers.git)
            env_k = Kubectl(kubectl, env_cluster_dir / "admin.kubeconfig")
            before = _branch_head(remote, "main")
            first = cli("watch", ENV)
            assert first.returncode == 0, first.stderr[-3000:]
            assert f"{ENV}: revision {before[:12]} applied" in first.stdout
            assert _kustomizations(env_k)["platform-configs"]["spec"]["interval"] == "10m0s"  # main's, before

            # The pull request merges (a merge commit on main, as a host's button makes).
            reviewer = tmp_path / "reviewer"
            _git("clone", "-q", str(remote), str(reviewer))
            _git("merge", "-q", "--no-ff", f"origin/{branch}", "-m", "Merge pull request #1", cwd=reviewer)
            _git("push", "-q", "origin", "main", cwd=reviewer)
            merge = _git("rev-parse", "HEAD", cwd=reviewer)
            watched = cli("watch", ENV)
            assert watched.returncode == 0, watched.stderr[-3000:]
            assert (
                f"{ENV}: revision {merge[:12]} applied (Kustomization/flux-system/flux-system at main@sha1:{merge})"
            ) in watched.stdout
            landed = _kustomizations(env_k)
            for name, obj in landed.items():  # watch returned only once Flux had applied the merge
                assert obj["status"]["lastAppliedRevision"] == f"main@sha1:{merge}", (name, obj["status"])
                assert condition(obj, "Ready")["status"] == "True", (name, obj["status"])  # type: ignore[index]
                assert f"  Kustomization/flux-system/{name}: " in watched.stdout
            assert landed["platform-configs"]["spec"]["interval"] == "5m0s"  # the promoted change, applied

            # The promotion flow's own last step: the demo's git host says merged, and it watches local.
            again = cli("promote", NAME)
            assert again.returncode == 0, again.stderr[-3000:]
            head = pr["head_sha"]
            assert head == _branch_head(remote, branch)
            assert (
                f"  promote  landed  {ENV}: revision {head[:12]} applied "
                f"(Kustomization/flux-system/flux-system at main@sha1:{merge})"
            ) in again.stdout, again.stdout[-2000:]
            merged = json.loads((workdir / "state" / "pull-requests" / "1.json").read_text(encoding="utf-8"))
            assert (merged["state"], merged["merged_revision"]) == ("merged", head)

            # A revision that never reaches main: exit 1 at the timeout, naming what is stuck.
            side = _side_commit(remote, tmp_path / "side")
            stuck = cli("watch", ENV, "--revision", side, "--timeout", "10")
            assert stuck.returncode == 1, (stuck.stdout[-2000:], stuck.stderr[-2000:])
            line = error_line(stuck.stderr)
            assert line.startswith(f"sandbox: error: {ENV}: revision {side[:12]} has not landed after 10s: "), line
            root = "Kustomization/flux-system/flux-system"
            assert f"{root}: last applied revision main@sha1:{merge}, waiting for {side[:12]}" in line
            assert f"GitRepository/flux-system/flux-system: has revision main@sha1:{merge}, not yet {side[:12]}" in line
            assert "Traceback" not in stuck.stderr
        finally:
            workdir_tf = environment_terraform_dir(env_cfg, ENV)
            if (workdir_tf / ".local-cluster").exists():
                drivers.terraform.destroy(workdir_tf, environment_variables(env_cfg, ENV))
            left = find_local_cluster_processes(env_cluster_dir)
            terminate(left, grace=5.0)
        assert left == [] and not env_cluster_dir.exists()


def _side_commit(remote: Path, work: Path) -> str:
    """A commit on a branch of its own, pushed, that ``main`` never gets."""
    _git("clone", "-q", str(remote), str(work))
    _git("checkout", "-q", "-b", "never-merged", cwd=work)
    _git("commit", "-q", "--allow-empty", "-m", "a change nobody merges", cwd=work)
    _git("push", "-q", "origin", "never-merged", cwd=work)
    return _git("rev-parse", "HEAD", cwd=work)
