"""The Kubernetes Job load generator: any load image, run inside the sandbox cluster.

The load then comes from where production's traffic would (inside the
cluster's network, past its ingress or straight at a service) instead of from
the machine running the flow. The run:

1. :meth:`KubernetesJobLoadGenerator.prepare` builds the ``batch/v1`` Job
   (nothing is sent yet): one pod, ``restartPolicy: Never``, ``backoffLimit: 0``,
   an ``activeDeadlineSeconds`` of the run time plus a margin, the scenario in
   ``LOAD_*`` environment variables.
2. :meth:`~KubernetesJobLoadGenerator.run` applies it through the
   :class:`~sandbox.drivers.cluster.ClusterDriver`, watches the Job until it is
   ``Complete`` or ``Failed``, reads its pod's log through a
   :class:`PodLogSource`, parses the result line, and deletes the Job (its pods
   go with it) whatever happened.

The image may be anything (k6, locust, vegeta, a script) as long as it reads
the ``LOAD_*`` variables and prints one result line: a JSON object with
``"format": "fleet-sandbox.load-result/v1"`` and the metrics. The contract is
documented in ``docs/load-results.md``; :func:`parse_load_result` reads it.

The simulated cluster runs no pods, so this generator needs a real cluster.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import kubernetes.client
import kubernetes.config
import urllib3
import yaml
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from pydantic import ValidationError

from sandbox.drivers.cluster import ClusterDriver, Manifest, ObjectRef
from sandbox.drivers.load import LoadMetrics
from sandbox.errors import (
    ClusterError,
    ClusterUnreachableError,
    CommandFailedError,
    ConfigError,
    InvalidInputError,
    PermanentError,
    SandboxError,
)
from sandbox.progress import Progress, quiet

#: The ``format`` value of a result line (see docs/load-results.md).
RESULT_FORMAT = "fleet-sandbox.load-result/v1"
#: The label that ties a load run's Job and pod together.
RUN_LABEL = "fleet-sandbox.io/load-run"
#: The container that runs the load (whose log holds the result).
CONTAINER_NAME = "load"
JOB_API = "batch/v1"

JobOutcome = Literal["succeeded", "failed"]


class LoadJobTimeoutError(PermanentError):
    """The load Job did not finish within its deadline."""


@runtime_checkable
class PodLogSource(Protocol):
    """Reads a container's log (``GET /api/v1/namespaces/{ns}/pods/{pod}/log``)."""

    def read_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """The container's log as text.

        Raises:
            ClusterUnreachableError: No answer (retryable).
            ClusterError: Refused (no such pod, forbidden).
        """
        ...


