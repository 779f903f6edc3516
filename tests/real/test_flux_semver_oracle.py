"""Flux is the oracle for semver ranges: source-controller and the project's resolver pick the same tag.

One local cluster (the example fleet's ``infra/local-cluster`` stack, real terraform) runs the real
source-controller (and notification-controller, which takes its events); one Debian docker-registry on loopback
holds one repository per tag set of ``TAG_SETS`` (tests/semver_oracle_table.py), every tag a Flux artifact pushed
with the project's registry driver (the release flow's). For every case of ``CASES`` (a range over a tag set) an
``OCIRepository`` with ``.spec.ref.semver`` is applied, all at once, and waited for together. Then each case, one
parametrized test each, compares:

* Flux's pick: the tag of ``status.artifact.revision`` (``<tag>@sha256:<manifest digest>``, the digest the
  driver pushed under that tag), or, when Flux finds no match, ``Ready=False`` with its reason and message;
* the project's pick: ``sandbox resolve --range R --registry oci://…/<tag set>`` (the CLI in-process: the
  registry driver's ``list_tags`` and :func:`sandbox.versions.resolve`, which ``sandbox release`` uses for a
  staging range), its tag on stdout, or exit 1 and its one-line error when nothing matches (exit 2, "invalid
  semver range", where Flux says "parse error").

OCI tags cannot hold ``+``; ``helm push`` writes ``_`` in its place. For a Flux artifact (an OCIRepository
without a Helm chart ``layerSelector``, as the release flow publishes the platform) source-controller does not map
``_`` back: a tag such as ``1.0.0_build.1`` is not a version and never picked; the ``build`` tag set holds such
tags. Only an OCIRepository whose ``layerSelector.mediaType`` is Helm's chart layer reads ``_`` as ``+``
(source-controller v1.9 ``convertOCIToSemVerTag``): the ``chart`` tag set (charts pushed as ``helm push`` does)
checks that and, through it, build metadata: the project's resolver, given the tags as Helm maps them, must pick
the same version (``sandbox resolve`` itself answers for a Flux artifact: docs/cli.md).

A failing case names the range, the tags, Flux's pick and the project's pick.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sandbox import versions
from sandbox.drivers.oci_artifact import HELM_CHART_CONTENT_MEDIA_TYPE, FluxArtifact, HelmChartArtifact
from sandbox.drivers.registry import OrasRegistry, PushedArtifact
from sandbox.localcluster.processes import find_local_cluster_processes, terminate
from sandbox.wiring import build_registry
from tests.integration.registry_fixture import LocalRegistry, oci_registry  # noqa: F401 - the fixture
from tests.real.conftest import left_behind
from tests.real.localstack import FLUX_COMPONENTS, Kubectl, LocalStack, condition
from tests.semver_oracle_table import CASES, CHART_SETS, INVALID, TAG_SETS, Case

pytestmark = pytest.mark.timeout(1200)

#: Generous: a loaded 2-core machine runs the control plane, source-controller and other sessions' tests.
WAIT = 300.0
CREATED = "2026-12-07T00:00:00Z"
#: A minimal fleet.yaml for the CLI (``sandbox resolve --registry`` reads one; the registry comes from the flag).
FLEET_YAML = Path(__file__).resolve().parents[1] / "fixtures" / "policy" / "clean" / "fleet.yaml"


@dataclass(frozen=True)
class FluxPick:
    """What source-controller reported for one case."""

    tag: str | None
    digest: str | None
    ready: dict[str, Any]

    def describe(self) -> str:
        if self.tag is not None:
            return self.tag
        if not self.ready:
            return "no answer (no Ready condition yet)"
        return f"no pick (Ready={self.ready.get('status')}, {self.ready.get('reason')}: {self.ready.get('message')})"


@dataclass
class Oracle:
    """The module's cluster after source-controller settled every case."""

    registry: LocalRegistry
    pushed: dict[str, dict[str, PushedArtifact]]
    picks: dict[str, FluxPick]
    cluster_dir: Path


def _push_tag_sets(registry: LocalRegistry, tmp: Path) -> dict[str, dict[str, PushedArtifact]]:
    """Every tag of every set, each a Flux artifact of its own (its revision annotation names the tag)."""
    content = tmp / "content"
    content.mkdir()
    (content / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: semver-oracle\n", encoding="utf-8"
    )
    pushed: dict[str, dict[str, PushedArtifact]] = {}
    for name, tags in TAG_SETS.items():
        driver = build_registry(registry.settings(f"semver/{name}"))
        pushed[name] = {}
        if name in CHART_SETS:
            pushed[name] = _push_charts(driver, name, tags, tmp)
            continue
        for number, tag in enumerate(tags):
            artifact = FluxArtifact(
                directory=content,
                source="http://127.0.0.1/fleet.git",
                revision=f"{tag}@sha1:{number:040x}",
                created=CREATED,
            )
            pushed[name][tag] = driver.push_artifact(tag, artifact)
    return pushed


