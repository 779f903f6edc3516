"""OCI sources on the real local cluster: the real source-controller reads the Debian docker-registry on loopback.

One local cluster (the example fleet's ``infra/local-cluster`` stack, real terraform), Flux installed as on a cloud
cluster, and the registry the release tests run (tests/integration/registry_fixture.py: plain HTTP on 127.0.0.1).
Everything is pushed with the project's own registry driver (sandbox/drivers/registry.py, the release flow's):

* a Flux artifact of a small kustomize directory: an ``OCIRepository`` (``insecure: true``) becomes Ready at the
  pushed tag and manifest digest, and a ``Kustomization`` with that source applies it (kubectl sees the object,
  labelled by kustomize-controller);
* a tiny Helm chart, laid out as ``helm push`` does: an OCI ``HelmRepository`` (``type: oci``, ``insecure: true``)
  serves it, the ``HelmChart`` helm-controller creates for a ``HelmRelease`` gets its artifact from
  source-controller, and helm-controller installs the release (kubectl sees the ConfigMap the chart renders,
  labelled by helm-controller, and helm's release record).

Afterwards nothing of the cluster is left: no process, no directory.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sandbox.drivers.oci_artifact import FluxArtifact, HelmChartArtifact
from sandbox.drivers.registry import OrasRegistry, PushedArtifact
from sandbox.flux import readiness
from sandbox.localcluster.processes import find_local_cluster_processes
from sandbox.wiring import build_registry
from tests.integration.registry_fixture import LocalRegistry, oci_registry  # noqa: F401 - the fixture
from tests.polling import poll
from tests.real.localstack import FLUX_COMPONENTS, Kubectl, LocalStack

pytestmark = pytest.mark.timeout(1200)

CREATED = "2026-12-07T00:00:00Z"
TAG = "1.0.0"
APP = {
    "kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
    "  - namespace.yaml\n  - settings.yaml\n",
    "namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: oci-app\n",
    "settings.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: oci-app\n"
    "data:\n  greeting: hello from an OCI artifact\n",
}
CHART = "greeting"
CHART_VERSION = "0.1.0"
CHART_FILES = {
    "Chart.yaml": f"apiVersion: v2\nname: {CHART}\nversion: {CHART_VERSION}\ndescription: One ConfigMap\n",
    "values.yaml": "greeting: hello from a chart\n",
    "templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n"
    "data:\n  greeting: {{ .Values.greeting | quote }}\n",
}


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def _push_app(registry: LocalRegistry, tmp_path: Path) -> PushedArtifact:
    """The kustomize directory as a Flux artifact, pushed as the release flow pushes the platform."""
    driver = build_registry(registry.settings("fleet/oci-app"))
    artifact = FluxArtifact(
        directory=_write(tmp_path / "oci-app", APP),
        source="http://127.0.0.1/fleet.git",
        revision=f"{TAG}@sha1:{'a' * 40}",
        created=CREATED,
    )
    return driver.push_artifact(TAG, artifact)


def _push_chart(registry: LocalRegistry, tmp_path: Path) -> PushedArtifact:
    """The chart, in the repository named after it (``charts/greeting``)."""
    driver = build_registry(registry.settings(f"charts/{CHART}"))
    assert isinstance(driver, OrasRegistry)
    return driver.push_helm_chart(HelmChartArtifact(_write(tmp_path / "chart", CHART_FILES), created=CREATED))


def _sources(host: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: OCIRepository
        metadata: {{name: oci-app, namespace: flux-system}}
        spec:
          interval: 10m
          insecure: true
          url: oci://{host}/fleet/oci-app
          ref: {{tag: "{TAG}"}}
        ---
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata: {{name: oci-app, namespace: flux-system}}
        spec:
          interval: 10m
          path: ./
          prune: true
          sourceRef: {{kind: OCIRepository, name: oci-app}}
        ---
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: HelmRepository
        metadata: {{name: charts, namespace: flux-system}}
        spec:
          type: oci
          insecure: true
          interval: 10m
          url: oci://{host}/charts
        ---
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        metadata: {{name: greeting, namespace: flux-system}}
        spec:
          interval: 10m
          targetNamespace: oci-helm
          install: {{createNamespace: true}}
          chart:
            spec:
              chart: {CHART}
              version: "{CHART_VERSION}"
              sourceRef: {{kind: HelmRepository, name: charts}}
        """
    )


