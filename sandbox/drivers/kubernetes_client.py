"""The ``kubernetes`` library's client as :mod:`sandbox.drivers.kubernetes_cluster` uses it.

* :func:`load_api_client`: an ``ApiClient`` from a kubeconfig (or in-cluster credentials), its errors
  naming no secret (:class:`~sandbox.errors.ConfigError`);
* :class:`TimedDynamicClient`: the dynamic client with a timeout on every request (discovery included),
  ``Retry-After`` honoured on a 429, discovery cached in memory (:class:`InMemoryDiscoverer`), and a 503
  for a group version's resource list raised (:class:`DiscoveryUnavailableError`), not read as "serves
  nothing";
* :func:`one_line` and :func:`retry_after_seconds`, shared by the driver's error translation.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import yaml
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.discovery import LazyDiscoverer
from kubernetes.dynamic.exceptions import DynamicApiError

from sandbox.errors import ConfigError

# How often a request answered 429 with a Retry-After is sent again (client-go's default), and the longest
# wait honoured for one answer (API Priority and Fairness asks for 1 s, growing while it keeps rejecting).
RATE_LIMIT_RETRIES = 10
RATE_LIMIT_MAX_WAIT_SECONDS = 30.0
MESSAGE_LIMIT = 300

#: The path of one group version's resource list (``/api/v1``, ``/apis/<group>/<version>``), as the
#: library's discoverer asks for it (with or without the leading slash).
_RESOURCE_LIST_PATH = re.compile(r"/?(api/[^/]+|apis/[^/]+/[^/]+)")


class DiscoveryUnavailableError(DynamicApiError):
    """A group version's resource list answered ``503 Service Unavailable``.

    The library's discoverer reads a 503 there as "this group version serves nothing" (meant for an
    aggregated API whose backend is down), so every kind of the group would look not served: a get would
    say an object is gone while the server (or the aggregated API) is merely unavailable, and teardown could
    take a Kustomization held by its finalizer for deleted. Under its own class (not the library's
    ``ServiceUnavailableError``) the 503 passes the discoverer's handler and reaches the driver, which
    reports it as unavailable (retryable). The resource list stays unread, so the next lookup asks again.
    """


def as_dict(_client: Any, data: Any) -> Any:
    """Serializer for the dynamic client: keep the parsed JSON as plain dicts."""
    return data


class InMemoryDiscoverer(LazyDiscoverer):
    """The library's lazy discoverer with its cache kept in memory only, refreshed only where a lookup missed.

    The library answers a miss (a kind not in the cache: a CRD installed since, or a kind the cluster does
    not serve) by throwing the whole cache away: ``/version`` and ``/apis`` again, then every group
    version's resource list again at its next use. Here a miss re-reads only the group list (for a group
    kind) and the missed group version's resource list; what was read for the others stays.
    :meth:`invalidate_cache` called from outside a lookup (``refresh_discovery``) still forgets everything.
    """

    def __init__(self, client: Any, cache_file: str | None) -> None:
        # The lookup being answered, while the base class's search runs (it calls invalidate_cache on a miss).
        self._wanted: dict[str, Any] | None = None
        # The base class reads the cache file when it exists; point it at a
        # name nobody creates, and never write it.
        unused = os.path.join(tempfile.gettempdir(), f"fleet-sandbox-discovery-{uuid.uuid4().hex}")
        super().__init__(client, unused)

    def _write_cache(self) -> None:
        """Keep discovery results in memory only."""

    def search(
        self, prefix: Any = None, group: Any = None, api_version: Any = None, kind: Any = None, **kwargs: Any
    ) -> Any:
        """The library's search, whose refresh on a miss is limited to what was looked for."""
        wanted = {"prefix": prefix, "group": group, "api_version": api_version, "kind": kind, **kwargs}
        self._wanted = wanted
        try:
            return super().search(**{key: value for key, value in wanted.items() if value is not None})
        finally:
            self._wanted = None

    def invalidate_cache(self) -> None:
        """Forget everything, or, during a lookup that missed, re-read only what it needs."""
        wanted = self._wanted
        if wanted is None:
            super().invalidate_cache()
            return
        prefix = wanted.get("prefix")
        group, version = wanted.get("group") or "", wanted.get("api_version") or ""
        if not group and "/" in version:
            group, version = version.split("/", 1)
        resources: Any = self._cache["resources"]
        if prefix == "apis":
            # The group list again (one request): a group served since appears, and the resource lists already
            # read for the groups still served are kept; the core group's entry is not touched.
            core = resources.get("api")
            self.parse_api_groups(request_resources=False, update=True)
            if core is not None:
                resources["api"] = core
        found = resources.get(prefix, {}).get(group, {}).get(version)
        if found is not None:
            # Its resource list is read again at the search that follows (the kind may be new in it).
            found.resources = None


