"""The Prefect settings the CLI chooses for the flow runs it runs in its own process."""

from __future__ import annotations

import pytest
from prefect.settings import get_current_settings

from cli.prefect_env import HEARTBEAT_VARIABLES, in_process_run


@pytest.fixture
def no_heartbeat_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HEARTBEAT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_heartbeat_choice")
def test_in_process_runs_send_no_heartbeats_and_the_setting_comes_back_after() -> None:
    before = get_current_settings().flows.heartbeat_frequency
    with in_process_run():
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == before


@pytest.mark.usefixtures("no_heartbeat_choice")
@pytest.mark.parametrize("variable", HEARTBEAT_VARIABLES)
def test_a_users_heartbeat_choice_is_left_alone(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "45")
    before = get_current_settings().flows.heartbeat_frequency
    assert before is not None
    with in_process_run():
        assert get_current_settings().flows.heartbeat_frequency == before
