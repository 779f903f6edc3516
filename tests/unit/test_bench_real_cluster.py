"""The real-cluster benchmark's pure parts: the split of wall time, the memory peaks, the readiness reference,
the timing at the driver boundary, and what it adds to results.json and the README."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench import real_cluster as rc
from bench import report
from bench.common import BenchError, Metric
from sandbox.models import Stage


def test_the_split_adds_up_to_the_windows_and_counts_shared_time_once() -> None:
    spans = [
        rc.Span("terraform", 1.0, 4.0),
        rc.Span("git", 3.0, 5.0),  # overlaps terraform by 1 s: counted once
        rc.Span("kubernetes and Flux", 9.0, 12.0),  # ends after the window: clipped
        rc.Span("git", 20.0, 21.0),  # outside every window
    ]
    seconds = rc.split([(0.0, 10.0), (15.0, 16.0)], spans)
    assert seconds == pytest.approx({"terraform": 3.0, "git": 1.0, "kubernetes and Flux": 1.0, rc.OWN: 6.0})
    assert sum(seconds.values()) == pytest.approx(11.0)
    assert rc.own_share_pct(seconds) == pytest.approx(100 * 6 / 11)


def test_no_span_is_all_own_and_no_time_is_an_error() -> None:
    assert rc.split([(2.0, 3.5)], []) == {rc.OWN: 1.5}
    with pytest.raises(BenchError, match="no time"):
        rc.own_share_pct({rc.OWN: 0.0})


def test_memory_samples_sum_a_components_processes_and_keep_each_peak() -> None:
    first = rc.sample_of([("kube-apiserver", 300), ("etcd", 50), ("etcd", 10), ("kwok", 0)])
    assert first == {"kube-apiserver": 300, "etcd": 60}  # a process gone meanwhile (RSS 0) is left out
    peaks: dict[str, int] = {}
    total = rc.add_sample(peaks, first, 0)
    total = rc.add_sample(peaks, {"kube-apiserver": 200, "etcd": 90, "source-controller": 70}, total)
    assert peaks == {"kube-apiserver": 300, "etcd": 90, "source-controller": 70}
    assert total == 360  # the peak of the sum (first sample), not the sum of the peaks (460)


def _kustomization(*, generation: int, observed: int, ready: str, condition_generation: int | None = None) -> Any:
    condition: dict[str, Any] = {"type": "Ready", "status": ready}
    if condition_generation is not None:
        condition["observedGeneration"] = condition_generation
    return {
        "metadata": {"name": "platform-configs", "generation": generation},
        "spec": {},
        "status": {"observedGeneration": observed, "conditions": [condition]},
    }


def test_the_reference_is_ready_only_for_the_current_generation_and_not_suspended() -> None:
    assert rc.ready_now(_kustomization(generation=3, observed=3, ready="True", condition_generation=3))
    assert rc.ready_now(_kustomization(generation=3, observed=3, ready="True"))
    # The condition left over from before the resume: True, but of an older generation.
    assert not rc.ready_now(_kustomization(generation=3, observed=3, ready="True", condition_generation=2))
    assert not rc.ready_now(_kustomization(generation=3, observed=2, ready="True"))
    assert not rc.ready_now(_kustomization(generation=3, observed=3, ready="False"))
    suspended = _kustomization(generation=3, observed=3, ready="True")
    suspended["spec"]["suspend"] = True
    assert not rc.ready_now(suspended)
    assert not rc.ready_now({"metadata": {"generation": 1}, "status": {"observedGeneration": 1}})


def test_a_readiness_ratio_is_product_over_kubectl_and_kubectl_before_the_resume_is_an_error() -> None:
    assert rc.Latencies(product_ms=400, kubectl_ms=500, reference_ms=390).ratio == pytest.approx(0.8)
    with pytest.raises(BenchError, match="before it"):
        rc.Latencies(product_ms=400, kubectl_ms=0, reference_ms=390).ratio  # noqa: B018


class _Driver:
    def __init__(self, recorder: rc.Recorder) -> None:
        self.recorder = recorder
        self.name = "a driver"

    def outer(self, inner: Any) -> str:
        inner.nested()
        return "done"

    def nested(self) -> None:
        pass


def test_only_the_stage_threads_outermost_calls_are_recorded() -> None:
    recorder = rc.Recorder()
    driver = rc.Timed(_Driver(recorder), "git", recorder)
    other = rc.Timed(_Driver(recorder), "terraform", recorder)
    assert driver.name == "a driver"  # attributes pass through untimed
    assert driver.outer(other) == "done"  # a terraform call inside a git call: one git span
    assert [span.category for span in recorder.spans] == ["git"]
    worker = threading.Thread(target=lambda: other.nested())  # a watch thread's calls are inside the wait
    worker.start()
    worker.join()
    other.nested()
    assert [span.category for span in recorder.spans] == ["git", "terraform"]
    assert all(span.end >= span.start for span in recorder.spans)


def test_timed_waits_restore_the_products_functions() -> None:
    import importlib

    flux = importlib.import_module("sandbox.flux")
    git = importlib.import_module("sandbox.drivers.git")
    before = (flux.watch_until, git.run)
    with rc.timed_waits(rc.Recorder()):
        assert (flux.watch_until, git.run) != before
    assert (flux.watch_until, git.run) == before


def _figures() -> rc.RunFigures:
    return rc.RunFigures(
        seconds={rc.OWN: 2.0, "terraform": 30.0, "kubernetes and Flux": 8.0},
        by_stage={Stage.provision: {rc.OWN: 0.5, "terraform": 12.0}},
        cpu_seconds=4.0,
        readiness=[rc.Latencies(410, 400, 390), rc.Latencies(300, 320, 290), rc.Latencies(500, 450, 440)],
        peaks={"kube-apiserver": 340 * 2**20, "etcd": 50 * 2**20},
        total_peak=900 * 2**20,
        memory_samples=80,
    )


def test_the_three_figures_of_a_run() -> None:
    own, readiness, memory = rc.metrics_of([_figures()], "kubectl v1.36.3")
    assert own.value == pytest.approx(5.0) and own.passed
    assert "terraform 30.0 s" in own.note and "provision 0.50/12.5" in own.note
    assert readiness.samples == pytest.approx([410 / 400, 300 / 320, 500 / 450])
    assert readiness.peers == {"kubectl": "kubectl v1.36.3"}
    assert "wait_ready 410, kubectl wait 400" in readiness.note
    assert memory.value == pytest.approx(900) and "kube-apiserver 340, etcd 50" in memory.note


def test_without_the_toolchain_the_group_names_make_toolchain(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.errors import ToolNotFoundError

    def missing(name: str) -> Path:
        raise ToolNotFoundError(f"{name} v1 is not built: run `make toolchain`")

    monkeypatch.setattr(rc.toolchain, "locate", missing)
    with pytest.raises(BenchError, match=r"etcd v1 is not built.*make toolchain"):
        rc.run(1, 1)


def _metric(name: str, value: float) -> Metric:
    return Metric(name=name, bar=5, better="lower", unit="%", description="d", samples=[value])


def test_results_record_when_and_where_each_group_measured(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    info = {"date": "2026-12-07 14:00 UTC", "cpu count": "2"}
    report.write_results([_metric("scan", 1.0)], errors={"real-cluster": "BenchError: x"}, path=path)
    report.write_results(
        [_metric("real_lifecycle_own_share_pct", 3.14)], path=path, merge=True, measured={"real-cluster": info}
    )
    results = json.loads(path.read_text())
    assert results["real_lifecycle_own_share_pct"] == 3.1 and results["scan"] == 1.0
    assert results["measured"] == {"real-cluster": info}
    assert "errors" not in results  # measured now: the earlier run's error is gone
    assert set(report.run_info(datetime(2026, 12, 7, 14, 0, tzinfo=UTC))) >= {"date", "cpu count", "load average"}


def test_a_merge_writes_the_analysis_as_report_py_has_it_and_keeps_the_profile(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    started = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    report.write_readme([_metric("scan", 1.0)], started=started, seconds=60, profiled=None, profile=None, path=path)
    stale = path.read_text().replace(report.ANALYSIS.rstrip(), "an old analysis")
    path.write_text(stale + "\n### Profile of `scan` (closest to its bar: 20% of it)\n\nPROFILE-BODY\n")
    report.merge_readme([_metric("real_lifecycle_own_share_pct", 3.0)], started=started, groups=["x"], path=path)
    text = path.read_text()
    assert "an old analysis" not in text and text.count(report.ANALYSIS.rstrip()) == 1
    assert text.index(report.ANALYSIS.rstrip()) < text.index("### Profile of `scan`") < text.index("PROFILE-BODY")
    assert "| `real_lifecycle_own_share_pct` | 3.0 % | ≤ 5 | ok | 3.0 |" in text


def test_several_lifecycles_give_one_sample_each_and_their_split_is_summed() -> None:
    second = _figures()
    second.seconds = {rc.OWN: 8.0, "terraform": 32.0}
    second.total_peak = 1000 * 2**20
    second.peaks = {"kube-apiserver": 360 * 2**20}
    own, readiness, memory = rc.metrics_of([_figures(), second], "kubectl v1.36.3")
    assert own.samples == pytest.approx([5.0, 20.0])
    assert "over the 2 lifecycles, 80.0 s of stages: terraform 62.0 s, own 10.0 s" in own.note
    assert len(readiness.samples) == 6
    assert memory.samples == pytest.approx([900, 1000]) and "kube-apiserver 360, etcd 50" in memory.note
