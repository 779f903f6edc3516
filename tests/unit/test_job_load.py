"""The Kubernetes Job load generator's contract: the Job it builds and the result line it reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.config import FleetConfig
from sandbox.drivers.job_load import (
    RESULT_FORMAT,
    RUN_LABEL,
    KubernetesJobLoadGenerator,
    job_outcome,
    parse_load_result,
)
from sandbox.drivers.load import LoadGenerator
from sandbox.errors import CommandFailedError, ConfigError, InvalidInputError
from sandbox.wiring import build_job_load_generator

RESULT = {
    "format": RESULT_FORMAT,
    "requests": 15234,
    "failures": 12,
    "duration_seconds": 300.4,
    "requests_per_second": 50.7,
    "p50_ms": 41.0,
    "p95_ms": 88.5,
    "p99_ms": 140.2,
}


def test_the_result_line_is_found_among_the_tools_output() -> None:
    log = "\n".join(
        [
            "starting 50 virtual users",
            '{"level": "info", "msg": "not a result"}',
            json.dumps({**RESULT, "p95_ms": 1.0}),  # an earlier line: the last one counts
            "  " + json.dumps(RESULT) + "  ",
            "done",
        ]
    )
    metrics = parse_load_result(log)
    assert (metrics.requests, metrics.failures, metrics.p95_ms, metrics.requests_per_second) == (15234, 12, 88.5, 50.7)
    assert metrics.error_rate == pytest.approx(12 / 15234, abs=1e-6)


@pytest.mark.parametrize(
    ("log", "message"),
    [
        ("no result here\n", "no result line with format 'fleet-sandbox.load-result/v1'"),
        (json.dumps({**RESULT, "format": "other/v1"}), "no result line"),
        (json.dumps({k: v for k, v in RESULT.items() if k != "p99_ms"}), "invalid result line: p99_ms: Field required"),
        (json.dumps({**RESULT, "requests": "many"}), "invalid result line: requests"),
    ],
)
def test_a_missing_or_invalid_result_fails(log: str, message: str) -> None:
    with pytest.raises(CommandFailedError, match=message):
        parse_load_result(log, source="log of pod load/x")


class _NoCluster:
    """Never called: prepare() builds the Job without sending anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"prepare() must not call the cluster ({name})")


def generator(**options: Any) -> KubernetesJobLoadGenerator:
    return KubernetesJobLoadGenerator(_NoCluster(), _NoCluster(), image="grafana/k6:0.54.0", **options)


def test_the_job_carries_the_scenario_and_runs_once() -> None:
    load = generator(namespace="load", args=["run", "/scripts/smoke.js"], env={"K6_NO_USAGE_REPORT": "true"})
    assert isinstance(load, LoadGenerator)
    job = load.prepare("http://podinfo.apps:9898/", users=50, duration_seconds=30, spawn_rate=5, run_id="abc123")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"] == {
        "name": "fleet-sandbox-load-abc123",
        "namespace": "load",
        "labels": {"app.kubernetes.io/managed-by": "fleet-sandbox", RUN_LABEL: "abc123"},
    }
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 30 + 300)
    pod = spec["template"]
    assert pod["metadata"]["labels"][RUN_LABEL] == "abc123"
    assert pod["spec"]["restartPolicy"] == "Never"
    [container] = pod["spec"]["containers"]
    assert (container["name"], container["image"], container["args"]) == (
        "load",
        "grafana/k6:0.54.0",
        ["run", "/scripts/smoke.js"],
    )
    assert "command" not in container  # the image's entrypoint
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "K6_NO_USAGE_REPORT": "true",
        "LOAD_TARGET_URL": "http://podinfo.apps:9898/",
        "LOAD_USERS": "50",
        "LOAD_SPAWN_RATE": "5",
        "LOAD_DURATION_SECONDS": "30",
        "LOAD_RESULT_FORMAT": RESULT_FORMAT,
    }


def test_bad_settings_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(InvalidInputError, match="not an http"):
        generator().prepare("podinfo:9898", users=1, duration_seconds=1)
    with pytest.raises(InvalidInputError, match="at least one user"):
        generator().prepare("http://x/", users=0, duration_seconds=1)
    with pytest.raises(ConfigError, match="needs an image"):
        KubernetesJobLoadGenerator(_NoCluster(), _NoCluster(), image="")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ({}, None),
        ({"active": 1, "conditions": [{"type": "Complete", "status": "False"}]}, None),
        ({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}, "succeeded"),
        ({"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}, "succeeded"),
        (
            {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
            "failed",
        ),
    ],
)
def test_job_outcome_follows_the_conditions(status: dict[str, Any], outcome: str | None) -> None:
    assert job_outcome({"status": status}) == outcome


def _config(cluster_type: str, image: str | None) -> FleetConfig:
    return FleetConfig.model_validate(
        {
            "fleet_repo": {"remote": "r.git", "flux_url": "https://git.example.test/r.git"},
            "environments": {
                "production": {
                    "cluster_dir": "clusters/production",
                    "tracking": {"type": "tag", "tag": "1.0.0"},
                    "terraform": {"module": "m"},
                }
            },
            "drivers": {
                "cluster": {"type": cluster_type},
                "load_generator": {"type": "kubernetes-job", "job": {"image": image}},
            },
        }
    )


def test_the_simulated_cluster_cannot_run_the_job() -> None:
    with pytest.raises(ConfigError, match="simulated cluster runs no pods"):
        build_job_load_generator(_config("simulated", "k6"), _NoCluster(), kubeconfig="x")
    with pytest.raises(ConfigError, match="job.image is required"):
        build_job_load_generator(_config("kubernetes", None), _NoCluster(), kubeconfig="x")
