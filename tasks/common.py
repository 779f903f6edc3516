"""What every stage task shares: the request model, cache keys, retry rule, the stage's context and its run."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State
from pydantic import BaseModel, Field

from sandbox.config import FleetConfig, load_config
from sandbox.context import SandboxContext, Secrets
from sandbox.errors import ConflictError, PermanentError, SandboxError, error_message
from sandbox.inventory import Inventory
from sandbox.lifecycle_request import SandboxChange
from sandbox.models import Stage, StageResult
from sandbox.progress import Progress
from sandbox.redaction import redact, register_secret
from sandbox.wiring import build_drivers, open_inventory

#: Bump when a stage's result shape changes, so old checkpoints are not reused.
CACHE_VERSION = 1

#: Retry delays (seconds) for retryable failures: cloud APIs need patience.
RETRY_DELAYS = [5, 30, 120]


class StageRequest(BaseModel):
    """Identifies one stage run of one sandbox lifecycle."""

    config_path: str = Field(description="Path of fleet.yaml")
    name: str = Field(description="Sandbox name")
    lifecycle_id: str = Field(description="The lifecycle this stage belongs to")
    force: bool = Field(default=False, description="teardown: destroy even with pending finalizers")
    change: SandboxChange | None = Field(default=None, description="clone: change to make after cloning")


def stage_cache_key(stage: Stage) -> Callable[[TaskRunContext, dict[str, Any]], str]:
    """An explicit cache key ``<fleet-id>/<sandbox>/<lifecycle-id>/<stage>/v<N>``.

    Not TASK_SOURCE: editing a task's code must not make a finished stage run again.
    Scoped by the fleet (:attr:`~sandbox.config.FleetConfig.fleet_id`) as the lock is:
    results are stored per machine, and two fleets on it may name a sandbox alike.
    """

    def key(_context: TaskRunContext, parameters: dict[str, Any]) -> str:
        request = parameters["request"]
        if isinstance(request, dict):
            request = StageRequest.model_validate(request)
        fleet = load_config(request.config_path).fleet_id
        return f"{fleet}/{request.name}/{request.lifecycle_id}/{stage.value}/v{CACHE_VERSION}"

    return key


def retry_if_retryable(_task: Any, _task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only errors the core marks as retryable (locks, network, rate limits)."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - an unreadable result is not worth retrying
        return False
    return isinstance(error, SandboxError) and error.retryable


def resolve_secret(block_name: str | None, env_var: str | None) -> str | None:
    """A secret from a Prefect Secret block, else from the environment.

    Registered for redaction (:mod:`sandbox.redaction`) the moment it is read, so
    no error, log line or stored message made afterwards can show it.
    """
    if block_name:
        from prefect.blocks.system import Secret

        block = Secret.load(block_name)
        value = block.get()  # type: ignore[union-attr]
        secret = str(value) if value is not None else None
    else:
        secret = os.environ.get(env_var) if env_var else None
    register_secret(secret)
    return secret


def application_stack_tokens(config: FleetConfig) -> dict[str, str]:
    """The tokens of the application stacks that have credentials configured, by stack name."""
    tokens = {}
    for stack in config.validation.application_stacks:
        if stack.credentials_secret_block or stack.credentials_env:
            token = resolve_secret(stack.credentials_secret_block, stack.credentials_env)
            if token:
                tokens[stack.name] = token
    return tokens


def fleet_ssh_identity(config: FleetConfig) -> str | None:
    """The SSH private key Flux reads an ``ssh://`` fleet repository with (``None`` for other URLs)."""
    if not config.flux_url.startswith("ssh://"):
        return None
    return resolve_secret(config.drivers.git.ssh_key_secret_block, config.drivers.git.ssh_key_env)


def stage_context(
    config: FleetConfig, name: str, *, inventory: Inventory | None = None, progress: Progress | None = None
) -> SandboxContext:
    """Everything a stage function needs, with secrets resolved here (the core never sees Prefect).

    Args:
        config: The fleet configuration.
        name: The sandbox.
        inventory: The inventory to use, already open (else one is opened); closed with the
            context's (``ctx.inventory.close()``).
        progress: Where progress goes (default: the task run's logger).
    """
    hosting = config.drivers.git_hosting
    github_token = resolve_secret(hosting.token_secret_block, hosting.token_env) if hosting.type == "github" else None
    inventory = inventory or open_inventory(config)
    return SandboxContext(
        config=config,
        inventory=inventory,
        drivers=build_drivers(config, github_token=github_token),
        record=inventory.get(name),
        progress=progress or get_run_logger().info,
        secrets=Secrets(
            git_token=resolve_secret(config.drivers.git.credentials_secret_block, config.drivers.git.credentials_env),
            application_stack_tokens=application_stack_tokens(config),
            git_ssh_identity=fleet_ssh_identity(config),
        ),
    )


def run_stage(stage: Stage, request: StageRequest, **kwargs: Any) -> StageResult:
    """Run a stage unless the inventory has it completed; record the outcome either way."""
    from sandbox.stages import STAGE_FUNCTIONS

    logger = get_run_logger()
    config = load_config(request.config_path)
    inventory = open_inventory(config)  # once for the stage: the check, the context, the bookkeeping
    try:
        record = inventory.get(request.name)
        if record.lifecycle_id != request.lifecycle_id:
            # A rolled-back lifecycle (e.g. Prefect's "Retry" of its flow run) must not
            # act on a sandbox that was undone and has started over since.
            raise ConflictError(
                f"lifecycle {request.lifecycle_id} of {request.name} is over (status {record.status.value}, "
                f"now lifecycle {record.lifecycle_id}); run 'sandbox resume {request.name}' to continue it"
            )
        done = inventory.stage_result(request.name, request.lifecycle_id, stage)
        if done is not None:
            logger.info(f"{stage.value}: already completed for {request.name}; not run again")
            return StageResult.model_validate({**done, "reused": True})
        ctx = stage_context(config, request.name, inventory=inventory, progress=logger.info)
        try:
            with inventory.recording_stage(request.name, request.lifecycle_id, stage) as recording:
                result = recording.complete(STAGE_FUNCTIONS[stage](ctx, **kwargs))
        except Exception as exc:
            message = error_message(exc)
            if not isinstance(exc, SandboxError) and redact(message) != message:
                # Prefect puts str(exc) into the run's state message and persists the exception
                # itself: an exception of a library quoting a secret is replaced by a redacted one.
                raise PermanentError(redact(message)) from None
            raise
        logger.info(f"{stage.value}: {result.summary}")
        return result
    finally:
        inventory.close()


def stage_state(result: StageResult) -> Any:
    """A stage task's final state: Completed, holding ``result``, with its one-line summary as the message.

    Prefect shows a task run's state message on the run page, so each stage's
    result reads there and not only in the logs. Calling the task still returns
    ``result`` (Prefect unwraps a returned state), and the state is checkpointed
    as any return value.
    """
    from prefect.states import Completed

    return Completed(data=result, message=redact(" ".join(result.summary.split())))


#: Options every stage task shares.
STAGE_TASK_OPTIONS: dict[str, Any] = {
    "retries": len(RETRY_DELAYS),
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_condition_fn": retry_if_retryable,
    "persist_result": True,
}
