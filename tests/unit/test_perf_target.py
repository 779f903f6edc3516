"""Where a performance test's load goes: never the local stand-in on a real cluster."""

from __future__ import annotations

from typing import Any, cast

import pytest

from sandbox.config import FleetConfig
from sandbox.drivers.cluster import ClusterDriver, ObjectRef
from sandbox.errors import ConfigError
from sandbox.perf.scenario import resolve_scenario
from sandbox.perf.target import load_target
from sandbox.stages.performance import preflight


def _config(cluster_type: str, **scenario: Any) -> FleetConfig:
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
            "drivers": {"cluster": {"type": cluster_type}, "load_generator": {"type": "http"}},
            "performance": {"scenarios": {"smoke": {"path": "/healthz", **scenario}}},
        }
    )


class _Cluster:
    """Answers ``get`` from a dict of objects."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self.objects.get((ref.kind, ref.namespace, ref.name))


def _cluster(*objects: dict[str, Any]) -> ClusterDriver:
    return cast(ClusterDriver, _Cluster(*objects))


def test_a_real_cluster_without_a_target_is_refused_on_one_line() -> None:
    """It used to load a stand-in server on the worker and report that as the sandbox's performance."""
    config = _config("kubernetes")
    settings = resolve_scenario(config, "smoke")
    with pytest.raises(ConfigError) as refused:
        preflight(config, settings)
    assert str(refused.value).startswith("the performance test on a real cluster needs a target: set target_url, ")
    assert "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match="needs a target"):
        load_target(config, settings, _cluster())
    simulated = _config("simulated")
    assert load_target(simulated, resolve_scenario(simulated, "smoke"), None) is None  # the stand-in, there only
    opted_in = _config("kubernetes")
    opted_in.performance.stand_in_on_real_clusters = True  # a cluster with nothing to load, said in the config
    preflight(opted_in, resolve_scenario(opted_in, "smoke"))
    assert load_target(opted_in, resolve_scenario(opted_in, "smoke"), None) is None


def test_the_target_is_read_from_a_named_service_or_ingress() -> None:
    service = {
        "kind": "Service",
        "metadata": {"name": "podinfo", "namespace": "apps"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 9898}]},
        "status": {"loadBalancer": {"ingress": [{"hostname": "lb-1.example.test"}]}},
    }
    ingress = {
        "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"rules": [{"http": {}}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}},
    }
    cluster = _cluster(service, ingress)
    config = _config("kubernetes", target_service="apps/podinfo")
    settings = resolve_scenario(config, "smoke")
    preflight(config, settings)
    assert load_target(config, settings, cluster) == "http://lb-1.example.test:9898/healthz"
    config = _config("kubernetes", target_ingress="apps/web")
    assert load_target(config, resolve_scenario(config, "smoke"), cluster) == "http://203.0.113.7/healthz"
    config = _config("kubernetes", target_service="apps/missing:80")
    with pytest.raises(ConfigError, match="no Service 'missing' in namespace 'apps'"):
        load_target(config, resolve_scenario(config, "smoke"), cluster)
    cluster_ip = {**service, "spec": {"ports": [{"port": 80}]}, "status": {}}
    config = _config("kubernetes", target_service="apps/podinfo")
    with pytest.raises(ConfigError, match="no load balancer address the worker can reach"):
        load_target(config, resolve_scenario(config, "smoke"), _cluster(cluster_ip))
