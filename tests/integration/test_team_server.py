"""Issue 10's acceptance: fleet-sandbox run for a team on a real Prefect server.

A real PostgreSQL (``tests/pg_server.py``) holds the Prefect server's database
and the sandbox inventory; ``prefect server start`` runs on it on a free port;
the work pools come from ``deployments/*-pool.json``; ``prefect deploy --all``
registers every entry of ``prefect.yaml``; two ``prefect worker start`` processes
poll the process pool with three slots each. Six lifecycles of the demo fleet
(six sandboxes in one ``fleet.yaml``) are started at once, as six people would from
the UI, and all six must end Completed, with their flow runs spread across both
workers. A lifecycle's stages are tasks inside its flow run, so they run where
their flow run runs: "stages spread across workers" is flow runs spread across
workers. Task results go to one results directory both workers share (as a shared
volume would be), so each stage's checkpoint is found whichever worker runs a retry.
The server's scheduler makes the upcoming runs of the deployed nightly cleanup and
weekly performance sandbox (``tests/upcoming.py``), and the server's log holds no
traceback or service error (``tests/serving.py``; issue 18).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prefect.client.orchestration import PrefectClient, SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.forms import apply_to_server
from deployments.pools import apply_pools
from deployments.serve import local_server
from deployments.spec import load_deployments
from sandbox.demo import demo_request, prepare_demo
from sandbox.models import STAGE_ORDER
from tests.conftest import PROJECT_ROOT
from tests.pg_server import PostgresServer, free_port, postgres_server  # noqa: F401
from tests.polling import poll
from tests.serving import assert_no_service_errors
from tests.upcoming import check_scheduled_runs, scheduled_as_the_cron_says, scheduled_deployments

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
POOL = "fleet-sandbox-process"
WORKERS = ("worker-a", "worker-b")
SLOTS_PER_WORKER = 3
SANDBOXES = [f"team-{i}" for i in range(1, 7)]
RUNS_TIMEOUT_SECONDS = 240


def client_env(api_url: str, home: Path, **extra: str) -> dict[str, str]:
    """A Prefect client process's environment: the team server, its own home."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_DATABASE_CONNECTION_URL"}
    env.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(home), **extra)
    return env


@contextlib.contextmanager
def processes(*launches: tuple[list[str], dict[str, str], Path]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start long-running processes (argv, env, log file); stop them afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for argv, env, log_path in launches:
            log = log_path.open("wb")
            logs.append(log)
            started.append(subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT))  # noqa: S603
        yield started
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for log in logs:
            log.close()


def prepare_fleet(workdir: Path, inventory_url: str) -> Path:
    """The demo's fleet, its inventory on PostgreSQL as a team's would be."""
    config_path = prepare_demo(workdir)
    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    data["inventory"] = {"url": inventory_url}
    config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config_path


def lifecycle_request(config_path: Path, name: str, number: int) -> dict[str, Any]:
    """The demo's lifecycle (a chart bump from development) as sandbox ``name``: its own ticket and version."""
    request = demo_request(config_path).model_copy(
        update={"name": name, "ticket": f"OPS-{100 + number}", "summary": f"team change {number}"}
    )
    assert request.change is not None
    request.change.edits[0].value = f"6.7.{1 + number}"
    return request.model_dump(mode="json")


def submitting_workers(api_url: str, run_ids: set[str]) -> dict[str, str] | None:
    """Flow run id -> the worker that submitted it, from the workers' events; ``None`` until all are known."""
    body = {"filter": {"event": {"name": ["prefect.worker.submitted-flow-run"]}}, "limit": 50}
    response = httpx.post(f"{api_url}/events/filter", json=body, timeout=10)
    response.raise_for_status()
    found: dict[str, set[str]] = {}
    for event in response.json()["events"]:
        worker = event["resource"]["prefect.resource.name"]
        for related in event["related"]:
            resource_id = related["prefect.resource.id"]
            if related.get("prefect.resource.role") == "flow-run" and resource_id.startswith("prefect.flow-run."):
                found.setdefault(resource_id.removeprefix("prefect.flow-run."), set()).add(worker)
    twice = {run: workers for run, workers in found.items() if len(workers) > 1}
    assert not twice, f"flow runs started by more than one worker: {twice}"
    return {run: workers.pop() for run, workers in found.items()} if run_ids <= set(found) else None


def final_runs(client: SyncPrefectClient, run_ids: list[Any]) -> list[FlowRun] | None:
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)))
    return runs if len(runs) == len(run_ids) and all(r.state and r.state.is_final() for r in runs) else None


