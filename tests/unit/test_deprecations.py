"""The static deprecated/removed API scanner: data, scanning rules and the ``scan`` command."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from cli.scan_cmd import scan
from sandbox import deprecations, manifest_objects
from sandbox.deprecations import (
    DeprecationDataError,
    InvalidVersionError,
    MinorVersion,
    ScanPathError,
    ScanReport,
    load_data,
    parse_version,
    scan_path,
)
from sandbox.errors import InvalidInputError
from tests.conftest import FIXTURES

SCAN = FIXTURES / "scan"
REPO = SCAN / "repo"

# (file relative to the scanned root, document index, kind, name) of each object by role.
LEGACY_INGRESS = ("apps/legacy/ingress.yaml", 0, "Ingress", "legacy-web")
CRONJOB = ("apps/legacy/cronjob.yaml", 0, "CronJob", "nightly-report")
HPA_V2BETA2 = ("apps/legacy/hpa.yaml", 0, "HorizontalPodAutoscaler", "api")
PSP = ("platform/security/psp.yaml", 0, "PodSecurityPolicy", "restricted")
PDB = ("platform/security/psp.yaml", 2, "PodDisruptionBudget", "api-pdb")
FLOWSCHEMA_V1BETA2 = ("platform/flowcontrol/apf.yaml", 0, "FlowSchema", "batch-jobs")
PLC_V1BETA3 = ("platform/flowcontrol/apf.yaml", 1, "PriorityLevelConfiguration", "batch")
LIST_INGRESS = ("lists/all.yaml", 1, "Ingress", "list-ingress")
LIST_ROLEBINDING = ("lists/all.yaml", 1, "RoleBinding", "list-binding")
JSON_HPA = ("json/hpa.json", 0, "HorizontalPodAutoscaler", "worker")

FLUX_KUSTOMIZATION_V1BETA2 = ("flux/apps.yaml", 0, "Kustomization", "apps")
FLUX_OCIREPOSITORY_V1BETA2 = ("flux/podinfo.yaml", 0, "OCIRepository", "podinfo")
FLUX_HELMRELEASE_V2BETA1 = ("flux/podinfo.yaml", 1, "HelmRelease", "podinfo")
FLUX_IMAGE_AUTOMATION_V1BETA2 = ("flux/image-automation.yaml", 0, "ImageUpdateAutomation", "fleet")
FLUX_ALERT_V1BETA2 = ("flux/notifications.yaml", 1, "Alert", "on-call")

KUBERNETES_OBJECTS = (
    LEGACY_INGRESS,
    CRONJOB,
    HPA_V2BETA2,
    PSP,
    PDB,
    FLOWSCHEMA_V1BETA2,
    PLC_V1BETA3,
    LIST_INGRESS,
    LIST_ROLEBINDING,
    JSON_HPA,
)
FLUX_OBJECTS = (
    FLUX_KUSTOMIZATION_V1BETA2,
    FLUX_OCIREPOSITORY_V1BETA2,
    FLUX_HELMRELEASE_V2BETA1,
    FLUX_IMAGE_AUTOMATION_V1BETA2,
    FLUX_ALERT_V1BETA2,
)

Key = tuple[str, int, str, str]


def _statuses(report: ScanReport, root: Path = REPO) -> dict[Key, str]:
    """Each finding's key mapped to 'removed' or 'deprecated'."""
    statuses: dict[Key, str] = {}
    for finding in report.findings:
        assert finding.deprecated, "every finding is at least deprecated"
        key = (Path(finding.file).relative_to(root).as_posix(), finding.document, finding.kind, str(finding.name))
        assert key not in statuses, f"duplicate finding {key}"
        statuses[key] = "removed" if finding.removed else "deprecated"
    return statuses


def _only(statuses: dict[Key, str], objects: Iterable[Key]) -> dict[Key, str]:
    wanted = set(objects)
    return {key: status for key, status in statuses.items() if key in wanted}


def _expect(removed: Iterable[Key] = (), deprecated: Iterable[Key] = ()) -> dict[Key, str]:
    return {**dict.fromkeys(deprecated, "deprecated"), **dict.fromkeys(removed, "removed")}


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.25", (1, 25)), ("v1.25", (1, 25)), ("1.25.3", (1, 25)), ("v1.9.0", (1, 9)), ("2.10", (2, 10))],
)
def test_parse_version_accepts_minor_and_patch_forms(text: str, expected: tuple[int, int]) -> None:
    assert parse_version(text) == MinorVersion(*expected)


@pytest.mark.parametrize("text", ["", "1", "1.x", "one.two", "1.25.3.4", "V1.25", "1.025", "1.25-rc.1", " "])
def test_parse_version_rejects_anything_else_with_one_line(text: str) -> None:
    with pytest.raises(InvalidVersionError) as caught:
        parse_version(text, what="Kubernetes version")
    assert isinstance(caught.value, InvalidInputError)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("invalid Kubernetes version")


