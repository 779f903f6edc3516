"""Performance runs, Prefect-free (the stage that runs the load is :mod:`sandbox.stages.performance`).

* :mod:`sandbox.perf.scenario` -- what a run asks for and the load settings its scenario resolves to;
* :mod:`sandbox.perf.compare` -- the comparison with the baseline, its gates, and the reports;
* :mod:`sandbox.perf.store` -- the runs and their accepted baselines, in the inventory database;
* :mod:`sandbox.perf.chart` -- the PNG chart of a run against its baseline.
"""
