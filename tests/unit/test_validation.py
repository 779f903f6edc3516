"""The validate stage's checks (sandbox/validation.py) and readiness waiting (sandbox/flux.py).

Live checks run against the simulated cluster bootstrapped from a sandbox branch of
the example fleet repository in a real bare git remote, as the clone and bootstrap
stages leave it.
"""

from __future__ import annotations

import base64
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import appstacks, fleetrepo
from sandbox.config import FleetConfig
from sandbox.demo import demo_config
from sandbox.drivers.cluster import ClusterDriver, ObjectRef
from sandbox.drivers.git import GitCli
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.errors import NotReadyError, PermanentError
from sandbox.flux import readiness, wait_ready
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus, Stage, StageStatus, StageSummary
from sandbox.stages.clone import clone_into_checkout
from sandbox.validation import (
    ValidationFailedError,
    ValidationInputs,
    ValidationReport,
    at_branch_head,
    ensure_validatable,
    normalize_git_url,
    plan_scan,
    policy_on_branch,
    removed_line,
    scan_repo_paths,
    validate_checkout,
)

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures" / "validation"
EXAMPLE_REPO = TESTS.parent / "examples" / "fleet-repo"
EXAMPLE_URL = "ssh://git@github.com/example-org/fleet-infra"
SANDBOX = "sandbox-x"
SANDBOX_DIR = f"clusters/{SANDBOX}"
BRANCH = "OPS-7-legacy-ingress"
KS_API = "kustomize.toolkit.fluxcd.io/v1"
HR_API = "helm.toolkit.fluxcd.io/v2"
PODINFO = ObjectRef(HR_API, "HelmRelease", "podinfo", "podinfo")
PLATFORM_CONFIGS = ObjectRef(KS_API, "Kustomization", "platform-configs", "flux-system")
LEGACY_LINES = [
    "platform/configs/legacy-ingress.yaml: IngressClass legacy uses networking.k8s.io/v1beta1, removed in "
    "Kubernetes 1.22 (use networking.k8s.io/v1)",
    "platform/configs/legacy-ingress.yaml: Ingress platform/legacy uses networking.k8s.io/v1beta1, removed in "
    "Kubernetes 1.22 (use networking.k8s.io/v1)",
]


@dataclass
class Fleet:
    """The example fleet in a bare remote, with a checkout of the sandbox branch."""

    remote: Path
    checkout: Path
    git: GitCli
    config: FleetConfig

    def push(self, message: str) -> str:
        sha = self.git.commit_all(self.checkout, message)
        assert sha is not None
        self.git.push(self.checkout, BRANCH)
        return sha

    def add_legacy_ingress(self, variant: str = "before") -> None:
        configs = self.checkout / "platform" / "configs"
        shutil.copy(FIXTURES / "legacy-ingress" / f"{variant}.yaml", configs / "legacy-ingress.yaml")
        kustomization = configs / "kustomization.yaml"
        text = kustomization.read_text(encoding="utf-8")
        if "legacy-ingress.yaml" not in text:
            kustomization.write_text(text + "  - legacy-ingress.yaml\n", encoding="utf-8")

    def inputs(self, **overrides: Any) -> ValidationInputs:
        base = self.git.merge_base(self.checkout, "origin/main", "HEAD")
        values: dict[str, Any] = {
            "sandbox": SANDBOX,
            "sandbox_dir": SANDBOX_DIR,
            "branch": BRANCH,
            "commit": self.git.rev_parse(self.checkout, "HEAD"),
            "k8s_version": "1.31",
            "flux_version": None,
            "extra_data": [],
            "repo_urls": {normalize_git_url(str(self.remote))},
            "changed_files": self.git.changed_files(self.checkout, base, "HEAD", "."),
            "ready_timeout": 30.0,
        }
        values.update(overrides)
        return ValidationInputs(**values)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    git = GitCli()
    remote, checkout = tmp_path / "remote.git", tmp_path / "checkout"
    git.init_bare(remote)
    shutil.copytree(EXAMPLE_REPO, checkout)
    for path in checkout.rglob("*.yaml"):
        path.write_text(path.read_text(encoding="utf-8").replace(EXAMPLE_URL, remote.as_uri()), encoding="utf-8")
    git.init_repo(checkout, str(remote))
    git.commit_all(checkout, "fleet repository")
    git.push(checkout, "main")
    git._git(checkout, "fetch", "--quiet", "origin", timeout_is_retryable=True)
    # What the clone and bootstrap stages leave on the sandbox branch.
    git.checkout(checkout, BRANCH, start="main")
    clone_into_checkout(checkout, source_env="development", name=SANDBOX, retarget_from="main", retarget_to=BRANCH)
    sync = fleetrepo.render_gotk_sync(name=SANDBOX, url=str(remote), branch=BRANCH, path=SANDBOX_DIR)
    fleetrepo.write_bootstrap_files(checkout / SANDBOX_DIR, sync, repo=checkout)
    raw = demo_config(tmp_path)
    raw["fleet_repo"] = {"remote": str(remote)}
    config = FleetConfig.model_validate({**raw, "base_dir": tmp_path})
    fleet = Fleet(remote=remote, checkout=checkout, git=git, config=config)
    fleet.push("clone and bootstrap sandbox-x")
    return fleet


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]


