"""The lifecycle's stages, one module each, as plain functions: Prefect-free domain logic.

Each stage takes a :class:`~sandbox.context.SandboxContext` and returns a
:class:`~sandbox.models.StageResult`. Tasks (``tasks/``) wrap each one with retries,
checkpoints and the inventory's stage bookkeeping
(:meth:`sandbox.inventory.Inventory.recording_stage`); the benchmark calls them directly.
Every stage is idempotent against the real state (state present, branch present,
directory equal), so a rerun after a crash in the middle of a stage completes it
instead of failing. A new stage is a module here, a row in :data:`STAGE_FUNCTIONS`
and a member of :class:`~sandbox.models.Stage`.
"""

from __future__ import annotations

from collections.abc import Callable

from sandbox.models import Stage, StageResult
from sandbox.stages.bootstrap import bootstrap
from sandbox.stages.clone import clone
from sandbox.stages.performance import performance_test
from sandbox.stages.promote import promote
from sandbox.stages.provision import provision
from sandbox.stages.teardown import teardown
from sandbox.stages.validate import validate

#: The stage functions by stage, for callers that run them generically.
STAGE_FUNCTIONS: dict[Stage, Callable[..., StageResult]] = {
    Stage.provision: provision,
    Stage.clone: clone,
    Stage.bootstrap: bootstrap,
    Stage.validate: validate,
    Stage.performance_test: performance_test,
    Stage.teardown: teardown,
    Stage.promote: promote,
}
