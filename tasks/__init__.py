"""Prefect tasks: one thin module per lifecycle stage.

Each task loads configuration, skips work the inventory records as done, runs
the Prefect-free stage function from :mod:`sandbox.lifecycle`, and records the
result. Retries apply to retryable errors only; results are persisted under an
explicit cache key per sandbox, lifecycle and stage.
"""