def make_cluster(fleet: Fleet, tmp_path: Path, version: str = "1.31") -> SimulatedCluster:
    """The sandbox's simulated cluster, bootstrapped as the bootstrap stage does."""
    simulation = tmp_path / "simulated-cluster"
    (simulation / "external").mkdir(parents=True)
    cluster = SimulatedCluster(
        simulation,
        kubernetes_version=version,
        readiness_delay_seconds=0.05,
        oci_git_remote=str(fleet.remote),
        watch_poll_seconds=0.02,
    )
    flux_dir = fleet.checkout / SANDBOX_DIR / "flux-system"
    for doc in documents(flux_dir / "gotk-components.yaml"):
        cluster.apply(doc)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "flux-system", "namespace": "flux-system"},
            "stringData": {"username": "git", "password": "token"},
        }
    )
    for doc in documents(flux_dir / "gotk-sync.yaml"):
        cluster.apply(doc)
    return cluster


def never_connect() -> ClusterDriver:
    raise AssertionError("the cluster must not be contacted")


# -- the whole validation on a simulated cluster ----------------------------------------------


def test_a_clean_sandbox_passes_at_its_branch_head(fleet: Fleet, tmp_path: Path) -> None:
    cluster = make_cluster(fleet, tmp_path)
    inputs = fleet.inputs()
    report = validate_checkout(fleet.checkout, fleet.config, inputs, lambda: cluster)
    assert report.passed, report.failures
    assert report.scanned == ["apps/podinfo", SANDBOX_DIR, "platform/configs", "platform/controllers"]
    assert report.targets == {"kubernetes": "1.31", "flux": "2.9"}
    assert report.server_version == "1.31"  # asked, and the same as the IaC's: one scan
    assert report.readiness_checked and len(report.readiness) == 7 and all(r.ready for r in report.readiness)
    kustomizations = [r for r in report.readiness if r.object.startswith("Kustomization/")]
    assert kustomizations and all(r.message.endswith(f"{BRANCH}@sha1:{inputs.commit}") for r in kustomizations)
    assert {row["result"] for row in report.rows()} == {"OK"}


def test_removed_apis_fail_fast_with_one_line_per_object(fleet: Fleet) -> None:
    fleet.add_legacy_ingress("before")
    fleet.push("platform: an entry point copied from an old cluster")
    report = validate_checkout(fleet.checkout, fleet.config, fleet.inputs(), never_connect)
    assert not report.passed
    assert report.failures == LEGACY_LINES
    assert not report.readiness_checked and "cannot converge" in report.readiness_note
    assert [(r["result"], r["check"]) for r in report.rows()] == [
        ("FAIL", "removed-api"),
        ("FAIL", "removed-api"),
        ("SKIP", "readiness"),
    ]
    error = ValidationFailedError(report)
    assert "\n" not in str(error) and str(error) == f"validation of {SANDBOX} failed: " + "; ".join(LEGACY_LINES)