def test_versions_compare_numerically_not_as_text() -> None:
    assert parse_version("1.9") < parse_version("1.10") < parse_version("1.22")
    assert str(parse_version("v1.22.4")) == "1.22"


# --------------------------------------------------------------------------- the bundled data


def _entries_by_key() -> dict[tuple[str, str], deprecations.ApiDeprecation]:
    return {(entry.apiVersion, entry.kind): entry for entry in load_data().entries}


def test_data_names_its_sources() -> None:
    sources = load_data().sources
    assert "https://kubernetes.io/docs/reference/using-api/deprecation-guide/" in sources
    assert any("fluxcd.io/blog" in source for source in sources)


def test_data_file_quotes_every_version() -> None:
    # An unquoted 1.20 would be read as 1.2: the raw file must hold strings only.
    raw = yaml.safe_load(deprecations.DATA_FILE.read_text(encoding="utf-8"))
    for entry in raw["entries"]:
        for field in ("deprecated_in", "removed_in", "replacement_available_in"):
            assert entry[field] is None or isinstance(entry[field], str), (entry["apiVersion"], entry["kind"], field)


#: Deprecated stable APIs: never removed within a major version (the deprecation policy).
STABLE_DEPRECATED = {("v1", "Endpoints")}


def test_data_entries_are_consistent() -> None:
    for entry in load_data().entries:
        key = (entry.apiVersion, entry.kind)
        assert entry.component in {"kubernetes", "flux"}
        assert (entry.removed_version is None) == (key in STABLE_DEPRECATED), key
        assert entry.deprecated_version is not None
        assert entry.removed_version is None or entry.deprecated_version <= entry.removed_version
        if entry.replacement is not None:
            assert entry.replacement_available_in is not None
            assert entry.replacement != entry.apiVersion


def test_workloads_are_deprecated_when_apps_v1_arrived() -> None:
    """extensions/v1beta1 Deployment was deprecated in 1.9, when apps/v1 arrived (not 1.8), as pluto has it."""
    for entry in load_data().entries:
        if entry.replacement == "apps/v1":
            assert (entry.deprecated_in, entry.replacement_available_in) == ("1.9", "1.9"), (
                entry.apiVersion,
                entry.kind,
            )
    deployment = _entries_by_key()[("extensions/v1beta1", "Deployment")]
    assert (deployment.deprecated_in, deployment.replacement, deployment.replacement_available_in) == (
        "1.9",
        "apps/v1",
        "1.9",
    )


def test_every_row_names_its_source() -> None:
    for entry in load_data().entries:
        assert entry.source is not None and entry.source.startswith("https://"), (entry.apiVersion, entry.kind)
        if entry.component == "kubernetes" and entry.removed_in not in (None, "1.16"):
            guide = "https://kubernetes.io/docs/reference/using-api/deprecation-guide/#v1-"
            assert entry.source == guide + entry.removed_in.split(".")[1]


def test_the_data_cover_kubernetes_1_36_and_flux_2_9() -> None:
    data = load_data()
    assert (str(data.covered_version("kubernetes")), str(data.covered_version("flux"))) == ("1.36", "2.9")
    endpoints = _entries_by_key()[("v1", "Endpoints")]
    assert (endpoints.deprecated_in, endpoints.removed_in, endpoints.replacement) == (
        "1.33",
        None,
        "discovery.k8s.io/v1",
    )


def test_kubernetes_removals_follow_the_official_guide() -> None:
    removals: dict[str, set[tuple[str, str]]] = {}
    for (api_version, kind), entry in _entries_by_key().items():
        if entry.component == "kubernetes" and entry.removed_in is not None:
            removals.setdefault(entry.removed_in, set()).add((api_version, kind))
    assert sorted(removals, key=parse_version) == ["1.16", "1.22", "1.25", "1.26", "1.27", "1.29", "1.32"]
    assert {
        ("extensions/v1beta1", "Deployment"),
        ("apps/v1beta2", "DaemonSet"),
        ("extensions/v1beta1", "NetworkPolicy"),
        ("extensions/v1beta1", "PodSecurityPolicy"),
    } <= removals["1.16"]
    assert {
        ("extensions/v1beta1", "Ingress"),
        ("networking.k8s.io/v1beta1", "Ingress"),
        ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"),
        ("rbac.authorization.k8s.io/v1beta1", "ClusterRole"),
    } <= removals["1.22"]
    assert {
        ("batch/v1beta1", "CronJob"),
        ("policy/v1beta1", "PodSecurityPolicy"),
        ("policy/v1beta1", "PodDisruptionBudget"),
        ("autoscaling/v2beta1", "HorizontalPodAutoscaler"),
    } <= removals["1.25"]
    assert removals["1.26"] == {
        ("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io/v1beta1", "PriorityLevelConfiguration"),
        ("autoscaling/v2beta2", "HorizontalPodAutoscaler"),
    }
    assert removals["1.27"] == {("storage.k8s.io/v1beta1", "CSIStorageCapacity")}
    assert removals["1.29"] == {
        ("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io/v1beta2", "PriorityLevelConfiguration"),
    }
    assert removals["1.32"] == {
        ("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io/v1beta3", "PriorityLevelConfiguration"),
    }


