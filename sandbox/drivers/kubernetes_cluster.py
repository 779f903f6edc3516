"""The real cluster driver: :class:`~sandbox.drivers.cluster.ClusterDriver` over the ``kubernetes`` client.

Why the dynamic client
----------------------
The product applies and reads arbitrary manifests: namespaces and secrets (core
``v1``), deployments, CRDs, Flux's own custom resources, and whatever a
Kustomization's inventory names. :class:`kubernetes.dynamic.DynamicClient`
finds every one of them through API discovery (resource name, namespaced or
cluster-scoped, URL), so any CRD works without code for it, and a kind that
appears later (Flux's CRDs right after bootstrap) is found because a discovery
miss refreshes the cache. The typed APIs would need one code path per kind, and
``CustomObjectsApi`` covers only custom resources and needs the plural and the
scope spelled out by the caller.

Adjustments to the dynamic client, all local to this module:

* Discovery results are cached **in memory** for the driver's life instead of
  the library's default JSON file in the temp directory, which is shared by
  every process talking to the same host and outlives CRD changes. A lookup
  that misses re-reads only the group list and the missed group version (the
  library threw the whole cache away and re-read every group version in use).
* Every request carries a timeout (``request_timeout``); the library sends
  discovery requests without one, which could hang on a black-holed endpoint.
* A ``429`` with ``Retry-After`` is sent again after that wait, up to ten
  times (client-go's rule); API Priority and Fairness answers so when the
  driver's priority level is full.

Requests this driver sends
--------------------------
* ``apply``: server-side apply -- ``PATCH`` with
  ``Content-Type: application/apply-patch+yaml``, ``fieldManager`` and
  ``force=true`` (this tool owns the fields it applies).
* ``merge_patch``: ``PATCH`` with ``Content-Type: application/merge-patch+json``.
* ``delete``: ``DELETE`` with ``DeleteOptions{propagationPolicy: Background}``.
* ``list``: ``GET`` on the collection (cluster-wide path for all namespaces),
  ``labelSelector``, paged with ``limit``/``continue``.
* ``watch``: a list, then ``GET ?watch=true&resourceVersion=<list's>&
  timeoutSeconds=..&allowWatchBookmarks=true``, each request at most
  ``watch_request_seconds`` long and resumed from the last resourceVersion
  seen (an event's or a bookmark's); a ``410 Gone`` (as an HTTP status or an
  ``ERROR`` event) re-lists and reports the difference; a server gone or busy
  mid-watch is tried again until the watch's timeout.

Reads of a kind the cluster does not serve (its CRD is not installed) see no
objects: ``get`` returns ``None``, ``list`` returns ``[]``, ``delete`` returns
``False``, and ``watch`` waits for the kind to appear until its timeout.
Writes to such a kind raise :class:`KubernetesApiError`.

Errors
------
No answer (connection refused or reset, timeouts, dropped connections, a
watch stream cut off, a TLS handshake the server hung up on: an API server
killed or restarting) and answers 408/429/5xx raise
:class:`KubernetesUnavailableError` (a
:class:`~sandbox.errors.ClusterUnreachableError`, retryable); its message names
the cluster's API endpoint and, for a 429/503 that says so, the server's
``Retry-After`` (a 429 that carries one was already tried again ten times).
Other refusals (401, 403, 404 on a write, 409, 422, TLS failures such as an
unknown certificate authority) raise :class:`KubernetesApiError` (a :class:`~sandbox.errors.ClusterError`,
permanent). Messages are one line, ``<verb> <Kind/namespace/name>: <status>
<reason>: <message from the Status body>``. The kubeconfig is never logged, and
credentials are scrubbed from every message; errors from response bodies are not
chained (a misbehaving proxy could echo a request header into one).
"""

from __future__ import annotations

import builtins
import copy
import json
import math
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes.client
import kubernetes.config
import kubernetes.watch
import urllib3
import yaml
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.discovery import LazyDiscoverer
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from sandbox.drivers.cluster import Manifest, ObjectRef, WatchEvent
from sandbox.errors import ClusterError, ClusterUnreachableError, ConfigError, InvalidInputError
from sandbox.redaction import redact, register_kubeconfig, register_secrets

DEFAULT_FIELD_MANAGER = "fleet-sandbox"

