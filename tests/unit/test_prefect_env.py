"""The Prefect settings the CLI chooses for the flow runs it runs in its own process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prefect.settings import get_current_settings

from cli.prefect_env import EPHEMERAL_STARTUP_TIMEOUT_SECONDS, HEARTBEAT_VARIABLES, configure_prefect, in_process_run


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


def test_the_temporary_server_gets_time_to_start_on_a_loaded_machine_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    variable = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    for name in ("PREFECT_RESULTS_LOCAL_STORAGE_PATH", "PREFECT_RESULTS_PERSIST_BY_DEFAULT", variable):
        monkeypatch.delenv(name, raising=False)  # monkeypatch restores what configure_prefect sets

    configure_prefect(tmp_path)
    assert int(os.environ[variable]) == EPHEMERAL_STARTUP_TIMEOUT_SECONDS > 20  # Prefect's own default is 20 s

    monkeypatch.setenv(variable, "45")
    configure_prefect(tmp_path)
    assert os.environ[variable] == "45"
