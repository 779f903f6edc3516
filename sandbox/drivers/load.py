"""Load generators behind one Protocol, and a local HTTP target.

Three implementations of :class:`LoadGenerator`, chosen by
``drivers.load_generator.type`` (see :mod:`sandbox.wiring`):

* :class:`HttpLoadGenerator` (``http``, the demo's default) sends real HTTP
  requests from a pool of threads (bounded in time and count) and measures
  latency percentiles, throughput and errors itself.
* :class:`~sandbox.drivers.locust_load.LocustLoadGenerator` (``locust``) runs
  locust headless as a subprocess and parses its CSV statistics.
* :class:`~sandbox.drivers.job_load.KubernetesJobLoadGenerator`
  (``kubernetes-job``) runs a load image as a Job in the sandbox cluster and
  reads the result from its log (``docs/load-results.md``).

:func:`local_target` is a real HTTP server on loopback standing in for a
sandbox's ingress when the cluster is simulated (a simulated cluster has no
network endpoint of its own).
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, computed_field

from sandbox.errors import InvalidInputError


class LoadMetrics(BaseModel):
    """What a load run measured."""

    requests: int = Field(description="Requests sent")
    failures: int = Field(description="Requests that failed (errors or HTTP >= 400)")
    duration_seconds: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_rate(self) -> float:
        """Failures per request (0..1)."""
        return round(self.failures / self.requests, 6) if self.requests else 0.0


@runtime_checkable
class LoadGenerator(Protocol):
    """Runs a load scenario against a URL.

    Errors: :class:`~sandbox.errors.InvalidInputError` for a bad URL or
    settings; :class:`~sandbox.errors.SandboxError` subclasses when the load
    could not run at all. Failed *requests* are not errors: they are counted
    in :attr:`LoadMetrics.failures`.
    """

    def run(
        self, target_url: str, *, users: int, duration_seconds: float, spawn_rate: float | None = None
    ) -> LoadMetrics:
        """Send load for ``duration_seconds`` with ``users`` concurrent users.

        Args:
            target_url: The URL every simulated user requests.
            users: Concurrent simulated users.
            duration_seconds: How long the load runs.
            spawn_rate: Users started per second (all at once when ``None``).
        """
        ...


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, int(round(fraction * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


class HttpLoadGenerator:
    """Concurrent HTTP GET load from threads, each with a keep-alive connection.

    Args:
        max_requests: Upper bound on requests per run (keeps a run bounded in count).
        request_timeout: Seconds before one request counts as failed.
    """

    def __init__(self, max_requests: int = 200_000, request_timeout: float = 5.0) -> None:
        self.max_requests = max_requests
        self.request_timeout = request_timeout

    def run(
        self, target_url: str, *, users: int, duration_seconds: float, spawn_rate: float | None = None
    ) -> LoadMetrics:
        """Send load and measure it (users start ``1 / spawn_rate`` seconds apart)."""
        parts = urlsplit(target_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(f"load target {target_url!r} is not an http(s) URL")
        if users < 1 or duration_seconds <= 0:
            raise InvalidInputError("load needs at least one user and a positive duration")
        if spawn_rate is not None and spawn_rate <= 0:
            raise InvalidInputError("the spawn rate must be positive")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.hostname
        latencies: list[float] = []
        failures = 0
        lock = threading.Lock()
        budget = [self.max_requests]
        deadline = time.monotonic() + duration_seconds

        def user(index: int) -> None:
            nonlocal failures
            if spawn_rate and index:
                time.sleep(min(index / spawn_rate, max(0.0, deadline - time.monotonic())))
            conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = conn_cls(host, parts.port, timeout=self.request_timeout)
            local: list[float] = []
            local_failures = 0
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0:
                        break
                    budget[0] -= 1
                started = time.perf_counter()
                try:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    response.read()
                    if response.status >= 400:
                        local_failures += 1
                    local.append((time.perf_counter() - started) * 1000)
                except (OSError, http.client.HTTPException):
                    local_failures += 1
                    conn.close()
            conn.close()
            with lock:
                latencies.extend(local)
                failures += local_failures

        started_at = time.monotonic()
        threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(duration_seconds + self.request_timeout + 5)
        elapsed = max(time.monotonic() - started_at, 1e-9)
        latencies.sort()
        total = len(latencies) + failures
        return LoadMetrics(
            requests=total,
            failures=failures,
            duration_seconds=round(elapsed, 3),
            requests_per_second=round(total / elapsed, 2),
            p50_ms=round(percentile(latencies, 0.50), 3),
            p95_ms=round(percentile(latencies, 0.95), 3),
            p99_ms=round(percentile(latencies, 0.99), 3),
        )


def mean(values: list[float]) -> float:
    """Arithmetic mean (0 when empty)."""
    return statistics.fmean(values) if values else 0.0


class _TargetHandler(BaseHTTPRequestHandler):
    server: _TargetServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.server.delay_seconds:
            time.sleep(self.server.delay_seconds)
        body = b'{"hostname": "podinfo", "message": "greetings from the sandbox target"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return  # keep request logs out of the product's output


class _TargetServer(ThreadingHTTPServer):
    daemon_threads = True
    delay_seconds: float = 0.0


@contextmanager
def local_target(delay_seconds: float = 0.0) -> Iterator[str]:
    """Serve a small JSON endpoint on loopback for the duration; yields its URL.

    Args:
        delay_seconds: Added to every response (to model a slower service).
    """
    server = _TargetServer(("127.0.0.1", 0), _TargetHandler)
    server.delay_seconds = delay_seconds
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