class TimedDynamicClient(DynamicClient):
    """A dynamic client whose every request (discovery included) has a timeout and honours ``Retry-After``.

    A ``429 Too Many Requests`` that carries a ``Retry-After`` (API Priority and Fairness rejecting, a
    server or proxy shedding load) was not processed: the request is sent again after the wait the server
    asked for, up to :data:`RATE_LIMIT_RETRIES` times, as client-go does. A 429 without ``Retry-After``,
    or one more than that, is the caller's (a retryable :class:`KubernetesUnavailableError`).
    """

    def __init__(self, client: kubernetes.client.ApiClient, request_timeout: float) -> None:
        self._default_timeout = request_timeout
        super().__init__(client, discoverer=InMemoryDiscoverer)

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """Send a request, with the driver's timeout unless the caller set one."""
        if params.get("_request_timeout") is None:
            params["_request_timeout"] = self._default_timeout
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                return super().request(method, path, body=body, **params)
            except ApiException as exc:
                if exc.status == 503 and method.upper() == "GET" and _RESOURCE_LIST_PATH.fullmatch(path):
                    raise DiscoveryUnavailableError(exc) from None
                wait = retry_after_seconds(exc) if exc.status == 429 else None
                if wait is None or attempt == RATE_LIMIT_RETRIES:
                    raise
                time.sleep(min(float(wait), RATE_LIMIT_MAX_WAIT_SECONDS))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def default_kubeconfig_location() -> str:
    """``$KUBECONFIG`` (may list several files) or ``~/.kube/config``, read now.

    The library reads ``$KUBECONFIG`` once at import; a process that sets it
    later (a Prefect worker, a test) must still be honoured.
    """
    return os.environ.get("KUBECONFIG") or "~/.kube/config"


def load_api_client(kubeconfig: Path | None, context: str | None) -> kubernetes.client.ApiClient:
    """Build an ApiClient from a kubeconfig (or in-cluster credentials); errors name no secret."""
    location = str(kubeconfig) if kubeconfig is not None else default_kubeconfig_location()
    files = [Path(p).expanduser() for p in location.split(os.pathsep) if p]
    if kubeconfig is None and not any(f.is_file() for f in files) and os.environ.get("KUBERNETES_SERVICE_HOST"):
        # Running in a pod (a Kubernetes work pool worker) with no kubeconfig.
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise ConfigError(f"in-cluster Kubernetes credentials: {one_line(str(exc))}") from None
        return kubernetes.client.ApiClient(configuration)
    if not any(f.is_file() for f in files):
        raise ConfigError(f"kubeconfig {location} does not exist")
    with config_errors(f"kubeconfig {location}"):
        return kubernetes.config.new_client_from_config(
            config_file=location,
            context=context,
            # Never write refreshed credentials back into the user's file.
            persist_config=False,
        )


@contextmanager
def config_errors(what: str) -> Iterator[None]:
    """Kubeconfig loading errors as :class:`ConfigError`, never quoting credentials."""
    try:
        yield
    except ConfigException as exc:
        # These messages name keys and entries of the file, not their values.
        raise ConfigError(f"{what}: {one_line(str(exc))}") from None
    except yaml.YAMLError:
        # A YAML error quotes the offending line, which may hold a credential.
        raise ConfigError(f"{what}: not valid YAML") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot be read ({exc.strerror})") from None


def retry_after_seconds(exc: ApiException) -> int | None:
    """The answer's ``Retry-After`` in whole seconds (delta-seconds form only), or ``None``."""
    headers = getattr(exc, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = int(str(value).strip()) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None
