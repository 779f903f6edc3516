"""prefect.yaml and deployments/: every entrypoint loads with Prefect's loader, the schedules and
limits are there, run forms are typed and described, pools are valid, and ``make serve`` builds them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.server.schemas.schedules import CronSchedule
from prefect.utilities.callables import parameter_schema
from prefect.utilities.templating import find_placeholders

from deployments.forms import fleet_choices, with_choices
from deployments.pools import load_pool_specs
from deployments.serve import build_deployments, served_parameters
from deployments.spec import PREFECT_YAML, DeploymentSpec, load_deployments
from sandbox.config import FleetConfig
from sandbox.demo import demo_config
from sandbox.models import SandboxKind, Stage

SPECS = load_deployments()


def spec_of(entrypoint: str) -> DeploymentSpec:
    [found] = [spec for spec in SPECS if spec.entrypoint == entrypoint]
    return found


def flow_of(spec: DeploymentSpec) -> Flow[..., Any]:
    flow: Flow[..., Any] = load_flow_from_entrypoint(f"{spec.entrypoint_path}:{spec.function_name}")
    return flow


def schema_of(spec: DeploymentSpec) -> dict[str, Any]:
    return parameter_schema(flow_of(spec)).model_dump()


def next_dates(schedule: Any, n: int = 3) -> list[Any]:
    cron = CronSchedule(cron=schedule.cron, timezone=schedule.timezone)
    return list(asyncio.run(cron.get_dates(n=n, start=datetime(2026, 11, 28, tzinfo=UTC))))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_entrypoint_loads_with_prefects_loader_and_its_form_is_described(spec: DeploymentSpec) -> None:
    flow = flow_of(spec)
    schema = schema_of(spec)
    assert flow.fn.__name__ == spec.function_name
    undescribed = [name for name, prop in schema["properties"].items() if not prop.get("description")]
    for model, definition in schema.get("definitions", {}).items():
        if "properties" in definition:
            assert definition.get("description"), f"model {model} has no description"
            undescribed += [f"{model}.{n}" for n, p in definition["properties"].items() if not p.get("description")]
    assert undescribed == [], f"{spec.name}: fields without a description in the run form"
    if spec.parameters:  # the deployment's default parameters are valid for the flow
        flow.validate_parameters(spec.parameters)


def test_the_required_deployments_are_declared_with_their_trigger() -> None:
    on_demand = {
        "flows/lifecycle.py:sandbox_lifecycle",
        "flows/release.py:release_publish",
        "flows/release.py:release_production",
    }
    for entrypoint in on_demand:
        assert spec_of(entrypoint).schedules == [], f"{entrypoint} runs on demand only"
    assert spec_of("flows/cleanup.py:cleanup_expired_sandboxes").schedules
    assert spec_of("flows/performance.py:performance_sandbox").schedules


def test_the_cleanup_runs_nightly_one_at_a_time_and_a_colliding_run_cancels_itself() -> None:
    spec = spec_of("flows/cleanup.py:cleanup_expired_sandboxes")
    [schedule] = spec.schedules
    dates = next_dates(schedule)
    assert [b - a for a, b in zip(dates, dates[1:], strict=False)] == [timedelta(days=1)] * 2
    limit = spec.concurrency_limit
    assert limit is not None and not isinstance(limit, int)
    assert (limit.limit, limit.collision_strategy) == (1, "CANCEL_NEW")


def test_the_performance_sandbox_runs_weekly() -> None:
    [schedule] = spec_of("flows/performance.py:performance_sandbox").schedules
    dates = next_dates(schedule)
    assert [b - a for a, b in zip(dates, dates[1:], strict=False)] == [timedelta(days=7)] * 2


def test_the_lifecycle_form_offers_kinds_and_stages_as_choices() -> None:
    schema = schema_of(spec_of("flows/lifecycle.py:sandbox_lifecycle"))
    definitions = schema["definitions"]
    request = definitions["LifecycleRequest"]
    assert schema["required"] == ["request"] and "name" in request["required"]
    assert request["properties"]["kind"]["$ref"] == "#/definitions/SandboxKind"
    assert definitions["SandboxKind"]["enum"] == [kind.value for kind in SandboxKind]
    # Stages inline, null among them for API clients (the form shows the stages alone).
    assert request["properties"]["stop_after"]["enum"] == [stage.value for stage in Stage] + [None]


def test_the_release_form_offers_the_bumps_as_choices() -> None:
    schema = schema_of(spec_of("flows/release.py:release_publish"))
    [choice, _null] = schema["properties"]["bump"]["anyOf"]
    assert choice["enum"] == ["patch", "minor", "major"]


def test_the_yaml_file_and_the_specs_agree() -> None:
    document = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    assert [entry["name"] for entry in document["deployments"]] == [spec.name for spec in SPECS]
    assert len({spec.work_pool.name if spec.work_pool else None for spec in SPECS}) == 1, "one pool for all"


def test_a_deployment_declared_twice_is_refused(tmp_path: Path) -> None:
    entry = {"name": "x", "entrypoint": "flows/lifecycle.py:sandbox_lifecycle"}
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump({"deployments": [entry, entry]}))
    with pytest.raises(ValueError, match="declared twice"):
        load_deployments(path)


# --- run forms with the fleet's own choices -------------------------------------------------------


def demo_fleet(tmp_path: Path) -> FleetConfig:
    config = FleetConfig.model_validate(demo_config(tmp_path))
    config.base_dir = tmp_path
    return config


def test_the_fleets_environments_and_scenarios_become_choices(tmp_path: Path) -> None:
    choices = fleet_choices(demo_fleet(tmp_path))
    assert choices["source_env"] == ["development", "staging", "production"]
    assert choices["environment"] == choices["source_env"]
    assert choices["scenario"] == ["smoke"]


def test_choices_restrict_model_fields_flow_parameters_and_nullable_ones(tmp_path: Path) -> None:
    choices = fleet_choices(demo_fleet(tmp_path))
    lifecycle, changed = with_choices(schema_of(spec_of("flows/lifecycle.py:sandbox_lifecycle")), choices)
    assert changed == ["definitions.LifecycleRequest.source_env"]
    source_env = lifecycle["definitions"]["LifecycleRequest"]["properties"]["source_env"]
    assert source_env["enum"] == ["development", "staging", "production"] and source_env["default"] == "development"

    production, changed = with_choices(schema_of(spec_of("flows/release.py:release_production")), choices)
    assert changed == ["environment"]
    branches = production["properties"]["environment"]["anyOf"]
    assert {"type": "string", "enum": ["development", "staging", "production"]} in branches
    assert {"type": "null"} in branches

    performance, changed = with_choices(schema_of(spec_of("flows/performance.py:performance_sandbox")), choices)
    assert sorted(changed) == ["definitions.PerformanceRequest.scenario", "definitions.PerformanceRequest.source_env"]


def test_choices_leave_the_flows_own_schema_alone(tmp_path: Path) -> None:
    schema = schema_of(spec_of("flows/lifecycle.py:sandbox_lifecycle"))
    before = json.dumps(schema, sort_keys=True)
    with_choices(schema, fleet_choices(demo_fleet(tmp_path)), {"config_path": "/fleet/fleet.yaml"})
    assert json.dumps(schema, sort_keys=True) == before


def test_a_form_default_replaces_only_string_fields_that_have_one() -> None:
    schema = {
        "properties": {"config_path": {"type": "string", "default": "fleet.yaml"}, "name": {"type": "string"}},
        "definitions": {"M": {"properties": {"config_path": {"type": "string"}}}},
    }
    result, changed = with_choices(schema, {}, {"config_path": "/f.yaml", "name": "x"})
    assert result["properties"]["config_path"]["default"] == "/f.yaml"
    assert "default" not in result["properties"]["name"]
    assert "default" not in result["definitions"]["M"]["properties"]["config_path"]
    assert changed == ["config_path"]


# --- make serve: runner deployments built from the same entries -----------------------------------


def test_serve_builds_every_deployment_with_its_schedules_limit_and_fleet(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    deployments = {d.name: d for d in build_deployments(SPECS, fleet_choices(demo_fleet(tmp_path)), fleet)}
    assert sorted(deployments) == sorted(spec.name for spec in SPECS)
    for spec in SPECS:
        deployment = deployments[spec.name]
        assert deployment.entrypoint == spec.entrypoint
        assert deployment.enforce_parameter_schema
        assert [s.schedule.cron for s in deployment.schedules or []] == [s.cron for s in spec.schedules]  # type: ignore[union-attr]
    cleanup = deployments["nightly-cleanup"]
    assert cleanup.concurrency_limit == 1
    assert cleanup.concurrency_options is not None
    assert cleanup.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
    assert cleanup.parameters["config_path"] == str(fleet)
    assert deployments["performance"].parameters["request"]["config_path"] == str(fleet)
    lifecycle = deployments["on-demand"]._parameter_openapi_schema.definitions["LifecycleRequest"]["properties"]
    assert lifecycle["config_path"]["default"] == str(fleet)
    assert lifecycle["source_env"]["enum"] == ["development", "staging", "production"]


def test_served_parameters_point_model_parameters_at_the_fleet_only_when_given() -> None:
    schema = {
        "properties": {"request": {"$ref": "#/definitions/R"}, "other": {"$ref": "#/definitions/R"}},
        "definitions": {"R": {"properties": {"config_path": {"type": "string"}}}},
    }
    result = served_parameters({"request": {"scenario": "smoke"}}, schema, Path("/f/fleet.yaml"))
    assert result == {"request": {"scenario": "smoke", "config_path": "/f/fleet.yaml"}}


# --- work pools -----------------------------------------------------------------------------------


def test_the_pool_specs_name_the_pool_the_deployments_use_and_a_kubernetes_pool() -> None:
    specs = {spec.name: spec for spec in load_pool_specs()}
    assert specs["fleet-sandbox-process"].type == "process"
    assert specs["fleet-sandbox-kubernetes"].type == "kubernetes"
    assert {spec.work_pool.name for spec in SPECS if spec.work_pool} <= set(specs)


def test_the_kubernetes_job_template_declares_every_variable_it_uses() -> None:
    spec = next(spec for spec in load_pool_specs() if spec.type == "kubernetes")
    template = spec.job_template(Path(__file__).resolve().parents[2] / "deployments")
    assert template is not None
    used = {placeholder.name for placeholder in find_placeholders(template["job_configuration"])}
    declared = set(template["variables"]["properties"])
    assert used <= declared, f"undeclared: {used - declared}"
    variables = template["variables"]["properties"]
    env = variables["env"]["default"]
    assert env["FLEET_SANDBOX_HOME"] == "/opt/fleet-sandbox"
    assert env["PREFECT_RESULTS_LOCAL_STORAGE_PATH"].startswith(variables["shared_mount_path"]["default"])
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["{{ shared_volume_claim }}"]


# --- the worker image and the Kubernetes worker agree with the pool's job template ----------------

DEPLOYMENTS_DIR = Path(__file__).resolve().parents[2] / "deployments"
DOCKERFILE = DEPLOYMENTS_DIR.parent / "Dockerfile"


def kubernetes_template() -> dict[str, Any]:
    spec = next(spec for spec in load_pool_specs() if spec.type == "kubernetes")
    template = spec.job_template(DEPLOYMENTS_DIR)
    assert template is not None
    return template


def test_the_worker_manifest_runs_the_kubernetes_pool_with_what_its_jobs_use() -> None:
    documents = list(yaml.safe_load_all((DEPLOYMENTS_DIR / "kubernetes" / "worker.yaml").read_text()))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        by_kind.setdefault(document["kind"], []).append(document)
    defaults = {name: v.get("default") for name, v in kubernetes_template()["variables"]["properties"].items()}
    [namespace] = by_kind["Namespace"]
    assert namespace["metadata"]["name"] == defaults["namespace"]
    assert all(d["metadata"].get("namespace") == defaults["namespace"] for d in documents if d["kind"] != "Namespace")
    assert defaults["service_account_name"] in {sa["metadata"]["name"] for sa in by_kind["ServiceAccount"]}
    [claim] = by_kind["PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == defaults["shared_volume_claim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    [deployment] = by_kind["Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:3] == ["prefect", "worker", "start"]
    assert (
        args[args.index("--pool") + 1] == "fleet-sandbox-kubernetes" and args[args.index("--type") + 1] == "kubernetes"
    )
    [role] = by_kind["Role"]
    job_rules = [rule for rule in role["rules"] if "jobs" in rule["resources"]]
    assert job_rules and {"create", "watch", "delete"} <= set(job_rules[0]["verbs"])


def test_the_dockerfile_builds_the_home_the_pool_and_prefect_yaml_expect() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    env = kubernetes_template()["variables"]["properties"]["env"]["default"]
    assert f"FLEET_SANDBOX_HOME={env['FLEET_SANDBOX_HOME']}" in text
    assert f"WORKDIR {env['FLEET_SANDBOX_HOME']}" in text
    assert "pip install --no-cache-dir -r requirements.lock" in text
    assert "git" in text and "terraform version" in text
    assert '"--pool", "fleet-sandbox-kubernetes"' in text
    document = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    [step] = document["pull"]
    assert step["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ $FLEET_SANDBOX_HOME }}"


# --- the commands fail in one line ---------------------------------------------------------------


def test_the_commands_fail_in_one_line_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployments import forms, pools, serve

    monkeypatch.chdir(tmp_path)  # serve changes into the project; the test's directory is restored after

    assert pools.main(["--pool", "no-such-pool"]) == 1
    assert capsys.readouterr().err == "error: no pool spec in " + str(DEPLOYMENTS_DIR) + " for: no-such-pool\n"
    assert forms.main(["--config", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.yaml" in err and err.count("\n") == 1
    assert serve.main(["--only", "no-such-deployment", "--config", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