def test_well_known_kubernetes_entries_match_the_guide() -> None:
    entries = _entries_by_key()
    ingress = entries[("extensions/v1beta1", "Ingress")]
    assert (ingress.deprecated_in, ingress.removed_in, ingress.replacement, ingress.replacement_available_in) == (
        "1.14",
        "1.22",
        "networking.k8s.io/v1",
        "1.19",
    )
    cronjob = entries[("batch/v1beta1", "CronJob")]
    assert (cronjob.deprecated_in, cronjob.removed_in, cronjob.replacement) == ("1.21", "1.25", "batch/v1")
    psp = entries[("policy/v1beta1", "PodSecurityPolicy")]
    assert (psp.removed_in, psp.replacement) == ("1.25", None)
    hpa = entries[("autoscaling/v2beta2", "HorizontalPodAutoscaler")]
    assert (hpa.deprecated_in, hpa.removed_in, hpa.replacement, hpa.replacement_available_in) == (
        "1.23",
        "1.26",
        "autoscaling/v2",
        "1.23",
    )


def test_flux_removals_by_release() -> None:
    removals: dict[str, set[tuple[str, str]]] = {}
    for (api_version, kind), entry in _entries_by_key().items():
        if entry.component == "flux":
            removals.setdefault(str(entry.removed_in), set()).add((api_version, kind))
    assert sorted(removals, key=parse_version) == ["2.7", "2.8", "2.9"]
    groups = {release: {api_version for api_version, _ in apis} for release, apis in removals.items()}
    assert groups["2.7"] == {
        "source.toolkit.fluxcd.io/v1beta1",
        "kustomize.toolkit.fluxcd.io/v1beta1",
        "helm.toolkit.fluxcd.io/v2beta1",
        "image.toolkit.fluxcd.io/v1beta1",
        "notification.toolkit.fluxcd.io/v1beta1",
    }
    assert groups["2.8"] == {
        "source.toolkit.fluxcd.io/v1beta2",
        "kustomize.toolkit.fluxcd.io/v1beta2",
        "helm.toolkit.fluxcd.io/v2beta2",
    }
    assert groups["2.9"] == {"image.toolkit.fluxcd.io/v1beta2", "notification.toolkit.fluxcd.io/v1beta2"}
    assert ("source.toolkit.fluxcd.io/v1beta2", "OCIRepository") in removals["2.8"]


def test_flux_replacements_and_their_first_releases() -> None:
    entries = _entries_by_key()
    oci = entries[("source.toolkit.fluxcd.io/v1beta2", "OCIRepository")]
    assert (oci.deprecated_in, oci.replacement, oci.replacement_available_in) == (
        "2.6",
        "source.toolkit.fluxcd.io/v1",
        "2.6",
    )
    helm = entries[("helm.toolkit.fluxcd.io/v2beta1", "HelmRelease")]
    assert (helm.deprecated_in, helm.replacement, helm.replacement_available_in) == (
        "2.2",
        "helm.toolkit.fluxcd.io/v2",
        "2.3",
    )
    bucket = entries[("source.toolkit.fluxcd.io/v1beta2", "Bucket")]
    assert (bucket.deprecated_in, bucket.replacement_available_in) == ("2.4", "2.4")
    image = entries[("image.toolkit.fluxcd.io/v1beta2", "ImagePolicy")]
    assert (image.deprecated_in, image.removed_in, image.replacement_available_in) == ("2.7", "2.9", "2.7")


def test_newest_release_the_data_cover_is_the_default_target() -> None:
    data = load_data()
    assert str(data.newest_version("kubernetes")) == "1.33"
    assert str(data.newest_version("flux")) == "2.9"
    default = scan_path(REPO)
    assert default.targets == {"flux": "2.9", "kubernetes": "1.36"}
    explicit = scan_path(REPO, k8s_version="1.36", flux_version="2.9")
    assert default.to_json() == explicit.to_json()
    assert default.beyond_data == {} and "data_covers" not in default.to_json()


def test_a_target_past_the_data_is_scanned_with_a_warning() -> None:
    report = scan_path(REPO, k8s_version="1.37", flux_version="2.10")
    assert report.beyond_data == {"flux": "2.9", "kubernetes": "1.36"}
    document = report.to_json()
    assert (document["data_covers"], document["flux_data_covers"]) == ("1.36", "2.9")
    assert document["warnings"] == [
        "the deprecation data cover Flux up to 2.9; the target 2.10 is newer, "
        "so APIs deprecated or removed after 2.9 are not reported",
        "the deprecation data cover Kubernetes up to 1.36; the target 1.37 is newer, "
        "so APIs deprecated or removed after 1.36 are not reported",
    ]
    # Still scanned: what the data know is removed by then is reported.
    assert report.findings == scan_path(REPO, k8s_version="1.36", flux_version="2.9").findings