_MERGE_PATCH = "application/merge-patch+json"
_DELETE_OPTIONS: Manifest = {
    "apiVersion": "v1",
    "kind": "DeleteOptions",
    # Dependents are collected by the garbage collector after the owner goes,
    # as kubectl does; teardown watches for them itself.
    "propagationPolicy": "Background",
}
# A watch's socket read timeout is the time left plus this grace: timeoutSeconds
# is whole seconds, so an idle stream is cut close to the deadline by the client
# (a read that times out started before the deadline, so it ends past it).
_WATCH_READ_GRACE_SECONDS = 0.25
# How often a watch on a kind that is not served looks for it again.
_UNSERVED_POLL_SECONDS = 5.0
# Pause before re-watching when a server closed a watch early with nothing in it.
_REWATCH_PAUSE_SECONDS = 0.5
# A watch that lost its server (killed, restarting) tries again after these pauses (the last one repeating)
# until its deadline: a restarted API server is back within seconds.
_REWATCH_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0)
# How often a request answered 429 with a Retry-After is sent again (client-go's default), and the longest
# wait honoured for one answer (API Priority and Fairness asks for 1 s, growing while it keeps rejecting).
_RATE_LIMIT_RETRIES = 10
_RATE_LIMIT_MAX_WAIT_SECONDS = 30.0
_MESSAGE_LIMIT = 300


