"""``make serve`` for one engineer, checked through the Prefect UI in a real browser.

``python -m deployments.serve`` starts a real local Prefect server and serves
every deployment of ``prefect.yaml`` for the demo fleet. Headless Chromium opens
the lifecycle deployment's run form: it shows human labels, each field's
description and example, the fleet's environments and the sandbox kinds as
choices, optional text fields as plain text boxes and the served fleet's
fleet.yaml as the default config path. A platform sandbox without a ticket, then
a bad name, are refused before any run exists, the form saying why. Then the form
is filled as a person would (with a change after cloning, so promote opens a pull
request) and the served deployment runs the lifecycle to Completed: preparation,
then the seven stages by name in order, each with its result as its state
message; the run's summary artifact shows the pull request and the performance
chart (the image loads); the fleet status deployment lists the environments and
a live sandbox. Screenshots are saved in ``tests/output/serve-ui/`` (git-ignored;
``UPDATE_DOC_SCREENSHOTS=1`` copies those docs/operations.md shows to
``docs/images/``). The Prefect server's log must hold no traceback or service
error (``tests/serving.py``), and a serve stopped while it is still starting
stops the server it started.

Without chromium the test is skipped on a developer's machine and fails in CI
(``CI`` set): ``scripts/install-system-deps.sh`` installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.serve import server_answers
from sandbox.demo import prepare_demo
from sandbox.models import STAGE_ORDER, SandboxKind
from tests.chromium import Browser, BrowserError, require_chromium
from tests.conftest import PROJECT_ROOT
from tests.polling import poll
from tests.serving import serve_deployments

pytestmark = pytest.mark.integration

OUTPUT = PROJECT_ROOT / "tests" / "output" / "serve-ui"
ENVIRONMENTS = ["development", "staging", "production"]

#: Fills a text field of Prefect's schema form by its label (switching an optional
#: ``str | None`` field to ``str`` first), the way typing into it would.
FILL_FIELD = """((label, value) => {
  const field = [...document.querySelectorAll('.schema-form-property')].find(
    p => p.querySelector('.schema-form-property__label')?.textContent.trim() === label);
  if (!field) return 'missing';
  const box = field.querySelector('.p-label__body textarea, .p-label__body input[type=text]');
  if (!box) {
    const asString = [...field.querySelectorAll('button')].find(b => b.textContent.trim() === 'str');
    if (!asString) return 'missing';
    asString.click();
    return 'switched';
  }
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(box), 'value').set.call(box, value);
  box.dispatchEvent(new Event('input', {bubbles: true}));
  box.dispatchEvent(new Event('change', {bubbles: true}));
  return 'filled';
})"""

#: The options of the select of a schema-form field, by label.
FIELD_OPTIONS = """((label) => {
  const field = [...document.querySelectorAll('.schema-form-property')].find(
    p => p.querySelector('.schema-form-property__label')?.textContent.trim() === label);
  return field ? [...field.querySelectorAll('option')].map(o => o.textContent.trim()) : null;
})"""

#: The value of a text field of the form, by label.
FIELD_VALUE = """((label) => {
  const field = [...document.querySelectorAll('.schema-form-property')].find(
    p => p.querySelector('.schema-form-property__label')?.textContent.trim() === label);
  const box = field && field.querySelector('.p-label__body textarea, .p-label__body input');
  return box ? box.value : null;
})"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """``python -m deployments.serve`` for the demo fleet; yields (UI URL, fleet.yaml, serve log).

    Once it has stopped, its Prefect server's log must hold no traceback or service error.
    """
    config_path = prepare_demo(tmp_path / "fleet", development=False)
    with serve_deployments(tmp_path, config_path) as served:
        yield served.url, config_path, served.log_path


def served_lifecycle(ui_url: str, log_path: Path) -> dict[str, Any] | None:
    """The lifecycle deployment once served with the fleet's choices."""
    try:
        response = httpx.post(
            f"{ui_url}/api/deployments/filter", json={"deployments": {"name": {"any_": ["on-demand"]}}}, timeout=5
        )
    except httpx.HTTPError:
        return None
    if response.status_code != 200 or not response.json():
        return None
    deployment: dict[str, Any] = response.json()[0]
    properties = deployment["parameter_openapi_schema"]["definitions"]["LifecycleRequest"]["properties"]
    return deployment if properties["source_env"].get("enum") else None


