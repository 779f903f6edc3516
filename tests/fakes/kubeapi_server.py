"""A fake Kubernetes API server over HTTP, for what a client sends and for faults a real server cannot give on demand.

What the real tier now proves on a real API server, through the driver, is not this stand-in's job any more
(``tests/real/test_kubernetes_driver_real.py``; docs/real-tier.md, "The kubernetes driver on a real API
server"): server-side apply with the field manager and forced conflicts; discovery cached, and refreshed when a
CRD appears; watches with resourceVersion and bookmarks; a ``410 Gone`` and the re-list (the API server's new
watch cache after a restart); a ``429`` from API Priority and Fairness with its ``Retry-After``; the API server
killed and restarted mid-watch.

It stays for these faults, which a real server cannot be made to produce at a chosen request:

* a 5xx status (500, 503, 504) answered to a chosen method or path, and a ``500`` ``ERROR`` event inside a
  watch stream (a real one is etcd losing its leader);
* a ``429`` without ``Retry-After``, or with a chosen one (``0``), repeated past the driver's ten tries (the
  real one always carries a ``Retry-After`` that the server picks and grows);
* an HTTP ``410`` (what an expired continue token gets between list pages), and a ``410`` ``ERROR`` event
  after :meth:`KubeApiServer.compact` at the moment a test chooses;
* a connection dropped without an answer, at chosen requests (a killed API server drops every connection
  at once, and urllib3's own retries hide a single drop);
* an answer slower than the client's timeout (:meth:`KubeApiServer.delay`);
* a refusal whose message echoes the bearer token (a misbehaving proxy), and canned 401/403/409/422 bodies;
* a CRD held un-Established for exactly as long as an injectable clock says;

and to record the exact requests a client sent (fields, headers, patch types), and to keep the fast tier free
of the toolchain. It is a threaded
:mod:`http.server` on ``127.0.0.1`` (a free port) that

* serves ``/version`` and discovery (``/api``, ``/api/v1``, ``/apis``,
  ``/apis/<group>``, ``/apis/<group>/<version>``) from the canned
  ``APIResourceList`` documents under ``tests/fixtures/kubeapi/discovery/``;
* keeps a small in-memory object store with resource versions and an event log,
  so GET, LIST (label selectors, ``limit``/``continue`` paging), POST, PUT,
  PATCH (merge, strategic merge treated as merge, server-side apply), DELETE
  (finalizers keep an object until they are removed) and WATCH behave
  plausibly. A watch streams newline-delimited JSON events in chunked encoding
  and closes at ``timeoutSeconds``; a watch from a resource version older than
  the last :meth:`KubeApiServer.compact` gets an ``ERROR`` event with a ``410``
  ``Status``, as a real server answers after etcd compaction;
* records every request (method, path, query, headers, body) in
  :attr:`KubeApiServer.requests` for assertions;
* has hooks to force error statuses (with a ``Retry-After`` if asked), slow answers and dropped
  connections (:meth:`KubeApiServer.fail`, :meth:`KubeApiServer.delay`);
* models how a real API server installs a CustomResourceDefinition: a new CRD
  is stored with ``NamesAccepted=True`` and ``Established=False``, and only
  after ``crd_established_delay`` seconds (by the injectable ``clock``) is it
  ``Established`` and its kind added to discovery; until then a request for
  its objects is ``404 NotFound`` "the server could not find the requested
  resource".

Use :func:`running_kubeapi_server` to start one and write a kubeconfig that
points at it with a fake bearer token::

    with running_kubeapi_server(tmp_path) as server:
        driver = KubernetesClusterDriver(server.kubeconfig_path)
        ...
        assert server.requests[-1].method == "PATCH"

This is a test double, not a Kubernetes implementation: server-side apply is
approximated by a merge of the applied configuration into the stored object,
and admission, validation and most status semantics are absent.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

FIXTURES_DIR = Path(__file__).parents[1] / "fixtures" / "kubeapi"
#: A recognisable fake credential: tests assert it never shows up in errors.
FAKE_TOKEN = "fake-bearer-token-7f3a9c1e-do-not-leak"

Manifest = dict[str, Any]

# Groups whose list responses omit apiVersion/kind on items, as the real API
# server does for built-in types (custom resources keep them).
_BUILTIN_GROUPS = frozenset({"", "apps", "networking.k8s.io", "apiextensions.k8s.io"})
_MERGE_PATCH = "application/merge-patch+json"
_STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
_APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as sent.

    Attributes:
        method: HTTP method, upper case.
        path: URL path without the query, percent-decoded.
        query: Query parameters (every value of each name).
        headers: Request headers with lower-cased names.
        body: The raw request body (empty when there was none).
        received: When it arrived (``time.monotonic()``).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received: float = field(default_factory=time.monotonic)

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or ``None``."""
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` header without parameters (``; charset=...``)."""
        value = self.headers.get("content-type")
        return value.split(";")[0].strip() if value else None

    def json(self) -> Any:
        """The body parsed as JSON (or YAML, for apply patches)."""
        if not self.body:
            return None
        text = self.body.decode("utf-8")
        try:
            return json.loads(text)
        except ValueError:
            return yaml.safe_load(text)


@dataclass(frozen=True)
class ApiResource:
    """One resource type the server serves (a row of an ``APIResourceList``)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def group_version(self) -> str:
        """``group/version``, or just ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def qualified(self) -> str:
        """``plural.group`` as the API server names the resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


@dataclass
class _Rule:
    """A forced failure or delay for matching requests."""

    method: str | None
    path: re.Pattern[str] | None
    remaining: int
    query: dict[str, str] = field(default_factory=dict)
    status: int = 0
    reason: str | None = None
    message: str | None = None
    drop_connection: bool = False
    in_watch_stream: bool = False
    delay_seconds: float = 0.0
    retry_after: str | None = None

    def matches(self, request: RecordedRequest) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != request.method:
            return False
        if any(request.param(name) != value for name, value in self.query.items()):
            return False
        return self.path is None or bool(self.path.search(request.path))


@dataclass
class _Event:
    resource_version: int
    type: str
    resource: ApiResource
    namespace: str
    object: Manifest


class _HttpError(Exception):
    """Ends a request with a Kubernetes ``Status`` body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})
        self.retry_after = retry_after


@dataclass
class _Target:
    """What a resource URL points at."""

    resource: ApiResource
    namespace: str | None
    name: str | None
    subresource: str | None = None


def status_body(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> Manifest:
    """A ``Status`` object as the API server returns it with an error."""
    body: Manifest = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``null`` deletes a key, objects merge, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_SELECTOR_TERM = re.compile(
    r"\s*(?P<neg>!)?(?P<key>[\w./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[\w.-]*)|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?"
    r"\s*(?:,|$)"
)


def selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy a Kubernetes label selector string.

    Supports ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)`` and
    ``k notin (a,b)``, comma-separated (all must hold).
    """
    if not selector or not selector.strip():
        return True
    position = 0
    while position < len(selector):
        match = _SELECTOR_TERM.match(selector, position)
        if not match or match.end() == position:
            raise _HttpError(400, "BadRequest", f"unable to parse requirement: {selector!r}")
        position = match.end()
        key = match["key"]
        if match["op"]:
            equal = labels.get(key) == match["value"]
            if equal != (match["op"] != "!="):
                return False
        elif match["setop"]:
            values = {v.strip() for v in match["values"].split(",") if v.strip()}
            inside = key in labels and labels[key] in values
            if inside != (match["setop"] == "in"):
                return False
        elif (key in labels) == bool(match["neg"]):
            return False
    return True


CRD_API = "apiextensions.k8s.io/v1"


def _crd_status(*, established: bool) -> Manifest:
    """A CRD's status as the apiextensions controllers write it."""
    names = {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"}
    if established:
        state = {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": ""}
    else:
        state = {"type": "Established", "status": "False", "reason": "Installing", "message": "the CRD is installing"}
    return {"conditions": [names, state]}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeApiServer:
    """The fake API server: discovery, an object store, watches and request records.

    Args:
        token: The bearer token every request must carry (``None`` accepts any).
        fixtures_dir: Where ``version.json`` and ``discovery/*.json`` live.
        version: Overrides ``/version`` (e.g. ``{"major": "1", "minor": "29"}``).
        crd_established_delay: Seconds (by ``clock``) a new CRD takes to be
            Established and served; ``0`` establishes it as it is stored.
        clock: Monotonic seconds (a test's stepped clock: no real waiting).

    Attributes:
        requests: Every request received, in order (append-only; read it after
            the client call returned).
        watch_close_after: When set, watches close after this many seconds even
            if ``timeoutSeconds`` is longer (an API server or proxy closing early).
        kubeconfig_path: Set by :func:`running_kubeapi_server`.
    """

    def __init__(
        self,
        *,
        token: str | None = FAKE_TOKEN,
        fixtures_dir: Path = FIXTURES_DIR,
        version: Mapping[str, str] | None = None,
        crd_established_delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.crd_established_delay = crd_established_delay
        self._clock = clock
        #: CRDs stored and not yet Established: storage key -> when they will be.
        self._installing_crds: dict[tuple[str, str, str, str], float] = {}
        self.requests: list[RecordedRequest] = []
        self.watch_close_after: float | None = None
        self.kubeconfig_path: Path | None = None
        self._version: Manifest = json.loads((fixtures_dir / "version.json").read_text())
        self._version.update(version or {})
        self._discovery: dict[str, list[Manifest]] = {}
        for path in sorted((fixtures_dir / "discovery").glob("*.json")):
            document = json.loads(path.read_text())
            self._discovery[document["groupVersion"]] = document["resources"]
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[tuple[str, str, str, str], Manifest] = {}
        self._events: list[_Event] = []
        self._resource_version = 1000
        self._compacted = 0
        self._rules: list[_Rule] = []
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> KubeApiServer:
        """Listen on ``127.0.0.1`` on a free port and serve in a background thread."""
        handler = type("_BoundHandler", (_Handler,), {"api": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        httpd = self._httpd
        self._thread = threading.Thread(
            # A short poll interval makes stop() quick.
            target=lambda: httpd.serve_forever(poll_interval=0.05),
            name="kubeapi-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; open watches end at once."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._httpd is None:
            raise RuntimeError("the fake API server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- request records ---------------------------------------------------

    def requests_to(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests with this method and/or exact path."""
        with self._lock:
            recorded = list(self.requests)
        return [
            r for r in recorded if (method is None or r.method == method.upper()) and (path is None or r.path == path)
        ]

    def api_requests(self) -> list[RecordedRequest]:
        """Recorded requests other than discovery and ``/version``."""
        with self._lock:
            recorded = list(self.requests)
        return [r for r in recorded if not _is_discovery_path(r.path)]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    # -- hooks ---------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str | None = None,
        reason: str | None = None,
        message: str | None = None,
        query: Mapping[str, str] | None = None,
        times: int = 1,
        drop_connection: bool = False,
        in_watch_stream: bool = False,
        retry_after: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with an error ``Status``.

        Args:
            status: HTTP status (and ``Status.code``).
            method: Only requests with this method (any when ``None``).
            path: A regular expression searched in the request path (any when ``None``).
            reason: ``Status.reason`` (defaults to the HTTP phrase without spaces).
            message: ``Status.message``.
            query: Only requests with these query parameter values
                (e.g. ``{"watch": "true"}`` for watches only).
            times: How many requests the rule answers.
            drop_connection: Close the connection without answering instead.
            in_watch_stream: Answer ``200`` with a single watch ``ERROR`` event
                carrying the ``Status`` (as a real server reports most watch
                failures), then end the stream.
            retry_after: A ``Retry-After`` header to send with the answer.
        """
        phrase = HTTPStatus(status).phrase.replace(" ", "") if status else "Unknown"
        with self._lock:
            self._rules.append(
                _Rule(
                    method=method,
                    path=re.compile(path) if path else None,
                    remaining=times,
                    query=dict(query or {}),
                    status=status,
                    reason=reason or phrase,
                    message=message or f"forced {status} by the fake API server",
                    drop_connection=drop_connection,
                    in_watch_stream=in_watch_stream,
                    retry_after=retry_after,
                )
            )

    def delay(
        self,
        seconds: float,
        *,
        method: str | None = None,
        path: str | None = None,
        query: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Hold the next ``times`` matching requests for ``seconds`` before answering."""
        with self._lock:
            self._rules.append(
                _Rule(
                    method=method,
                    path=re.compile(path) if path else None,
                    remaining=times,
                    query=dict(query or {}),
                    delay_seconds=seconds,
                )
            )

    @property
    def resource_version(self) -> str:
        """The store's current resourceVersion (what a list now reports)."""
        with self._lock:
            return str(self._resource_version)

    def compact(self) -> int:
        """Forget the event history, as etcd compaction does.

        Watches that start from an older resource version get a ``410 Expired``.

        Returns:
            The current resource version.
        """
        with self._lock:
            self._compacted = self._resource_version
            self._events.clear()
            return self._resource_version

    # -- discovery -----------------------------------------------------------

    def serve(self, group_version: str, resources: Iterable[Mapping[str, Any]]) -> None:
        """Serve (or replace) a group version, as installing a CRD does."""
        with self._lock:
            self._discovery[group_version] = [dict(r) for r in resources]

    def unserve(self, group_version: str) -> None:
        """Stop serving a group version, as deleting its CRD does (objects stay stored)."""
        with self._lock:
            self._discovery.pop(group_version, None)

    def resource_for(self, api_version: str, kind: str) -> ApiResource | None:
        """The served resource of a kind, or ``None``."""
        with self._lock:
            rows = self._discovery.get(api_version, [])
            group, _, version = api_version.rpartition("/")
            for row in rows:
                if row["kind"] == kind and "/" not in row["name"]:
                    return ApiResource(group, version, row["name"], kind, bool(row["namespaced"]))
        return None

    def establish_due_crds(self) -> list[str]:
        """Establish the CRDs whose delay has passed and serve their kinds; their names.

        Every request does this first, as the real API server's controllers run
        on their own.
        """
        with self._lock:
            due = sorted(key for key, when in self._installing_crds.items() if when <= self._clock())
            names = []
            for key in due:
                del self._installing_crds[key]
                crd = self._objects.get(key)
                if crd is None:
                    continue
                crd = copy.deepcopy(crd)
                crd["status"] = _crd_status(established=True)
                resource = self._require_resource(CRD_API, "CustomResourceDefinition")
                self._store(resource, None, crd)
                self._serve_crd(crd)
                names.append(str(crd["metadata"]["name"]))
            return names

    def _serve_crd(self, crd: Manifest) -> None:
        """Add an Established CRD's kind to discovery, for each served version."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        if not spec.get("group") or not names.get("kind") or not names.get("plural"):
            return
        row = {
            "name": names["plural"],
            "singularName": names.get("singular") or str(names["kind"]).lower(),
            "namespaced": spec.get("scope", "Namespaced") != "Cluster",
            "kind": names["kind"],
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        }
        versions = [v["name"] for v in spec.get("versions") or [] if v.get("served", True) and v.get("name")]
        for version in versions:
            group_version = f"{spec['group']}/{version}"
            rows = [r for r in self._discovery.get(group_version, []) if r.get("kind") != names["kind"]]
            self._discovery[group_version] = [*rows, row]

    def _resource_by_plural(self, group: str, version: str, plural: str) -> ApiResource | None:
        group_version = f"{group}/{version}" if group else version
        with self._lock:
            for row in self._discovery.get(group_version, []):
                if row["name"] == plural:
                    return ApiResource(group, version, plural, row["kind"], bool(row["namespaced"]))
        return None

    # -- object store (direct access for tests) ------------------------------

    def put_object(self, manifest: Mapping[str, Any]) -> Manifest:
        """Create or replace an object directly (no request recorded); return it stored."""
        resource = self._require_resource(str(manifest["apiVersion"]), str(manifest["kind"]))
        namespace = (manifest.get("metadata") or {}).get("namespace")
        if resource.namespaced and not namespace:
            raise ValueError(f"{manifest['kind']} is namespaced: metadata.namespace is required")
        with self._lock:
            return self._store(resource, namespace if resource.namespaced else None, dict(manifest))

    def load_objects(self, path: Path) -> list[Manifest]:
        """Store every document of a multi-document YAML file."""
        with path.open() as stream:
            return [self.put_object(doc) for doc in yaml.safe_load_all(stream) if doc]

    def get_object(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        """A stored object (a copy), or ``None``."""
        resource = self._require_resource(api_version, kind)
        with self._lock:
            found = self._objects.get(self._key(resource, namespace, name))
            return copy.deepcopy(found) if found else None

    def objects(self) -> list[Manifest]:
        """Copies of every stored object."""
        with self._lock:
            return [copy.deepcopy(o) for o in self._objects.values()]

    def patch_object(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: Mapping[str, Any]
    ) -> Manifest:
        """Merge-patch a stored object directly (a controller's change); return it."""
        resource = self._require_resource(api_version, kind)
        with self._lock:
            key = self._key(resource, namespace, name)
            if key not in self._objects:
                raise KeyError(f"{kind} {namespace}/{name} is not stored")
            updated = merge_patch(self._objects[key], patch)
            return self._store(resource, namespace if resource.namespaced else None, updated)

    def remove_object(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Remove a stored object at once (finalizers ignored); ``False`` if absent."""
        resource = self._require_resource(api_version, kind)
        with self._lock:
            key = self._key(resource, namespace, name)
            if key not in self._objects:
                return False
            self._remove(resource, key)
            return True

    def _require_resource(self, api_version: str, kind: str) -> ApiResource:
        resource = self.resource_for(api_version, kind)
        if resource is None:
            raise KeyError(f"{api_version} {kind} is not served by the fake API server")
        return resource

    @staticmethod
    def _key(resource: ApiResource, namespace: str | None, name: str) -> tuple[str, str, str, str]:
        return (resource.group, resource.plural, (namespace or "") if resource.namespaced else "", name)

    def _next_version(self) -> int:
        self._resource_version += 1
        return self._resource_version

    def _record_event(self, kind: str, resource: ApiResource, namespace: str, obj: Manifest) -> None:
        self._events.append(
            _Event(int(obj["metadata"]["resourceVersion"]), kind, resource, namespace, copy.deepcopy(obj))
        )
        self._changed.notify_all()

    def _store(self, resource: ApiResource, namespace: str | None, obj: Manifest) -> Manifest:
        """Save ``obj`` (caller holds the lock): fill metadata, bump versions, log the event."""
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = resource.group_version
        obj["kind"] = resource.kind
        meta = obj.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        key = self._key(resource, namespace, str(meta["name"]))
        previous = self._objects.get(key)
        if previous is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
        else:
            for kept in ("uid", "creationTimestamp", "deletionTimestamp"):
                if kept in previous["metadata"]:
                    meta[kept] = previous["metadata"][kept]
            generation = int(previous["metadata"].get("generation", 1))
            meta["generation"] = generation + (1 if previous.get("spec") != obj.get("spec") else 0)
        # A terminating object whose last finalizer was removed is gone.
        if previous is not None and meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(resource, key, last=obj)
            return copy.deepcopy(self._events[-1].object)
        new_crd = previous is None and resource.group_version == CRD_API and resource.kind == "CustomResourceDefinition"
        if new_crd:
            obj["status"] = _crd_status(established=False)
            self._installing_crds[key] = self._clock() + self.crd_established_delay
        elif previous is not None and "status" in previous and resource.group_version == CRD_API:
            obj.setdefault("status", previous["status"])  # a write never takes the controllers' status away
        meta["resourceVersion"] = str(self._next_version())
        self._objects[key] = obj
        self._record_event("ADDED" if previous is None else "MODIFIED", resource, key[2], obj)
        if new_crd and self.crd_established_delay <= 0:
            self.establish_due_crds()
            return copy.deepcopy(self._objects[key])
        return copy.deepcopy(obj)

    def _remove(self, resource: ApiResource, key: tuple[str, str, str, str], last: Manifest | None = None) -> None:
        obj = last if last is not None else self._objects[key]
        self._objects.pop(key, None)
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._next_version())
        self._record_event("DELETED", resource, key[2], obj)

    # -- HTTP handling -------------------------------------------------------

    def _take_rule(self, request: RecordedRequest) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(request):
                    rule.remaining -= 1
                    return rule
        return None

    def handle(self, request: _Handler, method: str) -> None:
        """Answer one request (called by the request handler's thread)."""
        parts = urlsplit(request.path)
        # The client asks for "/version/"; the API server treats both alike.
        path = unquote(parts.path).rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        recorded = RecordedRequest(
            method=method,
            path=path,
            query=query,
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(recorded)
        self.establish_due_crds()
        while (rule := self._take_rule(recorded)) is not None:
            if rule.delay_seconds:
                self._stopping.wait(rule.delay_seconds)
                continue
            if rule.drop_connection:
                request.close_connection = True
                request.connection.shutdown(socket.SHUT_RDWR)
                return
            if rule.in_watch_stream:
                request.start_stream()
                error = status_body(rule.status, rule.reason or "", rule.message or "")
                request.send_chunk({"type": "ERROR", "object": error})
                request.end_stream()
                return
            raise _HttpError(rule.status, rule.reason or "", rule.message or "", retry_after=rule.retry_after)
        if self.token is not None and recorded.headers.get("authorization") != f"Bearer {self.token}":
            raise _HttpError(401, "Unauthorized", "Unauthorized")
        if _is_discovery_path(path):
            request.send_json(200, self._discovery_document(path))
            return
        target = self._parse_target(path)
        if method == "GET" and target.name is None and recorded.param("watch") in ("true", "1"):
            self._watch(request, target, recorded)
            return
        handlers = {
            "GET": self._get,
            "POST": self._create,
            "PUT": self._replace,
            "PATCH": self._patch,
            "DELETE": self._delete,
        }
        if method not in handlers:
            raise _HttpError(405, "MethodNotAllowed", f"method {method} is not supported")
        code, answer = handlers[method](target, recorded)
        request.send_json(code, answer)

    def _discovery_document(self, path: str) -> Manifest:
        with self._lock:
            if path == "/version":
                return dict(self._version)
            if path == "/api":
                return {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
                }
            groups: dict[str, list[str]] = {}
            for group_version in self._discovery:
                if "/" in group_version:
                    group, _, version = group_version.partition("/")
                    groups.setdefault(group, []).append(version)

            def group_doc(name: str) -> Manifest:
                versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in groups[name]]
                return {"name": name, "versions": versions, "preferredVersion": versions[0]}

            if path == "/apis":
                return {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [group_doc(name) for name in sorted(groups)],
                }
            parts = path.strip("/").split("/")
            if len(parts) == 2 and parts[1] in groups:
                return {"kind": "APIGroup", "apiVersion": "v1", **group_doc(parts[1])}
            group_version = "/".join(parts[1:])
            if group_version in self._discovery:
                return {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": group_version,
                    "resources": copy.deepcopy(self._discovery[group_version]),
                }
        raise _HttpError(404, "NotFound", "the server could not find the requested resource")

    def _parse_target(self, path: str) -> _Target:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            rest = []
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise _HttpError(404, "NotFound", "the server could not find the requested resource")
        resource = self._resource_by_plural(group, version, rest[0])
        if resource is None or (namespace is not None and not resource.namespaced):
            raise _HttpError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource not in (None, "status"):
            raise _HttpError(404, "NotFound", "the server could not find the requested resource")
        if resource.namespaced and name is not None and namespace is None:
            raise _HttpError(404, "NotFound", "the server could not find the requested resource")
        return _Target(resource, namespace, name, subresource)

    def _not_found(self, target: _Target) -> _HttpError:
        resource = target.resource
        return _HttpError(
            404,
            "NotFound",
            f'{resource.qualified()} "{target.name}" not found',
            {"name": target.name, "group": resource.group, "kind": resource.plural},
        )

    def _stored(self, target: _Target) -> tuple[tuple[str, str, str, str], Manifest | None]:
        key = self._key(target.resource, target.namespace, str(target.name))
        return key, self._objects.get(key)

    def _matching(self, target: _Target, selector: str | None) -> list[Manifest]:
        resource = target.resource
        found = []
        for (group, plural, namespace, _), obj in sorted(self._objects.items()):
            if (group, plural) != (resource.group, resource.plural):
                continue
            if target.namespace is not None and namespace != target.namespace:
                continue
            if selector_matches(selector, (obj.get("metadata") or {}).get("labels") or {}):
                found.append(obj)
        return found

    def _get(self, target: _Target, request: RecordedRequest) -> tuple[int, Manifest]:
        with self._lock:
            if target.name is not None:
                _, obj = self._stored(target)
                if obj is None:
                    raise self._not_found(target)
                return 200, copy.deepcopy(obj)
            items = self._matching(target, request.param("labelSelector"))
            offset = int(request.param("continue") or 0)
            limit = int(request.param("limit") or 0)
            page = items[offset : offset + limit] if limit else items[offset:]
            metadata: Manifest = {"resourceVersion": str(self._resource_version)}
            if limit and offset + limit < len(items):
                metadata["continue"] = str(offset + limit)
                metadata["remainingItemCount"] = len(items) - offset - limit
            listed = []
            for obj in page:
                item = copy.deepcopy(obj)
                if target.resource.group in _BUILTIN_GROUPS:
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                listed.append(item)
            return 200, {
                "apiVersion": target.resource.group_version,
                "kind": f"{target.resource.kind}List",
                "metadata": metadata,
                "items": listed,
            }

    def _check_body(self, target: _Target, body: Any) -> Manifest:
        if not isinstance(body, dict):
            raise _HttpError(400, "BadRequest", "the request body is not an object")
        resource = target.resource
        if body.get("apiVersion") != resource.group_version or body.get("kind") != resource.kind:
            raise _HttpError(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) and kind "
                f"({body.get('kind')}) do not match the request ({resource.group_version} "
                f"{resource.kind})",
            )
        meta = body.get("metadata") or {}
        if target.name is not None and meta.get("name") not in (None, target.name):
            raise _HttpError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if resource.namespaced and meta.get("namespace") not in (None, target.namespace):
            raise _HttpError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        return body

    def _create(self, target: _Target, request: RecordedRequest) -> tuple[int, Manifest]:
        if target.name is not None:
            raise _HttpError(405, "MethodNotAllowed", "POST to a named object is not allowed")
        body = self._check_body(target, request.json())
        name = (body.get("metadata") or {}).get("name")
        if not name:
            raise _HttpError(422, "Invalid", "metadata.name: Required value: name is required")
        target = _Target(target.resource, target.namespace, str(name))
        with self._lock:
            _, existing = self._stored(target)
            if existing is not None:
                raise _HttpError(409, "AlreadyExists", f'{target.resource.qualified()} "{name}" already exists')
            return 201, self._store(target.resource, target.namespace, body)

    def _replace(self, target: _Target, request: RecordedRequest) -> tuple[int, Manifest]:
        body = self._check_body(target, request.json())
        with self._lock:
            _, existing = self._stored(target)
            if existing is None:
                raise self._not_found(target)
            sent_version = (body.get("metadata") or {}).get("resourceVersion")
            if sent_version and sent_version != existing["metadata"]["resourceVersion"]:
                raise _HttpError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {target.resource.qualified()} "{target.name}": '
                    "the object has been modified; please apply your changes to the latest version "
                    "and try again",
                )
            return 200, self._store(target.resource, target.namespace, body)

    def _patch(self, target: _Target, request: RecordedRequest) -> tuple[int, Manifest]:
        if target.name is None:
            raise _HttpError(405, "MethodNotAllowed", "PATCH needs an object name")
        content_type = request.content_type
        with self._lock:
            _, existing = self._stored(target)
            if content_type in (_MERGE_PATCH, _STRATEGIC_MERGE_PATCH):
                if existing is None:
                    raise self._not_found(target)
                patch = request.json()
                if not isinstance(patch, dict):
                    raise _HttpError(400, "BadRequest", "the merge patch is not an object")
                return 200, self._store(target.resource, target.namespace, merge_patch(existing, patch))
            if content_type == _APPLY_PATCH:
                return self._apply(target, request, existing)
        raise _HttpError(
            415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
        )

    def _apply(self, target: _Target, request: RecordedRequest, existing: Manifest | None) -> tuple[int, Manifest]:
        """Server-side apply, approximated: merge the applied configuration into the object."""
        manager = request.param("fieldManager")
        if not manager:
            raise _HttpError(400, "BadRequest", "PATCH requests with apply content type require fieldManager")
        body = self._check_body(target, request.json())
        if (body.get("metadata") or {}).get("managedFields") is not None:
            raise _HttpError(400, "BadRequest", "metadata.managedFields must be nil")
        force = request.param("force") in ("true", "1", "True")
        managers = [
            entry.get("manager")
            for entry in ((existing or {}).get("metadata") or {}).get("managedFields") or []
            if entry.get("operation") == "Apply"
        ]
        others = sorted({m for m in managers if m != manager})
        if existing is not None and others and not force:
            raise _HttpError(
                409,
                "Conflict",
                f'Apply failed with 1 conflict: conflict with "{others[0]}": .spec',
            )
        merged = merge_patch(existing or {}, body)
        entries = [
            entry
            for entry in ((existing or {}).get("metadata") or {}).get("managedFields") or []
            if entry.get("manager") != manager and not force
        ]
        entries.append(
            {
                "manager": manager,
                "operation": "Apply",
                "apiVersion": target.resource.group_version,
                "time": _now(),
                "fieldsType": "FieldsV1",
            }
        )
        merged.setdefault("metadata", {})["managedFields"] = entries
        stored = self._store(target.resource, target.namespace, merged)
        return (201 if existing is None else 200), stored

    def _delete(self, target: _Target, request: RecordedRequest) -> tuple[int, Manifest]:
        if target.name is None:
            raise _HttpError(405, "MethodNotAllowed", "collection deletes are not supported")
        options = request.json() or {}
        policy = options.get("propagationPolicy") or request.param("propagationPolicy")
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise _HttpError(400, "BadRequest", f"unsupported propagationPolicy {policy!r}")
        with self._lock:
            key, existing = self._stored(target)
            if existing is None:
                raise self._not_found(target)
            if existing["metadata"].get("finalizers"):
                terminating = copy.deepcopy(existing)
                terminating["metadata"].setdefault("deletionTimestamp", _now())
                return 200, self._store(target.resource, target.namespace, terminating)
            self._remove(target.resource, key)
            return 200, copy.deepcopy(self._events[-1].object)

    def _watch(self, request: _Handler, target: _Target, recorded: RecordedRequest) -> None:
        timeout = float(recorded.param("timeoutSeconds") or 60)
        if self.watch_close_after is not None:
            timeout = min(timeout, self.watch_close_after)
        deadline = time.monotonic() + timeout
        selector = recorded.param("labelSelector")
        selector_matches(selector, {})  # a malformed selector fails before the stream starts
        bookmarks = recorded.param("allowWatchBookmarks") in ("true", "1")
        start = recorded.param("resourceVersion")
        start_version = int(start) if start not in (None, "", "0") else None
        request.start_stream()
        try:
            with self._lock:
                if start_version is None:
                    # No resource version: synthetic ADDED events for the current state first.
                    for obj in self._matching(target, selector):
                        request.send_chunk({"type": "ADDED", "object": obj})
                    since = self._resource_version
                elif start_version < self._compacted:
                    request.send_chunk(
                        {
                            "type": "ERROR",
                            "object": status_body(
                                410,
                                "Expired",
                                f"too old resource version: {start} ({self._compacted})",
                            ),
                        }
                    )
                    request.end_stream()
                    return
                else:
                    since = start_version
            while not self._stopping.is_set():
                with self._changed:
                    pending = [e for e in self._events if e.resource_version > since]
                    if not pending:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._changed.wait(timeout=remaining)
                        continue
                for event in pending:
                    since = event.resource_version
                    if self._event_matches(event, target, selector):
                        request.send_chunk({"type": event.type, "object": event.object})
            if bookmarks and not self._stopping.is_set():
                request.send_chunk(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": target.resource.kind,
                            "apiVersion": target.resource.group_version,
                            "metadata": {"resourceVersion": str(max(since, self._resource_version))},
                        },
                    }
                )
            request.end_stream()
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True

    @staticmethod
    def _event_matches(event: _Event, target: _Target, selector: str | None) -> bool:
        if (event.resource.group, event.resource.plural) != (target.resource.group, target.resource.plural):
            return False
        if target.namespace is not None and event.namespace != target.namespace:
            return False
        return selector_matches(selector, (event.object.get("metadata") or {}).get("labels") or {})


def _is_discovery_path(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    if path == "/version" or parts in (["api"], ["apis"], ["api", "v1"]):
        return True
    return len(parts) in (2, 3) and parts[0] == "apis"


class _Handler(BaseHTTPRequestHandler):
    """Hands each request to :meth:`KubeApiServer.handle`; writes JSON and streams."""

    api: KubeApiServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        """Send small writes at once: headers and body go out separately, and
        Nagle's algorithm with delayed ACKs would add ~40 ms to every answer."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class name
        """Keep test output quiet."""

    def _dispatch(self, method: str) -> None:
        try:
            self.api.handle(self, method)
        except _HttpError as error:
            body = status_body(error.code, error.reason, error.message, error.details)
            headers = {"Retry-After": error.retry_after} if error.retry_after is not None else {}
            self.send_json(error.code, body, headers)
        except ValueError as error:
            message = f"invalid request: {error}"
            self.send_json(400, status_body(400, "BadRequest", message))
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        """Dispatch a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        """Dispatch a POST."""
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        """Dispatch a PUT."""
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        """Dispatch a PATCH."""
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        """Dispatch a DELETE."""
        self._dispatch("DELETE")

    def send_json(self, code: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        """Answer with a JSON body and a Content-Length (and ``headers``)."""
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self) -> None:
        """Start a chunked ``200`` answer for a watch."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def send_chunk(self, event: Manifest) -> None:
        """Send one watch event as a newline-terminated JSON line in its own chunk."""
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_stream(self) -> None:
        """Finish the chunked answer."""
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def write_kubeconfig(
    path: Path,
    server_url: str,
    token: str = FAKE_TOKEN,
    *,
    context: str = "kubeapi-test",
    namespace: str = "default",
) -> Path:
    """Write a kubeconfig whose current context points at ``server_url`` with a bearer token.

    Returns:
        ``path``.
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        "users": [{"name": f"{context}-user", "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": f"{context}-user", "namespace": namespace},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


@contextmanager
def running_kubeapi_server(directory: Path, *, token: str = FAKE_TOKEN, **options: Any) -> Iterator[KubeApiServer]:
    """Start a :class:`KubeApiServer`, write ``directory/kubeconfig`` for it, stop it afterwards.

    Args:
        directory: Where the kubeconfig goes (a test's ``tmp_path``).
        token: The bearer token the server requires and the kubeconfig carries.
        **options: Passed to :class:`KubeApiServer`.

    Yields:
        The running server, with :attr:`KubeApiServer.kubeconfig_path` set.
    """
    server = KubeApiServer(token=token, **options).start()
    try:
        server.kubeconfig_path = write_kubeconfig(directory / "kubeconfig", server.url, token)
        yield server
    finally:
        server.stop()