# --------------------------------------------------------------------------- scanning the fixture repo


@pytest.mark.parametrize(
    ("k8s_version", "expected"),
    [
        (
            "1.21",
            _expect(deprecated=[LEGACY_INGRESS, LIST_INGRESS, LIST_ROLEBINDING, CRONJOB, PSP, PDB]),
        ),
        (
            "1.22",
            _expect(
                removed=[LEGACY_INGRESS, LIST_INGRESS, LIST_ROLEBINDING],
                deprecated=[CRONJOB, PSP, PDB, JSON_HPA],
            ),
        ),
        (
            "1.25",
            _expect(
                removed=[LEGACY_INGRESS, LIST_INGRESS, LIST_ROLEBINDING, CRONJOB, PSP, PDB, JSON_HPA],
                deprecated=[HPA_V2BETA2],
            ),
        ),
        (
            "v1.29.2",
            _expect(
                removed=[
                    LEGACY_INGRESS,
                    LIST_INGRESS,
                    LIST_ROLEBINDING,
                    CRONJOB,
                    PSP,
                    PDB,
                    JSON_HPA,
                    HPA_V2BETA2,
                    FLOWSCHEMA_V1BETA2,
                ],
                deprecated=[PLC_V1BETA3],
            ),
        ),
        ("1.32", _expect(removed=KUBERNETES_OBJECTS)),
        ("1.13", _expect()),
    ],
)
def test_kubernetes_findings_per_target_version(k8s_version: str, expected: dict[Key, str]) -> None:
    report = scan_path(REPO, k8s_version=k8s_version, flux_version="2.0")
    statuses = _statuses(report)
    assert _only(statuses, KUBERNETES_OBJECTS) == expected
    # Nothing but the known Kubernetes and Flux objects is ever a finding.
    assert set(statuses) <= set(KUBERNETES_OBJECTS) | set(FLUX_OBJECTS)


@pytest.mark.parametrize(
    ("flux_version", "expected"),
    [
        ("1.99", _expect()),
        ("2.1", _expect(deprecated=[FLUX_KUSTOMIZATION_V1BETA2])),
        ("2.2", _expect(deprecated=[FLUX_KUSTOMIZATION_V1BETA2, FLUX_HELMRELEASE_V2BETA1, FLUX_ALERT_V1BETA2])),
        (
            "2.6",
            _expect(
                deprecated=[
                    FLUX_KUSTOMIZATION_V1BETA2,
                    FLUX_HELMRELEASE_V2BETA1,
                    FLUX_ALERT_V1BETA2,
                    FLUX_OCIREPOSITORY_V1BETA2,
                ]
            ),
        ),
        (
            "2.7",
            _expect(
                removed=[FLUX_HELMRELEASE_V2BETA1],
                deprecated=[
                    FLUX_KUSTOMIZATION_V1BETA2,
                    FLUX_ALERT_V1BETA2,
                    FLUX_OCIREPOSITORY_V1BETA2,
                    FLUX_IMAGE_AUTOMATION_V1BETA2,
                ],
            ),
        ),
        (
            "2.8.1",
            _expect(
                removed=[FLUX_HELMRELEASE_V2BETA1, FLUX_KUSTOMIZATION_V1BETA2, FLUX_OCIREPOSITORY_V1BETA2],
                deprecated=[FLUX_ALERT_V1BETA2, FLUX_IMAGE_AUTOMATION_V1BETA2],
            ),
        ),
        ("2.9", _expect(removed=FLUX_OBJECTS)),
    ],
)
def test_flux_findings_per_target_version(flux_version: str, expected: dict[Key, str]) -> None:
    report = scan_path(REPO, k8s_version="1.10", flux_version=flux_version)
    assert _only(_statuses(report), FLUX_OBJECTS) == expected
    assert report.targets["flux"] == str(parse_version(flux_version))


def test_finding_fields_and_json_shape() -> None:
    report = scan_path(REPO, k8s_version="1.25", flux_version="2.7")
    document = report.to_json()
    assert set(document) == {"findings", "skipped"}
    assert json.loads(report.to_json_text()) == document
    expected_keys = {
        "file",
        "document",
        "kind",
        "apiVersion",
        "name",
        "namespace",
        "deprecated",
        "removed",
        "deprecated_in",
        "removed_in",
        "replacement",
    }
    for finding in document["findings"]:
        assert set(finding) == expected_keys
    for skipped in document["skipped"]:
        assert set(skipped) == {"file", "reason"}

    by_name = {(f["kind"], f["name"]): f for f in document["findings"]}
    assert by_name[("CronJob", "nightly-report")] == {
        "file": str(REPO / "apps/legacy/cronjob.yaml"),
        "document": 0,
        "kind": "CronJob",
        "apiVersion": "batch/v1beta1",
        "name": "nightly-report",
        "namespace": "reports",
        "deprecated": True,
        "removed": True,
        "deprecated_in": "1.21",
        "removed_in": "1.25",
        "replacement": "batch/v1",
    }
    psp = by_name[("PodSecurityPolicy", "restricted")]
    assert (psp["namespace"], psp["replacement"]) == (None, None)
    hpa = by_name[("HorizontalPodAutoscaler", "api")]
    assert (hpa["deprecated"], hpa["removed"], hpa["replacement"]) == (True, False, "autoscaling/v2")
    helm = by_name[("HelmRelease", "podinfo")]
    assert (helm["apiVersion"], helm["removed"], helm["replacement"]) == (
        "helm.toolkit.fluxcd.io/v2beta1",
        True,
        "helm.toolkit.fluxcd.io/v2",
    )