#: Clicks the form's Submit button; says why it could not.
CLICK_SUBMIT = """(() => {
  const button = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Submit');
  if (!button) return 'missing';
  if (button.disabled) return 'disabled';
  button.click();
  return 'clicked';
})()"""


FORM_VALUES = [("Sandbox name", "ui-sandbox"), ("Ticket (Optional)", "OPS-42"), ("Summary (Optional)", "ui run")]


#: Clicks a button of a schema-form field, by the field's label and the button's text.
CLICK_IN_FIELD = """((label, text) => {
  const field = [...document.querySelectorAll('.schema-form-property')].find(
    p => p.querySelector('.schema-form-property__label')?.textContent.trim() === label);
  const button = field && [...field.querySelectorAll('button')].find(b => b.textContent.trim() === text);
  if (!button) return 'missing';
  button.click();
  return 'clicked';
})"""

#: Types values into the text boxes of a list field (its items), in order; says how many boxes it has otherwise.
FILL_ITEMS = """((label, values) => {
  const field = [...document.querySelectorAll('.schema-form-property')].find(
    p => p.querySelector('.schema-form-property__label')?.textContent.trim() === label);
  const boxes = field ? [...field.querySelectorAll('.p-label__body textarea, .p-label__body input[type=text]')] : [];
  if (boxes.length !== values.length) return boxes.length;
  boxes.forEach((box, i) => {
    Object.getOwnPropertyDescriptor(Object.getPrototypeOf(box), 'value').set.call(box, values[i]);
    box.dispatchEvent(new Event('input', {bubbles: true}));
    box.dispatchEvent(new Event('change', {bubbles: true}));
  });
  return 'filled';
})"""

#: The change the form's run makes after cloning (the demo's: podinfo 6.7.2), so that promote opens a pull request.
CHANGE_PATH = ["spec", "postBuild", "substitute", "podinfo_version"]
CHANGE_FIELDS = [
    ("Commit message", "bump podinfo to 6.7.2 from the UI"),
    ("File", "apps.yaml"),
    ("Object kind", "Kustomization"),
    ("Object name", "apps"),
    ("New value", "6.7.2"),
]


def fill_change(browser: Browser) -> None:
    """Give the run a change after cloning, through the form's nested fields, as a person would."""

    def click(label: str, text: str) -> None:
        poll(
            f"the {text!r} button of {label}",
            lambda: browser.evaluate(f"{CLICK_IN_FIELD}({json.dumps(label)}, {json.dumps(text)})") == "clicked",
            timeout=10,
            interval=0.2,
        )

    click("Change after cloning (Optional)", "Change")
    click("Edits (Optional)", "Add item")
    poll("the edit's fields", lambda: "Object kind" in browser.text(), timeout=10, interval=0.2)
    for count in range(1, len(CHANGE_PATH) + 1):  # one item at a time: a click while the list renders is lost
        click("Path", "Add item")

        def added(wanted: int = count) -> bool:
            return bool(browser.evaluate(f"{FILL_ITEMS}('Path', [])") == wanted)

        poll(f"path item {count}", added, timeout=10)
    assert browser.evaluate(f"{FILL_ITEMS}('Path', {json.dumps(CHANGE_PATH)})") == "filled"
    for label, value in CHANGE_FIELDS:
        fill_field(browser, label, value)


def fill_form(browser: Browser) -> None:
    """Type the sandbox's name, ticket and summary into the run form."""
    for label, value in FORM_VALUES:
        fill = f"{FILL_FIELD}({json.dumps(label)}, {json.dumps(value)})"
        if browser.evaluate(fill) == "switched":  # the optional field now has its text box

            def filled(fill: str = fill) -> bool:
                return bool(browser.evaluate(fill) == "filled")

            poll(f"the {label} text box", filled, timeout=10, interval=0.1)
        assert browser.evaluate(f"{FIELD_VALUE}({json.dumps(label)})") == value, (
            label,
            browser.evaluate(f"{FIELD_VALUE}({json.dumps(label)})"),
        )


