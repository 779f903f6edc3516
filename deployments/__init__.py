"""Deployment tooling: ``prefect.yaml`` read as data, work pools, fleet-specific run forms, ``make serve``.

Above ``flows/`` in the layering (it composes flows into deployments); Prefect is
imported lazily so that each command can set Prefect's settings first.
"""