class KubernetesPodLogs:
    """A :class:`PodLogSource` over the ``kubernetes`` client's ``CoreV1Api``.

    Args:
        api_client: An ApiClient for the cluster.
        request_timeout: Seconds a request may take.
    """

    def __init__(self, api_client: kubernetes.client.ApiClient, request_timeout: float = 30.0) -> None:
        self._api = kubernetes.client.CoreV1Api(api_client)
        self._request_timeout = request_timeout

    @classmethod
    def from_kubeconfig_text(cls, kubeconfig: str, context: str | None = None) -> KubernetesPodLogs:
        """A log reader from kubeconfig *content* (kept off disk).

        Raises:
            ConfigError: The text is not a usable kubeconfig (the message never quotes it).
        """
        try:
            document = yaml.safe_load(kubeconfig)
            if not isinstance(document, dict):
                raise ConfigError("kubeconfig (text): not a kubeconfig document")
            client = kubernetes.config.new_client_from_config_dict(document, context=context, persist_config=False)
        except (yaml.YAMLError, ConfigException, TypeError, ValueError, KeyError):
            raise ConfigError("kubeconfig (text): not a usable kubeconfig") from None
        return cls(client)

    def read_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """The container's log as text."""
        target = f"Pod/{namespace}/{pod}/log"
        try:
            text = self._api.read_namespaced_pod_log(
                pod, namespace, container=container, _request_timeout=self._request_timeout
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            line = f"get {target}: {status} {exc.reason or ''}".strip()
            if status in (408, 429) or status >= 500:
                raise ClusterUnreachableError(line) from None
            raise ClusterError(line) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnreachableError(f"get {target}: cluster API unreachable ({type(exc).__name__})") from None
        return str(text or "")


def parse_load_result(log_text: str, *, source: str = "load job log") -> LoadMetrics:
    """The metrics of the last result line in a load container's log.

    A result line is a JSON object alone on its line with
    ``"format": "fleet-sandbox.load-result/v1"``; other lines are ignored.

    Raises:
        CommandFailedError: No result line, or one with missing or invalid metrics.
    """
    found: dict[str, Any] | None = None
    for line in log_text.splitlines():
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("format") == RESULT_FORMAT:
            found = data
    if found is None:
        raise CommandFailedError(f"{source}: no result line with format {RESULT_FORMAT!r}")
    try:
        return LoadMetrics.model_validate({k: v for k, v in found.items() if k not in ("format", "error_rate")})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CommandFailedError(f"{source}: invalid result line: {where}: {first['msg']}") from None


def job_outcome(job: Mapping[str, Any]) -> JobOutcome | None:
    """``succeeded`` / ``failed`` once a Job has finished, else ``None``."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded"
        if condition.get("type") in ("Failed", "FailureTarget"):
            return "failed"
    return None


def _failure_reason(job: Mapping[str, Any]) -> str:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Failed", "FailureTarget") and condition.get("status") == "True":
            return f"{condition.get('reason') or 'Failed'}: {condition.get('message') or ''}".strip(": ")
    return "Failed"


def _log_tail(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else "…" + flat[-limit:]


class KubernetesJobLoadGenerator:
    """A :class:`~sandbox.drivers.load.LoadGenerator` that runs a load image as a Job.

    Args:
        cluster: The sandbox cluster.
        logs: Reads the load pod's log.
        image: The load image (it must print a result line, docs/load-results.md).
        namespace: Where the Job runs.
        command: The container's ``command`` (the image's entrypoint when empty).
        args: The container's ``args``.
        env: Extra environment variables for the container.
        deadline_margin_seconds: Time on top of the run time before the Job is
            given up on (image pull, start, reporting).
        progress: Called with one line per step.
    """

    def __init__(
        self,
        cluster: ClusterDriver,
        logs: PodLogSource,
        *,
        image: str,
        namespace: str = "default",
        command: Sequence[str] = (),
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        deadline_margin_seconds: float = 300.0,
        progress: Progress | None = None,
    ) -> None:
        if not image:
            raise ConfigError("the kubernetes-job load generator needs an image")
        self.cluster = cluster
        self.logs = logs
        self.image = image
        self.namespace = namespace
        self.command = list(command)
        self.args = list(args)
        self.env = dict(env or {})
        self.deadline_margin_seconds = deadline_margin_seconds
        self.progress = progress or quiet

    def prepare(
        self,
        target_url: str,
        *,
        users: int,
        duration_seconds: float,
        spawn_rate: float | None = None,
        run_id: str | None = None,
    ) -> Manifest:
        """The Job manifest for one load run (nothing is sent).

        Raises:
            InvalidInputError: Bad URL, users, duration or spawn rate.
        """
        if not target_url.startswith(("http://", "https://")):
            raise InvalidInputError(f"load target {target_url!r} is not an http(s) URL")
        if users < 1 or duration_seconds <= 0:
            raise InvalidInputError("load needs at least one user and a positive duration")
        if spawn_rate is not None and spawn_rate <= 0:
            raise InvalidInputError("the spawn rate must be positive")
        run_id = run_id or uuid.uuid4().hex[:10]
        labels = {"app.kubernetes.io/managed-by": "fleet-sandbox", RUN_LABEL: run_id}
        env = {
            **self.env,
            "LOAD_TARGET_URL": target_url,
            "LOAD_USERS": str(users),
            "LOAD_SPAWN_RATE": f"{spawn_rate if spawn_rate is not None else users:g}",
            "LOAD_DURATION_SECONDS": f"{duration_seconds:g}",
            "LOAD_RESULT_FORMAT": RESULT_FORMAT,
        }
        container: Manifest = {
            "name": CONTAINER_NAME,
            "image": self.image,
            "env": [{"name": k, "value": v} for k, v in env.items()],
        }
        if self.command:
            container["command"] = list(self.command)
        if self.args:
            container["args"] = list(self.args)
        return {
            "apiVersion": JOB_API,
            "kind": "Job",
            "metadata": {"name": f"fleet-sandbox-load-{run_id}", "namespace": self.namespace, "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": int(duration_seconds + self.deadline_margin_seconds),
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"restartPolicy": "Never", "containers": [container]},
                },
            },
        }

    def run(
        self, target_url: str, *, users: int, duration_seconds: float, spawn_rate: float | None = None
    ) -> LoadMetrics:
        """Run the Job, wait for it, read and parse its result line; the Job is deleted afterwards."""
        manifest = self.prepare(target_url, users=users, duration_seconds=duration_seconds, spawn_rate=spawn_rate)
        ref = ObjectRef.of(manifest)
        run_id = manifest["metadata"]["labels"][RUN_LABEL]
        deadline = time.monotonic() + duration_seconds + self.deadline_margin_seconds
        self.cluster.apply(manifest)
        self.progress(f"load job {ref} started ({self.image}, {users} users, {duration_seconds:g}s)")
        try:
            job, outcome = self._wait(ref, run_id, deadline)
            pod = self._pod(run_id)
            log = self.logs.read_log(self.namespace, pod, CONTAINER_NAME) if pod else ""
            if outcome == "failed":
                raise CommandFailedError(
                    f"load job {ref} failed: {_failure_reason(job)}" + (f"; log: {_log_tail(log)}" if log else "")
                )
            if pod is None:
                raise CommandFailedError(f"load job {ref} completed but its pod is gone; no result to read")
            metrics = parse_load_result(log, source=f"log of pod {self.namespace}/{pod}")
            self.progress(f"load job {ref} completed: {metrics.requests} requests")
            return metrics
        finally:
            try:
                self.cluster.delete(ref)
            except SandboxError as exc:  # the Job's TTL removes it later; the result stands
                self.progress(f"could not delete load job {ref}: {exc}")

    def _wait(self, ref: ObjectRef, run_id: str, deadline: float) -> tuple[Manifest, JobOutcome]:
        selector = f"{RUN_LABEL}={run_id}"
        while (remaining := deadline - time.monotonic()) > 0:
            for event in self.cluster.watch(
                JOB_API, "Job", namespace=self.namespace, label_selector=selector, timeout_seconds=remaining
            ):
                if event.type == "DELETED":
                    raise CommandFailedError(f"load job {ref} was deleted before it finished")
                outcome = job_outcome(event.object)
                if outcome is not None:
                    return event.object, outcome
        raise LoadJobTimeoutError(
            f"load job {ref} did not finish within {self.deadline_margin_seconds:g}s of its run time"
        )

    def _pod(self, run_id: str) -> str | None:
        pods = self.cluster.list("v1", "Pod", namespace=self.namespace, label_selector=f"{RUN_LABEL}={run_id}")
        if not pods:
            return None
        newest = max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
        return str(newest["metadata"]["name"])