def submit_form(
    browser: Browser, ui_url: str, deployment_id: str, refill: Callable[[], None], attempts: int = 3
) -> list[dict[str, Any]]:
    """Click Submit and wait for the flow run it makes, as a person would.

    A person whose submission the server answered with an error (a busy
    server under a loaded CI machine can answer 5xx), or whose form came
    back from validation without making a run, checks the fields and clicks
    again; so does this, at most ``attempts`` times. Any other way of not
    getting a run fails with what the page showed and what it requested.
    """
    clicks = 0
    seen = len(browser.responses)
    validated_at: float | None = None
    deadline = time.monotonic() + 90
    while True:
        browser.pump()
        # The form posts /ui/schemas/validate, then (when valid) /deployments/<id>/create_flow_run.
        answered = [r for r in browser.responses[seen:] if r[1] == "POST"]
        try:
            runs = runs_of(ui_url, deployment_id)
        except httpx.TimeoutException:
            # This poll's own read, not the form's: a server busy past 10 s (SQLite under a loaded CI machine,
            # seen once) is asked again, within the deadline below.
            runs = []
        if runs:
            return runs
        failed = any(status >= 500 for status, _, _ in answered)
        if any("schemas/validate" in url for _, _, url in answered) and validated_at is None:
            validated_at = time.monotonic()
        creating = any("create_flow_run" in url for _, _, url in answered)
        stuck = validated_at is not None and not creating and time.monotonic() - validated_at > 10
        if clicks == 0 or ((failed or stuck) and clicks < attempts):
            if clicks:
                refill()
            seen = len(browser.responses)
            validated_at = None
            clicked = browser.evaluate(CLICK_SUBMIT)
            if clicked != "clicked":
                pytest.fail(
                    f"the form's Submit button is {clicked}; the page shows: {' '.join(browser.text().split())[:1500]}"
                )
            clicks += 1
        elif time.monotonic() > deadline:
            pytest.fail(
                f"no flow run after {clicks} click(s) on Submit; page {browser.evaluate('location.href')} shows: "
                f"{' '.join(browser.text().split())[:1500]}; its API requests: {browser.responses[-15:]}; "
                f"console: {browser.console[-10:]}"
            )
        time.sleep(0.5)


def runs_of(ui_url: str, deployment_id: str) -> list[dict[str, Any]]:
    """The flow runs of a deployment."""
    response = httpx.post(
        f"{ui_url}/api/flow_runs/filter", json={"deployments": {"id": {"any_": [deployment_id]}}}, timeout=10
    )
    response.raise_for_status()
    runs: list[dict[str, Any]] = response.json()
    return runs


