"""Run forms that offer the fleet's own choices: environments and load scenarios as drop-downs.

A flow's parameter schema is the same for every fleet, so a field such as
``source_env`` is a free string there: the environments are whatever the fleet's
``fleet.yaml`` declares (development, staging, production, a canary, ...). A
deployment, though, serves one fleet, so its schema can list that fleet's names:
the Prefect UI then renders the field as a select, and the server (the deployments
enforce their parameter schema) rejects a run asking for an environment the fleet
does not have before any worker starts it.

Fields are found by name, wherever they are in the schema (a flow parameter, a
property of a parameter model, a nullable one):

=============  =====================================================
field          choices
=============  =====================================================
source_env     ``environments`` of fleet.yaml
environment    ``environments`` of fleet.yaml
scenario       ``performance.scenarios`` of fleet.yaml
=============  =====================================================

``python -m deployments.forms --config fleet.yaml`` applies this to the
deployments of ``prefect.yaml`` already on the server (after ``prefect deploy``);
``python -m deployments.serve`` applies it to what it serves.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import httpx

from sandbox.config import FleetConfig, load_config
from sandbox.errors import SandboxError

#: Schema property names whose values are the fleet's environments.
ENVIRONMENT_FIELDS = frozenset({"source_env", "environment"})
#: Schema property names whose values are the fleet's load scenarios.
SCENARIO_FIELDS = frozenset({"scenario"})


#: Schema property names whose values must match one of the fleet's patterns (``pattern``).
TICKET_FIELDS = frozenset({"ticket"})

#: Labels of flow parameters by name: Prefect titles a parameter by its Python name
#: ("request", "dry_run"); a parameter whose model has a title takes that instead.
PARAMETER_TITLES = {
    "config_path": "Fleet configuration",
    "dry_run": "Dry run (only report what would be done)",
    "run_id": "Run id",
    "resume": "Resume an existing sandbox",
    "force": "Force (destroy even with pending finalizers)",
    "approve": "Approve (apply even if terraform destroys or replaces something)",
}


def fleet_choices(config: FleetConfig) -> dict[str, list[str]]:
    """The choices of each field name for ``config``'s fleet."""
    environments = list(config.environments)
    scenarios = list(config.performance.scenarios)
    choices = {name: environments for name in ENVIRONMENT_FIELDS}
    choices.update({name: scenarios for name in SCENARIO_FIELDS})
    return choices


def fleet_patterns(config: FleetConfig) -> dict[str, str]:
    """The JSON-schema ``pattern`` of each field name for ``config``'s fleet (anchored: a full match)."""
    ticket = f"^(?:{config.fleet_repo.ticket_pattern})$"
    return {name: ticket for name in TICKET_FIELDS}


