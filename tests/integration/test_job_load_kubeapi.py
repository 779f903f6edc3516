"""The Kubernetes Job load generator through the real cluster driver, against the fake API server.

The fake API server stores objects but runs nothing, so the test plays the
kubelet and the Job controller: once the Job appears it creates the Job's pod
(with the template's labels), gives the pod a log, and sets the Job's
``Complete`` (or ``Failed``) condition, as a cluster would.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from sandbox.drivers.job_load import RESULT_FORMAT, KubernetesJobLoadGenerator, KubernetesPodLogs
from sandbox.drivers.kubernetes_cluster import KubernetesClusterDriver
from sandbox.errors import ClusterError, CommandFailedError
from tests.fakes.kubeapi_server import FAKE_TOKEN, KubeApiServer, RecordedRequest, status_body, write_kubeconfig

pytestmark = pytest.mark.integration

BATCH_V1 = [
    {
        "name": "jobs",
        "singularName": "job",
        "namespaced": True,
        "kind": "Job",
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    },
    {"name": "jobs/status", "singularName": "", "namespaced": True, "kind": "Job", "verbs": ["get", "patch", "update"]},
]
_LOG_PATH = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log")


class KubeApiServerWithLogs(KubeApiServer):
    """The fake API server, plus ``GET …/pods/{name}/log`` answered from :attr:`pod_logs`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.pod_logs: dict[tuple[str, str], str] = {}

    def handle(self, request: Any, method: str) -> None:
        parts = urlsplit(request.path)
        match = _LOG_PATH.fullmatch(unquote(parts.path))
        if method != "GET" or match is None:
            super().handle(request, method)
            return
        recorded = RecordedRequest(
            method=method,
            path=unquote(parts.path),
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=b"",
        )
        self.requests.append(recorded)
        if recorded.headers.get("authorization") != f"Bearer {self.token}":
            request.send_json(401, status_body(401, "Unauthorized", "Unauthorized"))
            return
        text = self.pod_logs.get((match.group(1), match.group(2)))
        if text is None:
            request.send_json(404, status_body(404, "NotFound", f'pods "{match.group(2)}" not found'))
            return
        data = text.encode()
        request.send_response(200)
        request.send_header("Content-Type", "text/plain")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


@pytest.fixture
def kubeapi(tmp_path: Path) -> Iterator[KubeApiServerWithLogs]:
    server = KubeApiServerWithLogs(token=FAKE_TOKEN)
    server.start()
    server.serve("batch/v1", BATCH_V1)
    server.kubeconfig_path = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    try:
        yield server
    finally:
        server.stop()


def play_cluster(server: KubeApiServerWithLogs, *, log: str, succeed: bool, stop: threading.Event) -> threading.Thread:
    """Run the Job once it appears: its pod, its log, its final condition."""

    def work() -> None:
        job: dict[str, Any] | None = None
        while job is None and not stop.wait(0.02):
            job = next((o for o in server.objects() if o["kind"] == "Job"), None)
        if job is None:
            return
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        pod = f"{name}-x7k2p"
        server.put_object(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod,
                    "namespace": namespace,
                    "labels": job["spec"]["template"]["metadata"]["labels"],
                },
                "spec": job["spec"]["template"]["spec"],
                "status": {"phase": "Succeeded" if succeed else "Failed"},
            }
        )
        server.pod_logs[(namespace, pod)] = log
        server.patch_object("batch/v1", "Job", name, namespace, {"status": {"active": 1}})
        condition = (
            {"type": "Complete", "status": "True"}
            if succeed
            else {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        )
        server.patch_object(
            "batch/v1",
            "Job",
            name,
            namespace,
            {"status": {"active": 0, ("succeeded" if succeed else "failed"): 1, "conditions": [condition]}},
        )

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def generator(server: KubeApiServerWithLogs) -> tuple[KubernetesJobLoadGenerator, KubernetesClusterDriver]:
    assert server.kubeconfig_path is not None
    cluster = KubernetesClusterDriver(server.kubeconfig_path, request_timeout=5)
    logs = KubernetesPodLogs.from_kubeconfig_text(server.kubeconfig_path.read_text())
    load = KubernetesJobLoadGenerator(
        cluster,
        logs,
        image="grafana/k6:0.54.0",
        namespace="load",
        args=["run", "/scripts/smoke.js"],
        deadline_margin_seconds=15,
    )
    return load, cluster


def test_a_load_job_runs_and_its_result_line_is_read(kubeapi: KubeApiServerWithLogs) -> None:
    result = {
        "format": RESULT_FORMAT,
        "requests": 600,
        "failures": 3,
        "duration_seconds": 1.0,
        "requests_per_second": 600.0,
        "p50_ms": 3.1,
        "p95_ms": 9.4,
        "p99_ms": 15.0,
    }
    stop = threading.Event()
    kubelet = play_cluster(kubeapi, log=f"running 5 VUs\n{json.dumps(result)}\ndone\n", succeed=True, stop=stop)
    load, cluster = generator(kubeapi)
    try:
        metrics = load.run("http://podinfo.apps:9898/", users=5, duration_seconds=1)
    finally:
        stop.set()
        kubelet.join(5)
        cluster.close()
    assert (metrics.requests, metrics.failures, metrics.p95_ms) == (600, 3, 9.4)
    [apply] = [r for r in kubeapi.api_requests() if r.method == "PATCH" and "/jobs/" in r.path]
    assert apply.path.startswith("/apis/batch/v1/namespaces/load/jobs/fleet-sandbox-load-")
    assert apply.content_type == "application/apply-patch+yaml"
    sent = apply.json()
    env = {e["name"]: e["value"] for e in sent["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["LOAD_TARGET_URL"], env["LOAD_USERS"], env["LOAD_DURATION_SECONDS"]) == (
        "http://podinfo.apps:9898/",
        "5",
        "1",
    )
    [log_request] = [r for r in kubeapi.requests if r.path.endswith("/log")]
    assert log_request.param("container") == "load"
    assert log_request.headers["authorization"] == f"Bearer {FAKE_TOKEN}"
    # The Job is deleted once its result is read.
    assert kubeapi.get_object("batch/v1", "Job", apply.path.rsplit("/", 1)[1], "load") is None
    assert any(r.method == "DELETE" and "/jobs/" in r.path for r in kubeapi.api_requests())


def test_a_failed_job_fails_with_its_reason_and_log(kubeapi: KubeApiServerWithLogs) -> None:
    stop = threading.Event()
    kubelet = play_cluster(
        kubeapi, log="ERRO[0001] target unreachable: dial tcp: i/o timeout\n", succeed=False, stop=stop
    )
    load, cluster = generator(kubeapi)
    try:
        with pytest.raises(CommandFailedError) as caught:
            load.run("http://podinfo.apps:9898/", users=5, duration_seconds=1)
    finally:
        stop.set()
        kubelet.join(5)
        cluster.close()
    message = str(caught.value)
    assert "failed: BackoffLimitExceeded: Job has reached the specified backoff limit" in message
    assert "log: ERRO[0001] target unreachable" in message
    assert not [o for o in kubeapi.objects() if o["kind"] == "Job"]


def test_reading_a_missing_pods_log_is_a_cluster_error(kubeapi: KubeApiServerWithLogs) -> None:
    assert kubeapi.kubeconfig_path is not None
    logs = KubernetesPodLogs.from_kubeconfig_text(kubeapi.kubeconfig_path.read_text())
    with pytest.raises(ClusterError, match="get Pod/load/nope/log: 404") as caught:
        logs.read_log("load", "nope", "load")
    assert FAKE_TOKEN not in str(caught.value)
