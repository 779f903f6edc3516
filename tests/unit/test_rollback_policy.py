"""Which failures are rolled back: lasting ones, in the stages that create the sandbox."""

from __future__ import annotations

import pytest

from sandbox.drivers.terraform_errors import TerraformError, TerraformTransientError
from sandbox.errors import ClusterError, ClusterUnreachableError, StateLockedError
from sandbox.models import Stage
from sandbox.rollback import RollbackReport, should_roll_back


@pytest.mark.parametrize(
    ("stage", "error", "rolled_back"),
    [
        (Stage.provision, TerraformError("apply failed: InvalidParameterValue"), True),
        (Stage.bootstrap, ClusterError("no matches for kind Widget"), True),
        (Stage.bootstrap, KeyError("unexpected"), True),  # a bug is not retried either
        (Stage.provision, StateLockedError("the state is locked"), False),  # retries ran out: resume later
        (Stage.provision, TerraformTransientError("Throttling"), False),
        (Stage.bootstrap, ClusterUnreachableError("no answer"), False),
        (Stage.clone, ClusterError("x"), False),  # not a creating stage
        (Stage.validate, ClusterError("x"), False),  # a failed validation keeps the sandbox to fix it
        (Stage.provision, None, False),
    ],
)
def test_only_lasting_failures_of_creating_stages_roll_back(
    stage: Stage, error: BaseException | None, rolled_back: bool
) -> None:
    assert should_roll_back(stage, error) is rolled_back


def test_the_summary_says_what_was_undone_or_what_is_left() -> None:
    done = RollbackReport(sandbox="s", stage=Stage.bootstrap, cause="c", actions=["a", "b"], record="rolled-back")
    assert done.complete and done.summary() == "rolled back s after bootstrap failed: a; b; record rolled-back"
    stuck = RollbackReport(sandbox="s", stage=Stage.provision, cause="c", problems=["teardown: x"], record="failed")
    assert not stuck.complete and stuck.summary() == "rollback of s incomplete: teardown: x"
