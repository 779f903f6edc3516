"""The API server killed mid-stage: the stage fails retryable and resumes when the cluster is back.

A local cluster provisioned by the example fleet's ``infra/local-cluster`` stack (real terraform), its
kubeconfig taken from the stack's sensitive output as a sandbox's stages take it. The stage is the bootstrap
stage's cluster work, :func:`sandbox.stages.bootstrap.install_flux` (Flux's CRDs, RBAC, Deployments, the git
secret and the sync objects, with the real ``kubernetes`` driver), run as a Prefect task with the stage tasks'
options (``tasks.common.STAGE_TASK_OPTIONS``: the real ``RETRY_DELAYS`` and ``retry_if_retryable``). Once the
CRDs are Established, kube-apiserver is SIGKILLed (found through its marker, :mod:`sandbox.localcluster.processes`):
the next request fails, the attempt fails with a retryable one-line error naming the cluster, the host kubelet
starts kube-apiserver again on its port, and a later attempt of the same task completes the install.

Not the whole ``bootstrap`` stage task (that one also needs a fleet checkout, a git remote and an inventory,
which ``test_local_sandbox`` covers): the cluster side of it, which is what talks to the API server.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.drivers.kubernetes_cluster import KubernetesClusterDriver, KubernetesUnavailableError
from sandbox.errors import RetryableError
from sandbox.localcluster import control_plane
from sandbox.localcluster.processes import LocalProcess, find_local_cluster_processes
from sandbox.stages.bootstrap import install_flux
from tests.polling import poll
from tests.real.localstack import EXAMPLE_REPO, Kubectl, LocalStack

pytestmark = pytest.mark.timeout(1200)


def _apiserver(cluster_dir: Path) -> LocalProcess | None:
    found = [p for p in find_local_cluster_processes(cluster_dir) if p.component == "kube-apiserver"]
    return found[0] if found else None


def _diagnosis(cluster_dir: Path) -> str:
    """What the host kubelet said and where kube-apiserver runs now (for a failure's message)."""
    logs = cluster_dir / "logs"
    kubelet = (logs / "flux-host-kubelet.log").read_text(encoding="utf-8", errors="replace")[-1500:]
    apiserver = (logs / "kube-apiserver.log").read_text(encoding="utf-8", errors="replace")[-1500:]
    record = control_plane.layout(cluster_dir).record("kube-apiserver")
    return f"kube-apiserver now: {record}; host kubelet log: {kubelet}; kube-apiserver log: {apiserver}"


def _kubeconfig_material(text: str) -> list[str]:
    """The credentials of a kubeconfig: embedded data and the PEM bodies they decode to."""
    material = []
    for user in yaml.safe_load(text)["users"]:
        for key in ("client-key-data", "client-certificate-data"):
            data = user["user"][key]
            material += [data, *base64.b64decode(data).decode().splitlines()[1:-1]]
    return material


def test_a_killed_api_server_fails_the_stage_retryably_and_it_resumes(
    prefect_server: str, terraform: str, kubectl: str, tmp_path: Path
) -> None:
    from prefect import flow, task

    from tasks.common import STAGE_TASK_OPTIONS

    stack = LocalStack(terraform, tmp_path / "stack", "apikill")
    try:
        stack.apply()
        kubeconfig = stack.kubeconfig.read_text(encoding="utf-8")
        endpoint = yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]["server"]
        repo = tmp_path / "fleet"
        root = repo / "clusters" / "local"
        shutil.copytree(EXAMPLE_REPO / "clusters" / "local" / "flux-system", root / "flux-system")
        first = _apiserver(stack.cluster_dir)
        assert first is not None
        attempts: list[BaseException | None] = []

        def kill_the_api_server_once(line: str) -> None:
            """Mid-stage: after the CRDs, before the controllers (the first attempt only)."""
            if "CustomResourceDefinitions" in line and len(attempts) == 0:
                os.kill(first.pid, signal.SIGKILL)
                poll("kube-apiserver gone", lambda: _apiserver(stack.cluster_dir) != first or None, 60, 0.05)

        # The stage tasks' options as they are: retried only when retryable, after RETRY_DELAYS (5 s, then 30 s).
        @task(**{**STAGE_TASK_OPTIONS, "persist_result": False})
        def install() -> int:
            with KubernetesClusterDriver.from_kubeconfig_text(kubeconfig) as cluster:
                try:
                    applied = install_flux(cluster, root, repo=repo, git_token=None, progress=kill_the_api_server_once)
                except BaseException as exc:
                    attempts.append(exc)
                    raise
            attempts.append(None)
            return applied

        @flow
        def stage() -> Any:
            return install(return_state=True)

        state: Any = stage(return_state=True)
        assert state.is_completed(), f"{attempts}; {_diagnosis(stack.cluster_dir)}"
        failures = [a for a in attempts if a is not None]
        assert failures and attempts[-1] is None, attempts
        secrets = _kubeconfig_material(kubeconfig)
        for failure in failures:
            assert isinstance(failure, KubernetesUnavailableError) and isinstance(failure, RetryableError), failure
            text = str(failure)
            assert "\n" not in text and f"cluster API {endpoint}" in text, text
            assert not any(secret in text for secret in secrets)
        # The first failure is the kill: the next request after the CRDs found nothing listening.
        assert "unreachable" in str(failures[0]), failures[0]

        # Back by itself (the host kubelet), on the same port: the kubeconfig handed out still works.
        again = _apiserver(stack.cluster_dir)
        assert again is not None and again.pid != first.pid
        record = control_plane.layout(stack.cluster_dir).record("kube-apiserver")
        assert record is not None and f"https://127.0.0.1:{record.ports['secure']}" == endpoint
        log = (stack.cluster_dir / "logs" / "flux-host-kubelet.log").read_text(encoding="utf-8")
        assert "restarted kube-apiserver: its process had exited" in log
        # What the resumed stage applied is there.
        k = Kubectl(kubectl, stack.kubeconfig)
        names = {item["metadata"]["name"] for item in k.json("-n", "flux-system", "deployments")["items"]}
        assert {"source-controller", "kustomize-controller"} <= names
        assert k.json("-n", "flux-system", "kustomization", "flux-system")["metadata"]["name"] == "flux-system"
    finally:
        stack.destroy()
    assert find_local_cluster_processes(stack.cluster_dir) == [] and not stack.cluster_dir.exists()
