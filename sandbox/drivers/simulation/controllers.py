"""The simulated controllers, and :func:`simulation_tick`, which runs them.

There are no background threads or processes: every call to the simulated
cluster first runs :func:`simulation_tick`, which lets every controller look at
the stored objects and act, round after round, until a round changes nothing
(a fixed point; the number of rounds is bounded). Time is the session's clock,
so readiness delays and polling intervals follow the wall clock (or a test's
clock).

Controllers, one module each:

* **Built in** (:mod:`~sandbox.drivers.simulation.builtin_controllers`; always
  running, like kube-controller-manager): namespace, CRD cleanup,
  pvc-protection, the PV binder and pv-protection.
* **Flux** -- each only while its Deployment exists in ``flux-system``
  (applied from ``gotk-components.yaml``) with at least one replica (scaled
  to zero, a controller stops, as on a real cluster): ``source-controller``
  (:mod:`~sandbox.drivers.simulation.source_controller`: GitRepository,
  OCIRepository, HelmRepository), ``kustomize-controller``
  (:mod:`~sandbox.drivers.simulation.kustomize_controller`: Kustomization; it
  applies CRDs and Namespaces first and, as Flux's staged apply does, waits up
  to the Kustomization's timeout for those CRDs to be Established before the
  rest) and ``helm-controller`` (:mod:`~sandbox.drivers.simulation.helm_controller`:
  HelmRelease). Without them Flux objects get no status at all, and their
  ``finalizers.fluxcd.io`` is never removed. What they share (the Ready
  condition, readiness delays, failures):
  :mod:`~sandbox.drivers.simulation.reconciling`.
* **Custom-object controllers** (:mod:`~sandbox.drivers.simulation.custom_controllers`),
  installed by a HelmRelease of their chart (the catalog is in
  :mod:`~sandbox.drivers.simulation.settings`): load balancers for Ingresses and
  Services, and a CSI driver's volumes for claims.
"""

from __future__ import annotations

import logging

from sandbox.drivers.simulation.apimachinery import object_key
from sandbox.drivers.simulation.apiserver import SimulatedApiServer
from sandbox.drivers.simulation.builtin_controllers import (
    crd_controller,
    namespace_controller,
    pv_controller,
    pvc_protection_controller,
)
from sandbox.drivers.simulation.custom_controllers import run_custom_controllers
from sandbox.drivers.simulation.helm_controller import reconcile_helmrelease
from sandbox.drivers.simulation.kustomize_controller import reconcile_kustomization
from sandbox.drivers.simulation.reconciling import FLUX_NAMESPACE, HELM_GROUP, KUSTOMIZE_GROUP, SOURCE_GROUP, deleting
from sandbox.drivers.simulation.settings import SimulationSettings
from sandbox.drivers.simulation.source_controller import reconcile_source

log = logging.getLogger(__name__)


SOURCE_CONTROLLER = "source-controller"
KUSTOMIZE_CONTROLLER = "kustomize-controller"
HELM_CONTROLLER = "helm-controller"

#: Rounds of one tick before it stops looking for a fixed point.
MAX_ROUNDS = 60


def _flux_running(server: SimulatedApiServer, name: str) -> bool:
    deployment = server.get(("apps", "Deployment", FLUX_NAMESPACE, name))
    if deployment is None or deleting(deployment):
        return False
    # The API server defaults spec.replicas to 1; a Deployment scaled to zero runs no controller.
    replicas = (deployment.get("spec") or {}).get("replicas", 1)
    return not isinstance(replicas, int) or replicas > 0


def _round(server: SimulatedApiServer, settings: SimulationSettings) -> None:
    namespace_controller(server)
    crd_controller(server)
    pvc_protection_controller(server)
    pv_controller(server)
    if _flux_running(server, SOURCE_CONTROLLER):
        for kind in ("GitRepository", "OCIRepository", "HelmRepository"):
            for obj in server.select(SOURCE_GROUP, kind):
                reconcile_source(server, settings, object_key(obj))
    if _flux_running(server, KUSTOMIZE_CONTROLLER):
        for obj in server.select(KUSTOMIZE_GROUP, "Kustomization"):
            reconcile_kustomization(server, settings, object_key(obj))
    if _flux_running(server, HELM_CONTROLLER):
        for obj in server.select(HELM_GROUP, "HelmRelease"):
            reconcile_helmrelease(server, settings, object_key(obj))
    run_custom_controllers(server, settings)


def simulation_tick(server: SimulatedApiServer, settings: SimulationSettings, max_rounds: int = MAX_ROUNDS) -> int:
    """Run every simulated controller until a round changes nothing (at most ``max_rounds``).

    Returns:
        The number of rounds run.
    """
    for rounds in range(1, max_rounds + 1):
        before = server.resource_version
        _round(server, settings)
        if server.resource_version == before:
            return rounds
    log.warning("simulated cluster at %s: controllers still busy after %d rounds", settings.simulation_dir, max_rounds)
    return max_rounds