def test_list_items_keep_the_document_index_of_their_list() -> None:
    report = scan_path(REPO / "lists" / "all.yaml", k8s_version="1.22")
    assert [(f.document, f.kind, f.apiVersion, f.name, f.namespace) for f in report.findings] == [
        (1, "Ingress", "networking.k8s.io/v1beta1", "list-ingress", "shop"),
        (1, "RoleBinding", "rbac.authorization.k8s.io/v1beta1", "list-binding", "shop"),
    ]


def test_skipped_files_are_listed_with_reasons() -> None:
    report = scan_path(REPO, k8s_version="1.25")
    reasons = {Path(s.file).relative_to(REPO).as_posix(): s.reason for s in report.skipped}
    assert set(reasons) == {
        "charts/podinfo/templates/deployment.yaml",
        "raw/helm-template.yaml",
        "broken/invalid.yaml",
    }
    assert "Helm chart template" in reasons["charts/podinfo/templates/deployment.yaml"]
    assert "template" in reasons["raw/helm-template.yaml"]
    assert reasons["broken/invalid.yaml"].startswith("invalid YAML:")
    assert "line 5" in reasons["broken/invalid.yaml"]
    for reason in reasons.values():
        assert "\n" not in reason


def test_non_manifest_files_are_neither_scanned_nor_skipped() -> None:
    report = scan_path(REPO, k8s_version="1.25")
    touched = {Path(f.file).relative_to(REPO).as_posix() for f in report.findings} | {
        Path(s.file).relative_to(REPO).as_posix() for s in report.skipped
    }
    # docs/migration.md and infra/main.tf mention removed APIs; the chart's values.yaml
    # mentions one as a value; PrometheusRule annotations contain {{ }} but are plain YAML.
    assert not any(name.startswith(("docs/", "infra/", "monitoring/")) for name in touched)
    assert "charts/podinfo/values.yaml" not in touched
    assert "charts/podinfo/Chart.yaml" not in touched


def test_kustomize_build_files_are_never_findings(tmp_path: Path) -> None:
    report = scan_path(REPO / "platform", k8s_version="1.32")
    files = {Path(f.file).name for f in report.findings}
    assert "kustomization.yaml" not in files
    # Even a data file that declares the kustomize config group deprecated cannot make them findings.
    extra = tmp_path / "kustomize.yaml"
    extra.write_text(
        "entries:\n"
        "  - {apiVersion: kustomize.config.k8s.io/v1beta1, kind: Kustomization, deprecated_in: '1.0',"
        " removed_in: '1.1', component: kubernetes}\n"
        "  - {apiVersion: kustomize.config.k8s.io/v1alpha1, kind: Component, deprecated_in: '1.0',"
        " component: kubernetes}\n",
        encoding="utf-8",
    )
    # A kustomize object copied under another name is still a build object, not a finding.
    (tmp_path / "overlay.yaml").write_text(
        (REPO / "platform" / "kustomization.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    with_extra = scan_path(REPO / "platform", k8s_version="1.32", extra_data=[extra])
    assert with_extra.to_json() == report.to_json()
    assert scan_path(tmp_path / "overlay.yaml", k8s_version="1.32", extra_data=[extra]).findings == []


def test_a_flux_kustomization_is_a_cluster_object_not_a_build_file() -> None:
    report = scan_path(REPO / "flux" / "apps.yaml", flux_version="2.8")
    assert [(f.kind, f.apiVersion, f.removed) for f in report.findings] == [
        ("Kustomization", "kustomize.toolkit.fluxcd.io/v1beta2", True)
    ]


def test_clean_tree_has_no_findings() -> None:
    report = scan_path(SCAN / "clean")
    assert report.findings == []
    assert report.skipped == []


# --------------------------------------------------------------------------- parsing details


def test_yaml_edge_cases(tmp_path: Path) -> None:
    (tmp_path / "stream.yaml").write_text(
        "# a comment before the first marker is not a document; the empty one after it is (index 0)\n"
        "---\n"
        "---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"
        "---\n"
        "base: &meta {name: anchored, namespace: ops}\n"
        "---\n"
        "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  <<: {name: merged, namespace: ops}\n"
        "---\n"
        'apiVersion: "policy/v1beta1"\nkind: PodDisruptionBudget\nmetadata: {name: 42, namespace: null}\n'
        "---\n"
        "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: tagged}\nspec: !custom {a: 1}\n",
        encoding="utf-8",
    )
    report = scan_path(tmp_path, k8s_version="1.25")
    assert report.skipped == []
    assert [(f.document, f.kind, f.name, f.namespace) for f in report.findings] == [
        (3, "CronJob", "merged", "ops"),
        (4, "PodDisruptionBudget", None, None),
        (5, "Ingress", "tagged", None),
    ]


@pytest.mark.parametrize(
    ("content", "reason_start"),
    [
        ("apiVersion: v1\nkind: [unclosed\n", "invalid YAML:"),
        ("a: *undefined\n", "invalid YAML: found undefined alias"),
        ("a: &x 1\nb: &x 2\n", "invalid YAML: found duplicate anchor"),
        ("apiVersion: {{ .Values.api }}\nkind: Deployment\n", "apiVersion or kind is a Go/Helm template"),
        ('apiVersion: "{{ .Values.api }}"\nkind: Ingress\n', "apiVersion or kind is a Go/Helm template"),
        ("{{- range .Values.items }}\n- {{ . }}\n{{- end }}\n", "not plain YAML"),
    ],
)
def test_unscannable_yaml_is_skipped_with_a_reason(tmp_path: Path, content: str, reason_start: str) -> None:
    (tmp_path / "file.yaml").write_text(content, encoding="utf-8")
    report = scan_path(tmp_path)
    assert report.findings == []
    assert [s.reason for s in report.skipped][0].startswith(reason_start)
    assert len(report.skipped) == 1


def test_json_files(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {"apiVersion": "extensions/v1beta1", "kind": "NetworkPolicy", "metadata": {"name": "deny"}},
                    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}},
                ],
            }
        ),
        encoding="utf-8",
    )
    (tmp_path / "package.json").write_text('{"name": "ui", "version": "1.0.0"}', encoding="utf-8")
    (tmp_path / "broken.json").write_text('{"apiVersion": ', encoding="utf-8")
    report = scan_path(tmp_path, k8s_version="1.16")
    assert [(Path(f.file).name, f.document, f.kind, f.removed) for f in report.findings] == [
        ("list.json", 0, "NetworkPolicy", True)
    ]
    assert [(Path(s.file).name, s.reason.split(":")[0]) for s in report.skipped] == [("broken.json", "invalid JSON")]


