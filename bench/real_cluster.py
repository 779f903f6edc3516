"""The product on a real local cluster (Kubernetes and Flux built by ``make toolchain``): whose time, how fast, how big.

One run of the local demo's lifecycle (``sandbox.demo.local_demo_request``: provision through the example fleet's
``infra/local-cluster`` stack with real terraform, clone, bootstrap Flux, validate, performance-test, teardown,
promote), with the stage functions called directly as ``bench.common.DirectLifecycle`` does (Prefect's own share is
``lifecycle_overhead_ratio``'s business), and three figures from it:

* ``real_lifecycle_own_share_pct`` -- the share of the lifecycle's wall time that is the product's own. The stage
  thread's wall time is split at the driver boundary: time inside a call into an outside system is *waiting*, by
  what it waits on, and the rest is *own* (see :func:`split`). The outside systems are the cluster driver's calls
  and the product's waits on the cluster (``sandbox.flux.watch_until``: readiness and teardown watches;
  ``wait_for_crds_established``), the terraform driver (which starts and stops the cluster: ``python -m
  sandbox.localcluster up``/``down`` run by the stack's local-exec), the git driver and the git-hosting driver
  (git subprocesses), and the load generator (a fixed-length load). Only the outermost call on the stage thread
  counts, so a watch's own list calls are not counted twice, and the watch threads' time is inside the wait.
  What the product computes while it waits (each watch event's readiness check) is counted as waiting; the
  process's CPU time over the same window, in the note, bounds it from the other side.
* ``real_readiness_vs_kubectl_ratio`` -- on the live cluster, between performance-test and teardown: the Kustomization
  ``platform-configs`` is suspended, then, while ``sandbox.flux.wait_ready`` (validate's wait, through the
  ``KubernetesClusterDriver``) and ``kubectl wait --for=condition=Ready`` both wait on it, resumed. A third observer,
  a plain watch on Kustomizations, marks the moment it turns Ready for its current generation (the condition's
  ``lastTransitionTime`` has one-second resolution, and a Ready condition can stay True through a resume). Each
  waiter's latency is its return minus that moment; the figure is product / kubectl per repetition, median kept.
* ``real_cluster_peak_rss_mb`` -- the peak, over the lifecycle, of the summed resident memory of every process that
  carries the cluster's marker (``sandbox.localcluster.processes``: etcd, kube-apiserver, controller-manager,
  scheduler, kwok, the host kubelet and the Flux controllers it runs), sampled every half second.

Every process of the cluster is stopped at the end, whatever happened (the teardown stage does it; what is left
is terminated and named as this group's error).
"""

from __future__ import annotations

import importlib
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    WORK_DIR,
    BenchError,
    DirectLifecycle,
    Metric,
    discard,
    fresh_dir,
    log,
    median,
    new_workdir,
)
from sandbox import localcluster, toolchain
from sandbox.context import SandboxContext
from sandbox.drivers.cluster import KUSTOMIZATION_API, ClusterDriver, ObjectRef
from sandbox.errors import ToolNotFoundError
from sandbox.models import Stage

#: Lifecycles, each on its own local cluster, one after the other (each figure is the median over them).
LIFECYCLES = 3
#: Readiness repetitions within each lifecycle (the figure is the median over all of them).
READINESS_REPETITIONS = 3
#: Seconds both waiters get to start waiting before the Kustomization is resumed.
SETTLE_SECONDS = 2.0
#: Seconds a resumed Kustomization may take to turn Ready on a loaded machine.
READY_TIMEOUT = 180.0
#: Seconds between two memory samples.
SAMPLE_SECONDS = 0.5
#: Where this group works.
GROUP_DIR = WORK_DIR / "real-cluster"
#: The toolchain binaries a local cluster runs (``make toolchain`` builds them).
BINARIES = localcluster.BINARIES
#: The object the readiness figure waits on (the local fleet's platform configs).
PROBE = ObjectRef(KUSTOMIZATION_API, "Kustomization", "platform-configs", "flux-system")

#: What the waiting is on, by category (the README's split).
KUBERNETES, TERRAFORM, GIT, HOSTING, LOAD = "kubernetes and Flux", "terraform", "git", "git hosting", "load test"
OWN = "own"

BEFORE_READINESS = (Stage.provision, Stage.clone, Stage.bootstrap, Stage.validate, Stage.performance_test)
AFTER_READINESS = (Stage.teardown, Stage.promote)


