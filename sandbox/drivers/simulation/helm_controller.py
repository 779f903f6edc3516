"""The simulated helm-controller: HelmRelease.

It renders the release's chart (:mod:`sandbox.drivers.simulation.charts`) once
its source has an artifact (as source-controller builds a HelmChart from the
last stored one), applies what the chart renders with the release's owner
labels, keeps a Helm-like history, and uninstalls the release's objects when
the HelmRelease is deleted (not when it is suspended).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sandbox.drivers.simulation.apimachinery import (
    Key,
    SimulatedApiError,
    key_to_str,
    resource_name,
    str_to_key,
    timestamp,
)
from sandbox.drivers.simulation.apiserver import SimulatedApiServer
from sandbox.drivers.simulation.charts import release_name, render_chart
from sandbox.drivers.simulation.reconciling import (
    FLUX_FINALIZER,
    HELM_GROUP,
    RETRY_SECONDS,
    SOURCE_GROUP,
    ReconcileFailure,
    check_dependencies,
    deleting,
    describe_manifest,
    ensure_flux_finalizer,
    object_key_of_manifest,
    owned_by,
    ready_condition,
    report_ready,
    requested_at,
    settled,
    write_status_fields,
)
from sandbox.drivers.simulation.settings import SimulationSettings
from sandbox.drivers.simulation.source_controller import source_artifact
from sandbox.drivers.simulation.sources import (
    artifact_digest,
)
from sandbox.errors import InvalidInputError

HELM_NAME_LABEL = "helm.toolkit.fluxcd.io/name"
HELM_NAMESPACE_LABEL = "helm.toolkit.fluxcd.io/namespace"


def chart_of(release: Mapping[str, Any]) -> str:
    """The chart a HelmRelease installs (``spec.chart.spec.chart`` or ``spec.chartRef.name``)."""
    spec = release.get("spec") or {}
    chart_spec = (spec.get("chart") or {}).get("spec") or {}
    return str(chart_spec.get("chart") or (spec.get("chartRef") or {}).get("name") or "")


def _check_chart_version(version: str, helm_chart: str) -> None:
    # source-controller stalls the HelmChart (InvalidChartReference) and helm-controller reports the release
    # SourceNotReady with the HelmChart's message, as for a missing chart path (helm-controller v1.6
    # isSourceReady: a stalled HelmChart is "not ready" with its Stalled message).
    improper = ReconcileFailure(
        "SourceNotReady",
        f"HelmChart '{helm_chart}' is not ready: invalid chart reference: failed to get chart version for remote "
        f"reference: improper constraint: {version}",
    )
    if "${" in version:
        raise improper
    try:
        from sandbox import versions
    except ImportError:  # pragma: no cover - sandbox.versions ships with the product
        return
    try:
        versions.parse_constraint(version)
    except InvalidInputError:
        raise improper from None


#: Sources whose ``spec.chart.spec.chart`` is a path in the source's artifact (not a chart name in a repository).
CHART_PATH_SOURCES = frozenset({"GitRepository", "Bucket"})


def _check_chart_path(server: SimulatedApiServer, source: Mapping[str, Any], chart: str, helm_chart: str) -> None:
    """A chart path missing from a GitRepository's (or Bucket's) artifact fails the HelmChart, and so the release.

    source-controller stats the path before it packages the chart: the HelmChart is ``Stalled`` with reason
    ``InvalidChartReference``, and helm-controller reports the release ``SourceNotReady`` with the HelmChart's
    message (seen on a real cluster with Flux 2.9:
    tests/conformance/test_simulated_vs_real.py::test_readiness_names_a_helmrelease_whose_chart_does_not_exist).
    The simulated message names the path as written; the real one the controller's temporary directory.
    """
    artifact = source_artifact(server, source)
    if artifact is None:
        return  # no artifact yet: the source's own readiness speaks for it
    _, root = artifact
    relative = chart.removeprefix("./")
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_dir():
        raise ReconcileFailure(
            "SourceNotReady",
            f"HelmChart '{helm_chart}' is not ready: invalid chart reference: stat {relative}: "
            "no such file or directory",
        )


def _has_artifact(source: Mapping[str, Any]) -> bool:
    return bool((source.get("status") or {}).get("artifact"))


def _check_chart_template_source(
    source: Mapping[str, Any] | None, source_kind: str, source_name: str, helm_chart: str
) -> None:
    """The source of a release's chart template, as the HelmChart helm-controller makes for it sees it.

    helm-controller reports the release ``SourceNotReady`` with the HelmChart's message. source-controller
    builds the chart from the source's stored artifact, whether or not the source's last fetch succeeded: only
    a source with no artifact (never fetched) holds the chart back. An OCI HelmRepository has no artifact at all.
    The missing source is seen on a real cluster with Flux 2.9, the one without an artifact too
    (tests/conformance/test_simulated_vs_real.py::test_readiness_names_a_helmrelease_whose_chart_does_not_exist).
    """
    if source is None:
        raise ReconcileFailure(
            "SourceNotReady",
            f"HelmChart '{helm_chart}' is not ready: failed to get source: "
            f'{source_kind}.{SOURCE_GROUP} "{source_name}" not found',
        )
    oci_helm_repository = source_kind == "HelmRepository" and (source.get("spec") or {}).get("type") == "oci"
    if not oci_helm_repository and not _has_artifact(source):
        raise ReconcileFailure(
            "SourceNotReady",
            f"HelmChart '{helm_chart}' is not ready: no artifact available for {source_kind} source '{source_name}'",
        )


def _check_chart_ref_source(
    source: Mapping[str, Any] | None, source_kind: str, source_namespace: str, source_name: str
) -> None:
    """The source a release's ``spec.chartRef`` names (an OCIRepository or a HelmChart), as helm-controller reads it.

    From helm-controller v1.6's ``getSource`` and ``isReady`` (not observed on a real cluster: the conformance
    module runs no chart registry): a missing source is ``ArtifactFailed``; a source whose current generation is
    not reconciled is ``SourceNotReady`` with its own Ready message, one without an artifact ``SourceNotReady``
    too.
    """
    if source is None:
        resource = resource_name(source_kind, SOURCE_GROUP)
        raise ReconcileFailure("ArtifactFailed", f'could not get Source object: {resource} "{source_name}" not found')
    not_ready = f"{source_kind} '{source_namespace}/{source_name}' is not ready: "
    if (source.get("status") or {}).get("observedGeneration") != source["metadata"].get("generation"):
        condition = ready_condition(source)
        if condition is not None and condition.get("status") == "False":
            raise ReconcileFailure("SourceNotReady", not_ready + str(condition.get("message", "")))
        raise ReconcileFailure("SourceNotReady", not_ready + "latest generation of object has not been reconciled")
    if not _has_artifact(source):
        raise ReconcileFailure("SourceNotReady", not_ready + "does not have an artifact")


def _uninstall(server: SimulatedApiServer, release: Mapping[str, Any]) -> None:
    for text in server.internal(release).get("rendered") or []:
        key = str_to_key(text)
        obj = server.get(key)
        if obj is not None and owned_by(obj, HELM_NAME_LABEL, HELM_NAMESPACE_LABEL, release):
            server.delete(key)


def reconcile_helmrelease(server: SimulatedApiServer, settings: SimulationSettings, key: Key) -> None:
    obj = server.get(key)
    if obj is None:
        return
    spec = obj.get("spec") or {}
    if deleting(obj):
        if FLUX_FINALIZER in (obj["metadata"].get("finalizers") or []):
            # helm-controller skips the uninstall of a suspended release: its objects stay.
            if not spec.get("suspend"):
                _uninstall(server, obj)
            server.remove_finalizer(key, FLUX_FINALIZER)
        return
    obj = ensure_flux_finalizer(server, key)
    if obj is None or spec.get("suspend"):
        return
    namespace, name = key[2], key[3]
    helm_chart = f"{namespace}/{namespace}-{name}"
    chart = chart_of(obj)
    chart_spec = (spec.get("chart") or {}).get("spec") or {}
    version = str(chart_spec.get("version") or "*")
    target_namespace = str(spec.get("targetNamespace") or namespace)
    release = release_name(name, spec.get("targetNamespace"), spec.get("releaseName"))
    try:
        check_dependencies(server, obj, HELM_GROUP, "HelmRelease")
        if spec.get("chartRef"):
            source_ref = spec["chartRef"]
            source_kind = str(source_ref.get("kind", "OCIRepository"))
        else:
            source_ref = chart_spec.get("sourceRef") or {}
            source_kind = str(source_ref.get("kind", "HelmRepository"))
            if not chart:
                raise ReconcileFailure("InvalidChartReference", "spec.chart.spec.chart is required")
            _check_chart_version(version, helm_chart)
        source_namespace = str(source_ref.get("namespace") or namespace)
        source_name = str(source_ref.get("name", ""))
        source = server.get((SOURCE_GROUP, source_kind, source_namespace, source_name))
        if spec.get("chartRef"):
            _check_chart_ref_source(source, source_kind, source_namespace, source_name)
        else:
            _check_chart_template_source(source, source_kind, source_name, helm_chart)
            if source is not None and source_kind in CHART_PATH_SOURCES:
                _check_chart_path(server, source, chart, helm_chart)
    except ReconcileFailure as failure:
        report_ready(server, key, "False", failure.reason, failure.message, final=True)
        return
    record = server.internal(obj)
    attempt = f"{obj['metadata'].get('generation')}|{chart}|{version}|{requested_at(obj)}"
    retry_due = server.now - float(record.get("attemptedAt", 0.0)) >= RETRY_SECONDS
    history = list((obj.get("status") or {}).get("history") or [])
    action = "upgrade" if history else "install"
    if attempt != record.get("attempt") or (record.get("failure") and retry_due):
        values = spec.get("values") or {}
        rendered = render_chart(chart, version, release, target_namespace, values)
        owner_labels = {HELM_NAME_LABEL: name, HELM_NAMESPACE_LABEL: namespace}
        for manifest in rendered:
            manifest["metadata"]["labels"] = {**manifest["metadata"]["labels"], **owner_labels}
        try:
            for manifest in rendered:
                try:
                    server.apply(manifest, dry_run=True)
                except (SimulatedApiError, InvalidInputError) as exc:
                    raise ReconcileFailure(
                        f"{action.capitalize()}Failed",
                        f"Helm {action} failed for release {target_namespace}/{release} with chart "
                        f"{chart}@{version}: {describe_manifest(manifest)}: {exc}",
                    ) from None
        except ReconcileFailure as failure:
            server.set_internal(obj, "failure", [failure.reason, failure.message])
        else:
            new_keys = [key_to_str(object_key_of_manifest(server, m)) for m in rendered]
            for manifest in rendered:
                server.apply(manifest)
            for text in record.get("rendered") or []:
                if text not in new_keys:
                    server.delete(str_to_key(text))
            version_number = (int(history[0].get("version", 0)) if history else 0) + 1
            for entry in history:
                entry["status"] = "superseded"
            snapshot = {
                "name": release,
                "namespace": target_namespace,
                "version": version_number,
                "status": "deployed",
                "chartName": chart,
                "chartVersion": version,
                "configDigest": artifact_digest(json.dumps(values, sort_keys=True)),
                "firstDeployed": history[-1]["firstDeployed"] if history else timestamp(server.now),
                "lastDeployed": timestamp(server.now),
            }
            server.set_internal(obj, "rendered", new_keys)
            server.set_internal(obj, "failure", None)
            server.set_internal(obj, "action", action)
            server.set_internal(obj, "progressSince", server.now)
            write_status_fields(
                server, key, {"history": [snapshot, *history][:5], "lastAttemptedReleaseAction": action}
            )
        server.set_internal(obj, "attempt", attempt)
        server.set_internal(obj, "attemptedAt", server.now)
    obj = server.get(key)
    if obj is None:
        return
    record = server.internal(obj)
    fields = {
        "lastAttemptedRevision": version,
        "lastAttemptedGeneration": obj["metadata"].get("generation"),
        "helmChart": helm_chart,
        "storageNamespace": namespace,
    }
    if record.get("failure"):
        reason, message = record["failure"]
        report_ready(server, key, "False", reason, message, final=True, fields=fields)
        return
    current_action = str(record.get("action", "install"))
    if not settled(server, obj, settings):
        report_ready(
            server,
            key,
            "Unknown",
            "Progressing",
            f"Running '{current_action}' action with timeout of 5m0s",
            final=False,
            fields=fields,
        )
        return
    latest = ((obj.get("status") or {}).get("history") or [{}])[0]
    report_ready(
        server,
        key,
        "True",
        f"{current_action.capitalize()}Succeeded",
        f"Helm {current_action} succeeded for release {target_namespace}/{release}.v{latest.get('version', 1)} "
        f"with chart {chart}@{version}",
        final=True,
        fields=fields,
    )