def test_non_utf8_file_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes("apiVersion: v1\nkind: ConfigMap\ndata: {city: K\xf6ln}\n".encode("latin-1"))
    report = scan_path(tmp_path)
    assert [s.reason for s in report.skipped] == ["not UTF-8 text"]


def test_fast_reader_agrees_with_composition() -> None:
    """The event-stream reader must give what composing the documents gives, on every fixture."""
    checked = 0
    for file in sorted(SCAN.rglob("*.y*ml")):
        text = file.read_text(encoding="utf-8")
        try:
            composed = manifest_objects._composed_objects(text)
        except yaml.YAMLError:
            with pytest.raises(yaml.YAMLError):
                manifest_objects._EventReader(text).read_stream()
            continue
        assert manifest_objects._EventReader(text).read_stream() == composed, file
        checked += 1
    assert checked >= 15


def test_dot_git_directories_are_not_walked(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "old.yaml").write_text("apiVersion: batch/v1beta1\nkind: CronJob\n", encoding="utf-8")
    assert scan_path(tmp_path).findings == []


# --------------------------------------------------------------------------- user data and errors


def test_extra_data_adds_components_checked_at_their_newest_release() -> None:
    extra = SCAN / "extra-data" / "cert-manager.yaml"
    without = scan_path(SCAN / "extra-data" / "certificate.yaml")
    assert without.findings == []
    report = scan_path(SCAN / "extra-data" / "certificate.yaml", extra_data=[extra])
    assert report.targets["cert-manager"] == "1.6"
    assert [(f.kind, f.name, f.removed, f.replacement) for f in report.findings] == [
        ("Certificate", "wildcard", True, "cert-manager.io/v1")
    ]


def test_extra_data_overrides_bundled_entries(tmp_path: Path) -> None:
    extra = tmp_path / "override.yaml"
    extra.write_text(
        "entries:\n"
        "  - {apiVersion: batch/v1beta1, kind: CronJob, deprecated_in: '1.30', removed_in: '1.31',"
        " replacement: batch/v1, replacement_available_in: '1.21', component: kubernetes}\n",
        encoding="utf-8",
    )
    report = scan_path(REPO / "apps" / "legacy" / "cronjob.yaml", k8s_version="1.25", extra_data=[extra])
    assert report.findings == []


