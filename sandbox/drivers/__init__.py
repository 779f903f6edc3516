"""Drivers: one adapter per outside system, each behind a ``Protocol``.

Each module defines the Protocol and the real implementation. Where the demo or
the tests need to run without the outside system, a twin lives beside it in the
product: :class:`~sandbox.drivers.simulated_cluster.SimulatedCluster` (with
:mod:`sandbox.drivers.simulation`) for a Kubernetes cluster with Flux,
:class:`~sandbox.drivers.registry.InMemoryRegistry` for an OCI registry,
:class:`~sandbox.drivers.git_hosting.LocalGitHosting` for GitHub, and a local
stand-in target for load (:func:`~sandbox.drivers.load.local_target`). git and
terraform have no twin in the product: the demo runs them for real, against a
local remote and a local cluster module.

The real HTTP drivers are checked against hand-written fake servers in
``tests/fakes`` (a Kubernetes API server with Flux controllers, GitHub's REST API).
"""