def with_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a parameter schema whose flow parameters have human labels.

    A parameter whose type is a model with a title (``LifecycleRequest`` is
    "Sandbox") takes that title; others take :data:`PARAMETER_TITLES` or their
    name in words ("dry_run" -> "Dry run").
    """
    result = copy.deepcopy(schema)
    definitions = result.get("definitions") or {}
    for name, prop in (result.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        refs = [prop] + [b for b in prop.get("allOf") or prop.get("anyOf") or [] if isinstance(b, dict)]
        titles = [definitions.get(str(r["$ref"]).rsplit("/", 1)[-1], {}).get("title") for r in refs if "$ref" in r]
        model_title = next((t for t in titles if t), None)
        prop["title"] = model_title or PARAMETER_TITLES.get(name) or name.replace("_", " ").capitalize()
    return result


def _restrict(prop: dict[str, Any], values: list[str], optional: bool = False) -> bool:
    """Give a string property (or the string branch of a nullable one) ``enum: values``.

    An optional plain string field (no default, not required) keeps accepting null,
    as Prefect's server lets such a field be: API clients send ``null`` for a field
    they leave out (the form shows the choices alone).
    """
    if prop.get("type") == "string":
        prop["enum"] = list(values) + ([None] if optional and "default" not in prop else [])
        return True
    branches = prop.get("anyOf")
    if isinstance(branches, list):
        strings = [b for b in branches if isinstance(b, dict) and b.get("type") == "string"]
        for branch in strings:
            branch["enum"] = list(values)
        return bool(strings)
    return False


def with_choices(
    schema: dict[str, Any],
    choices: dict[str, list[str]],
    defaults: dict[str, str] | None = None,
    patterns: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """A copy of a parameter schema with ``enum`` on every string field named in ``choices``.

    A field whose default is not among its choices keeps its default (the server
    does not validate defaults); a run that uses it fails in the flow, naming the
    fleet's environments.

    Args:
        schema: A deployment's parameter schema.
        choices: Field name -> allowed values.
        defaults: Field name -> the default the form shows (e.g. ``config_path`` of
            a served fleet); only string fields that have a default get a new one.
        patterns: Field name -> the ``pattern`` its string value must match (``fleet_patterns``).

    Returns:
        The new schema and the dotted paths of the fields changed (e.g.
        ``definitions.LifecycleRequest.source_env``).
    """
    result = copy.deepcopy(schema)
    changed: list[str] = []
    defaults = defaults or {}
    patterns = patterns or {}

    def visit(properties: dict[str, Any], where: str, required: list[str]) -> None:
        for name, prop in properties.items():
            if not isinstance(prop, dict):
                continue
            restricted = name in choices and _restrict(prop, choices[name], optional=name not in required)
            if name in defaults and prop.get("type") == "string" and "default" in prop:
                prop["default"] = defaults[name]
                restricted = True
            if name in patterns and prop.get("type") == "string":
                prop["pattern"] = patterns[name]
                restricted = True
            if restricted:
                changed.append(f"{where}{name}")

    visit(result.get("properties") or {}, "", result.get("required") or [])
    for model, definition in (result.get("definitions") or {}).items():
        visit(definition.get("properties") or {}, f"definitions.{model}.", definition.get("required") or [])
    return result, changed


def apply_to_server(config_path: Path, prefect_yaml: Path | None = None) -> list[str]:
    """Restrict the run forms of ``prefect.yaml``'s deployments on the server (``PREFECT_API_URL``).

    Returns:
        ``flow/deployment: fields`` for each deployment changed (``labels`` when only its labels were).

    Raises:
        LookupError: A deployment of ``prefect.yaml`` is not on the server (run ``prefect deploy`` first).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.flows import load_flow_from_entrypoint

    from deployments.spec import PREFECT_YAML, load_deployments

    config = load_config(config_path)
    choices = fleet_choices(config)
    patterns = fleet_patterns(config)
    report = []
    with get_client(sync_client=True) as client:
        for spec in load_deployments(prefect_yaml or PREFECT_YAML):
            flow_name = load_flow_from_entrypoint(str(spec.entrypoint_path) + ":" + spec.function_name).name
            try:
                deployment = client.read_deployment_by_name(f"{flow_name}/{spec.name}")
            except ObjectNotFound:
                raise LookupError(f"deployment {flow_name}/{spec.name} is not on the server: prefect deploy") from None
            original = deployment.parameter_openapi_schema or {}
            schema, changed = with_choices(with_titles(original), choices, patterns=patterns)
            if changed or schema != original:
                client.update_deployment(deployment.id, DeploymentUpdate(parameter_openapi_schema=schema))
                # Sorted: a server on PostgreSQL keeps a schema's keys in its own order.
                report.append(f"{flow_name}/{spec.name}: {', '.join(sorted(changed)) or 'labels'}")
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m deployments.forms --config fleet.yaml``."""
    parser = argparse.ArgumentParser(prog="python -m deployments.forms", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("fleet.yaml"), help="the fleet's fleet.yaml")
    parser.add_argument("--prefect-yaml", type=Path, default=None, help="deployments file (default: the project's)")
    args = parser.parse_args(argv)
    try:
        for line in apply_to_server(args.config, args.prefect_yaml):
            print(line)
    except (LookupError, OSError, ValueError, httpx.HTTPError, SandboxError) as exc:
        # One line, no traceback: a missing deployment, an unreachable server, a bad fleet.yaml.
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
