"""Drivers: one adapter per outside system, each behind a ``Protocol``.

Each module defines the Protocol and the real implementation; a simulated or
fake twin lives beside it (``simulated_cluster``) or in ``tests/fakes``.
"""