class KubernetesApiError(ClusterError):
    """The API server refused a request; retrying will not help.

    Attributes:
        status: The HTTP status (``0`` for a TLS failure), or ``None``.
        reason: ``Status.reason`` (e.g. ``Forbidden``), or ``None``.
    """

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubernetesUnavailableError(ClusterUnreachableError):
    """The API server did not answer, or answered 408/429/5xx; a later try may work.

    Attributes:
        status: The HTTP status, or ``None`` when there was no answer.
        retry_after: Seconds the server asked to wait (its ``Retry-After``), or ``None``.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _as_dict(_client: Any, data: Any) -> Any:
    """Serializer for the dynamic client: keep the parsed JSON as plain dicts."""
    return data


class _InMemoryDiscoverer(LazyDiscoverer):
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


class _TimedDynamicClient(DynamicClient):
    """A dynamic client whose every request (discovery included) has a timeout and honours ``Retry-After``.

    A ``429 Too Many Requests`` that carries a ``Retry-After`` (API Priority and Fairness rejecting, a
    server or proxy shedding load) was not processed: the request is sent again after the wait the server
    asked for, up to :data:`_RATE_LIMIT_RETRIES` times, as client-go does. A 429 without ``Retry-After``,
    or one more than that, is the caller's (a retryable :class:`KubernetesUnavailableError`).
    """

    def __init__(self, client: kubernetes.client.ApiClient, request_timeout: float) -> None:
        self._default_timeout = request_timeout
        super().__init__(client, discoverer=_InMemoryDiscoverer)

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """Send a request, with the driver's timeout unless the caller set one."""
        if params.get("_request_timeout") is None:
            params["_request_timeout"] = self._default_timeout
        for attempt in range(_RATE_LIMIT_RETRIES + 1):
            try:
                return super().request(method, path, body=body, **params)
            except ApiException as exc:
                wait = _retry_after(exc) if exc.status == 429 else None
                if wait is None or attempt == _RATE_LIMIT_RETRIES:
                    raise
                time.sleep(min(float(wait), _RATE_LIMIT_MAX_WAIT_SECONDS))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _one_line(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _default_kubeconfig_location() -> str:
    """``$KUBECONFIG`` (may list several files) or ``~/.kube/config``, read now.

    The library reads ``$KUBECONFIG`` once at import; a process that sets it
    later (a Prefect worker, a test) must still be honoured.
    """
    return os.environ.get("KUBECONFIG") or "~/.kube/config"


def _load_api_client(kubeconfig: Path | None, context: str | None) -> kubernetes.client.ApiClient:
    """Build an ApiClient from a kubeconfig (or in-cluster credentials); errors name no secret."""
    location = str(kubeconfig) if kubeconfig is not None else _default_kubeconfig_location()
    files = [Path(p).expanduser() for p in location.split(os.pathsep) if p]
    if kubeconfig is None and not any(f.is_file() for f in files) and os.environ.get("KUBERNETES_SERVICE_HOST"):
        # Running in a pod (a Kubernetes work pool worker) with no kubeconfig.
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise ConfigError(f"in-cluster Kubernetes credentials: {_one_line(str(exc))}") from None
        return kubernetes.client.ApiClient(configuration)
    if not any(f.is_file() for f in files):
        raise ConfigError(f"kubeconfig {location} does not exist")
    with _config_errors(f"kubeconfig {location}"):
        return kubernetes.config.new_client_from_config(
            config_file=location,
            context=context,
            # Never write refreshed credentials back into the user's file.
            persist_config=False,
        )


@contextmanager
def _config_errors(what: str) -> Iterator[None]:
    """Kubeconfig loading errors as :class:`ConfigError`, never quoting credentials."""
    try:
        yield
    except ConfigException as exc:
        # These messages name keys and entries of the file, not their values.
        raise ConfigError(f"{what}: {_one_line(str(exc))}") from None
    except yaml.YAMLError:
        # A YAML error quotes the offending line, which may hold a credential.
        raise ConfigError(f"{what}: not valid YAML") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot be read ({exc.strerror})") from None


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _resource_version(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value else None


def _collection_target(kind: str, namespace: str | None) -> str:
    return f"{kind} in namespace {namespace}" if namespace else f"{kind} in all namespaces"


class KubernetesClusterDriver:
    """A :class:`~sandbox.drivers.cluster.ClusterDriver` for a real cluster.

    Args:
        kubeconfig: The kubeconfig file; ``None`` uses ``$KUBECONFIG`` or
            ``~/.kube/config``, or in-cluster credentials when neither exists
            inside a pod.
        context: The kubeconfig context (its current context when ``None``).
        api_client: A ready ApiClient to use instead of loading a kubeconfig
            (the caller keeps owning it).
        field_manager: The server-side apply field manager.
        request_timeout: Seconds a request may take (connect and each read).
        list_page_size: Objects per list request (``limit``); larger
            collections are fetched in pages.
        watch_request_seconds: The longest one watch request lasts
            (``timeoutSeconds``); a longer watch is resumed from the last
            resourceVersion seen, an event's or a bookmark's.

    Raises:
        ConfigError: The kubeconfig is missing, malformed or lacks the context.
    """

    def __init__(
        self,
        kubeconfig: Path | None = None,
        context: str | None = None,
        *,
        api_client: kubernetes.client.ApiClient | None = None,
        field_manager: str = DEFAULT_FIELD_MANAGER,
        request_timeout: float = 30.0,
        list_page_size: int = 500,
        watch_request_seconds: float = 300.0,
    ) -> None:
        if not field_manager:
            raise InvalidInputError("the server-side apply field manager must not be empty")
        self._owns_client = api_client is None
        self._api_client = api_client if api_client is not None else _load_api_client(kubeconfig, context)
        self._field_manager = field_manager
        self._request_timeout = request_timeout
        self._list_page_size = max(1, list_page_size)
        self._watch_request_seconds = max(1.0, watch_request_seconds)
        self._dynamic_client: _TimedDynamicClient | None = None
        # Discovery state in the dynamic client is not thread-safe, and
        # flux.watch_until watches several kinds from threads at once.
        self._discovery_lock = threading.Lock()
        # The client's credentials are secrets wherever their text goes (sandbox.redaction).
        register_secrets(self._secrets())

    @classmethod
    def from_kubeconfig_text(
        cls, kubeconfig: str, context: str | None = None, **options: Any
    ) -> KubernetesClusterDriver:
        """A driver from kubeconfig *content* (e.g. a terraform output), kept off disk.

        Args:
            kubeconfig: The kubeconfig YAML.
            context: The context to use (its current context when ``None``).
            **options: ``field_manager``, ``request_timeout``, ``list_page_size``,
                ``watch_request_seconds``.

        Raises:
            ConfigError: The text is not a usable kubeconfig.
        """
        register_kubeconfig(kubeconfig)
        with _config_errors("kubeconfig (text)"):
            document = yaml.safe_load(kubeconfig)
            if not isinstance(document, dict):
                raise ConfigError("kubeconfig (text): not a kubeconfig document")
            api_client = kubernetes.config.new_client_from_config_dict(document, context=context, persist_config=False)
        driver = cls(api_client=api_client, **options)
        driver._owns_client = True
        return driver

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Release connections (only of an ApiClient this driver created)."""
        if self._owns_client:
            self._api_client.close()

    def __enter__(self) -> KubernetesClusterDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- ClusterDriver -------------------------------------------------------

    def server_version(self) -> str:
        """The control plane's ``major.minor`` from ``/version``; suffixes like ``31+`` dropped.

        Raises:
            KubernetesUnavailableError: No answer.
            KubernetesApiError: Refused, or a version this driver cannot read.
        """
        with self._translated("get", "/version"):
            info = kubernetes.client.VersionApi(self._api_client).get_code(_request_timeout=self._request_timeout)
        major = re.match(r"\d+", str(info.major or ""))
        minor = re.match(r"\d+", str(info.minor or ""))
        if major and minor:
            return f"{int(major.group())}.{int(minor.group())}"
        from_git = re.match(r"v?(\d+)\.(\d+)", str(info.git_version or ""))
        if from_git:
            return f"{int(from_git.group(1))}.{int(from_git.group(2))}"
        raise KubernetesApiError(f"get /version: unrecognised version (major={info.major!r}, minor={info.minor!r})")

    def apply(self, manifest: Mapping[str, Any]) -> Manifest:
        """Server-side apply ``manifest`` (forcing conflicts); return the stored object.

        Raises:
            InvalidInputError: The manifest lacks apiVersion/kind/name, or a
                namespaced kind lacks ``metadata.namespace``.
            KubernetesApiError: Refused, or the kind is not served.
            KubernetesUnavailableError: No answer.
        """
        try:
            ref = ObjectRef.of(manifest)
        except (KeyError, TypeError):
            raise InvalidInputError("apply: the manifest needs apiVersion, kind and metadata.name") from None
        with self._translated("apply", str(ref)):
            resource = self._served("apply", ref)
            namespace = self._namespace("apply", ref, resource)
            body = copy.deepcopy(dict(manifest))
            metadata = body.setdefault("metadata", {})
            # The API server rejects an apply that carries managedFields (as an
            # object read back from the cluster does).
            metadata.pop("managedFields", None)
            if not resource.namespaced:
                metadata.pop("namespace", None)
            stored = self._dynamic().server_side_apply(
                resource,
                body=body,
                name=ref.name,
                namespace=namespace,
                field_manager=self._field_manager,
                force_conflicts=True,
                serializer=_as_dict,
            )
            return self._object(stored, "apply", str(ref), ref.api_version, ref.kind)

    def get(self, ref: ObjectRef) -> Manifest | None:
        """The stored object, or ``None`` when it (or its kind) does not exist.

        Raises:
            InvalidInputError: A namespaced kind without a namespace.
            KubernetesApiError: Refused (e.g. 403).
            KubernetesUnavailableError: No answer.
        """
        with self._translated("get", str(ref)):
            resource = self._lookup(ref.api_version, ref.kind)
            if resource is None:
                return None
            namespace = self._namespace("get", ref, resource)
            try:
                found = self._dynamic().get(resource, name=ref.name, namespace=namespace, serializer=_as_dict)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return self._object(found, "get", str(ref), ref.api_version, ref.kind)

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Manifest]:
        """All objects of a kind in ``namespace`` (all namespaces when ``None``).

        Raises:
            KubernetesApiError: Refused (e.g. 403, a malformed selector).
            KubernetesUnavailableError: No answer.
        """
        with self._translated("list", _collection_target(kind, namespace)):
            resource = self._lookup(api_version, kind)
            if resource is None:
                return []
            listed = self._list_all(resource, api_version, kind, namespace, label_selector)
            return listed[0] if listed is not None else []

    def merge_patch(self, ref: ObjectRef, patch: Mapping[str, Any]) -> Manifest:
        """Apply a JSON merge patch; return the patched object.

        Raises:
            KubernetesApiError: Refused, including 404 when the object does not exist.
            KubernetesUnavailableError: No answer.
        """
        with self._translated("patch", str(ref)):
            resource = self._served("patch", ref)
            namespace = self._namespace("patch", ref, resource)
            patched = self._dynamic().patch(
                resource,
                body=copy.deepcopy(dict(patch)),
                name=ref.name,
                namespace=namespace,
                content_type=_MERGE_PATCH,
                field_manager=self._field_manager,
                serializer=_as_dict,
            )
            return self._object(patched, "patch", str(ref), ref.api_version, ref.kind)

    def delete(self, ref: ObjectRef) -> bool:
        """Request deletion (background propagation). ``False`` when it did not exist.

        Raises:
            KubernetesApiError: Refused (e.g. 403).
            KubernetesUnavailableError: No answer.
        """
        with self._translated("delete", str(ref)):
            resource = self._lookup(ref.api_version, ref.kind)
            if resource is None:
                return False
            namespace = self._namespace("delete", ref, resource)
            try:
                self._dynamic().delete(
                    resource,
                    name=ref.name,
                    namespace=namespace,
                    body=copy.deepcopy(_DELETE_OPTIONS),
                    serializer=_as_dict,
                )
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: float = 60.0,
        stop: threading.Event | None = None,
    ) -> Iterator[WatchEvent]:
        """Stream changes of a kind until ``timeout_seconds`` pass or ``stop`` is set.

        Lists first and reports every existing object as ``ADDED``, then
        watches from the list's resourceVersion (``watch=true``,
        ``timeoutSeconds``, ``allowWatchBookmarks=true``). When the server
        answers ``410 Gone`` the driver lists again and reports the difference
        (``ADDED``/``MODIFIED``/``DELETED``) before watching on. A stream the
        server ends (each request lasts at most ``watch_request_seconds``) is
        resumed from the last resourceVersion seen, an event's or a bookmark's.
        A server that cannot be reached or is busy (killed, restarting, 429,
        5xx, a cut stream) is tried again after a growing pause, or the
        ``Retry-After`` it sent, until the timeout. When the
        kind stops being served (its CRD deleted), the objects seen are
        reported ``DELETED``. The iterator ends quietly at the timeout, or once
        ``stop`` is set: between requests at once, inside a stream at its next
        event or bookmark (a blocked read is not interrupted).

        Raises:
            KubernetesApiError: Refused (e.g. 403).
            KubernetesUnavailableError: The server could still not be reached
                (or was still busy) when the timeout came.
        """
        deadline = time.monotonic() + timeout_seconds
        target = _collection_target(kind, namespace)
        known: dict[tuple[str, str], Manifest] = {}
        resource: Any = None
        resource_version: str | None = None
        # Consecutive requests that found no server (or a busy one); reset by any answer.
        failures = 0

        def stopped() -> bool:
            return stop is not None and stop.is_set()

        while (remaining := deadline - time.monotonic()) > 0 and not stopped():
            try:
                if resource_version is None:
                    with self._translated("watch", target):
                        resource = self._lookup(api_version, kind)
                        listed = (
                            None
                            if resource is None
                            else self._list_all(resource, api_version, kind, namespace, label_selector)
                        )
                    failures = 0
                    if listed is None:
                        # Not served: objects seen before went with their CRD; a CRD
                        # being installed appears within seconds, so look again.
                        yield from _resync(known, [])
                        time.sleep(min(_UNSERVED_POLL_SECONDS, remaining))
                        continue
                    items, list_version = listed
                    # Without a version ("0"), the server replays the current state
                    # first; _track drops what the list already reported.
                    resource_version = list_version or "0"
                    yield from _resync(known, items)
                    continue

                # One request lasts at most watch_request_seconds; the next resumes from the last
                # resourceVersion seen (an event's or a bookmark's), as client-go's reflectors do.
                read_for = min(remaining, self._watch_request_seconds)
                server_timeout = max(1, math.ceil(read_for))
                opened = time.monotonic()
                stream = kubernetes.watch.Watch().stream(
                    resource.get,
                    namespace=namespace if resource.namespaced else None,
                    label_selector=label_selector,
                    resource_version=resource_version,
                    timeout_seconds=server_timeout,
                    allow_watch_bookmarks=True,
                    serialize=False,
                    _request_timeout=(self._request_timeout, read_for + _WATCH_READ_GRACE_SECONDS),
                )
                expired = False
                delivered = 0
                with closing(stream), self._translated("watch", target, quiet_after=deadline):
                    try:
                        for raw in stream:
                            failures = 0
                            event_type = raw.get("type")
                            obj = raw.get("raw_object", raw.get("object"))
                            if not isinstance(obj, dict):
                                continue
                            if stopped():
                                return
                            if event_type == "BOOKMARK":
                                resource_version = _resource_version(obj) or resource_version
                                continue
                            if event_type not in ("ADDED", "MODIFIED", "DELETED"):
                                continue
                            if time.monotonic() >= deadline:
                                return
                            obj = _typed(obj, api_version, kind)
                            resource_version = _resource_version(obj) or resource_version
                            event = _track(known, event_type, obj)
                            if event is not None:
                                delivered += 1
                                yield event
                    except ApiException as exc:
                        # 410: the resourceVersion is too old (etcd compaction, or an API
                        # server restarted since: its watch cache starts at the present);
                        # 404: the kind went away (its CRD was deleted). Either way a fresh
                        # list tells what is there now.
                        if exc.status not in (404, 410):
                            raise
                        expired = True
                failures = 0
            except KubernetesUnavailableError as exc:
                # No server (killed, restarting), a cut stream, or a busy one (429/5xx): the watch goes on
                # from where it was, after the wait the server asked for or a growing pause, until its
                # deadline; what could not be reached by then is the caller's error.
                pause = _REWATCH_BACKOFF_SECONDS[min(failures, len(_REWATCH_BACKOFF_SECONDS) - 1)]
                if exc.retry_after is not None:
                    pause = max(pause, min(float(exc.retry_after), _RATE_LIMIT_MAX_WAIT_SECONDS))
                failures += 1
                if deadline - time.monotonic() <= pause:
                    raise
                time.sleep(pause)
                continue
            if expired:
                resource_version = None
            elif delivered == 0 and time.monotonic() - opened < server_timeout - 1 and deadline > time.monotonic():
                # The server closed the stream well before its timeout with nothing in
                # it; do not hammer a server or proxy that keeps doing that.
                time.sleep(min(_REWATCH_PAUSE_SECONDS, max(0.0, deadline - time.monotonic())))

    def refresh_discovery(self) -> None:
        """Forget cached discovery: kinds served since (CRDs just Established) are found at the next lookup.

        The library refreshes on a lookup miss too, but only for a kind it is
        asked about; bootstrap calls this once its CRDs are Established so
        nothing relies on that.
        """
        with self._discovery_lock:
            if self._dynamic_client is not None:
                with self._translated("discover", "API resources"):
                    self._dynamic_client.resources.invalidate_cache()

    # -- helpers ---------------------------------------------------------------

    def _dynamic(self) -> _TimedDynamicClient:
        if self._dynamic_client is None:
            with self._discovery_lock:
                if self._dynamic_client is None:
                    self._dynamic_client = _TimedDynamicClient(self._api_client, self._request_timeout)
        return self._dynamic_client

    def _lookup(self, api_version: str, kind: str) -> Any:
        """The discovered resource of a kind, or ``None`` when the cluster does not serve it."""
        if api_version.count("/") > 1 or not api_version or not kind:
            raise InvalidInputError(f"invalid apiVersion/kind {api_version!r}/{kind!r}")
        dynamic = self._dynamic()
        prefix = "apis" if "/" in api_version else "api"
        with self._discovery_lock:
            try:
                return dynamic.resources.get(prefix=prefix, api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                return None

    def _served(self, verb: str, ref: ObjectRef) -> Any:
        resource = self._lookup(ref.api_version, ref.kind)
        if resource is None:
            raise KubernetesApiError(
                f"{verb} {ref}: {ref.api_version} {ref.kind} is not served by the cluster (is its CRD installed?)",
                status=404,
                reason="NotFound",
            )
        return resource

    @staticmethod
    def _namespace(verb: str, ref: ObjectRef, resource: Any) -> str | None:
        if not resource.namespaced:
            return None
        if not ref.namespace:
            raise InvalidInputError(f"{verb} {ref}: {ref.kind} is namespaced; a namespace is required")
        return ref.namespace

    def _list_all(
        self,
        resource: Any,
        api_version: str,
        kind: str,
        namespace: str | None,
        label_selector: str | None,
    ) -> tuple[builtins.list[Manifest], str | None] | None:
        """Every object in pages, and the list's resourceVersion; ``None`` if the collection is gone."""
        items: builtins.list[Manifest] = []
        list_version: str | None = None
        token: str | None = None
        restarted = False
        while True:
            try:
                page = self._dynamic().get(
                    resource,
                    namespace=namespace if resource.namespaced else None,
                    label_selector=label_selector,
                    limit=self._list_page_size,
                    _continue=token,
                    serializer=_as_dict,
                )
            except ApiException as exc:
                if exc.status == 404:
                    return None
                if exc.status == 410 and token is not None and not restarted:
                    # The continue token expired between pages: start over once.
                    items, list_version, token, restarted = [], None, None, True
                    continue
                raise
            if not isinstance(page, dict):
                raise KubernetesApiError(
                    f"list {_collection_target(kind, namespace)}: unexpected response from the API server"
                )
            metadata = page.get("metadata") or {}
            if list_version is None and metadata.get("resourceVersion"):
                list_version = str(metadata["resourceVersion"])
            items.extend(_typed(item, api_version, kind) for item in page.get("items") or [])
            token = metadata.get("continue") or None
            if token is None:
                return items, list_version

    def _object(self, value: Any, verb: str, target: str, api_version: str, kind: str) -> Manifest:
        if not isinstance(value, dict):
            raise KubernetesApiError(f"{verb} {target}: unexpected response from the API server")
        return _typed(value, api_version, kind)

    def _secrets(self) -> builtins.list[str]:
        """Credential strings of the client configuration, to scrub from messages."""
        configuration = self._api_client.configuration
        found: set[str] = set()
        for value in (getattr(configuration, "api_key", None) or {}).values():
            if isinstance(value, str) and value:
                found.add(value)
                found.add(value.split()[-1])
        password = getattr(configuration, "password", None)
        if isinstance(password, str) and password:
            found.add(password)
        # Short strings would blank out ordinary words.
        return sorted((s for s in found if len(s) >= 6), key=len, reverse=True)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets())

    def _endpoint(self) -> str:
        host = str(self._api_client.configuration.host or "")
        parts = urlsplit(host)
        # Never show user:password@ of a server URL.
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else host

    @contextmanager
    def _translated(self, verb: str, target: str, *, quiet_after: float | None = None) -> Iterator[None]:
        """Turn client and transport errors into this product's errors.

        Args:
            verb: What was being done (``get``, ``apply``, ...).
            target: What it was done to (``Kind/ns/name``).
            quiet_after: A monotonic deadline after which a transport error
                (the end of a watch that the server did not close) is not an error.
        """
        try:
            yield
        except ApiException as exc:
            raise self._api_error(verb, target, exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if quiet_after is not None and time.monotonic() >= quiet_after:
                return
            raise self._transport_error(verb, target, exc) from exc

    def _api_error(self, verb: str, target: str, exc: ApiException) -> KubernetesApiError | KubernetesUnavailableError:
        status = int(exc.status or 0)
        reason, message = _status_details(exc)
        if status == 0:
            # The client turns an SSLError it sees directly into status 0, its text in the reason.
            if _tls_connection_lost(str(exc.reason or "")):
                return self._unreachable(verb, target, _TLS_HANG_UP)
            line = self._redact(_one_line(f"{verb} {target}: TLS error talking to {self._endpoint()}: {reason}"))
            return KubernetesApiError(line, status=0, reason=None)
        if status in (408, 429) or status >= 500:
            # Busy, restarting or gone behind a proxy: say which cluster, and how long it asked to be left alone.
            retry_after = _retry_after(exc)
            wait = f" (retry after {retry_after}s)" if retry_after is not None else ""
            text = f"{verb} {target}: {status} {reason} from cluster API {self._endpoint()}{wait}"
            line = self._redact(_one_line(text + (f": {message}" if message else "")))
            return KubernetesUnavailableError(line, status=status, retry_after=retry_after)
        line = self._redact(_one_line(f"{verb} {target}: {status} {reason}" + (f": {message}" if message else "")))
        return KubernetesApiError(line, status=status, reason=reason or None)

    def _transport_error(
        self, verb: str, target: str, exc: BaseException
    ) -> KubernetesApiError | KubernetesUnavailableError:
        cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
        if isinstance(cause, urllib3.exceptions.SSLError) and not _tls_connection_lost(str(cause)):
            line = f"{verb} {target}: TLS error talking to {self._endpoint()}: {cause}"
            return KubernetesApiError(self._redact(_one_line(line)), status=0)
        return self._unreachable(verb, target, _transport_detail(cause))

    def _unreachable(self, verb: str, target: str, detail: str) -> KubernetesUnavailableError:
        line = f"{verb} {target}: cluster API {self._endpoint()} unreachable: {detail}"
        return KubernetesUnavailableError(self._redact(_one_line(line)))


#: What an SSL error says when the server hung up during the handshake (killed, restarting, its listener
#: closing) rather than refusing us: OpenSSL's and Python's wordings of an unexpected EOF or a reset.
_TLS_HANG_UP_MARKERS = (
    "UNEXPECTED_EOF_WHILE_READING",
    "EOF occurred in violation of protocol",
    "Connection reset by peer",
    "ECONNRESET",
)
_TLS_HANG_UP = "connection closed during the TLS handshake"


def _tls_connection_lost(text: str) -> bool:
    """Whether an SSL error's text is the connection going away, not a TLS refusal (certificate, protocol)."""
    return any(marker in text for marker in _TLS_HANG_UP_MARKERS)


def _retry_after(exc: ApiException) -> int | None:
    """The answer's ``Retry-After`` in whole seconds (delta-seconds form only), or ``None``."""
    headers = getattr(exc, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = int(str(value).strip()) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _transport_detail(cause: BaseException) -> str:
    """A short phrase for a transport failure (no URL, no headers)."""
    errors = urllib3.exceptions
    if isinstance(cause, errors.NameResolutionError):
        return "host name not resolved"
    if isinstance(cause, errors.NewConnectionError):
        # "...: Failed to establish a new connection: [Errno 111] Connection refused"
        return str(cause).rpartition("connection: ")[2] or "connection failed"
    if isinstance(cause, errors.ConnectTimeoutError):
        return "timed out connecting"
    if isinstance(cause, errors.ReadTimeoutError | TimeoutError):
        return "timed out waiting for the answer"
    if isinstance(cause, errors.SSLError):
        return _TLS_HANG_UP
    if isinstance(cause, errors.ProtocolError):
        return "connection closed before the answer was complete"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return type(cause).__name__


def _status_details(exc: ApiException) -> tuple[str, str]:
    """``(reason, message)`` from the ``Status`` body of an error answer."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    reason = ""
    message = ""
    if body:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if isinstance(document, dict):
            reason = str(document.get("reason") or "")
            message = str(document.get("message") or "")
        else:
            # Not a Status (a proxy's page): keep its start only.
            message = _one_line(str(body), 120)
    if not reason:
        reason = str(exc.reason or "")
    return _one_line(reason, 120), message


def _typed(obj: Mapping[str, Any], api_version: str, kind: str) -> Manifest:
    """``obj`` with apiVersion and kind (list items of built-in kinds come without them)."""
    return {
        **obj,
        "apiVersion": obj.get("apiVersion") or api_version,
        "kind": obj.get("kind") or kind,
    }


def _track(known: dict[tuple[str, str], Manifest], event_type: str, obj: Manifest) -> WatchEvent | None:
    """Record a watch event; ``None`` for a repeat of what is already known."""
    key = _key(obj)
    if event_type == "DELETED":
        known.pop(key, None)
        return WatchEvent("DELETED", obj)
    previous = known.get(key)
    known[key] = obj
    version = _resource_version(obj)
    if previous is not None and version is not None and _resource_version(previous) == version:
        return None
    return WatchEvent("ADDED" if event_type == "ADDED" else "MODIFIED", obj)


def _resync(known: dict[tuple[str, str], Manifest], items: list[Manifest]) -> Iterator[WatchEvent]:
    """Events that turn ``known`` into ``items`` (all ``ADDED`` on the first list)."""
    fresh = {_key(item): item for item in items}
    for key, item in fresh.items():
        previous = known.get(key)
        if previous is None:
            yield WatchEvent("ADDED", item)
        elif _resource_version(previous) != _resource_version(item):
            yield WatchEvent("MODIFIED", item)
    for key in sorted(known.keys() - fresh.keys()):
        yield WatchEvent("DELETED", known[key])
    known.clear()
    known.update(fresh)
