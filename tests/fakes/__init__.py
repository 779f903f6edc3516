"""Hand-written stand-ins for outside systems no test machine can reach, served over HTTP on loopback.

* :mod:`tests.fakes.kubeapi_server` -- a Kubernetes API server (what the real cluster driver sends);
* :mod:`tests.fakes.kubeapi_flux` -- Flux controllers reconciling in that fake API server;
* :mod:`tests.fakes.github_api_server` -- the GitHub REST API (what the GitHub hosting driver sends);
* :mod:`tests.fakes.load_target` -- an HTTP target for load tests, whose slowness a test can change.

Real outside parts the tests run for real (PostgreSQL, an OCI registry, Chromium)
are not fakes: see ``tests/pg_server.py``, ``tests/integration/registry_fixture.py``
and ``tests/chromium.py``.
"""
