"""The fixed loopback addresses the example fleet's ``local`` environment is written for.

``examples/fleet-repo/clusters/local`` (scripts/render_local_flux.py) names its sources by URL, as every
environment does; a local run serves them there: the fleet repository with
``GitHttpServer(root, port=LOCAL_FLEET_PORT)`` (bare repository ``root/fleet-infra.git``) and the platform's OCI
artifacts in a registry on ``LOCAL_REGISTRY`` (Debian's ``docker-registry``, plain HTTP, so the
OCIRepository says ``insecure: true``). Below the port range local clusters pick from
(:data:`sandbox.localcluster.ports.PICK_LOW`), so a cluster never takes them.
"""

from __future__ import annotations

LOCAL_FLEET_PORT = 19418
LOCAL_FLEET_URL = f"http://127.0.0.1:{LOCAL_FLEET_PORT}/fleet-infra.git"
LOCAL_REGISTRY = "127.0.0.1:19500"
LOCAL_PLATFORM_ARTIFACT = f"oci://{LOCAL_REGISTRY}/fleet/platform"