def test_the_served_ui_runs_a_lifecycle_from_its_typed_form(served: tuple[str, Path, Path]) -> None:
    chromium = require_chromium()
    ui_url, config_path, log_path = served
    deployment = poll(
        f"the served lifecycle deployment (see {log_path})", lambda: served_lifecycle(ui_url, log_path), timeout=180
    )
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with Browser(chromium, height=2600) as browser:
        browser.navigate(f"{ui_url}/deployments/deployment/{deployment['id']}/run")
        try:
            browser.wait_for_text(
                "Sandbox",
                "What sandbox to make, from which environment, with which change.",
                "Fleet configuration",
                "Sandbox name",
                "Lowercase letters, digits and '-', starting with a letter",
                "Source environment",
                "Long-lived environment to clone",
                "Sandbox kind",
                "Time to live",
                "Terraform variable overrides",
                '{"kubernetes_version": "1.31"}',
                "Stop after stage",
                "Run stages up to and including this one",
                timeout=60,
            )
        finally:
            browser.screenshot(OUTPUT / "lifecycle-run-form.png")
        text = browser.text()
        for machine_label in ("Ttl", "Config Path", "Stop After", "Source Env"):
            assert machine_label not in text, machine_label
        assert browser.evaluate(f"{FIELD_OPTIONS}('Source environment (Optional)')") == ENVIRONMENTS
        assert browser.evaluate(f"{FIELD_OPTIONS}('Sandbox kind (Optional)')") == [kind.value for kind in SandboxKind]
        assert browser.evaluate(f"{FIELD_VALUE}('Fleet configuration (Optional)')") == str(config_path)
        # Optional text fields are plain text boxes, not "str / None" switches.
        for label in ("Ticket (Optional)", "Summary (Optional)", "Time to live (Optional)", "Owner (Optional)"):
            assert browser.evaluate(f"{FIELD_VALUE}({json.dumps(label)})") == "", label

        # The request's rules are checked when the form is submitted, before any run exists: the
        # server validates against the schema (the UI does not send ``pattern`` or ``if``/``then`` to its
        # own field check) and the form says why in one line.
        fill_field(browser, "Sandbox name", "Bad_Name")
        refused(browser, "'ticket' is a required property")  # a platform sandbox needs a ticket
        fill_field(browser, "Ticket (Optional)", "OPS-42")
        fill_field(browser, "Summary (Optional)", "ui run")
        refused(browser, "'Bad_Name' does not match")
        browser.screenshot(OUTPUT / "lifecycle-run-form-invalid-name.png")
        assert not runs_of(ui_url, deployment["id"])

        fill_change(browser)
        fill_form(browser)
        browser.screenshot(OUTPUT / "lifecycle-run-form-filled.png")
        run_made = submit_form(browser, ui_url, deployment["id"], refill=lambda: fill_form(browser))
        browser.screenshot(OUTPUT / "lifecycle-run-submitted.png")
        assert run_made

    def finished_run() -> dict[str, Any] | None:
        runs = runs_of(ui_url, deployment["id"])
        return runs[0] if runs and runs[0]["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

    run = poll("the run started from the form to finish", finished_run, timeout=180, interval=1)
    assert run["state"]["type"] == "COMPLETED", (run["state"], log_path.read_text(errors="replace")[-3000:])
    request = run["parameters"]["request"]
    assert (request["name"], request["ticket"], request["summary"]) == ("ui-sandbox", "OPS-42", "ui run")
    assert (request["source_env"], request["kind"], request["config_path"]) == (
        "development",
        "platform",
        str(config_path),
    )
    # Served runs keep their checkpoints where the CLI keeps them: <state_dir>/prefect-results,
    # keyed <fleet-id>/<sandbox>/<lifecycle-id>/<stage>/v1.
    results = config_path.parent / "state" / "prefect-results"
    stored = {p.parent.name for p in results.glob("*/ui-sandbox/*/*/v1")}
    assert stored == {stage.value for stage in STAGE_ORDER}

    # The run reads as a pipeline: preparation, then the seven stages by name, in order, each with its result.
    tasks = task_runs_of(ui_url, run["id"])
    names = [t["name"] for t in tasks]
    assert names == [*PREPARATION, *(stage.value for stage in STAGE_ORDER)], names
    for task_run in tasks[len(PREPARATION) :]:
        assert task_run["state"]["type"] == "COMPLETED", task_run
        assert task_run["state"]["message"], f"{task_run['name']} shows no result"
    assert tasks[-1]["state"]["message"].startswith("pull request #"), tasks[-1]["state"]
    summary = latest_artifact(ui_url, "lifecycle-ui-sandbox")
    assert summary is not None and summary["flow_run_id"] == run["id"]
    pull_request_url = tasks[-1]["state"]["message"].rsplit(": ", 1)[-1]
    # The demo's git hosting is the local stand-in: its pull request's "URL" is a file, shown as such.
    assert f"Pull request #1: `{pull_request_url}`" in summary["data"]
    assert "data:image/png;base64," in summary["data"]

    # A sandbox left running (stopped after provision) for the fleet status to list.
    live = run_deployment_and_wait(ui_url, "on-demand", {"request": LIVE_REQUEST})
    assert live["state"]["type"] == "COMPLETED", (live["state"], log_path.read_text(errors="replace")[-3000:])
    fleet_run = run_deployment_and_wait(ui_url, "fleet-status")
    assert fleet_run["state"]["type"] == "COMPLETED", (fleet_run["state"], log_path.read_text(errors="replace")[-3000:])
    fleet = latest_artifact(ui_url, "fleet-status")
    assert fleet is not None and fleet["flow_run_id"] == fleet_run["id"]

    # Tall: the UI scrolls inside its own pane, so a screenshot shows what the window holds.
    with Browser(chromium, height=3400) as browser:
        browser.navigate(f"{ui_url}/runs/flow-run/{run['id']}")
        open_tab(browser, "Task Runs")
        try:
            browser.wait_for_text(*PREPARATION, *(stage.value for stage in STAGE_ORDER), timeout=60)
        finally:
            browser.screenshot(OUTPUT / "lifecycle-run-task-runs.png")
        open_tab(browser, "Artifacts")
        try:
            browser.wait_for_text("lifecycle-ui-sandbox", timeout=60)
        finally:
            browser.screenshot(OUTPUT / "lifecycle-run-artifacts.png")
        browser.navigate(f"{ui_url}/artifacts/artifact/{summary['id']}")
        try:
            browser.wait_for_text(
                "Sandbox ui-sandbox: completed",
                f"Pull request #1: {pull_request_url}",
                "Performance comparison",
                'podinfo_version: "6.7.2"',
                timeout=60,
            )
            poll("the performance chart to load", lambda: chart_loaded(browser), timeout=30, interval=0.25)
        finally:
            browser.screenshot(OUTPUT / "lifecycle-summary-artifact.png")

        browser.navigate(f"{ui_url}/artifacts/artifact/{fleet['id']}")
        try:
            browser.wait_for_text(
                "Fleet status",
                "Long-lived environments",
                *ENVIRONMENTS,
                "branch main",
                "ui-live",
                "platform-team",
                timeout=60,
            )
        finally:
            browser.screenshot(OUTPUT / "fleet-status-artifact.png")
    if os.environ.get("UPDATE_DOC_SCREENSHOTS"):
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        for name in DOC_SCREENSHOTS:
            shutil.copyfile(OUTPUT / name, DOC_IMAGES / name)


#: The task runs before the stages, named as preparation.
PREPARATION = ["prepare: check request", "prepare: preflight", "prepare: register"]
#: Where ``UPDATE_DOC_SCREENSHOTS=1`` copies the screenshots docs/operations.md shows.
DOC_IMAGES = PROJECT_ROOT / "docs" / "images"
DOC_SCREENSHOTS = [
    "lifecycle-run-form.png",
    "lifecycle-run-form-invalid-name.png",
    "lifecycle-run-task-runs.png",
    "lifecycle-summary-artifact.png",
    "fleet-status-artifact.png",
]

#: Whether the page's inline chart (a data: URI PNG) loaded with a size.
CHART_LOADED = """(() => {
  const image = [...document.querySelectorAll('img')].find(i => i.src.startsWith('data:image/png'));
  return !!image && image.complete && image.naturalWidth > 0;
})()"""


def refused(browser: Browser, reason: str, attempts: int = 3) -> None:
    """Click Submit until the form says ``reason`` (a click while it still takes in a value can go unseen)."""
    for attempt in range(1, attempts + 1):
        assert browser.evaluate(CLICK_SUBMIT) == "clicked"
        try:
            browser.wait_for_text(reason, timeout=20)
            return
        except BrowserError:
            if attempt == attempts:
                raise


def fill_field(browser: Browser, label: str, value: str) -> None:
    """Type ``value`` into a text field of the form (again, if the form re-rendered the field meanwhile)."""
    fill = f"{FILL_FIELD}({json.dumps(label)}, {json.dumps(value)})"
    check = f"{FIELD_VALUE}({json.dumps(label)})"

    def filled() -> bool:
        if browser.evaluate(check) == value:
            return True
        browser.evaluate(fill)
        return False

    poll(f"the {label} field to hold {value!r}", filled, timeout=10, interval=0.3)


#: Clicks a tab of the page by its text.
CLICK_TAB = """((name) => {
  const tab = [...document.querySelectorAll('li.p-tab')].find(t => t.textContent.trim() === name);
  if (!tab) return 'missing';
  tab.click();
  return 'clicked';
})"""


def open_tab(browser: Browser, name: str) -> None:
    """Open a tab of the page (the flow run page's Task Runs, Artifacts, ...)."""

    def clicked() -> bool:
        return bool(browser.evaluate(f"{CLICK_TAB}({json.dumps(name)})") == "clicked")

    poll(f"the {name} tab", clicked, timeout=60, interval=0.5)


def chart_loaded(browser: Browser) -> bool:
    """Whether the chart image is loaded."""
    return bool(browser.evaluate(CHART_LOADED))


def task_runs_of(ui_url: str, flow_run_id: str) -> list[dict[str, Any]]:
    """A flow run's task runs, in the order they started."""
    response = httpx.post(
        f"{ui_url}/api/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [flow_run_id]}}, "sort": "EXPECTED_START_TIME_ASC"},
        timeout=10,
    )
    response.raise_for_status()
    runs: list[dict[str, Any]] = response.json()
    return sorted(runs, key=lambda r: r["start_time"] or r["expected_start_time"] or "")


def latest_artifact(ui_url: str, key: str) -> dict[str, Any] | None:
    """The newest artifact under ``key``."""
    response = httpx.post(
        f"{ui_url}/api/artifacts/latest/filter", json={"artifacts": {"key": {"any_": [key]}}}, timeout=10
    )
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    if not found:
        return None
    artifact = httpx.get(f"{ui_url}/api/artifacts/{found[0]['latest_id']}", timeout=10)
    artifact.raise_for_status()
    result: dict[str, Any] = artifact.json()
    return result


#: A lifecycle stopped after provision: a live sandbox with an owner.
LIVE_REQUEST = {
    "name": "ui-live",
    "ticket": "OPS-43",
    "summary": "left running",
    "stop_after": "provision",
    "owner": "platform-team",
}


def run_deployment_and_wait(ui_url: str, name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start a served deployment by name (with its stored parameters and ``parameters``); wait for the run's end."""
    response = httpx.post(
        f"{ui_url}/api/deployments/filter", json={"deployments": {"name": {"any_": [name]}}}, timeout=10
    )
    response.raise_for_status()
    deployment = response.json()[0]
    created = httpx.post(
        f"{ui_url}/api/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": parameters or {}},
        timeout=10,
    )
    created.raise_for_status()
    flow_run_id = created.json()["id"]

    def finished() -> dict[str, Any] | None:
        current = httpx.get(f"{ui_url}/api/flow_runs/{flow_run_id}", timeout=10).json()
        return current if current["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

    found: dict[str, Any] = poll(f"the {name} run to finish", finished, timeout=180, interval=1)
    return found


def test_serve_stopped_while_it_starts_stops_the_server_it_started(tmp_path: Path) -> None:
    """SIGTERM right after the server answers, while serve is still loading and registering the deployments.

    Prefect's runner handles SIGTERM only once it runs; before that, serve ended at
    once and left its server running (seen when a test failed early). Stopped at
    any moment, serve stops the server it started.
    """
    with serve_deployments(tmp_path) as served:
        poll(f"the server serve starts (see {served.log_path})", lambda: server_answers(served.api_url), timeout=300)
    if server_answers(served.api_url):
        left = servers_on_port(int(served.url.rsplit(":", 1)[1]))
        for pid in left:  # not left running for the rest of the suite
            os.kill(pid, signal.SIGTERM)
        pytest.fail(f"serve stopped and left its server running (pids {left}): {served.log_path.read_text()[-2000:]}")


def servers_on_port(port: int) -> list[int]:
    """The pids of ``prefect server start ... --port PORT`` processes."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process ended
            continue
        if "server" in argv and "start" in argv and f"{port}" in argv and "--port" in argv:
            found.append(int(cmdline.parent.name))
    return found
