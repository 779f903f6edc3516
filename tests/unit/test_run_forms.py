"""The run forms' schemas (issue 18): human labels, the name's rules, ticket and summary for platform
sandboxes, optional fields without "X / None" switches, the fleet's ticket pattern, server validation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import validate

from deployments.forms import fleet_choices, fleet_patterns, with_choices, with_titles
from sandbox.config import FleetConfig
from sandbox.demo import demo_config
from sandbox.lifecycle_request import CONFIG_ENV, NAME_PATTERN, LifecycleRequest
from sandbox.naming import SANDBOX_NAME_RE
from sandbox.perf.scenario import LoadOverrides, PerformanceRequest


def flow_schema(entrypoint: str) -> dict[str, Any]:
    return parameter_schema(load_flow_from_entrypoint(entrypoint)).model_dump()


def lifecycle_form(tmp_path: Path) -> dict[str, Any]:
    config = FleetConfig.model_validate(demo_config(tmp_path))
    schema, _ = with_choices(
        with_titles(flow_schema("flows/lifecycle.py:sandbox_lifecycle")), {}, None, fleet_patterns(config)
    )
    return schema


def errors(schema: dict[str, Any], request: dict[str, Any]) -> list[str]:
    """What Prefect's server says of a run's parameters (the deployment enforces its schema)."""
    return sorted(e.message for e in validate({"request": request}, schema))


def null_branches(schema: Any) -> list[str]:
    """Every property that may be null: the form shows those as "X / None" switches."""
    found = []
    if isinstance(schema, dict):
        for name, prop in (schema.get("properties") or {}).items():
            if any(b.get("type") == "null" for b in prop.get("anyOf", []) if isinstance(b, dict)):
                found.append(name)
        for value in schema.values():
            found += null_branches(value)
    elif isinstance(schema, list):
        for value in schema:
            found += null_branches(value)
    return found


@pytest.mark.parametrize("name", ["a", "a1", "ops-42-x", "a--b", "-a", "a-", "1a", "A", "a_b", "a b", "", "é"])
def test_the_forms_name_pattern_is_the_cores(name: str) -> None:
    assert bool(re.search(NAME_PATTERN, name)) == bool(SANDBOX_NAME_RE.fullmatch(name))


def test_labels_are_human(tmp_path: Path) -> None:
    schema = lifecycle_form(tmp_path)
    assert schema["properties"]["request"]["title"] == "Sandbox"
    assert schema["properties"]["resume"]["title"] == "Resume an existing sandbox"
    titles = {p["title"] for p in schema["definitions"]["LifecycleRequest"]["properties"].values()}
    assert {"Sandbox name", "Time to live", "Source environment", "Stop after stage"} <= titles
    assert not {"Ttl", "Name", "Config Path", "Stop After", "Source Env"} & titles


def test_the_server_checks_the_name_ticket_and_summary_before_a_run_exists(tmp_path: Path) -> None:
    schema = lifecycle_form(tmp_path)
    good = {"name": "ops-42-ingress", "ticket": "OPS-42", "summary": "upgrade ingress"}
    assert errors(schema, good) == []
    assert errors(schema, {**good, "name": "Bad_Name"}) == [f"'Bad_Name' does not match '{NAME_PATTERN}'"]
    assert errors(schema, {**good, "name": "a" * 41}) == [f"'{'a' * 41}' is too long"]
    assert errors(schema, {"name": "x"}) == ["'summary' is a required property", "'ticket' is a required property"]
    assert errors(schema, {**good, "ticket": "ops42"}) == ["'ops42' does not match '^(?:[A-Z][A-Z0-9]+-[0-9]+)$'"]
    # A performance sandbox needs neither (its branch is perf-<name>).
    assert errors(schema, {"name": "x", "kind": "performance"}) == []


@pytest.mark.parametrize(
    "entrypoint",
    [
        "flows/lifecycle.py:sandbox_lifecycle",
        "flows/performance.py:performance_sandbox",
        "flows/fleet.py:sandbox_extend",
    ],
)
def test_optional_fields_are_plain_fields_not_none_switches(entrypoint: str) -> None:
    # SandboxChange stays a switch: "no change" is a choice, not an empty field.
    assert [name for name in null_branches(flow_schema(entrypoint)) if name != "change"] == []


def test_the_load_generator_is_a_drop_down() -> None:
    generator = LoadOverrides.model_json_schema()["properties"]["generator"]
    assert generator["enum"] == ["http", "locust", "kubernetes-job", None]  # the UI shows the three
    assert "anyOf" not in generator and "default" not in generator


def test_overrides_show_an_example() -> None:
    overrides = LifecycleRequest.model_json_schema()["properties"]["overrides"]
    assert overrides["examples"] == [{"kubernetes_version": "1.31"}]
    assert '"kubernetes_version"' in overrides["description"]


def test_an_emptied_text_box_is_not_given() -> None:
    request = LifecycleRequest.model_validate({"name": "x", "ticket": "", "owner": " "})
    assert (request.ticket, request.owner) == (None, None)
    assert LoadOverrides.model_validate({"users": "", "generator": ""}) == LoadOverrides()


def test_a_request_without_config_path_uses_the_served_fleets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert LifecycleRequest(name="x").config_path == "fleet.yaml"
    monkeypatch.setenv(CONFIG_ENV, "/srv/fleet/fleet.yaml")
    assert LifecycleRequest(name="x").config_path == "/srv/fleet/fleet.yaml"
    assert PerformanceRequest().config_path == "/srv/fleet/fleet.yaml"
    assert LifecycleRequest(name="x", config_path="other.yaml").config_path == "other.yaml"


def test_api_clients_may_send_null_for_what_they_leave_out(tmp_path: Path) -> None:
    """``model_dump()`` of a request holds ``None`` for every optional field; the server must take it."""
    config = FleetConfig.model_validate(demo_config(tmp_path))
    choices = fleet_choices(config)
    lifecycle, _ = with_choices(
        with_titles(flow_schema("flows/lifecycle.py:sandbox_lifecycle")), choices, None, fleet_patterns(config)
    )
    request = LifecycleRequest(name="x", ticket="OPS-1", summary="s").model_dump(mode="json")
    assert request["stop_after"] is None and request["owner"] is None
    assert errors(lifecycle, request) == []
    performance, _ = with_choices(with_titles(flow_schema("flows/performance.py:performance_sandbox")), choices)
    dumped = PerformanceRequest().model_dump(mode="json")
    assert dumped["scenario"] is None and dumped["load"]["generator"] is None
    assert [e.message for e in validate({"request": dumped}, performance)] == []
    assert [e.message for e in validate({"request": {**dumped, "scenario": "soak"}}, performance)] == [
        "'soak' is not one of ['smoke', None]"
    ]
