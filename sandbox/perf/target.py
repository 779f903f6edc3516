"""Where a performance test's load goes: a URL, a Service or Ingress of the sandbox, or the local stand-in.

* ``target_url`` set: that URL.
* A simulated cluster has no network endpoint: without ``target_url`` the load goes to
  a local stand-in target on loopback (:func:`sandbox.drivers.load.local_target`).
* A real cluster never silently gets the stand-in: the scenario names the sandbox's
  Service (``target_service: namespace/name[:port]``) or Ingress
  (``target_ingress: namespace/name``) whose address is read from the cluster, else
  the stage is refused with one line saying what to set -- unless the configuration
  opts in (``performance.stand_in_on_real_clusters``, for a cluster with nothing to
  load), and the run then says it loaded the stand-in.

A Service is reached through its in-cluster DNS name by the ``kubernetes-job``
generator (which runs inside the cluster), and through its load balancer address
(``type: LoadBalancer``) by a generator on the worker. An Ingress is reached through
the address its controller published (``status.loadBalancer.ingress``), or the host
of its first rule.
"""

from __future__ import annotations

from typing import Any

from sandbox.config import FleetConfig
from sandbox.drivers.cluster import ClusterDriver, ObjectRef
from sandbox.errors import ConfigError
from sandbox.perf.scenario import ScenarioSettings

#: The one line a real cluster without a target gets.
NO_TARGET = (
    "the performance test on a real cluster needs a target: set target_url, or name the sandbox's Service "
    "(target_service: namespace/name[:port]) or Ingress (target_ingress: namespace/name) in performance.scenarios.{}"
)


def _split(value: str) -> tuple[str, str, int | None]:
    namespace, _, rest = value.partition("/")
    name, _, port = rest.partition(":")
    return namespace, name, int(port) if port else None


def _address(status: dict[str, Any]) -> str | None:
    for entry in ((status.get("loadBalancer") or {}).get("ingress")) or []:
        address = entry.get("hostname") or entry.get("ip")
        if address:
            return str(address)
    return None


def _service_url(cluster: ClusterDriver, value: str, in_cluster: bool) -> str:
    namespace, name, port = _split(value)
    service = cluster.get(ObjectRef("v1", "Service", name, namespace))
    if service is None:
        raise ConfigError(f"target_service {value}: no Service {name!r} in namespace {namespace!r} of the sandbox")
    ports = [p for p in (service.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
    if port is None:
        if not ports:
            raise ConfigError(f"target_service {value}: the Service has no port")
        port = int(ports[0].get("port") or 80)
    if in_cluster:
        return f"http://{name}.{namespace}.svc.cluster.local:{port}"
    address = _address(service.get("status") or {})
    if address is None:
        raise ConfigError(
            f"target_service {value}: the Service has no load balancer address the worker can reach "
            "(use the kubernetes-job generator, an Ingress, or target_url)"
        )
    return f"http://{address}:{port}"


def _ingress_url(cluster: ClusterDriver, value: str) -> str:
    namespace, name, _ = _split(value)
    ingress = cluster.get(ObjectRef("networking.k8s.io/v1", "Ingress", name, namespace))
    if ingress is None:
        raise ConfigError(f"target_ingress {value}: no Ingress {name!r} in namespace {namespace!r} of the sandbox")
    rules = [r for r in (ingress.get("spec") or {}).get("rules") or [] if isinstance(r, dict)]
    address = next((str(r["host"]) for r in rules if r.get("host")), None) or _address(ingress.get("status") or {})
    if address is None:
        raise ConfigError(f"target_ingress {value}: the Ingress has no host and no load balancer address yet")
    return f"http://{address}"


def load_target(config: FleetConfig, settings: ScenarioSettings, cluster: ClusterDriver | None) -> str | None:
    """The URL the load goes to, or ``None`` for the local stand-in target (simulated clusters only).

    Args:
        config: The fleet configuration (which cluster driver runs the sandbox).
        settings: The scenario's resolved settings.
        cluster: The sandbox's cluster (read for a Service or Ingress; unused otherwise).

    Raises:
        ConfigError: A real cluster and no target named, or the named one has no reachable address.
    """
    if settings.target_url:
        return settings.target_url
    path = settings.path if settings.path.startswith("/") else f"/{settings.path}"
    if settings.target_service and cluster is not None:
        url = _service_url(cluster, settings.target_service, settings.generator == "kubernetes-job")
        return url + path
    if settings.target_ingress and cluster is not None:
        return _ingress_url(cluster, settings.target_ingress) + path
    if settings.generator == "kubernetes-job":
        raise ConfigError("the kubernetes-job load generator needs a target_url reachable from inside the cluster")
    if config.drivers.cluster.type == "simulated" or config.performance.stand_in_on_real_clusters:
        return None
    raise ConfigError(NO_TARGET.format(settings.scenario))
