"""Benchmarks: what the orchestration costs, measured (``make bench``, ``python -m bench``).

Every figure is a ratio or a rate measured within one run, repeated, and the
median is kept, so it holds on a noisy shared machine. ``python -m bench``
writes ``bench/results.json`` (flat ``metric: number``, plus ``peers``: the outside
programs a ratio was measured against, with their versions, and ``measured``: each
group's date and machine) and the table in
``bench/README.md``; ``bench/.work/`` is scratch space (git-ignored).

Modules, one per metric group:

* :mod:`bench.lifecycle` -- ``lifecycle_overhead_ratio`` and
  ``resume_after_last_stage_ratio`` (the demo lifecycle through Prefect);
* :mod:`bench.readiness` -- ``readiness_detection_latency_ms``;
* :mod:`bench.scan` -- ``scan_manifests_per_second``;
* :mod:`bench.resolve` -- ``resolve_10k_tags_ms`` and ``resolve_vs_masterminds_ratio``
  (the project's resolver / ``semver-peer``, Flux's code path in Go; group ``resolve-peer``);
* :mod:`bench.real_cluster` -- ``real_lifecycle_own_share_pct``, ``real_readiness_vs_kubectl_ratio`` and
  ``real_cluster_peak_rss_mb`` (the local demo's lifecycle on real local clusters; group ``real-cluster``,
  which needs ``make toolchain``);
* :mod:`bench.report` -- ``results.json`` and ``README.md``.
"""