@pytest.mark.parametrize(
    ("content", "message_part"),
    [
        ("entries:\n  - {apiVersion: a/v1, kind: A, deprecated_in: 1.20, component: kubernetes}\n", "quoted string"),
        ("entries:\n  - {apiVersion: a/v1, kind: A, deprecated_in: 'x', component: kubernetes}\n", "expected X.Y"),
        ("entries:\n  - {apiVersion: a/v1, kind: A, component: kubernetes}\n", "needs deprecated_in or removed_in"),
        (
            "entries:\n  - {apiVersion: a/v1, kind: A, deprecated_in: '1.5', removed_in: '1.4', component: k}\n",
            "before deprecated_in",
        ),
        ("entries:\n  - {apiVersion: a/v1, kind: A, removed_in: '1.4', component: kubernetes, extra: 1}\n", "extra"),
        ("- just a list\n", "must be a mapping"),
        ("entries: [\n", "not valid YAML"),
    ],
)
def test_bad_data_files_fail_with_one_line(tmp_path: Path, content: str, message_part: str) -> None:
    extra = tmp_path / "bad.yaml"
    extra.write_text(content, encoding="utf-8")
    with pytest.raises(DeprecationDataError) as caught:
        scan_path(SCAN / "clean", extra_data=[extra])
    assert message_part in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_path_and_bad_versions_are_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(ScanPathError, match="path not found"):
        scan_path(tmp_path / "nope")
    with pytest.raises(InvalidVersionError, match="invalid Kubernetes version"):
        scan_path(REPO, k8s_version="latest")
    with pytest.raises(InvalidVersionError, match="invalid Flux version"):
        scan_path(REPO, flux_version="2")
    with pytest.raises(DeprecationDataError, match="not found"):
        scan_path(REPO, extra_data=[tmp_path / "missing.yaml"])


# --------------------------------------------------------------------------- the scan command


@pytest.fixture()
def cli_app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("scan")(scan)

    @app.command("noop")
    def noop() -> None:
        """Keeps Typer from collapsing the app into its single command."""

    return app


def _run(app: typer.Typer, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["scan", *args], input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_cli_exit_zero_when_nothing_is_found(cli_app: typer.Typer) -> None:
    code, out, err = _run(cli_app, str(SCAN / "clean"))
    assert code == 0
    assert "No deprecated or removed APIs found" in out
    assert err == ""


def test_cli_exit_two_when_only_deprecated(cli_app: typer.Typer) -> None:
    code, out, _ = _run(cli_app, str(REPO / "apps"), "--k8s-version", "1.21")
    assert code == 2
    header = out.splitlines()[0].split()
    assert header == [
        "FILE",
        "KIND",
        "APIVERSION",
        "NAME",
        "NAMESPACE",
        "DEPRECATED-IN",
        "REMOVED-IN",
        "REPLACEMENT",
        "STATUS",
    ]
    row = next(line for line in out.splitlines() if "nightly-report" in line).split()
    expected = ["CronJob", "batch/v1beta1", "nightly-report", "reports", "1.21", "1.25", "batch/v1", "deprecated"]
    assert row[1:] == expected


def test_cli_exit_three_when_anything_is_removed(cli_app: typer.Typer) -> None:
    code, _, _ = _run(cli_app, str(REPO / "apps"), "--k8s-version", "1.22")
    assert code == 3
    code, _, _ = _run(cli_app, str(REPO / "flux"), "--k8s-version", "1.22", "--flux-version", "2.7")
    assert code == 3
    code, _, _ = _run(cli_app, str(REPO / "flux"), "--flux-version", "2.6")
    assert code == 2


def test_cli_json_output(cli_app: typer.Typer) -> None:
    code, out, _ = _run(cli_app, str(REPO), "--k8s-version", "1.25", "--flux-version", "2.7", "--output", "json")
    assert code == 3
    document = json.loads(out)
    assert document == scan_path(REPO, k8s_version="1.25", flux_version="2.7").to_json()
    assert len(document["skipped"]) == 3


def test_cli_extra_data_option(cli_app: typer.Typer) -> None:
    target = str(SCAN / "extra-data" / "certificate.yaml")
    assert _run(cli_app, target)[0] == 0
    code, out, _ = _run(cli_app, target, "--data", str(SCAN / "extra-data" / "cert-manager.yaml"))
    assert code == 3
    assert "cert-manager.io/v1alpha2" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "path not found"),
        (["{repo}", "--k8s-version", "1.x"], "invalid Kubernetes version '1.x'"),
        (["{repo}", "--flux-version", "two"], "invalid Flux version 'two'"),
        (["{repo}", "--output", "yaml"], "invalid --output 'yaml'"),
        (["{repo}", "--data", "{missing}"], "deprecation data file not found"),
    ],
)
def test_cli_errors_exit_one_with_one_line(cli_app: typer.Typer, tmp_path: Path, args: list[str], message: str) -> None:
    filled = [arg.format(missing=tmp_path / "missing", repo=REPO) for arg in args]
    code, out, err = _run(cli_app, *filled)
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("sandbox: error: ")
    assert message in lines[0]


