"""The pieces of the simulated cluster (see :mod:`sandbox.drivers.simulated_cluster`).

* :mod:`~sandbox.drivers.simulation.apiserver` -- stored objects and the rules a real API server enforces;
* :mod:`~sandbox.drivers.simulation.controllers` -- built-in, Flux and custom-object controllers, and the tick;
* :mod:`~sandbox.drivers.simulation.kustomize` -- the kustomize build and post-build substitution;
* :mod:`~sandbox.drivers.simulation.sources` -- git sources and the simulated OCI registry;
* :mod:`~sandbox.drivers.simulation.charts` -- what a simulated Helm chart renders.
"""