# -- the split of wall time (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One outermost call into an outside system on the stage thread (``time.perf_counter`` seconds)."""

    category: str
    start: float
    end: float


def split(windows: Sequence[tuple[float, float]], spans: Sequence[Span]) -> dict[str, float]:
    """Seconds of the ``windows`` (the lifecycle's stages) spent waiting, by category, and ``own`` (the rest).

    Spans are clipped to the windows; time that two spans share is counted once (for the earlier one), so the
    categories and ``own`` add up to the windows' total length.
    """
    result: dict[str, float] = {OWN: 0.0}
    for window_start, window_end in windows:
        covered_until = window_start
        waited = 0.0
        for span in sorted(spans, key=lambda s: (s.start, s.end)):
            start, end = max(span.start, covered_until), min(span.end, window_end)
            if end <= start:
                continue
            result[span.category] = result.get(span.category, 0.0) + (end - start)
            waited += end - start
            covered_until = end
        result[OWN] += max(0.0, (window_end - window_start) - waited)
    return result


def own_share_pct(seconds: Mapping[str, float]) -> float:
    """The ``own`` part of a :func:`split`, in percent of its total."""
    total = sum(seconds.values())
    if total <= 0:
        raise BenchError("the lifecycle took no time (nothing was measured)")
    return 100 * seconds.get(OWN, 0.0) / total


# -- the memory of the cluster's processes (pure parts) -----------------------------------------


def add_sample(peaks: dict[str, int], sample: Mapping[str, int], total_peak: int) -> int:
    """Fold one sample (component -> RSS bytes) into the per-component ``peaks``; the new peak of the sum."""
    for component, rss in sample.items():
        peaks[component] = max(peaks.get(component, 0), rss)
    return max(total_peak, sum(sample.values()))


def sample_of(processes: Sequence[tuple[str, int]]) -> dict[str, int]:
    """``(component, rss bytes)`` per process -> RSS per component (processes of one component summed)."""
    sample: dict[str, int] = {}
    for component, rss in processes:
        if rss > 0:
            sample[component] = sample.get(component, 0) + rss
    return sample


class MemorySampler:
    """Samples the RSS of every local-cluster process below ``root`` in a thread, keeping the peaks."""

    def __init__(self, root: Path, interval: float = SAMPLE_SECONDS) -> None:
        self.root = root
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self.total_peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        from sandbox.localcluster.processes import below, find_local_cluster_processes, rss_bytes

        while not self._stop.wait(self.interval):
            found = below(self.root, find_local_cluster_processes())
            sample = sample_of([(p.component, rss_bytes(p.pid)) for p in found])
            if sample:
                self.total_peak = add_sample(self.peaks, sample, self.total_peak)
                self.samples += 1

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# -- timing at the driver boundary ----------------------------------------------------------------


class Recorder:
    """Records the outermost calls into outside systems made on one thread (the stage thread)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.thread = threading.get_ident()
        self._depth = 0

    @contextmanager
    def span(self, category: str) -> Iterator[None]:
        """Time the body as waiting on ``category``, when it is the stage thread's outermost call."""
        if threading.get_ident() != self.thread or self._depth:
            if threading.get_ident() == self.thread:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
            else:
                yield
            return
        self._depth = 1
        start = time.perf_counter()
        try:
            yield
        finally:
            self._depth = 0
            self.spans.append(Span(category, start, time.perf_counter()))

    def timed(self, function: Callable[..., Any], category: str) -> Callable[..., Any]:
        """``function`` with its calls recorded as waiting on ``category``."""

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.span(category):
                return function(*args, **kwargs)

        return call


class Timed:
    """A driver whose public method calls are recorded as waiting on ``category`` (attributes pass through)."""

    def __init__(self, target: Any, category: str, recorder: Recorder) -> None:
        self._target = target
        self._category = category
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name.startswith("_") or not callable(value):
            return value
        return self._recorder.timed(value, self._category)


class TimedContext(SandboxContext):
    """The stage context with its cluster driver timed (connected lazily, as the product's)."""

    recorder: Recorder | None = None

    def cluster(self) -> ClusterDriver:
        """The sandbox's cluster driver, each call recorded as waiting on Kubernetes."""
        driver = super().cluster()
        assert self.recorder is not None
        return Timed(driver, KUBERNETES, self.recorder)


