"""One typed error hierarchy for the whole product.

Every failure is either *retryable* (a Terraform state lock another run holds, a
network blip, a rate limit: trying again later may succeed) or *permanent*
(invalid input, invalid configuration, rejected credentials: trying again will
fail the same way). A sandbox another run holds is permanent too
(:class:`LockHeldError`): one run per sandbox, so the second fails at once,
naming the holder, instead of waiting its turn.
Prefect tasks retry only retryable errors (see ``tasks.common.retry_if_retryable``),
and the CLI maps :class:`InvalidInputError` to exit code 2 and every other
:class:`SandboxError` to exit code 1 with the one-line ``str(error)``.
"""

from __future__ import annotations

from typing import Any

from sandbox.redaction import redact_value


class SandboxError(Exception):
    """Base of every error this product raises on purpose.

    ``str(error)`` is a single line fit for a user: it names the problem and
    never contains secrets. Every secret the process knows
    (:mod:`sandbox.redaction`) is taken out when the error is made, and again
    whenever its text leaves: ``str`` and ``repr`` (what Prefect puts into a
    failed run's state message and logs, the CLI prints and the inventory keeps)
    and pickling (Prefect persists a failed task's exception as its result) --
    a secret registered after the error was made (terraform's outputs read once
    its apply failed) is still taken out.
    """

    retryable: bool = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*redact_value(args))

    def __str__(self) -> str:
        return str(redact_value(super().__str__()))

    def __repr__(self) -> str:
        return str(redact_value(super().__repr__()))

    def __reduce__(self) -> Any:
        reduced = super().__reduce__()
        if not isinstance(reduced, tuple):
            return reduced
        cls, args, *rest = reduced
        return (cls, redact_value(args), *(redact_value(item) for item in rest))


class RetryableError(SandboxError):
    """A temporary failure: the same operation may succeed if tried again."""

    retryable = True


class PermanentError(SandboxError):
    """A failure that retrying cannot fix."""

    retryable = False


class InvalidInputError(PermanentError):
    """The user's input (arguments, names, versions, ranges) is invalid. CLI exit 2."""


class ConfigError(InvalidInputError):
    """The configuration file is missing, malformed or fails validation. CLI exit 2."""


class ToolNotFoundError(PermanentError):
    """A required executable (terraform, git, locust, ...) is not installed."""


class CommandFailedError(PermanentError):
    """An external command exited non-zero and the failure is not known to be temporary.

    Also a command killed at its timeout that is not safe to run again blindly
    (``terraform apply``: see ``timeout_is_retryable`` of :func:`sandbox.proc.run`).
    """

    def __init__(self, message: str, *, returncode: int | None = None, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = str(redact_value(stderr_tail))


class CommandTransientError(RetryableError):
    """An external command failed in a way known to be temporary (lock, network, a timeout of a safe rerun)."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = str(redact_value(stderr_tail))


class StateLockedError(RetryableError):
    """Terraform's state lock is held by someone else (retried: the holder may finish)."""


class ClusterUnreachableError(RetryableError):
    """The cluster API did not answer."""


class ClusterError(PermanentError):
    """The cluster refused a request (not found, forbidden, invalid object)."""


class CrdNotEstablishedError(RetryableError):
    """CustomResourceDefinitions were not Established within the wait.

    Retryable: on a fresh cluster the API server may simply be slow to serve
    them; a later bootstrap attempt waits again.
    """


class CrdRejectedError(PermanentError):
    """The API server refused a CustomResourceDefinition's names (``NamesAccepted=False``): it is never served."""


class NotReadyError(PermanentError):
    """Flux objects did not become Ready within the timeout."""


class TeardownBlockedError(PermanentError):
    """Finalizers are still pending; destroying the infrastructure would leak resources."""


class ProtectedEnvironmentError(InvalidInputError):
    """An operation targeted a long-lived or protected environment."""


class ConflictError(PermanentError):
    """The requested change conflicts with the current state (existing dir, diverged files)."""


class LockHeldError(PermanentError):
    """Another run holds this sandbox's lock (not retried: one run per sandbox, the second fails at once)."""


def error_message(error: BaseException) -> str:
    """The message a failure is recorded with (inventory, cleanup report, rollback cause).

    A :class:`SandboxError` is already one line for a user; any other exception is
    unexpected, so its type is named before its text.
    """
    return str(error) if isinstance(error, SandboxError) else f"{type(error).__name__}: {error}"
