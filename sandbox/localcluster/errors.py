"""The local cluster's errors, placed in the product's hierarchy (:mod:`sandbox.errors`).

Retryable: something that may work on the next attempt (a port another process took, a component that was not
ready in time on a loaded machine). Permanent: something a retry repeats (a directory that is not a local
cluster's, a component that exits on its own flags, a missing binary).
"""

from __future__ import annotations

from sandbox.errors import ClusterUnreachableError, ConflictError, PermanentError, RetryableError


class LocalClusterError(PermanentError):
    """A local cluster cannot be started or stopped as asked; retrying fails the same way."""


class NotALocalClusterError(ConflictError):
    """A directory holds files but no local-cluster marker: it is never used, stopped or deleted."""


class ComponentFailedError(LocalClusterError):
    """A component process exited on its own (not because of a taken port); carries its log's tail."""


class ComponentTimeoutError(RetryableError):
    """A component did not become ready in time (a loaded machine may just be slow)."""


class PortsExhaustedError(RetryableError):
    """Every attempt to start a component found one of its ports taken by another process."""


class LocalApiUnreachableError(ClusterUnreachableError):
    """The local cluster's API server (or another component's HTTP endpoint) did not answer."""