@contextmanager
def timed_waits(recorder: Recorder) -> Iterator[None]:
    """The product's own waits on the cluster, and its load generators, recorded for the duration."""
    # By module (``sandbox.stages`` exports each stage's function under its module's name).
    flux, teardown, bootstrap, perf, git, terraform = (
        importlib.import_module(f"sandbox.{name}")
        for name in ("flux", "teardown", "stages.bootstrap", "stages.performance", "drivers.git", "drivers.terraform")
    )
    patches: list[tuple[Any, str, str]] = [
        (flux, "watch_until", KUBERNETES),
        (teardown, "watch_until", KUBERNETES),
        (bootstrap, "wait_for_crds_established", KUBERNETES),
        # Every git and terraform subprocess, also of a driver built outside the context (the fleet policy's git).
        (git, "run", GIT),
        (terraform, "run", TERRAFORM),
    ]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    builders = [(perf, name, getattr(perf, name)) for name in ("build_load_generator", "build_job_load_generator")]
    try:
        for module, name, category in patches:
            setattr(module, name, recorder.timed(getattr(module, name), category))
        for module, name, build in builders:
            setattr(module, name, _timed_builder(build, recorder))
        yield
    finally:
        for module, name, original in originals + builders:
            setattr(module, name, original)


def _timed_builder(build: Callable[..., Any], recorder: Recorder) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return Timed(build(*args, **kwargs), LOAD, recorder)

    return wrapped


class TimedLifecycle(DirectLifecycle):
    """The local demo's lifecycle with every driver timed (see the module docstring)."""

    def __init__(self, config_path: Path, recorder: Recorder) -> None:
        from sandbox.demo import local_demo_request

        super().__init__(config_path, local_demo_request(config_path).model_copy(update={"keep_on_failure": True}))
        drivers = self.ctx.drivers
        drivers.git = Timed(drivers.git, GIT, recorder)
        drivers.terraform = Timed(drivers.terraform, TERRAFORM, recorder)
        drivers.hosting = Timed(drivers.hosting, HOSTING, recorder)
        ctx = TimedContext(config=self.config, inventory=self.inventory, drivers=drivers, record=self.ctx.record)
        ctx.recorder = recorder
        self.ctx = ctx


# -- readiness: the product's wait beside kubectl wait --------------------------------------------