# Six whole lifecycles on two workers: well inside the default 300 s on idle cores,
# not on a machine whose CPUs are shared (the per-test timeout is a hang guard, not a speed check).
@pytest.mark.timeout(900)
def test_two_workers_run_six_lifecycles_at_once_on_a_postgresql_server(
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    prefect_db = postgres_server.create_database()
    inventory_db = postgres_server.create_database()
    shared_results = tmp_path / "shared" / "prefect-results"  # one volume, mounted by every worker
    port = free_port()
    server_home = tmp_path / "server-home"
    server_log = server_home / "server.log"  # where local_server writes the server's output
    with ThreadPoolExecutor(max_workers=1) as pool:
        fleet = pool.submit(prepare_fleet, tmp_path / "fleet", postgres_server.url(inventory_db))
        with local_server(
            "127.0.0.1", port, server_home, postgres_server.url(prefect_db, "postgresql+asyncpg")
        ) as api_url:
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                assert sorted(apply_pools()) == [
                    "fleet-sandbox-kubernetes (kubernetes, concurrency limit 10)",
                    "fleet-sandbox-process (process, concurrency limit 10)",
                ]
            worker_env = client_env(
                api_url,
                tmp_path / "worker-home",
                FLEET_SANDBOX_HOME=str(PROJECT_ROOT),
                PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(shared_results),
                PREFECT_RESULTS_PERSIST_BY_DEFAULT="true",
                PREFECT_WORKER_QUERY_SECONDS="1",
            )
            workers = [
                (
                    [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--name", name]
                    + ["--limit", str(SLOTS_PER_WORKER)],
                    {**worker_env, "PREFECT_HOME": str(tmp_path / f"{name}-home")},
                    tmp_path / f"{name}.log",
                )
                for name in WORKERS
            ]
            with processes(*workers) as started:
                deploy = subprocess.run(
                    [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
                    env=client_env(api_url, tmp_path / "deployer-home"),
                    cwd=PROJECT_ROOT,
                    capture_output=True,
                    text=True,
                    timeout=180,
                    check=False,
                )
                assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
                config_path = fleet.result(timeout=180)
                with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
                    check_deployments(client)
                    restricted = apply_to_server(config_path)
                    assert (
                        "sandbox-lifecycle/on-demand: definitions.LifecycleRequest.source_env, "
                        "definitions.LifecycleRequest.ticket" in restricted
                    ), restricted
                    lifecycle = client.read_deployment_by_name("sandbox-lifecycle/on-demand")
                    with pytest.raises(PrefectHTTPStatusError, match="qa"):
                        client.create_flow_run_from_deployment(
                            lifecycle.id,
                            parameters={"request": {**lifecycle_request(config_path, "x", 0), "source_env": "qa"}},
                        )
                    poll(
                        "both workers to poll the pool",
                        lambda: {w.name for w in client.read_workers_for_work_pool(POOL)} >= set(WORKERS),
                        timeout=90,
                    )
                    runs = [
                        client.create_flow_run_from_deployment(
                            lifecycle.id, parameters={"request": lifecycle_request(config_path, name, number)}
                        )
                        for number, name in enumerate(SANDBOXES, start=1)
                    ]
                    run_ids = [run.id for run in runs]
                    finished = poll(
                        "six lifecycles to finish", lambda: final_runs(client, run_ids), RUNS_TIMEOUT_SECONDS, 1
                    )
                    failed = {r.name: r.state and (r.state.name, r.state.message) for r in finished}
                    failed = {name: state for name, state in failed.items() if state and state[0] != "Completed"}
                    logs = {name: (tmp_path / f"{name}.log").read_text(errors="replace")[-1500:] for name in WORKERS}
                    assert failed == {}, f"{failed}; worker logs: {logs}"
                    assert all(process.poll() is None for process in started), logs
                    assert sorted(r.name for r in finished) == SANDBOXES
                    by_worker = poll(
                        "the workers' submission events",
                        lambda: submitting_workers(api_url, {str(i) for i in run_ids}),
                        timeout=30,
                    )
                    check_stages(client, run_ids)
                    check_kubernetes_job(kubernetes_job(api_url, finished[0]))
                    check_schedules(client, server_log)
    assert_no_service_errors(server_log)  # the server has stopped: its whole log
    assert sorted(set(by_worker.values())) == sorted(WORKERS), by_worker  # both workers ran some of the six
    pull_requests = [json.loads(p.read_text()) for p in (config_path.parent / "state" / "pull-requests").glob("*.json")]
    assert sorted(pr["number"] for pr in pull_requests) == list(range(1, len(SANDBOXES) + 1))
    assert sorted(pr["head"] for pr in pull_requests) == sorted(f"OPS-{100 + n}-team-change-{n}" for n in range(1, 7))
    for name in SANDBOXES:  # every stage's checkpoint is on the shared volume, whichever worker wrote it
        # Checkpoints are stored as <fleet id>/<sandbox>/<lifecycle id>/<stage>/v1.
        stored = {path.parent.name for path in shared_results.glob(f"*/{name}/*/*/v1")}
        assert stored == {stage.value for stage in STAGE_ORDER}, (name, stored)


def kubernetes_job(api_url: str, flow_run: FlowRun) -> dict[str, Any]:
    """The Job prefect-kubernetes makes of ``flow_run`` from the Kubernetes pool stored on the server."""
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    async def render() -> dict[str, Any]:
        async with PrefectClient(api_url) as client:
            pool = await client.read_work_pool("fleet-sandbox-kubernetes")
            configuration = await KubernetesWorkerJobConfiguration.from_template_and_values(
                pool.base_job_template, {"image": "registry.example/platform/fleet-sandbox:1.0"}, client=client
            )
            configuration.prepare_for_flow_run(flow_run, work_pool=pool, worker_name="k8s-worker")
            manifest: dict[str, Any] = configuration.job_manifest
            return manifest

    return asyncio.run(render())


def check_kubernetes_job(job: dict[str, Any]) -> None:
    """A flow-run Job runs the worker image with the project home, shared results and fleet.yaml mounted."""
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "registry.example/platform/fleet-sandbox:1.0"
    assert job["metadata"]["namespace"] == "fleet-sandbox" and pod["serviceAccountName"] == "fleet-sandbox-flows"
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["FLEET_SANDBOX_HOME"] == "/opt/fleet-sandbox"
    assert env["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] == "/shared/prefect-results"
    assert "PREFECT__FLOW_RUN_ID" in env
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["shared"]["persistentVolumeClaim"] == {"claimName": "fleet-sandbox-shared"}
    assert volumes["fleet-config"]["configMap"] == {"name": "fleet-sandbox-config"}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["shared"]["mountPath"] == "/shared"
    assert mounts["fleet-config"]["mountPath"] == "/opt/fleet-sandbox/fleet.yaml"


def check_deployments(client: SyncPrefectClient) -> None:
    """Every entry of prefect.yaml is on the server; cleanup and performance carry their cron schedules."""
    for spec in load_deployments():
        flow_name = {
            "nightly-cleanup": "cleanup-expired-sandboxes",
            "performance": "performance-sandbox",
        }.get(spec.name)
        if flow_name is None:
            continue
        deployment = client.read_deployment_by_name(f"{flow_name}/{spec.name}")
        crons = [getattr(s.schedule, "cron", None) for s in deployment.schedules]
        assert crons == [s.cron for s in spec.schedules]
        assert deployment.enforce_parameter_schema
        if spec.name == "nightly-cleanup":
            assert deployment.global_concurrency_limit is not None
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options is not None
            assert deployment.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    names = {d.name for d in client.read_deployments()}
    assert names == {spec.name for spec in load_deployments()}


def check_schedules(client: SyncPrefectClient, server_log: Path) -> None:
    """The scheduler made the upcoming runs of the deployed nightly cleanup and performance sandbox.

    Checked after the lifecycles: by then the scheduler has looped (every 5 s over deployments
    changed in the last seconds, every 60 s over all of them).
    """
    deployments = scheduled_deployments(client)
    assert deployments is not None
    runs = poll(
        f"the scheduler's upcoming runs (server log {server_log})",
        lambda: scheduled_as_the_cron_says(client, server_log, deployments),
        timeout=120,
        interval=1,
    )
    check_scheduled_runs(runs, deployments)


def check_stages(client: SyncPrefectClient, run_ids: list[Any]) -> None:
    """Each flow run ran every stage as a completed task run of its own.

    Prefect 3 records task-run states from the events the runs emit, in a server
    service of its own: a flow run can read Completed before its last task runs'
    final states are written (seen on a loaded machine), so this waits for them.
    """
    wanted = {stage.value for stage in STAGE_ORDER}

    def missing() -> dict[str, list[str]]:
        left = {}
        for run_id in run_ids:
            flow_run = TaskRunFilterFlowRunId(any_=[run_id])
            tasks = client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=flow_run))
            # Stage task runs are named by their stage alone (no random suffix).
            completed = {t.name for t in tasks if t.state and t.state.is_completed()}
            if not wanted <= completed:
                left[str(run_id)] = sorted(wanted - completed)
        return left

    deadline = time.monotonic() + 60
    while (left := missing()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, f"stages whose task runs were not recorded Completed within 60 s: {left}"
