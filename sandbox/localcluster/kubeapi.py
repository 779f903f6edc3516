"""The few Kubernetes API calls a local cluster makes for itself, over the standard library.

The control plane needs readiness polls, the fake Node and a health check; the Flux host kubelet needs a
list-and-watch of Deployments and TokenRequests. That is a handful of requests, so they go over
:mod:`http.client` with the cluster's own CA and admin client certificate rather than the ``kubernetes``
client (which the product uses, and which would make this supervisor process much heavier to start).

Also here: the kubeconfig files a local cluster writes (the admin one, which the terraform stack outputs, and
the token-file ones the Flux controllers run with).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from sandbox.localcluster.errors import LocalApiUnreachableError, LocalClusterError


class ApiStatusError(LocalClusterError):
    """The API server answered with an error status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Credentials:
    """How to reach an HTTPS endpoint: the CA to trust and an optional client certificate.

    ``ca_file=None`` skips verification (kube-controller-manager's and kube-scheduler's health endpoints serve
    a certificate they generate in memory at start, signed by nobody).
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        """An SSL context for these credentials."""
        if self.ca_file is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


class KubeApi:
    """A minimal JSON client for one API server (or any HTTP(S) health endpoint).

    Args:
        server: ``https://127.0.0.1:<port>`` (or ``http://`` for etcd's health).
        credentials: Trust and client certificate for ``https``.
        timeout: Seconds for connecting and for each read.
    """

    def __init__(self, server: str, credentials: Credentials | None = None, *, timeout: float = 10.0) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LocalClusterError(f"not an http(s) server URL: {server!r}")
        self.server = server.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._context = (credentials or Credentials()).context() if self._https else None
        self.timeout = timeout

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; ``(status, body)``.

        Raises:
            LocalApiUnreachableError: No connection, a TLS failure or no complete answer.
        """
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        connection = self._connection(timeout or self.timeout)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise LocalApiUnreachableError(f"{method} {self.server}{path}: {_reason(exc)}") from exc
        finally:
            connection.close()

    def get_json(self, path: str) -> dict[str, Any] | None:
        """GET ``path`` as JSON; ``None`` for 404.

        Raises:
            ApiStatusError: Another error status.
            LocalApiUnreachableError: No answer.
        """
        status, data = self.request("GET", path)
        if status == 404:
            return None
        if status >= 400:
            raise ApiStatusError(f"GET {path}: {status} {_message(data)}", status=status)
        return _json_object(data)

    def get_text(self, path: str) -> tuple[int, str]:
        """GET ``path``; ``(status, body text)`` (health endpoints answer ``ok``)."""
        status, data = self.request("GET", path)
        return status, data.decode("utf-8", "replace")

    def create(self, path: str, obj: Mapping[str, Any], *, exist_ok: bool = False) -> dict[str, Any] | None:
        """POST ``obj`` to the collection ``path``; ``None`` when it exists and ``exist_ok``.

        Raises:
            ApiStatusError: Refused.
            LocalApiUnreachableError: No answer.
        """
        status, data = self.request("POST", path, obj)
        if status == 409 and exist_ok:
            return None
        if status >= 400:
            raise ApiStatusError(f"POST {path}: {status} {_message(data)}", status=status)
        return _json_object(data)

    def watch(self, path: str, resource_version: str, *, timeout_seconds: int = 60) -> Iterator[dict[str, Any]]:
        """Watch events on the collection ``path`` from ``resource_version`` (``{"type", "object"}`` each).

        Ends when the server closes the watch (after about ``timeout_seconds``).

        Raises:
            ApiStatusError: The watch was refused (410 Gone: list again).
            LocalApiUnreachableError: The connection failed or broke.
        """
        separator = "&" if "?" in path else "?"
        query = f"{separator}watch=1&allowWatchBookmarks=true&resourceVersion={resource_version}"
        query += f"&timeoutSeconds={timeout_seconds}"
        connection = self._connection(timeout_seconds + 15.0)
        try:
            try:
                connection.request("GET", path + query, headers={"Accept": "application/json"})
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise LocalApiUnreachableError(f"watch {self.server}{path}: {_reason(exc)}") from exc
            if response.status >= 400:
                raise ApiStatusError(
                    f"watch {path}: {response.status} {_message(response.read())}", status=response.status
                )
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise LocalApiUnreachableError(f"watch {self.server}{path}: {_reason(exc)}") from exc
                if not line:
                    return
                if line.strip():
                    event = _json_object(line)
                    if event.get("type") == "ERROR":
                        obj = event.get("object") or {}
                        raise ApiStatusError(
                            f"watch {path}: {obj.get('code')} {obj.get('message', '')}",
                            status=int(obj.get("code") or 0),
                        )
                    yield event
        finally:
            connection.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    return str(exc) or type(exc).__name__


def _message(data: bytes) -> str:
    try:
        obj = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")[:300]
    return str(obj.get("message", ""))[:300] if isinstance(obj, dict) else ""


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise LocalClusterError(f"the API server answered something other than JSON: {data[:200]!r}") from exc
    if not isinstance(obj, dict):
        raise LocalClusterError("the API server answered JSON that is not an object")
    return obj


# -- kubeconfig files -----------------------------------------------------------------------------


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def admin_kubeconfig(server: str, *, cluster_name: str, ca_file: Path, cert_file: Path, key_file: Path) -> str:
    """A self-contained (embedded certificates) cluster-admin kubeconfig for ``server``.

    Self-contained because it leaves the cluster directory as a terraform output and is used from memory
    (:meth:`sandbox.drivers.kubernetes_cluster.KubernetesClusterDriver.from_kubeconfig_text`).
    """
    user = f"{cluster_name}-admin"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster_name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_file)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": _b64(cert_file), "client-key-data": _b64(key_file)},
            }
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
        "preferences": {},
    }
    return yaml.safe_dump(document, sort_keys=False)


def token_file_kubeconfig(server: str, *, cluster_name: str, ca_file: Path, token_file: Path, user: str) -> str:
    """A kubeconfig that authenticates with a bearer token read from ``token_file``.

    client-go re-reads a ``tokenFile`` periodically, so the host kubelet can refresh a controller's
    service-account token under a running process, as the kubelet does with a projected token.
    """
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"tokenFile": str(token_file)}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
    }
    return yaml.safe_dump(document, sort_keys=False)


def file_kubeconfig(server: str, *, cluster_name: str, ca_file: Path, cert_file: Path, key_file: Path) -> str:
    """A cluster-admin kubeconfig referring to the PEM files (what the control-plane components read)."""
    user = f"{cluster_name}-admin"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert_file), "client-key": str(key_file)}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
    }
    return yaml.safe_dump(document, sort_keys=False)