def _push_charts(driver: object, name: str, tags: tuple[str, ...], tmp: Path) -> dict[str, PushedArtifact]:
    """One chart named ``name`` per tag, its version the tag with ``_`` read as ``+``, pushed as helm pushes it."""
    assert isinstance(driver, OrasRegistry)
    pushed: dict[str, PushedArtifact] = {}
    for tag in tags:
        chart = tmp / "charts" / tag
        (chart / "templates").mkdir(parents=True)
        version = tag.replace("_", "+")
        (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: {version}\n", encoding="utf-8")
        (chart / "templates" / "configmap.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: semver-oracle\n", encoding="utf-8"
        )
        pushed[tag] = driver.push_helm_chart(HelmChartArtifact(chart, created=CREATED))
        assert pushed[tag].tag == tag
    return pushed


def _object_name(index: int) -> str:
    return f"case-{index:02d}"


def _repositories(host: str) -> str:
    documents = [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "OCIRepository",
            "metadata": {"name": _object_name(index), "namespace": "flux-system"},
            "spec": {
                "interval": "10m",
                "insecure": True,
                "url": f"oci://{host}/semver/{case.tags}",
                "ref": {"semver": case.range},
                **(
                    {"layerSelector": {"mediaType": HELM_CHART_CONTENT_MEDIA_TYPE, "operation": "copy"}}
                    if case.tags in CHART_SETS
                    else {}
                ),
            },
        }
        for index, case in enumerate(CASES)
    ]
    return yaml.safe_dump_all(documents, sort_keys=False)


#: The Flux controllers a semver case needs: source-controller, and notification-controller to take its events
#: (without it each reconcile spends ~15 s retrying the event's POST).
CONTROLLERS = ("source-controller", "notification-controller")


def _flux_for_sources() -> str:
    """The local Flux install without kustomize- and helm-controller's Deployments (no case needs them)."""
    documents = [
        doc
        for doc in yaml.safe_load_all(FLUX_COMPONENTS.read_text(encoding="utf-8"))
        if doc and not (doc["kind"] == "Deployment" and doc["metadata"]["name"] not in CONTROLLERS)
    ]
    return yaml.safe_dump_all(documents, sort_keys=False)


#: source-controller's words for a range's own failure: no tag matches, or the range does not parse.
SEMVER_FAILURES = ("no match found for semver: ", "parse error")


def _final(item: dict[str, Any]) -> bool:
    """Whether an OCIRepository has its answer: an artifact stored, or a failure of its range.

    Flux patches the conditions, then the rest of the status: Ready=True is final once the artifact is there. A
    failing range is retried with back-off (Ready Unknown while it runs): its first Ready=False is its answer. Any
    other failure (the registry unreachable for a moment) is waited out, as source-controller retries it.
    """
    ready = condition(item, "Ready") or {}
    if ready.get("status") == "True":
        return bool((item.get("status") or {}).get("artifact"))
    return ready.get("status") == "False" and any(words in ready.get("message", "") for words in SEMVER_FAILURES)


def _settle(k: Kubectl, answers: dict[str, dict[str, Any]], latest: dict[str, dict[str, Any]]) -> bool:
    """Record each case's OCIRepository as last seen, and the first time it has its answer; True once all have."""
    for item in k.json("-n", "flux-system", "ocirepositories")["items"]:
        name = item["metadata"]["name"]
        latest[name] = item
        if name not in answers and _final(item):
            answers[name] = item
    return all(_object_name(index) in answers for index in range(len(CASES)))


def _explain(k: Kubectl, stack: LocalStack) -> None:
    """Print what was not settled, and the end of source-controller's log (pytest shows it with the failure)."""
    for item in k.json("-n", "flux-system", "ocirepositories")["items"]:
        print(item["metadata"]["name"], json.dumps((item.get("status") or {}).get("conditions")))
    log = stack.cluster_dir / "logs" / "source-controller.log"
    print(log.read_text(encoding="utf-8", errors="replace")[-4000:] if log.exists() else f"no {log}")


def _flux_pick(obj: dict[str, Any]) -> FluxPick:
    ready = condition(obj, "Ready") or {}
    artifact = (obj.get("status") or {}).get("artifact")
    if ready.get("status") == "True" and artifact:
        tag, _, digest = str(artifact["revision"]).partition("@")
        return FluxPick(tag, digest, ready)
    return FluxPick(None, None, ready)


