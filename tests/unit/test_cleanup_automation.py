"""The example automation and the nightly deployment are valid for Prefect 3.8."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import yaml
from prefect.events.actions import CallWebhook
from prefect.events.schemas.automations import AutomationCore, EventTrigger
from prefect.server.events.jinja_filters import all_filters
from prefect.server.schemas.core import FlowRun
from prefect.server.schemas.states import State, StateType
from prefect.server.utilities.user_templates import register_user_template_filters, render_user_template_sync
from prefect.settings import PREFECT_UI_URL, temporary_settings

ROOT = Path(__file__).resolve().parents[2]
AUTOMATION = ROOT / "deployments" / "automations" / "cleanup-failed-webhook.yaml"


def automation(block_id: uuid.UUID) -> AutomationCore:
    text = AUTOMATION.read_text(encoding="utf-8").replace("WEBHOOK_BLOCK_DOCUMENT_ID", str(block_id))
    return AutomationCore.model_validate(yaml.safe_load(text))


def test_the_automation_calls_the_webhook_when_a_cleanup_run_fails() -> None:
    block_id = uuid.uuid4()
    core = automation(block_id)
    trigger = core.trigger
    assert isinstance(trigger, EventTrigger)
    assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}
    related = trigger.match_related
    assert not isinstance(related, list)
    assert related.get("prefect.resource.name") == ["cleanup-expired-sandboxes"]
    [action] = core.actions
    assert isinstance(action, CallWebhook) and action.block_document_id == block_id


def test_the_payload_renders_to_json_whatever_the_message_holds() -> None:
    [action] = automation(uuid.uuid4()).actions
    assert isinstance(action, CallWebhook)
    register_user_template_filters(all_filters)
    message = 'cleanup r1: 1 of 3 action(s) failed; teardown sb-a: finalizers pending on "apps" <ks>\nsecond line'
    flow_run = FlowRun(
        id=uuid.uuid4(),
        flow_id=uuid.uuid4(),
        name="nimble-fox",
        state=State(type=StateType.FAILED, name="Failed", message=message),
    )
    with temporary_settings({PREFECT_UI_URL: "http://prefect.example:4200"}):
        payload = json.loads(render_user_template_sync(action.payload, {"flow_run": flow_run}))
    assert payload["text"] == f"fleet-sandbox nightly cleanup nimble-fox ended Failed: {message}"
    assert (payload["state"], payload["flow_run_id"]) == ("Failed", str(flow_run.id))
    assert payload["url"] == f"http://prefect.example:4200/runs/flow-run/{flow_run.id}"


def test_the_nightly_deployment_is_scheduled_with_one_run_at_a_time() -> None:
    deployments = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    nightly = deployments["nightly-cleanup"]
    assert nightly["entrypoint"] == "flows/cleanup.py:cleanup_expired_sandboxes"
    assert nightly["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    [schedule] = nightly["schedules"]
    assert schedule["cron"] == "0 2 * * *"
    assert nightly["parameters"] == {"config_path": "fleet.yaml", "dry_run": False}
