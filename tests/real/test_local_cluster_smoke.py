"""Smoke test of the real local cluster: up through the stack, Flux installed, a Kustomization Ready, destroyed.

The stack is applied and destroyed with real terraform; the cluster is checked with kubectl; the fleet repository
is served over smart HTTP on loopback (git http-backend) and fetched by the real source-controller; the
kustomize-controller applies it. Afterwards nothing of the cluster is left: no process, no port, no directory.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from sandbox.flux import readiness
from sandbox.localcluster.git_http import GitHttpServer
from sandbox.localcluster.ports import is_free
from sandbox.localcluster.processes import find_local_cluster_processes
from tests.polling import poll
from tests.real.localstack import (
    FLUX_COMPONENTS,
    Kubectl,
    LocalStack,
    condition,
    running_components,
    scale_flux_controller,
)

pytestmark = pytest.mark.timeout(1200)

BRANCH = "sandbox-smoke"
APP = {
    "kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
    "  - namespace.yaml\n  - settings.yaml\n",
    "namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: smoke\n",
    "settings.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: smoke\n"
    "data:\n  greeting: hello from the sandbox branch\n",
}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _fleet(tmp_path: Path) -> tuple[Path, str]:
    """A bare fleet repository with branch ``BRANCH`` holding ``apps/smoke``; (serving root, branch head)."""
    work = tmp_path / "fleet-work"
    (work / "apps" / "smoke").mkdir(parents=True)
    for name, text in APP.items():
        (work / "apps" / "smoke" / name).write_text(text, encoding="utf-8")
    _git(tmp_path, "init", "-q", "-b", BRANCH, str(work))
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "smoke app")
    root = tmp_path / "served"
    root.mkdir()
    _git(tmp_path, "clone", "-q", "--bare", str(work), str(root / "fleet.git"))
    return root, _git(work, "rev-parse", "HEAD")


def _sync(url: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: GitRepository
        metadata: {{name: fleet, namespace: flux-system}}
        spec:
          interval: 1m
          ref: {{branch: {BRANCH}}}
          url: {url}
        ---
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata: {{name: smoke, namespace: flux-system}}
        spec:
          interval: 10m
          path: ./apps/smoke
          prune: true
          sourceRef: {{kind: GitRepository, name: fleet}}
        """
    )


def test_local_cluster_runs_flux_and_leaves_nothing(terraform: str, kubectl: str, tmp_path: Path) -> None:
    stack = LocalStack(terraform, tmp_path / "stack", "smoke")
    outputs = stack.apply()
    assert outputs["cluster_endpoint"].startswith("https://127.0.0.1:") and outputs["kubernetes_version"] == "1.36"
    k = Kubectl(kubectl, stack.kubeconfig)
    node = k.json("node", "kwok-node-0")
    assert condition(node, "Ready")["status"] == "True"  # type: ignore[index]
    ports = stack.ports()
    try:
        # Flux installed as on a cloud cluster: CRDs, namespace, RBAC, Deployments that kwok makes Available.
        k("apply", "--server-side", "-f", str(FLUX_COMPONENTS))
        k("-n", "flux-system", "wait", "--for=condition=Available", "deployment", "--all", "--timeout=300s")
        wanted = {"source-controller", "kustomize-controller", "helm-controller", "notification-controller"}
        running = lambda: wanted <= running_components(stack.cluster_dir) or None  # noqa: E731
        poll("the Flux controllers running as host processes", running, 120)

        root, head = _fleet(tmp_path)
        with GitHttpServer(root) as server:
            k("apply", "-f", "-", stdin=_sync(f"http://127.0.0.1:{server.port}/fleet.git"))

            def applied() -> dict[str, object] | None:
                kustomization = k.json("-n", "flux-system", "kustomization", "smoke")
                return kustomization if readiness(kustomization).ready else None

            kustomization = poll("Kustomization smoke Ready", applied, 300)
        assert kustomization["status"]["lastAppliedRevision"] == f"{BRANCH}@sha1:{head}"  # type: ignore[index]
        settings = k.json("-n", "smoke", "configmap", "settings")
        assert settings["data"] == {"greeting": "hello from the sandbox branch"}
        assert settings["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "smoke"

        # Scaled to zero, a controller's process stops, and its objects' finalizers stay: a Kustomization deleted
        # now is stuck, as on a real cluster. Scaled back, the controller runs again and releases it.
        scale_flux_controller(k, stack.cluster_dir, "kustomize-controller", 0)
        k("-n", "flux-system", "delete", "kustomization", "smoke", "--wait=false")
        stuck = k.json("-n", "flux-system", "kustomization", "smoke")
        assert stuck["metadata"]["deletionTimestamp"] and stuck["metadata"]["finalizers"] == ["finalizers.fluxcd.io"]
        scale_flux_controller(k, stack.cluster_dir, "kustomize-controller", 1)

        def released() -> bool | None:
            listed = k.json("-n", "flux-system", "kustomizations")["items"]
            return not any(item["metadata"]["name"] == "smoke" for item in listed) or None

        poll("the deleted Kustomization released by kustomize-controller", released, 300)
        # Its inventory was pruned with it (prune: true).
        assert "smoke" not in {
            item["metadata"]["name"]
            for item in k.json("namespaces")["items"]
            if not item["metadata"].get("deletionTimestamp")
        }
    finally:
        stack.destroy()
    assert find_local_cluster_processes(stack.cluster_dir) == []
    assert not stack.cluster_dir.exists()
    assert all(is_free(port) for port in ports)


def test_two_local_clusters_share_no_port_and_no_file(terraform: str, kubectl: str, tmp_path: Path) -> None:
    first = LocalStack(terraform, tmp_path / "first", "first")
    second = LocalStack(terraform, tmp_path / "second", "second")
    try:
        for stack in (first, second):
            stack.apply()
            node = Kubectl(kubectl, stack.kubeconfig).json("node", "kwok-node-0")
            assert condition(node, "Ready")["status"] == "True"  # type: ignore[index]
        assert first.ports().isdisjoint(second.ports())
        first_files = {p.resolve() for p in first.cluster_dir.rglob("*")}
        second_files = {p.resolve() for p in second.cluster_dir.rglob("*")}
        assert first_files and second_files and first_files.isdisjoint(second_files)
        for stack in (first, second):  # every process of a cluster belongs to its own directory
            assert {p.cluster_dir for p in find_local_cluster_processes(stack.cluster_dir)} == {
                str(stack.cluster_dir.resolve())
            }
        first.destroy()
        # The other one is untouched by the first one's destroy.
        node = Kubectl(kubectl, second.kubeconfig).json("node", "kwok-node-0")
        assert condition(node, "Ready")["status"] == "True"  # type: ignore[index]
    finally:
        for stack in (first, second):
            if stack.cluster_dir.exists():
                stack.destroy()
    for stack in (first, second):
        assert find_local_cluster_processes(stack.cluster_dir) == [] and not stack.cluster_dir.exists()
