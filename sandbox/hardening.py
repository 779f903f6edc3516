"""What every entry point of the product sets up first.

Entry points (the ``sandbox`` CLI, every flow, the served deployments) call
:func:`harden_process` first: :func:`sandbox.redaction.install_log_redaction` on
the product's and Prefect's loggers, so no log record leaves the process with a
secret in it.
"""

from __future__ import annotations

from sandbox.redaction import install_log_redaction


def harden_process() -> None:
    """Redacted logs for this process (idempotent; see the module docstring)."""
    install_log_redaction()