def test_before_the_removal_the_same_objects_are_only_deprecated(fleet: Fleet, tmp_path: Path) -> None:
    fleet.add_legacy_ingress("before")
    fleet.push("platform: an entry point copied from an old cluster")
    cluster = make_cluster(fleet, tmp_path, version="1.21")
    report = validate_checkout(fleet.checkout, fleet.config, fleet.inputs(k8s_version="1.21"), lambda: cluster)
    assert report.passed, report.failures
    assert [(r["result"], r["check"], r["subject"]) for r in report.rows() if r["result"] != "OK"] == [
        ("WARN", "deprecated-api", "platform/configs/legacy-ingress.yaml: IngressClass legacy"),
        ("WARN", "deprecated-api", "platform/configs/legacy-ingress.yaml: Ingress platform/legacy"),
    ]
    assert cluster.get(ObjectRef("networking.k8s.io/v1beta1", "Ingress", "legacy", "platform")) is not None


def test_the_api_servers_own_version_is_scanned_at_when_it_differs_from_the_iac(fleet: Fleet, tmp_path: Path) -> None:
    """An upgrade rehearsal: the IaC says 1.21, the cluster serves 1.31: what 1.31 removed fails the sandbox."""
    fleet.add_legacy_ingress("before")
    fleet.push("platform: an entry point copied from an old cluster")
    cluster = make_cluster(fleet, tmp_path, version="1.31")
    seen: list[str] = []
    inputs = fleet.inputs(k8s_version="1.21")
    report = validate_checkout(fleet.checkout, fleet.config, inputs, lambda: cluster, seen.append)
    assert report.server_version == "1.31" and report.targets["kubernetes"] == "1.31"
    assert report.failures == LEGACY_LINES
    assert not report.readiness_checked and "cannot converge" in report.readiness_note
    assert "the API server serves Kubernetes 1.31, not 1.21: scanning again at 1.31" in seen


def test_a_fix_pushed_a_moment_ago_is_what_passes(fleet: Fleet, tmp_path: Path) -> None:
    cluster = make_cluster(fleet, tmp_path)
    wait_ready(cluster, 30)  # Ready at the branch's first head
    fleet.add_legacy_ingress("after")
    head = fleet.push("platform: the entry point on networking.k8s.io/v1")
    report = validate_checkout(fleet.checkout, fleet.config, fleet.inputs(), lambda: cluster)
    assert report.passed, report.failures
    configs = cluster.get(PLATFORM_CONFIGS)
    assert configs is not None and configs["status"]["lastAppliedRevision"] == f"{BRANCH}@sha1:{head}"
    assert cluster.get(ObjectRef("networking.k8s.io/v1", "Ingress", "legacy", "platform")) is not None


def test_objects_not_ready_are_named_with_reason_and_message(fleet: Fleet, tmp_path: Path) -> None:
    cluster = make_cluster(fleet, tmp_path)
    cluster.inject_failure(PODINFO, "UpgradeFailed", "simulated: pre-upgrade hook timed out")
    report = validate_checkout(fleet.checkout, fleet.config, fleet.inputs(ready_timeout=1.5), lambda: cluster)
    assert report.failures == [
        "not Ready after 1.5s: HelmRelease/podinfo/podinfo: UpgradeFailed: simulated: pre-upgrade hook timed out"
    ]
    assert [(r["result"], r["subject"]) for r in report.rows() if r["result"] != "OK"] == [
        ("FAIL", "HelmRelease/podinfo/podinfo")
    ]


