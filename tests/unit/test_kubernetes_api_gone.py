"""The kubernetes driver when its API server goes away: every way of "gone" is retryable, one line, no secret.

A stub at the HTTP boundary (a loopback socket server written here, plain HTTP or TLS with a cluster PKI from
:mod:`sandbox.localcluster.pki`) plays an API server that is killed or restarting: nothing listens, it resets
the connection, hangs up without answering or during the TLS handshake, answers 503 or 429 with Retry-After,
or cuts a watch stream. Each error must be :class:`~sandbox.errors.RetryableError`, name the cluster's endpoint
and what was being done, in one line, with no kubeconfig material in it or in its chain. A certificate the
cluster's CA did not sign stays permanent (a retry cannot fix it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import struct
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from sandbox.drivers.cluster import ObjectRef
from sandbox.drivers.kubernetes_cluster import KubernetesApiError, KubernetesClusterDriver, KubernetesUnavailableError
from sandbox.errors import PermanentError, RetryableError
from sandbox.localcluster.kubeapi import admin_kubeconfig
from sandbox.localcluster.pki import PkiFiles, ensure_pki

TOKEN = "stub-bearer-token-0123456789abcdef"  # noqa: S105 - a fake credential the messages must not show

Handler = Callable[[socket.socket, bytes], None]

DISCOVERY = {
    "/version": {
        "major": "1",
        "minor": "36",
        "gitVersion": "v1.36.3",
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.26.8",
        "compiler": "gc",
        "platform": "linux/amd64",
    },
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "configmaps",
                "singularName": "configmap",
                "namespaced": True,
                "kind": "ConfigMap",
                "verbs": ["get", "list", "watch", "patch", "delete"],
            }
        ],
    },
}
CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "a", "namespace": "d", "resourceVersion": "6"},
}


class StubApi:
    """A loopback server; ``handler(conn, request_head)`` answers each connection (``None``: discovery only).

    With ``tls`` (a :class:`PkiFiles`), the handler is called before the handshake with the raw socket and the
    head ``b""``: it decides whether to hang up or to go on (:meth:`serve_tls`).
    """

    def __init__(self, handler: Handler | None = None, *, tls: PkiFiles | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.paths: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop listening: from now on connections are refused, as when the API server's process is gone."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
        self.listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None and self.handler is not None:
                self.handler(conn, b"")
                return
            head = _read_head(conn)
            self.paths.append(head.split(b" ", 2)[1].decode())
            if self.handler is not None and not _is_discovery(head):
                self.handler(conn, head)
            else:
                answer_json(conn, 200, DISCOVERY[_path(head)])
        except (OSError, KeyError, IndexError):
            pass
        finally:
            conn.close()


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _path(head: bytes) -> str:
    return head.split(b" ", 2)[1].decode().split("?", 1)[0].rstrip("/")  # the client asks for /version/


def _is_discovery(head: bytes) -> bool:
    return _path(head) in DISCOVERY


def answer_json(conn: socket.socket, status: int, body: object, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    conn.sendall(
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        f"Connection: close\r\n{extra}\r\n".encode()
        + data
    )


def reset(conn: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): what the peer of a killed process may see."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def status(code: int, reason: str, message: str) -> dict[str, object]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


@pytest.fixture
def stubs() -> Iterator[list[StubApi]]:
    made: list[StubApi] = []
    yield made
    for stub in made:
        stub.close()


def _driver(
    stub: StubApi, stubs: list[StubApi], tmp_path: Path, *, trusted: PkiFiles | None = None
) -> KubernetesClusterDriver:
    stubs.append(stub)
    if stub.tls is None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stub", "cluster": {"server": stub.url}}],
            "users": [{"name": "stub", "user": {"token": TOKEN}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
            "current-context": "stub",
        }
        text = yaml.safe_dump(config)
    else:
        ca = trusted or stub.tls
        text = admin_kubeconfig(
            stub.url, cluster_name="stub", ca_file=ca.ca_cert, cert_file=ca.admin_cert, key_file=ca.admin_key
        )
    (tmp_path / "kubeconfig").write_text(text)
    # Short timeouts; the client's own connect retries (3) still happen.
    return KubernetesClusterDriver.from_kubeconfig_text(text, request_timeout=5.0)


def _secrets(tmp_path: Path) -> list[str]:
    """Every credential string of the kubeconfig the driver was given (token, key and certificate data)."""
    document = yaml.safe_load((tmp_path / "kubeconfig").read_text())
    found = [TOKEN]
    for user in document["users"]:
        for key in ("client-key-data", "client-certificate-data"):
            if key in user["user"]:
                data = user["user"][key]
                found += [data, base64.b64decode(data).decode().splitlines()[1]]
    return found


def _assert_retryable_line(error: BaseException, tmp_path: Path, stub: StubApi, doing: str) -> None:
    assert isinstance(error, KubernetesUnavailableError), repr(error)
    assert isinstance(error, RetryableError) and error.retryable
    text = str(error)
    assert "\n" not in text and text.startswith(doing), text
    assert stub.url in text, text  # names the cluster it could not reach
    rendered = "".join(traceback.format_exception(error))
    for secret in _secrets(tmp_path):
        assert secret not in text and secret not in rendered


# -- no answer -------------------------------------------------------------------------------------------------


def test_connection_refused_is_retryable(stubs: list[StubApi], tmp_path: Path) -> None:
    stub = StubApi()
    driver = _driver(stub, stubs, tmp_path)
    stub.close()  # the process is gone: nothing listens on the port
    with pytest.raises(KubernetesUnavailableError) as caught:
        driver.server_version()
    _assert_retryable_line(caught.value, tmp_path, stub, "get /version: cluster API")
    assert "Connection refused" in str(caught.value)


def test_connection_reset_before_the_answer_is_retryable(stubs: list[StubApi], tmp_path: Path) -> None:
    stub = StubApi(lambda conn, head: reset(conn))
    with pytest.raises(KubernetesUnavailableError) as caught:
        _driver(stub, stubs, tmp_path).list("v1", "ConfigMap", "d")
    _assert_retryable_line(caught.value, tmp_path, stub, "list ConfigMap in namespace d: cluster API")


def test_hang_up_without_an_answer_is_retryable(stubs: list[StubApi], tmp_path: Path) -> None:
    # A PATCH is not retried by urllib3: the ProtocolError itself reaches the driver.
    stub = StubApi(lambda conn, head: None)
    with pytest.raises(KubernetesUnavailableError) as caught:
        _driver(stub, stubs, tmp_path).merge_patch(ObjectRef("v1", "ConfigMap", "a", "d"), {"data": {"k": "v"}})
    _assert_retryable_line(caught.value, tmp_path, stub, "patch ConfigMap/d/a: cluster API")
    assert "connection closed before the answer was complete" in str(caught.value)


# -- answers that say "later" ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_server_errors_are_retryable_and_name_the_cluster(code: int, stubs: list[StubApi], tmp_path: Path) -> None:
    stub = StubApi(
        lambda conn, head: answer_json(conn, code, status(code, "ServiceUnavailable", "apiserver is shutting down"))
    )
    with pytest.raises(KubernetesUnavailableError) as caught:
        _driver(stub, stubs, tmp_path).list("v1", "ConfigMap", "d")
    _assert_retryable_line(caught.value, tmp_path, stub, f"list ConfigMap in namespace d: {code} ServiceUnavailable")
    assert caught.value.status == code and str(caught.value).endswith(": apiserver is shutting down")


def test_too_many_requests_with_retry_after_is_retryable_and_says_how_long(
    stubs: list[StubApi], tmp_path: Path
) -> None:
    body = status(429, "TooManyRequests", "the server has received too many requests")
    stub = StubApi(lambda conn, head: answer_json(conn, 429, body, {"Retry-After": "1"}))
    with pytest.raises(KubernetesUnavailableError) as caught:
        _driver(stub, stubs, tmp_path).list("v1", "ConfigMap", "d")
    _assert_retryable_line(caught.value, tmp_path, stub, "list ConfigMap in namespace d: 429 TooManyRequests")
    # urllib3 already waited as asked (three times) before giving the answer up.
    assert caught.value.retry_after == 1 and "(retry after 1s)" in str(caught.value)


# -- a watch whose server goes away ----------------------------------------------------------------------------


def _watch_cut(conn: socket.socket, head: bytes) -> None:
    if b"watch=true" not in head:
        listing = {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "5"}, "items": []}
        answer_json(conn, 200, listing)
        return
    event = json.dumps({"type": "ADDED", "object": CONFIGMAP}).encode() + b"\n"
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(event):x}\r\n".encode()
        + event
        + b"\r\n"
    )
    # Killed mid-stream: the connection ends with no terminating chunk (closed by the caller).


def test_a_watch_stream_cut_off_is_retryable_before_its_timeout(stubs: list[StubApi], tmp_path: Path) -> None:
    stub = StubApi(_watch_cut)
    driver = _driver(stub, stubs, tmp_path)
    seen = []
    with pytest.raises(KubernetesUnavailableError) as caught:
        for event in driver.watch("v1", "ConfigMap", "d", timeout_seconds=120):
            seen.append(event.type)
            stub.close()  # and the server does not come back at once
    assert seen == ["ADDED"]
    _assert_retryable_line(caught.value, tmp_path, stub, "watch ConfigMap in namespace d: cluster API")


def test_a_watch_whose_server_stops_is_retryable_before_its_timeout(stubs: list[StubApi], tmp_path: Path) -> None:
    # The stream ends cleanly (a server shutting down closes its watches), then nothing listens.
    def ended(conn: socket.socket, head: bytes) -> None:
        if b"watch=true" not in head:
            _watch_cut(conn, head)
            return
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        threading.Thread(target=stub.close, daemon=True).start()

    stub = StubApi(ended)
    with pytest.raises(KubernetesUnavailableError) as caught:
        list(_driver(stub, stubs, tmp_path).watch("v1", "ConfigMap", "d", timeout_seconds=120))
    _assert_retryable_line(caught.value, tmp_path, stub, "watch ConfigMap in namespace d: cluster API")


# -- TLS: a hang-up is "gone", a wrong certificate is not ------------------------------------------------------


def _close_at_once(conn: socket.socket, _: bytes) -> None:
    conn.close()


def _close_after_client_hello(conn: socket.socket, _: bytes) -> None:
    conn.recv(65536)
    reset(conn)


@pytest.mark.parametrize("hang_up", [_close_at_once, _close_after_client_hello], ids=["eof", "reset"])
def test_a_tls_handshake_the_server_hangs_up_on_is_retryable(
    hang_up: Handler, stubs: list[StubApi], tmp_path: Path
) -> None:
    pki = ensure_pki(tmp_path / "pki", "stub")
    stub = StubApi(hang_up, tls=pki)
    with pytest.raises(KubernetesUnavailableError) as caught:
        _driver(stub, stubs, tmp_path).server_version()
    _assert_retryable_line(caught.value, tmp_path, stub, "get /version: cluster API")


def _tls_server(pki: PkiFiles) -> Handler:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.apiserver_cert, pki.apiserver_key)

    def handle(conn: socket.socket, _: bytes) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            head = _read_head(tls)
            answer_json(tls, 200, DISCOVERY.get(_path(head), {}))

    return handle


def test_a_certificate_from_another_ca_stays_permanent(stubs: list[StubApi], tmp_path: Path) -> None:
    served = ensure_pki(tmp_path / "served", "stub")
    other = ensure_pki(tmp_path / "other", "other")
    stub = StubApi(_tls_server(served), tls=served)
    with pytest.raises(KubernetesApiError) as caught:
        _driver(stub, stubs, tmp_path, trusted=other).server_version()
    assert isinstance(caught.value, PermanentError) and not caught.value.retryable
    assert "TLS error" in str(caught.value) and "\n" not in str(caught.value)


def test_the_tls_stub_answers_when_the_ca_is_right(stubs: list[StubApi], tmp_path: Path) -> None:
    # The stub itself is sound: the hang-ups above are what make the difference.
    pki = ensure_pki(tmp_path / "pki", "stub")
    assert _driver(StubApi(_tls_server(pki), tls=pki), stubs, tmp_path).server_version() == "1.36"