def ready_now(obj: Mapping[str, Any]) -> bool:
    """The reference: not suspended, and Ready=True for its current generation (condition and status agree)."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    if spec.get("suspend") or status.get("observedGeneration") != generation:
        return False
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            observed = condition.get("observedGeneration", generation)
            return bool(condition.get("status") == "True" and observed == generation)
    return False


def condition_ready(obj: Mapping[str, Any]) -> bool:
    """kubectl wait's rule: the Ready condition is True for the current generation (``status.observedGeneration``
    is not looked at)."""
    generation = (obj.get("metadata") or {}).get("generation")
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            observed = condition.get("observedGeneration", generation)
            return bool(condition.get("status") == "True" and observed == generation)
    return False


@dataclass
class Latencies:
    """One repetition, in milliseconds from the resume: when each observer saw the Kustomization Ready."""

    product_ms: float
    kubectl_ms: float
    reference_ms: float
    #: When the Ready condition alone held (kubectl's rule); ``reference_ms`` also asks ``status.observedGeneration``.
    condition_ms: float | None = None

    @property
    def ratio(self) -> float:
        """wait_ready's return / kubectl wait's return, both from the resume."""
        if self.kubectl_ms <= 0:
            raise BenchError(f"kubectl wait returned {self.kubectl_ms:.0f} ms after the resume (before it)")
        return self.product_ms / self.kubectl_ms


@dataclass
class _Returns:
    times: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def readiness_once(
    connect: Callable[[], ClusterDriver], kubectl: str, kubeconfig: Path, config_path: Path
) -> Latencies:
    """Suspend :data:`PROBE`, start the three observers, resume it; each waiter's latency after the reference."""
    cluster, reference = connect(), connect()
    cluster.merge_patch(PROBE, {"spec": {"suspend": True}})
    returns = _Returns()
    stop = threading.Event()

    def watch() -> None:
        try:
            for event in reference.watch(
                KUSTOMIZATION_API, "Kustomization", namespace=PROBE.namespace, timeout_seconds=READY_TIMEOUT, stop=stop
            ):
                if (event.object.get("metadata") or {}).get("name") != PROBE.name:
                    continue
                if condition_ready(event.object):
                    returns.times.setdefault("condition", time.perf_counter())
                if ready_now(event.object):
                    returns.times.setdefault("reference", time.perf_counter())
                    return
        except Exception as exc:  # noqa: BLE001 - reported by the waiting thread
            returns.errors["reference"] = f"{type(exc).__name__}: {exc}"

    # Both waiters are processes of their own, as a user runs them (``sandbox validate``, ``kubectl wait``), each
    # timed here when it prints that the wait is over (kubectl's "condition met", the product's "ready"): not at
    # its exit, which for an interpreter holding a connection pool and watch threads is not part of the wait.
    argv = [kubectl, "--kubeconfig", str(kubeconfig), "wait", "--for=condition=Ready", f"--timeout={READY_TIMEOUT:g}s"]
    argv += ["-n", str(PROBE.namespace), f"kustomization/{PROBE.name}"]
    processes = {
        "product": subprocess.Popen(  # noqa: S603 - this interpreter, argv list
            [sys.executable, "-m", "bench.wait_ready_process", str(config_path), str(kubeconfig), f"{READY_TIMEOUT:g}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ),
        "kubectl": subprocess.Popen(  # noqa: S603 - kubectl from PATH, argv list
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        ),
    }
    connected = processes["product"].stdout.readline() if processes["product"].stdout else ""

    def waiter(name: str) -> Callable[[], None]:
        def wait() -> None:
            process = processes[name]
            said = process.stdout.readline() if process.stdout else ""
            if said:
                returns.times[name] = time.perf_counter()
            out, err = process.communicate()
            out = said + out
            if process.returncode != 0:
                returns.errors[name] = f"exit {process.returncode}: {(out + err).strip()[-300:]}"

        return wait

    threads = [threading.Thread(target=t, daemon=True) for t in (watch, waiter("product"), waiter("kubectl"))]
    try:
        if connected.strip() != "connected":
            raise BenchError(f"the product's waiter did not connect: {connected.strip() or 'no output'}")
        for thread in threads:
            thread.start()
        time.sleep(SETTLE_SECONDS)
        early = [name for name in ("product", "kubectl") if name in returns.times or name in returns.errors]
        if early:
            raise BenchError(f"{' and '.join(early)} returned before {PROBE} was resumed: {returns.errors or ''}")
        resumed = time.perf_counter()
        cluster.merge_patch(PROBE, {"spec": {"suspend": False}})
        for thread in threads:
            thread.join(timeout=READY_TIMEOUT + 30)
    finally:
        stop.set()
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        cluster.merge_patch(PROBE, {"spec": {"suspend": False}})
    if returns.errors:
        raise BenchError(f"a readiness waiter failed: {returns.errors}")
    missing = {"reference", "product", "kubectl"} - set(returns.times)
    if missing:
        raise BenchError(f"no return from {', '.join(sorted(missing))} within {READY_TIMEOUT:g}s of the resume")
    after = {name: (moment - resumed) * 1000 for name, moment in returns.times.items()}
    return Latencies(after["product"], after["kubectl"], after["reference"], after.get("condition"))


# -- the group ------------------------------------------------------------------------------------


def check_toolchain() -> dict[str, str]:
    """kubectl and terraform (or tofu) on PATH, the local cluster's binaries built; else a BenchError naming the fix."""
    for binary in BINARIES:
        try:
            toolchain.locate(binary)
        except ToolNotFoundError as exc:
            hint = "" if "make toolchain" in str(exc) else " (run `make toolchain`)"
            raise BenchError(f"no local cluster without the toolchain: {exc}{hint}") from exc
    found = {name: shutil.which(name) for name in ("kubectl", "git")}
    found["terraform"] = shutil.which("terraform") or shutil.which("tofu")
    missing = [name for name, path in found.items() if not path]
    if missing:
        raise BenchError(f"not on PATH: {', '.join(missing)} (the real-cluster figures need them; `make toolchain`)")
    return {name: str(path) for name, path in found.items()}


def kubectl_version(kubectl: str) -> str:
    """``kubectl <client version>``."""
    import json

    done = subprocess.run(  # noqa: S603 - kubectl from PATH, argv list
        [kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60, check=False
    )
    try:
        return f"kubectl {json.loads(done.stdout)['clientVersion']['gitVersion']}"
    except (ValueError, KeyError):
        return "kubectl (version unknown)"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class RunFigures:
    """What one lifecycle run measured."""

    seconds: dict[str, float]
    by_stage: dict[Stage, dict[str, float]]
    cpu_seconds: float
    readiness: list[Latencies]
    peaks: dict[str, int]
    total_peak: int
    memory_samples: int


def _windowed(lifecycle: TimedLifecycle, stages: Sequence[Stage], windows: dict[Stage, tuple[float, float]]) -> float:
    """Run ``stages`` one by one, each one's window recorded; this process's CPU seconds meanwhile."""
    cpu = _cpu_seconds()
    for stage in stages:
        start = time.perf_counter()
        try:
            lifecycle.run([stage])
        finally:
            windows[stage] = (start, time.perf_counter())
    return _cpu_seconds() - cpu


def measure(workdir: Path, tools: Mapping[str, str], repetitions: int) -> RunFigures:
    """One lifecycle on its own local cluster, the readiness repetitions between performance-test and teardown."""
    from sandbox.demo import prepare_local_demo
    from sandbox.localcluster.git_http import GitHttpServer
    from sandbox.localcluster.ports import pick_ports
    from sandbox.localcluster.processes import below, find_local_cluster_processes, terminate
    from sandbox.wiring import connect_cluster

    fresh_dir(workdir)
    port = pick_ports(1)[0]
    config_path = prepare_local_demo(workdir, sys.executable, port)
    recorder = Recorder()
    windows: dict[Stage, tuple[float, float]] = {}
    cpu = 0.0
    latencies: list[Latencies] = []
    with ExitStack() as stack:
        stack.enter_context(GitHttpServer(config_path.parent, port=port))
        sampler = stack.enter_context(MemorySampler(workdir))
        lifecycle = TimedLifecycle(config_path, recorder)
        stack.callback(lifecycle.close)
        try:
            with timed_waits(recorder):
                cpu += _windowed(lifecycle, BEFORE_READINESS, windows)
                log(f"real-cluster: {', '.join(s.value for s in BEFORE_READINESS)} done")
            outputs = lifecycle.ctx.cluster_module_outputs()
            kubeconfig = workdir / "bench.kubeconfig"
            kubeconfig.write_text(lifecycle.ctx.kubeconfig(), encoding="utf-8")
            kubeconfig.chmod(0o600)
            for index in range(repetitions):
                latencies.append(
                    readiness_once(
                        lambda: connect_cluster(lifecycle.config, outputs), tools["kubectl"], kubeconfig, config_path
                    )
                )
                last = latencies[-1]
                log(
                    f"real-cluster readiness {index + 1}/{repetitions}, ms after the resume: Ready (reference watch) "
                    f"{last.reference_ms:.0f}, wait_ready {last.product_ms:.0f}, kubectl wait {last.kubectl_ms:.0f}, "
                    f"the Ready condition alone {last.condition_ms or -1:.0f}"
                )
            with timed_waits(recorder):
                cpu += _windowed(lifecycle, AFTER_READINESS, windows)
        finally:
            left = below(workdir, find_local_cluster_processes())
            if left:  # a failed stage: stop the cluster as its terraform destroy would
                terminate(left, grace=10.0)
                named = ", ".join(sorted({p.component for p in left}))
                if sys.exc_info()[0] is None:
                    raise BenchError(f"the teardown left local-cluster processes running (stopped now): {named}")
                log(f"real-cluster: stopped what the failed run left: {named}")
    by_stage = {stage: split([window], recorder.spans) for stage, window in windows.items()}
    return RunFigures(
        split(list(windows.values()), recorder.spans),
        by_stage,
        cpu,
        latencies,
        sampler.peaks,
        sampler.total_peak,
        sampler.samples,
    )


def _mb(value: int) -> float:
    return value / 2**20


def combined(runs: Sequence[RunFigures]) -> RunFigures:
    """Several lifecycles' figures as one: seconds and CPU summed, readiness repetitions joined, the highest peaks."""
    seconds: dict[str, float] = {}
    by_stage: dict[Stage, dict[str, float]] = {}
    peaks: dict[str, int] = {}
    for figures in runs:
        for name, value in figures.seconds.items():
            seconds[name] = seconds.get(name, 0.0) + value
        for stage, part in figures.by_stage.items():
            into = by_stage.setdefault(stage, {})
            for name, value in part.items():
                into[name] = into.get(name, 0.0) + value
        for name, rss in figures.peaks.items():
            peaks[name] = max(peaks.get(name, 0), rss)
    return RunFigures(
        seconds=seconds,
        by_stage=by_stage,
        cpu_seconds=sum(f.cpu_seconds for f in runs),
        readiness=[latency for f in runs for latency in f.readiness],
        peaks=peaks,
        total_peak=max(f.total_peak for f in runs),
        memory_samples=sum(f.memory_samples for f in runs),
    )


def metrics_of(runs: Sequence[RunFigures], kubectl: str) -> list[Metric]:
    """The three figures: each lifecycle's own share and peak RSS, every readiness repetition's ratio."""
    figures = combined(runs)
    seconds = figures.seconds
    total = sum(seconds.values())
    parts = ", ".join(f"{name} {value:.1f} s" for name, value in sorted(seconds.items(), key=lambda item: -item[1]))
    stages = ", ".join(
        f"{stage.value} {part.get(OWN, 0.0):.2f}/{sum(part.values()):.1f}" for stage, part in figures.by_stage.items()
    )
    readiness = figures.readiness
    reference = [r.reference_ms for r in readiness]
    product = [r.product_ms for r in readiness]
    kube = [r.kubectl_ms for r in readiness]
    condition = [r.condition_ms if r.condition_ms is not None else r.reference_ms for r in readiness]

    def mid(values: Sequence[float]) -> str:
        return f"{median(values):.0f}"

    components = ", ".join(
        f"{name} {_mb(rss):.0f}" for name, rss in sorted(figures.peaks.items(), key=lambda item: -item[1])
    )
    over = f"over the {len(runs)} lifecycles" if len(runs) > 1 else "over the lifecycle"
    return [
        Metric(
            name="real_lifecycle_own_share_pct",
            bar=5,
            better="lower",
            unit="%",
            description="local-cluster lifecycle (stage functions, the `local` demo request): wall time outside "
            "every call into Kubernetes/Flux, terraform, git, git hosting and the load generator / wall time",
            samples=[own_share_pct(f.seconds) for f in runs],
            note=f"{over}, {total:.1f} s of stages: {parts}. Own/all seconds by stage: {stages}. "
            f"This process's CPU time over the same stages: {figures.cpu_seconds:.1f} s "
            f"({100 * figures.cpu_seconds / total:.1f}% of their wall time; it includes the watch threads, the git "
            "server's threads and the product's work while it waits).",
        ),
        Metric(
            name="real_readiness_vs_kubectl_ratio",
            bar=1,
            better="lower",
            unit="x",
            description="a suspended Kustomization resumed on the local cluster: validate's wait_ready returns / "
            "`kubectl wait --for=condition=Ready` on it returns (both from the resume; same run, per repetition)",
            samples=[r.ratio for r in readiness],
            note=f"medians, ms after the resume: the Ready condition True for the generation (kubectl's rule) "
            f"{mid(condition)}, and status.observedGeneration caught up too (the product's rule, Flux's kstatus) "
            f"{mid(reference)}, both as a plain watch saw them; wait_ready said so at {mid(product)}, kubectl wait "
            f"at {mid(kube)}. Each after its own rule held: wait_ready "
            f"{mid([p - r for p, r in zip(product, reference, strict=True)])}, kubectl wait "
            f"{mid([k - c for k, c in zip(kube, condition, strict=True)])} (the watch is in this process, the "
            "waiters are not, so either can be negative).",
            peers={kubectl.split(" ", 1)[0]: kubectl},
        ),
        Metric(
            name="real_cluster_peak_rss_mb",
            bar=1536,
            better="lower",
            unit="MB",
            description="peak summed RSS of one local cluster's processes with Flux, sampled every "
            f"{SAMPLE_SECONDS:g} s during the lifecycle",
            samples=[_mb(f.total_peak) for f in runs],
            note=f"peak per process (MB, each its own peak, {figures.memory_samples} samples): {components}.",
        ),
    ]


def run(lifecycles: int = LIFECYCLES, repetitions: int = READINESS_REPETITIONS) -> list[Metric]:
    """The metrics: ``lifecycles`` lifecycles, one after the other, ``repetitions`` readiness comparisons in each."""
    tools = check_toolchain()
    fresh_dir(GROUP_DIR)
    runs = []
    for index in range(lifecycles):
        workdir = new_workdir(GROUP_DIR, "run")
        log(
            f"real-cluster: lifecycle {index + 1}/{lifecycles} of the local demo in {workdir} "
            f"(load average {os.getloadavg()[0]:.2f})"
        )
        runs.append(measure(workdir, tools, repetitions))
        discard(workdir)
        log(f"real-cluster: lifecycle {index + 1}/{lifecycles}: own share {own_share_pct(runs[-1].seconds):.1f}%")
    return metrics_of(runs, kubectl_version(tools["kubectl"]))