def test_a_policy_violation_the_branch_introduces_fails_it(fleet: Fleet, tmp_path: Path) -> None:
    production = fleet.checkout / "clusters" / "production" / "platform.yaml"
    production.write_text(production.read_text(encoding="utf-8").replace('tag: "1.2.3"', 'semver: "1.x"'))
    fleet.push("production: follow 1.x")
    cluster = make_cluster(fleet, tmp_path)
    report = validate_checkout(fleet.checkout, fleet.config, fleet.inputs(), lambda: cluster)
    assert report.failures == [
        "clusters/production/platform.yaml: fixed-tag: OCIRepository platform follows the semver range '1.x'; "
        "production pins a fixed tag"
    ]
    assert report.readiness_checked and all(r.ready for r in report.readiness)


# -- readiness (sandbox/flux.py) --------------------------------------------------------------


def test_wait_ready_times_out_naming_each_object_with_reason_and_message(fleet: Fleet, tmp_path: Path) -> None:
    cluster = make_cluster(fleet, tmp_path)
    cluster.inject_failure(PLATFORM_CONFIGS, "HealthCheckFailed", "simulated: timeout waiting for: [Ingress]")
    with pytest.raises(NotReadyError) as caught:
        wait_ready(cluster, 1.0)
    # apps depends on platform-configs, so it never applies podinfo: Flux says why.
    assert str(caught.value) == (
        "not Ready after 1s: Kustomization/flux-system/apps: DependencyNotReady: dependency "
        "'flux-system/platform-configs' is not ready; Kustomization/flux-system/platform-configs: "
        "HealthCheckFailed: simulated: timeout waiting for: [Ingress]"
    )


def test_wait_ready_on_an_empty_cluster_says_so(tmp_path: Path) -> None:
    simulation = tmp_path / "sim"
    (simulation / "external").mkdir(parents=True)
    with pytest.raises(NotReadyError, match="no Kustomization or HelmRelease found"):
        wait_ready(SimulatedCluster(simulation, watch_poll_seconds=0.02), 0.2)


def flux_object(*, status: str = "True", generation: int = 2, observed: int = 2, applied: str = "") -> dict[str, Any]:
    return {
        "apiVersion": KS_API,
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system", "generation": generation},
        "status": {
            "observedGeneration": observed,
            "lastAppliedRevision": applied,
            "conditions": [{"type": "Ready", "status": status, "reason": "R", "message": "M"}],
        },
    }


def test_ready_means_ready_for_the_current_generation() -> None:
    assert readiness(flux_object()).ready
    stale = readiness(flux_object(generation=3, observed=2))
    assert not stale.ready and (stale.reason, stale.message) == (
        "Progressing",
        "generation 3 not yet observed (observed 2)",
    )
    assert not readiness(flux_object(status="False")).ready
    no_status = readiness({"apiVersion": KS_API, "kind": "Kustomization", "metadata": {"name": "x"}})
    assert no_status.line() == "Kustomization/x: NoStatus: no Ready condition reported yet"


def test_at_branch_head_asks_the_branch_head_of_kustomizations_applying_the_branch() -> None:
    check = at_branch_head(BRANCH, "b" * 40)
    assert check(flux_object(applied=f"{BRANCH}@sha1:{'b' * 40}")).ready
    old = check(flux_object(applied=f"{BRANCH}@sha1:{'a' * 40}"))
    assert not old.ready and old.message == f"applied {BRANCH}@sha1:{'a' * 40}; waiting for {BRANCH}@sha1:{'b' * 40}"
    assert check(flux_object(applied="1.2.3@sha256:abc")).ready  # another source: not the branch's business
    assert not check(flux_object(status="False", applied=f"{BRANCH}@sha1:{'b' * 40}")).ready


# -- what is scanned -------------------------------------------------------------------------------


def test_plan_follows_kustomizations_transitively_and_names_what_it_cannot_scan() -> None:
    plan = plan_scan(FIXTURES / "scan-plan", "clusters/sandbox-x", repo_urls=set())
    assert plan.roots == [
        "clusters/sandbox-x",
        "infrastructure/base",
        "infrastructure/overlays/sandbox",
        "nested",
        "platform/controllers",
    ]
    assert [(n.path, n.reason) for n in plan.not_scanned] == [
        ("Kustomization flux-system/ghost ./does-not-exist", "does-not-exist/ does not exist on this branch"),
        (
            "Kustomization flux-system/orphan ./nested",
            "its source GitRepository/flux-system/undeclared is not declared here",
        ),
        (
            "Kustomization flux-system/team-app ./deploy",
            "built from another git repository (https://github.com/example-org/team-app)",
        ),
        (
            "infrastructure/overlays/sandbox/kustomization.yaml: "
            "https://github.com/example-org/shared-manifests//monitoring?ref=v1.0.0",
            "a remote kustomize resource",
        ),
    ]


