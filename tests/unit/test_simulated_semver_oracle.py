"""The simulated source-controller held to the semver oracle's table (tests/semver_oracle_table.py).

The same tag sets, pushed in the same order into OCI image layouts (the simulated registry), the same
``OCIRepository`` objects, and the same answers the real source-controller gave in
tests/real/test_flux_semver_oracle.py: the tag of ``status.artifact.revision`` at the pushed digest, or
``Ready=False``/``ReadOperationFailed`` in source-controller's words. The Helm chart tag set is left out: the
simulation does not model a chart ``layerSelector`` (docs/simulation.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.drivers.cluster import ObjectRef
from sandbox.drivers.oci_artifact import FluxArtifact
from sandbox.drivers.oci_layout import OciLayoutRegistry
from sandbox.drivers.simulated_cluster import SimulatedCluster
from tests.semver_oracle_table import CASES, CHART_SETS, INVALID, TAG_SETS, Case

EXAMPLE_REPO = Path(__file__).resolve().parents[2] / "examples" / "fleet-repo"
FLUX_COMPONENTS = EXAMPLE_REPO / "clusters" / "development" / "flux-system" / "gotk-components.yaml"
HOST = "registry.example.com"
SIMULATED = [case for case in CASES if case.tags not in CHART_SETS]


def _url(tags: str) -> str:
    return f"oci://{HOST}/semver/{tags}"


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    """Every simulated case's OCIRepository once reconciled, with the digests pushed to its tag set."""
    tmp = tmp_path_factory.mktemp("simulated-semver-oracle")
    content = tmp / "content"
    content.mkdir()
    (content / "configmap.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n", encoding="utf-8")
    layouts: dict[str, Path] = {}
    digests: dict[str, dict[str, str]] = {}
    for name, tags in TAG_SETS.items():
        if name in CHART_SETS:
            continue
        layouts[_url(name)] = tmp / "registry" / name
        registry = OciLayoutRegistry(_url(name), layouts[_url(name)])
        digests[name] = {
            tag: registry.push_artifact(
                tag,
                FluxArtifact(
                    directory=content,
                    source="http://127.0.0.1/fleet.git",
                    revision=f"{tag}@sha1:{number:040x}",
                    created="2026-12-07T00:00:00Z",
                ),
            ).digest
            for number, tag in enumerate(tags)
        }
    (tmp / "cluster" / "external").mkdir(parents=True)
    cluster = SimulatedCluster(tmp / "cluster", clock=_Clock(), oci_layouts=layouts)
    for doc in yaml.safe_load_all(FLUX_COMPONENTS.read_text(encoding="utf-8")):
        if isinstance(doc, dict):
            cluster.apply(doc)
    for index, case in enumerate(SIMULATED):
        cluster.apply(
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "OCIRepository",
                "metadata": {"name": f"case-{index:02d}", "namespace": "flux-system"},
                "spec": {"interval": "10m", "url": _url(case.tags), "ref": {"semver": case.range}},
            }
        )
    cluster.tick()
    found: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
    for index, case in enumerate(SIMULATED):
        obj = cluster.get(ObjectRef("source.toolkit.fluxcd.io/v1", "OCIRepository", f"case-{index:02d}", "flux-system"))
        assert obj is not None
        found[case.id] = (obj, digests[case.tags])
    return found


@pytest.mark.parametrize("case", SIMULATED, ids=[case.id for case in SIMULATED])
def test_the_simulated_source_controller_picks_what_flux_picks(
    answers: dict[str, tuple[dict[str, Any], dict[str, str]]], case: Case
) -> None:
    obj, digests = answers[case.id]
    status = obj.get("status") or {}
    [ready] = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    revision = (status.get("artifact") or {}).get("revision") if ready["status"] == "True" else None
    picked = revision.partition("@")[0] if revision else None
    flux = None if case.expected == INVALID else case.expected
    assert picked == flux, (
        f"range {case.range!r} over tags [{', '.join(TAG_SETS[case.tags])}]: Flux picked {flux or 'nothing'}; "
        f"the simulation picked {picked or 'nothing'} (Ready={ready['status']}, {ready['reason']}: {ready['message']})"
    )
    if picked is not None:
        assert revision == f"{picked}@{digests[picked]}"
        assert ready["message"] == f"stored artifact for digest '{revision}'"  # source-controller's words
        return
    unable = f"failed to determine the artifact tag for '{_url(case.tags)}': "
    what = (
        f"semver '{case.range}' parse error: "
        if case.expected == INVALID
        else f"no match found for semver: {case.range}"
    )
    assert (ready["status"], ready["reason"]) == ("False", "ReadOperationFailed")
    assert ready["message"].startswith(unable + what), ready["message"]
