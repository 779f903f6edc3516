"""fleet-sandbox core: Prefect-free domain logic and drivers.

Nothing in this package imports Prefect. Flows (``flows/``) compose tasks
(``tasks/``), tasks call into this package, and this package calls outside
systems only through ``sandbox.drivers``.
"""

__version__ = "0.1.0"