@pytest.mark.parametrize(
    ("k8s", "flux", "removed"),
    [
        (
            "1.31",
            "2.7",
            [
                "infrastructure/base/hpa.yaml: HorizontalPodAutoscaler infra/web uses autoscaling/v2beta2, removed in "
                "Kubernetes 1.26 (use autoscaling/v2)",
                "nested/cronjob.yaml: CronJob infra/report uses batch/v1beta1, removed in Kubernetes 1.25 "
                "(use batch/v1)",
                "platform/controllers/release.yaml: HelmRelease flux-system/ingress-nginx uses "
                "helm.toolkit.fluxcd.io/v2beta1, removed in Flux 2.7 (use helm.toolkit.fluxcd.io/v2)",
            ],
        ),
        (
            "1.25",
            "2.6",
            [
                "nested/cronjob.yaml: CronJob infra/report uses batch/v1beta1, removed in Kubernetes 1.25 "
                "(use batch/v1)",
            ],
        ),
    ],
)
def test_the_planned_paths_are_scanned_at_the_target_versions(k8s: str, flux: str, removed: list[str]) -> None:
    root = FIXTURES / "scan-plan"
    plan = plan_scan(root, "clusters/sandbox-x", repo_urls=set())
    findings, skipped, targets = scan_repo_paths(root, plan.roots, k8s_version=k8s, flux_version=flux)
    assert [removed_line(f) for f in findings if f["removed"]] == removed
    # Nothing outside the sandbox's paths: clusters/production and infrastructure/unused hold removed APIs too.
    assert {f["file"].split("/")[0] for f in findings} <= {"infrastructure", "nested", "platform"}
    assert len(findings) == 3 and skipped == [] and targets == {"kubernetes": k8s, "flux": flux}


def test_git_urls_of_one_repository_compare_equal(tmp_path: Path) -> None:
    assert (
        normalize_git_url("ssh://git@github.com/example-org/fleet-infra")
        == normalize_git_url("git@github.com:example-org/fleet-infra.git")
        == normalize_git_url("https://GitHub.com/example-org/fleet-infra/")
    )
    assert normalize_git_url((tmp_path / "remote.git").as_uri()) == normalize_git_url(str(tmp_path / "remote.git"))
    assert normalize_git_url("git@github.com:example-org/other") != normalize_git_url("git@github.com:example-org/x")


# -- the policy on a sandbox branch -----------------------------------------------------------------


def test_policy_violations_block_only_when_the_branch_made_them(fleet: Fleet) -> None:
    production = fleet.checkout / "clusters" / "production" / "platform.yaml"
    production.write_text(production.read_text(encoding="utf-8").replace('tag: "1.2.3"', 'tag: "latest"'))
    sync = fleet.checkout / SANDBOX_DIR / "flux-system" / "gotk-sync.yaml"
    sync.write_text(sync.read_text(encoding="utf-8").replace(f"./{SANDBOX_DIR}", "./clusters/development"))
    changed = [f"{SANDBOX_DIR}/flux-system/gotk-sync.yaml"]
    findings = policy_on_branch(fleet.checkout, fleet.config, sandbox_dir=SANDBOX_DIR, branch=BRANCH, changed=changed)
    assert [(f.file, f.rule, f.blocking) for f in findings] == [
        ("clusters/production/platform.yaml", "fixed-tag", False),
        (f"{SANDBOX_DIR}/flux-system/gotk-sync.yaml", "own-gotk-sync", True),
    ]
    report = ValidationReport(sandbox=SANDBOX, branch=BRANCH, policy=findings)
    [inherited] = [r for r in report.rows() if r["result"] == "WARN"]
    assert inherited["detail"].endswith("(inherited from the default branch)")


