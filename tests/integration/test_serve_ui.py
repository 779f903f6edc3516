"""``make serve`` for one engineer, checked through the Prefect UI in a real browser.

``python -m deployments.serve`` starts a real local Prefect server and serves
every deployment of ``prefect.yaml`` for the demo fleet. Headless Chromium opens
the lifecycle deployment's run form: it shows the typed parameters (the fleet's
environments and the sandbox kinds as choices, each field's description, the
served fleet's fleet.yaml as the default config path); screenshots are saved in
``tests/output/serve-ui/`` (git-ignored). Then the form is filled and submitted
as a person would, and the served deployment runs the lifecycle to Completed.
The Prefect server's log must hold no traceback or service error (``tests/serving.py``),
and a serve stopped while it is still starting stops the server it started.

Without chromium the test is skipped on a developer's machine and fails in CI
(``CI`` set): ``scripts/install-system-deps.sh`` installs it.
"""

from __future__ import annotations

import json
import os
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
from tests.chromium import Browser, require_chromium
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


FORM_VALUES = [("Name", "ui-sandbox"), ("Ticket (Optional)", "OPS-42"), ("Summary (Optional)", "ui run")]


def fill_form(browser: Browser) -> None:
    """Type the sandbox's name, ticket and summary into the run form."""
    for label, value in FORM_VALUES:
        fill = f"{FILL_FIELD}({json.dumps(label)}, {json.dumps(value)})"
        if browser.evaluate(fill) == "switched":  # the optional field now has its text box

            def filled(fill: str = fill) -> bool:
                return bool(browser.evaluate(fill) == "filled")

            poll(f"the {label} text box", filled, timeout=10, interval=0.1)
        assert browser.evaluate(f"{FIELD_VALUE}({json.dumps(label)})") == value


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
        runs = runs_of(ui_url, deployment_id)
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
                "request",
                "What sandbox to make, from which environment, with which change.",
                "Config Path",
                "Sandbox name: lowercase letters, digits and '-'",
                "Source Env",
                "Long-lived environment to clone",
                "Kind",
                "Stop After",
                "Run stages up to and including this one",
                timeout=60,
            )
        finally:
            browser.screenshot(OUTPUT / "lifecycle-run-form.png")
        assert browser.evaluate(f"{FIELD_OPTIONS}('Source Env (Optional)')") == ENVIRONMENTS
        assert browser.evaluate(f"{FIELD_OPTIONS}('Kind (Optional)')") == [kind.value for kind in SandboxKind]
        assert browser.evaluate(f"{FIELD_VALUE}('Config Path (Optional)')") == str(config_path)

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
    # Served runs keep their checkpoints where the CLI keeps them: <state_dir>/prefect-results.
    stored = {p.parent.name for p in (config_path.parent / "state" / "prefect-results").glob("ui-sandbox/*/*/v1")}
    assert stored == {stage.value for stage in STAGE_ORDER}


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