def _ready(k: Kubectl, kind: str, name: str) -> dict[str, Any] | None:
    """The object in flux-system once it is Ready for its generation (``None`` before, or while it does not exist).

    The Flux controllers write ``status.conditions`` first and the rest of the status (the artifact,
    ``lastAppliedRevision``, the history) in a second request: Ready=True alone can be read before the fields it
    speaks for. The product's readiness also waits for ``observedGeneration``, which closes that window.
    """
    text = k("get", "-n", "flux-system", kind, name, "-o", "json", "--ignore-not-found")
    if not text.strip():
        return None
    found: dict[str, Any] = json.loads(text)
    return found if readiness(found).ready else None


def test_oci_sources_read_the_loopback_registry(
    terraform: str,
    kubectl: str,
    tmp_path: Path,
    oci_registry: LocalRegistry,  # noqa: F811 - the fixture
) -> None:
    app = _push_app(oci_registry, tmp_path)
    chart = _push_chart(oci_registry, tmp_path)
    assert chart.tag == CHART_VERSION

    stack = LocalStack(terraform, tmp_path / "stack", "oci")
    stack.apply()
    k = Kubectl(kubectl, stack.kubeconfig)
    try:
        k("apply", "--server-side", "-f", str(FLUX_COMPONENTS))
        k("-n", "flux-system", "wait", "--for=condition=Available", "deployment", "--all", "--timeout=300s")
        k("apply", "-f", "-", stdin=_sources(oci_registry.host))

        # (a) The OCIRepository holds the pushed manifest; the Kustomization applied its content.
        repository = poll("OCIRepository oci-app Ready", lambda: _ready(k, "ocirepository", "oci-app"), 300)
        assert repository["status"]["artifact"]["revision"] == f"{TAG}@{app.digest}"
        # Stored by source-controller and served from its loopback artifact server to kustomize-controller.
        assert repository["status"]["artifact"]["url"].startswith("http://127.0.0.1:")
        kustomization = poll("Kustomization oci-app Ready", lambda: _ready(k, "kustomization", "oci-app"), 300)
        assert kustomization["status"]["lastAppliedRevision"] == f"{TAG}@{app.digest}"
        settings = k.json("-n", "oci-app", "configmap", "settings")
        assert settings["data"] == {"greeting": "hello from an OCI artifact"}
        assert settings["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "oci-app"

        # (b) source-controller pulled the chart into the HelmChart helm-controller made; helm-controller
        # installed it.
        helm_chart = poll(
            "HelmChart flux-system-greeting Ready", lambda: _ready(k, "helmchart", "flux-system-greeting"), 300
        )
        assert helm_chart["spec"]["sourceRef"] == {"kind": "HelmRepository", "name": "charts"}
        assert helm_chart["status"]["artifact"]["revision"] == CHART_VERSION
        assert helm_chart["status"]["observedChartName"] == CHART
        release = poll("HelmRelease greeting Ready", lambda: _ready(k, "helmrelease", "greeting"), 300)
        [installed] = release["status"]["history"]
        assert (installed["chartName"], installed["chartVersion"], installed["status"]) == (
            CHART,
            CHART_VERSION,
            "deployed",
        )
        rendered = k.json("-n", "oci-helm", "configmap", "oci-helm-greeting-settings")
        assert rendered["data"] == {"greeting": "hello from a chart"}
        assert rendered["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"] == "greeting"
        # Helm's release record, in the HelmRelease's namespace (its storage namespace by default).
        records = k.json("-n", "flux-system", "secrets", "-l", "owner=helm,name=oci-helm-greeting")["items"]
        assert [item["metadata"]["labels"]["status"] for item in records] == ["deployed"]
    finally:
        stack.destroy()
    assert find_local_cluster_processes(stack.cluster_dir) == []
    assert not stack.cluster_dir.exists()