# -- the error, the report, the preconditions ------------------------------------------------------


def test_the_error_survives_pickling_with_its_report() -> None:
    report = ValidationReport(sandbox=SANDBOX, branch=BRANCH, failures=LEGACY_LINES)
    error = pickle.loads(pickle.dumps(ValidationFailedError(report)))
    assert isinstance(error, ValidationFailedError) and isinstance(error, PermanentError)
    assert error.report == report and str(error) == str(ValidationFailedError(report))


def record(status: SandboxStatus, bootstrap: StageStatus, endpoint: str | None = "simulated:///x") -> SandboxRecord:
    now = datetime.now(UTC)
    return SandboxRecord(
        name=SANDBOX,
        kind=SandboxKind.platform,
        source_env="development",
        lifecycle_id="abc",
        status=status,
        created_at=now,
        expires_at=now,
        cluster_endpoint=endpoint,
        stages=[StageSummary(name=Stage.bootstrap, status=bootstrap, executions=1)],
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: record(SandboxStatus.destroyed, StageStatus.completed), "is destroyed: there is no cluster"),
        (lambda: record(SandboxStatus.creating, StageStatus.failed), "has not been bootstrapped yet"),
        (lambda: record(SandboxStatus.active, StageStatus.completed, None), "has not been bootstrapped yet"),
    ],
)
def test_only_a_bootstrapped_sandbox_is_validated(make: Callable[[], SandboxRecord], message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        ensure_validatable(make())
    ensure_validatable(record(SandboxStatus.active, StageStatus.completed))


# -- application stacks on a platform sandbox ---------------------------------------------------

SHOP_FIXTURE = TESTS / "fixtures" / "appstacks" / "shop"
APP_SHOP = ObjectRef(KS_API, "Kustomization", "app-shop", "flux-system")
STOREFRONT = ObjectRef("v1", "Service", "storefront", "shop")


@pytest.fixture
def shop_remote(tmp_path: Path) -> Path:
    """An application team's own repository (a bare remote) holding its stack in ``deploy/``."""
    git = GitCli()
    remote, work = tmp_path / "shop.git", tmp_path / "shop-work"
    git.init_bare(remote)
    shutil.copytree(SHOP_FIXTURE, work)
    git.init_repo(work, str(remote))
    git.commit_all(work, "shop: storefront stack")
    git.push(work, "main")
    return remote


def with_stacks(config: FleetConfig, *stacks: dict[str, Any]) -> FleetConfig:
    raw = config.model_dump(mode="json")
    raw["validation"]["application_stacks"] = list(stacks)
    return FleetConfig.model_validate({**raw, "base_dir": config.base_dir})


def stack_inputs(
    fleet: Fleet, config: FleetConfig, tokens: dict[str, str] | None = None, **overrides: Any
) -> ValidationInputs:
    return fleet.inputs(
        application_stacks=appstacks.manifests_for(config, tokens),
        application_stack_paths=appstacks.fleet_repo_paths(config),
        **overrides,
    )


def test_application_stacks_are_deployed_onto_the_sandbox_and_waited_for(
    fleet: Fleet, shop_remote: Path, tmp_path: Path
) -> None:
    config = with_stacks(
        fleet.config, {"name": "shop", "url": str(shop_remote), "path": "deploy", "credentials_env": "SHOP_TOKEN"}
    )
    cluster = make_cluster(fleet, tmp_path)
    inputs = stack_inputs(fleet, config, {"shop": "shop-read-token-123"})
    said: list[str] = []
    report = validate_checkout(fleet.checkout, config, inputs, lambda: cluster, said.append)
    assert report.passed, report.failures
    # The stack's token reaches the sandbox as its source's Secret, and nothing else.
    auth = cluster.get(ObjectRef("v1", "Secret", "app-shop-auth", "flux-system"))
    assert auth is not None and base64.b64decode(auth["data"]["password"]) == b"shop-read-token-123"
    assert not any("shop-read-token-123" in line for line in said)
    assert "shop-read-token-123" not in report.model_dump_json()
    assert report.application_stacks == ["shop"]
    assert "application stacks deployed: shop" in report.text_lines()
    ready = {r.object: r for r in report.readiness}
    assert ready[str(APP_SHOP)].ready
    # What the team's stack declares runs on the sandbox, served by the platform's controllers.
    settings = cluster.get(ObjectRef("v1", "ConfigMap", "shop-settings", "shop"))
    assert settings is not None and settings["data"] == {"currency": "EUR"}
    storefront = cluster.get(STOREFRONT)
    assert storefront is not None and storefront["status"]["loadBalancer"]["ingress"]
    # Applied to the cluster only: the sandbox branch (which promotion copies back) is untouched.
    assert fleet.git.rev_parse(fleet.checkout, f"origin/{BRANCH}") == inputs.commit
    assert "app-shop" not in "".join(p.read_text() for p in (fleet.checkout / SANDBOX_DIR).rglob("*.yaml"))
    # Validating again applies the same objects: nothing new, still passing.
    again = validate_checkout(fleet.checkout, config, inputs, lambda: cluster)
    assert again.passed and again.application_stacks == ["shop"]


def test_a_stack_that_does_not_converge_fails_validation_naming_its_object(
    fleet: Fleet, shop_remote: Path, tmp_path: Path
) -> None:
    config = with_stacks(fleet.config, {"name": "shop", "url": str(shop_remote), "path": "no-such-dir"})
    cluster = make_cluster(fleet, tmp_path)
    report = validate_checkout(fleet.checkout, config, stack_inputs(fleet, config, ready_timeout=3.0), lambda: cluster)
    assert not report.passed
    [failure] = report.failures
    assert failure.startswith(f"not Ready after 3s: {APP_SHOP}: ")
    assert "no-such-dir" in failure
    # The platform itself converged: only the team's stack is named.
    assert all(r.ready for r in report.readiness if r.object != str(APP_SHOP))


def test_teardown_deletes_the_stacks_before_the_platform_controllers(
    fleet: Fleet, shop_remote: Path, tmp_path: Path
) -> None:
    from sandbox.teardown import teardown_cluster

    config = with_stacks(fleet.config, {"name": "shop", "url": str(shop_remote), "path": "deploy"})
    cluster = make_cluster(fleet, tmp_path)
    assert validate_checkout(fleet.checkout, config, stack_inputs(fleet, config), lambda: cluster).passed
    assert any("storefront" in resource for resource in cluster.external_resources())
    report = teardown_cluster(cluster, timeout_per_tier=30)
    tiers = dict(report.tiers)
    assert str(APP_SHOP) in tiers["applications"]
    assert list(tiers)[-1] == "controllers"
    # The storefront's load balancer was released while its controller still ran.
    assert cluster.external_resources() == []
    assert cluster.get(STOREFRONT) is None


def test_a_stack_kept_in_the_fleet_repository_is_scanned_with_the_sandbox(fleet: Fleet, tmp_path: Path) -> None:
    # The team keeps its stack beside the clusters; it still uses an Ingress API removed in 1.22.
    stack = fleet.checkout / "teams" / "legacy"
    stack.mkdir(parents=True)
    shutil.copy(FIXTURES / "legacy-ingress" / "before.yaml", stack / "legacy-ingress.yaml")
    fleet.push("teams/legacy: a team's stack")
    config = with_stacks(fleet.config, {"name": "legacy", "path": "./teams/legacy"})
    assert appstacks.fleet_repo_paths(config) == ["teams/legacy"]
    report = validate_checkout(fleet.checkout, config, stack_inputs(fleet, config), never_connect)
    assert "teams/legacy" in report.scanned
    assert [f["file"] for f in report.removed] == ["teams/legacy/legacy-ingress.yaml"] * 2
    assert report.readiness_note.startswith("not checked")  # removed APIs: the cluster is not contacted
