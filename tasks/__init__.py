"""Prefect tasks: the Prefect side of each step, over the Prefect-free core (``sandbox/``).

* **One module per lifecycle stage** (provision, clone, bootstrap, validate,
  performance_test_stage, teardown, promote), each a thin task around
  :func:`tasks.common.run_stage`: it loads the configuration, skips work the
  inventory records as done, runs the stage function from
  :mod:`sandbox.stages` and records the result with the inventory's stage
  bookkeeping (:meth:`sandbox.inventory.Inventory.recording_stage`; provision and validate also
  publish their plan or report as artifacts). Retries apply to retryable errors
  only; results are persisted under an explicit cache key per sandbox,
  lifecycle and stage.
* **The other flows' steps** (register, preflight, rollback, watch, align,
  release, cleanup), mostly as thin: they resolve secrets (Prefect Secret blocks
  or the environment), call the core and publish artifacts.
* **Not thin, because Prefect is their substance**: :mod:`tasks.locking` (the
  per-sandbox lock on Prefect's global concurrency limits, for a whole flow
  run) and :mod:`tasks.performance` (the performance flow's run records,
  reports and charts, and the teardown it must run outside tasks once a flow
  run is being cancelled).
* What they share: :mod:`tasks.common` (request model, cache keys, retry rule,
  the stage's context with its secrets, running a stage) and :mod:`tasks.artifacts`
  (artifact keys, plans as Markdown).
"""