def test_cli_says_where_the_data_end_and_exits_on_its_findings_as_pluto_does(cli_app: typer.Typer) -> None:
    """``--k8s-version 1.37`` used to say "no findings" silently: the data stopped short of it."""
    code, out, err = _run(cli_app, str(SCAN / "clean"), "--k8s-version", "1.37")
    assert code == 0  # pluto: a valid target past its data is scanned; findings decide the exit code
    assert out.splitlines()[-1] == (
        "warning: the deprecation data cover Kubernetes up to 1.36; the target 1.37 is newer, "
        "so APIs deprecated or removed after 1.36 are not reported"
    )
    assert err == ""
    code, out, _ = _run(cli_app, str(SCAN / "clean"), "--k8s-version", "1.37", "--output", "json")
    assert code == 0
    assert json.loads(out)["data_covers"] == "1.36"
    code, out, _ = _run(cli_app, str(REPO / "apps"), "--k8s-version", "v1.40.2", "--output", "json")
    assert code == 3 and json.loads(out)["data_covers"] == "1.36"
    code, out, _ = _run(cli_app, str(SCAN / "clean"), "--k8s-version", "1.36", "--output", "json")
    assert code == 0 and json.loads(out) == {"findings": [], "skipped": []}


def test_a_named_file_that_is_not_yaml_is_reported_skipped_not_scanned_clean(
    tmp_path: Path, cli_app: typer.Typer
) -> None:
    """`sandbox scan /dev/zero` said "No deprecated or removed APIs found" having read nothing."""
    notes = tmp_path / "notes.txt"
    notes.write_text("apiVersion: extensions/v1beta1\nkind: Ingress\n", encoding="utf-8")
    for named in (Path("/dev/zero"), notes):
        report = scan_path(named, k8s_version="1.31")
        assert (report.findings, report.scanned) == ([], 0)
        assert [(s.file, s.reason) for s in report.skipped] == [
            (str(named), "not a .yaml, .yml or .json file; not read")
        ]
        code, out, _ = _run(cli_app, str(named), "--k8s-version", "1.31")
        assert code == 0
        assert out.startswith("Nothing scanned at ") and "Kubernetes 1.31" in out.splitlines()[0]
        assert f"  {named}: not a .yaml" in out
        assert "No deprecated or removed APIs found" not in out


def test_an_empty_directory_says_nothing_was_scanned(tmp_path: Path, cli_app: typer.Typer) -> None:
    code, out, _ = _run(cli_app, str(tmp_path))
    assert code == 0 and out.startswith("Nothing scanned at ")
    manifest = tmp_path / "ok.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n", encoding="utf-8")
    code, out, _ = _run(cli_app, str(tmp_path))
    assert code == 0 and out.startswith("No deprecated or removed APIs found at ")
    assert scan_path(tmp_path).scanned == 1


RENDERED = SCAN / "rendered"


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [
        # `helm template web ./web` output: "# Source:" comments, a leading "---".
        (
            "helm-template.yaml",
            [
                (1, "PodDisruptionBudget", "policy/v1beta1", True),
                (3, "HorizontalPodAutoscaler", "autoscaling/v2beta2", False),
            ],
        ),
        # `kustomize build overlays/prod` output: Kubernetes and Flux objects in one stream.
        (
            "kustomize-build.yaml",
            [
                (2, "Ingress", "networking.k8s.io/v1beta1", True),
                (3, "HelmRelease", "helm.toolkit.fluxcd.io/v2beta1", False),
            ],
        ),
    ],
)
def test_rendered_output_on_stdin_is_scanned_document_by_document(
    cli_app: typer.Typer, rendered: str, expected: list[tuple[int, str, str, bool]]
) -> None:
    raw = (RENDERED / rendered).read_bytes()
    code, out, err = _run(cli_app, "-", "--k8s-version", "1.25", "--flux-version", "2.4", "--output", "json", stdin=raw)
    assert code == 3 and err == ""  # pluto's exit code: something removed
    findings = json.loads(out)["findings"]
    assert [(f["file"], f["document"], f["kind"], f["apiVersion"], f["removed"]) for f in findings] == [
        ("-", *row) for row in expected
    ]
    # The same text as a file gives the same findings (stdin is a file named "-").
    assert [
        (f.document, f.kind) for f in scan_path(RENDERED / rendered, k8s_version="1.25", flux_version="2.4").findings
    ] == [(row[0], row[1]) for row in expected]


def test_an_unrendered_template_on_stdin_is_skipped_with_its_reason(cli_app: typer.Typer) -> None:
    template = b"apiVersion: {{ .Values.api }}\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"
    code, out, _ = _run(cli_app, "-", "--output", "json", stdin=template)
    assert code == 0
    [skipped] = json.loads(out)["skipped"]
    assert skipped["file"] == "-" and "template" in skipped["reason"]


def test_stdin_is_read_within_its_bound(cli_app: typer.Typer) -> None:
    code, out, err = _run(cli_app, "-", "--max-file-bytes", "64", stdin=b"apiVersion: v1\nkind: ConfigMap\n" * 10)
    assert (code, out) == (1, "")
    assert err.strip() == "sandbox: error: standard input is larger than 64 bytes (--max-file-bytes); not scanned"
