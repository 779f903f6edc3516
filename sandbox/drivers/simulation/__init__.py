"""The pieces of the simulated cluster (see :mod:`sandbox.drivers.simulated_cluster`).

The API server:

* :mod:`~sandbox.drivers.simulation.apiserver` -- stored objects and the rules a real API server enforces;
* :mod:`~sandbox.drivers.simulation.builtin_kinds` -- the kinds it serves without a CRD, and removed API versions;
* :mod:`~sandbox.drivers.simulation.admission` -- what it does to an object it writes (checks, defaults, finalizers);
* :mod:`~sandbox.drivers.simulation.apimachinery` -- object keys, API errors, merge patches, label selectors.

The controllers, and the tick that runs them:

* :mod:`~sandbox.drivers.simulation.controllers` -- :func:`~sandbox.drivers.simulation.controllers.simulation_tick`;
* :mod:`~sandbox.drivers.simulation.builtin_controllers` -- namespace, CRD cleanup, pvc/pv-protection, the PV binder;
* :mod:`~sandbox.drivers.simulation.source_controller` -- GitRepository, OCIRepository, HelmRepository;
* :mod:`~sandbox.drivers.simulation.kustomize_controller` -- Kustomization;
* :mod:`~sandbox.drivers.simulation.helm_controller` -- HelmRelease;
* :mod:`~sandbox.drivers.simulation.custom_controllers` -- controllers a chart installs (load balancers, CSI volumes);
* :mod:`~sandbox.drivers.simulation.reconciling` -- what the Flux controllers share (Ready condition, failures);
* :mod:`~sandbox.drivers.simulation.settings` -- a session's settings and the catalog of chart-installed controllers.

What the controllers use:

* :mod:`~sandbox.drivers.simulation.kustomize` -- the kustomize build and post-build substitution;
* :mod:`~sandbox.drivers.simulation.sources` -- git sources and the simulated OCI registry;
* :mod:`~sandbox.drivers.simulation.charts` -- what a simulated Helm chart renders.
"""