@pytest.fixture(scope="module")
def oracle(
    terraform: str,
    kubectl: str,
    tmp_path_factory: pytest.TempPathFactory,
    oci_registry: LocalRegistry,  # noqa: F811 - the fixture
) -> Iterator[Oracle]:
    """One cluster and one registry for the module; every case applied at once and waited for together."""
    tmp = tmp_path_factory.mktemp("semver-oracle")
    pushed = _push_tag_sets(oci_registry, tmp)
    stack = LocalStack(terraform, tmp / "stack", "semver")
    try:
        stack.apply()
        k = Kubectl(kubectl, stack.kubeconfig)
        k("apply", "--server-side", "-f", "-", stdin=_flux_for_sources())
        deployments = [f"deployment/{name}" for name in CONTROLLERS]
        k("-n", "flux-system", "wait", "--for=condition=Available", *deployments, "--timeout=300s")
        k("apply", "-f", "-", stdin=_repositories(oci_registry.host))
        answers: dict[str, dict[str, Any]] = {}
        latest: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + WAIT
        while not _settle(k, answers, latest) and time.monotonic() < deadline:
            time.sleep(2.0)
        if len(answers) < len(CASES):
            # Not a timed assertion: each case without an answer fails on its own, naming Flux's last word.
            _explain(k, stack)
        picks = {
            case.id: _flux_pick(answers.get(_object_name(index)) or latest.get(_object_name(index), {}))
            for index, case in enumerate(CASES)
        }
        yield Oracle(oci_registry, pushed, picks, stack.cluster_dir)
    finally:
        stack.destroy()
    assert find_local_cluster_processes(stack.cluster_dir) == []
    assert not stack.cluster_dir.exists()


@pytest.fixture(autouse=True)
def _no_local_cluster_process_left(oracle: Oracle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Replaces the tier's per-test check: the module's one cluster outlives each test (its fixture stops it and
    checks nothing of it is left); any other local-cluster process left after a test still fails it."""
    yield
    left = [
        p
        for p in left_behind(tmp_path_factory.getbasetemp().resolve())
        if oracle.cluster_dir.resolve() not in (Path(p.cluster_dir), *Path(p.cluster_dir).parents)
    ]
    if left:
        terminate(left, grace=5.0)
        named = ", ".join(f"{p.component} (pid {p.pid}, {p.cluster_dir})" for p in left)
        pytest.fail(f"local-cluster processes left running after the test: {named}", pytrace=False)


def _project_pick(oracle: Oracle, case: Case) -> tuple[str | None, str, int]:
    """The project's pick for the case's repository: (the tag or None, what it said, its exit code).

    A Flux artifact's tag set: ``sandbox resolve --registry`` (its stdout; exit 1 or 2 and its one-line error).
    A chart tag set: :func:`sandbox.versions.resolve` over the registry's tags as Helm maps them.
    """
    from cli.main import app

    url = f"oci://{oracle.registry.host}/semver/{case.tags}"
    if case.tags in CHART_SETS:
        tags = build_registry(oracle.registry.settings(f"semver/{case.tags}")).list_tags()
        picked = versions.resolve(case.range, [tag.replace("_", "+") for tag in tags])
        return (None, "no match", 1) if picked is None else (picked.replace("+", "_"), picked, 0)
    result = CliRunner().invoke(
        app, ["resolve", "--range", case.range, "--registry", url, "--insecure-registry", "--config", str(FLEET_YAML)]
    )
    if result.exit_code == 0:
        return result.stdout.strip(), result.stdout, 0
    return None, result.stderr or result.output, result.exit_code


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_project_picks_the_tag_flux_picks(oracle: Oracle, case: Case) -> None:
    flux = oracle.picks[case.id]
    project, printed, code = _project_pick(oracle, case)
    tags = ", ".join(TAG_SETS[case.tags])
    assert project == flux.tag, (
        f"range {case.range!r} over tags [{tags}]: Flux picked {flux.describe()}; the project picked "
        f"{project or 'nothing'} ({printed.strip()})"
    )
    # The table's expectation, checked against Flux (the oracle) as well: a wrong line in the table shows here.
    assert flux.tag == (None if case.expected == INVALID else case.expected), (
        f"range {case.range!r} over [{tags}]: Flux picked {flux.describe()}"
    )
    if flux.tag is not None:
        assert flux.digest == oracle.pushed[case.tags][flux.tag].digest
        assert flux.ready["message"] == f"stored artifact for digest '{flux.tag}@{flux.digest}'"
    elif case.expected == INVALID:
        assert (flux.ready.get("status"), flux.ready.get("reason")) == ("False", "ReadOperationFailed")
        assert f"semver '{case.range}' parse error" in flux.ready.get("message", "")
        assert (code, printed.startswith(f"sandbox: error: invalid semver range {case.range!r}")) == (2, True), printed
    elif case.tags in CHART_SETS:
        assert (flux.ready.get("status"), flux.ready.get("reason")) == ("False", "ReadOperationFailed")
        assert code == 1
    else:
        # Both say so: source-controller's reason and message, the project's one-line error (exit 1).
        assert (flux.ready.get("status"), flux.ready.get("reason")) == ("False", "ReadOperationFailed")
        assert f"no match found for semver: {case.range}" in flux.ready.get("message", "")
        assert code == 1
        assert printed == (
            f"sandbox: error: no tag of {len(TAG_SETS[case.tags])} in oci://{oracle.registry.host}/semver/"
            f"{case.tags} satisfies {case.range!r}\n"
        )
