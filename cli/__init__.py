"""The ``sandbox`` command line: runs the same flows and core functions as the Prefect UI."""
