"""Issue 6's acceptance in the demo setup: the real CLI, real git and terraform, a real Prefect server.

A platform sandbox is created; a commit on its branch adds an entry point copied from
an old cluster (networking.k8s.io/v1beta1 IngressClass and Ingress, removed in
Kubernetes 1.22) under the platform stack the sandbox tracks. ``sandbox validate``
fails with one line per object; after the fix is pushed to the sandbox branch it
passes, having waited for the cluster to apply the fixed commit. Each run leaves a
flow run and a table artifact in Prefect.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sandbox.demo import prepare_demo
from sandbox.drivers.cluster import ObjectRef
from sandbox.drivers.simulated_cluster import SimulatedCluster

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "validation" / "legacy-ingress"
NAME = "sandbox-v"
BRANCH = "OPS-7-legacy-ingress"
REMOVED_LINES = [
    "platform/configs/legacy-ingress.yaml: IngressClass legacy: uses networking.k8s.io/v1beta1, removed in "
    "Kubernetes 1.22 (use networking.k8s.io/v1)",
    "platform/configs/legacy-ingress.yaml: Ingress platform/legacy: uses networking.k8s.io/v1beta1, removed in "
    "Kubernetes 1.22 (use networking.k8s.io/v1)",
]


def sandbox_cli(*args: str, api_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    return subprocess.run(
        [str(BIN / "sandbox"), *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def push_legacy_ingress(work: Path, variant: str, message: str) -> str:
    configs = work / "platform" / "configs"
    shutil.copy(FIXTURES / f"{variant}.yaml", configs / "legacy-ingress.yaml")
    kustomization = configs / "kustomization.yaml"
    text = kustomization.read_text(encoding="utf-8")
    if "legacy-ingress.yaml" not in text:
        kustomization.write_text(text + "  - legacy-ingress.yaml\n", encoding="utf-8")
    git(work, "add", "-A")
    git(work, "commit", "-qm", message)
    git(work, "push", "-q", "origin", BRANCH)
    return git(work, "rev-parse", "HEAD").strip()


def stages(config: Path, api_url: str) -> dict[str, tuple[str, int]]:
    listing = sandbox_cli("list", "--config", str(config), "--output", "json", api_url=api_url)
    assert listing.returncode == 0, listing.stderr
    [entry] = [e for e in json.loads(listing.stdout) if e["name"] == NAME]
    return {s["name"]: (s["status"], s["executions"]) for s in entry["stages"]}


def simulation_dir(config: Path) -> Path:
    """Where the sandbox's simulated cluster lives (the state directory of the demo's fleet.yaml)."""
    state_dir = yaml.safe_load(config.read_text(encoding="utf-8"))["sandbox"]["state_dir"]
    return config.parent / state_dir / "sandboxes" / NAME / "simulated-cluster"


def artifact_tables(prefect_server: str) -> list[list[dict[str, str]]]:
    """The ``validation-sandbox-v`` table artifacts, newest first."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> list[list[dict[str, str]]]:
        async with get_client() as client:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"validation-{NAME}"])),
                sort=ArtifactSort.CREATED_DESC,
            )
        return [json.loads(a.data) if isinstance(a.data, str) else a.data for a in artifacts]  # type: ignore[misc]

    return asyncio.run(read())


@pytest.fixture(scope="module")
def created(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo's fleet with a platform sandbox created up to validate, and a checkout of its branch."""
    workdir = tmp_path_factory.mktemp("validate")
    config = prepare_demo(workdir / "demo")
    result = sandbox_cli(
        "create",
        NAME,
        "--from",
        "development",
        "--ticket",
        "OPS-7",
        "--summary",
        "legacy ingress",
        "--config",
        str(config),
        api_url=prefect_server,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    work = workdir / "work"
    subprocess.run(["git", "clone", "-q", str(workdir / "demo" / "remote.git"), str(work)], check=True)
    git(work, "config", "user.name", "engineer")
    git(work, "config", "user.email", "engineer@example.com")
    git(work, "checkout", "-q", BRANCH)
    return config, work


def test_a_removed_api_fails_then_the_fix_passes(created: tuple[Path, Path], prefect_server: str) -> None:
    config, work = created
    assert stages(config, prefect_server)["validate"] == ("completed", 1)

    push_legacy_ingress(work, "before", "platform: entry point copied from the old cluster")
    failed = sandbox_cli("validate", NAME, "--config", str(config), api_url=prefect_server)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    removed = [line.split("removed-api", 1)[1].strip() for line in failed.stdout.splitlines() if "removed-api" in line]
    assert removed == REMOVED_LINES
    assert [line for line in failed.stdout.splitlines() if line.lstrip().startswith("FAIL")] == [
        f"  FAIL  removed-api  {line}" for line in REMOVED_LINES
    ]
    errors = [line for line in failed.stderr.splitlines() if line.startswith("sandbox: error:")]
    assert errors == [
        f"sandbox: error: validation of {NAME} failed: "
        + "; ".join(line.replace(": uses", " uses") for line in REMOVED_LINES)
    ]
    assert "Traceback" not in failed.stdout + failed.stderr
    assert "flow run 'sandbox-validate'" in failed.stdout and ": Failed" in failed.stdout
    assert stages(config, prefect_server)["validate"] == ("failed", 1)  # promote refuses it now
    newest = artifact_tables(prefect_server)[0]
    assert [(r["result"], r["check"]) for r in newest] == [
        ("FAIL", "removed-api"),
        ("FAIL", "removed-api"),
        ("SKIP", "readiness"),
    ]

    head = push_legacy_ingress(work, "after", "platform: entry point on networking.k8s.io/v1")
    passed = sandbox_cli("validate", NAME, "--config", str(config), "--output", "json", api_url=prefect_server)
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    report = json.loads(passed.stdout)
    assert report["passed"] is True and report["failures"] == [] and report["commit"] == head
    assert report["findings"] == [] and report["readiness_checked"] is True
    assert report["scanned"] == ["apps/podinfo", f"clusters/{NAME}", "platform/configs", "platform/controllers"]
    kustomizations = [r for r in report["readiness"] if r["object"].startswith("Kustomization/")]
    assert all(r["ready"] for r in report["readiness"])
    assert kustomizations and all(r["message"].endswith(f"{BRANCH}@sha1:{head}") for r in kustomizations)
    assert stages(config, prefect_server)["validate"] == ("completed", 2)
    assert {r["result"] for r in artifact_tables(prefect_server)[0]} == {"OK"}
    # The cluster runs the fixed entry point.
    cluster = SimulatedCluster(simulation_dir(config))
    assert cluster.get(ObjectRef("networking.k8s.io/v1", "Ingress", "legacy", "platform")) is not None


def test_objects_not_ready_are_named_with_their_reason(created: tuple[Path, Path], prefect_server: str) -> None:
    config, _ = created
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["drivers"]["cluster"]["ready_timeout_seconds"] = 2
    short = config.with_name("fleet-short-timeout.yaml")
    short.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    release = ObjectRef("helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", "podinfo")
    cluster = SimulatedCluster(simulation_dir(config))
    cluster.inject_failure(release, "UpgradeFailed", "simulated: pre-upgrade hook timed out")
    try:
        result = sandbox_cli("validate", NAME, "--config", str(short), api_url=prefect_server)
    finally:
        cluster.clear_failure(release)
    assert result.returncode == 1, result.stdout + result.stderr
    cause = "not Ready after 2s: HelmRelease/podinfo/podinfo: UpgradeFailed: simulated: pre-upgrade hook timed out"
    assert "  FAIL  not-ready  HelmRelease/podinfo/podinfo: UpgradeFailed: simulated: pre-upgrade hook timed out" in (
        result.stdout
    )
    assert [line for line in result.stderr.splitlines() if line.startswith("sandbox: error:")] == [
        f"sandbox: error: validation of {NAME} failed: {cause}"
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["validate", "production"], 2, "long-lived or protected"),
        (["validate", "sandbox-nope"], 1, "no sandbox named 'sandbox-nope' in the inventory"),
        (["validate", NAME, "--output", "yaml"], 2, "--output must be text or json"),
    ],
)
def test_validate_refuses_what_it_cannot_validate(
    created: tuple[Path, Path], prefect_server: str, args: list[str], code: int, message: str
) -> None:
    config, _ = created
    result = sandbox_cli(*args, "--config", str(config), api_url=prefect_server)
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_the_demo_fleet_passes_the_policy_check(created: tuple[Path, Path], prefect_server: str) -> None:
    _, work = created
    result = sandbox_cli("check", "--repo", str(work), api_url=prefect_server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 violation(s)" in result.stdout


def test_an_application_teams_stack_is_deployed_onto_the_platform_sandbox(
    created: tuple[Path, Path], prefect_server: str, tmp_path: Path
) -> None:
    config, _ = created
    shop_remote, shop_work = tmp_path / "shop.git", tmp_path / "shop"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(shop_remote)], check=True)
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "appstacks" / "shop", shop_work)
    subprocess.run(["git", "init", "-q", "-b", "main", str(shop_work)], check=True)
    git(shop_work, "add", "-A")
    git(shop_work, "-c", "user.name=shop", "-c", "user.email=shop@example.com", "commit", "-qm", "shop stack")
    git(shop_work, "push", "-q", str(shop_remote), "main")
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["validation"] = {"application_stacks": [{"name": "shop", "url": str(shop_remote), "path": "./deploy"}]}
    with_stack = config.with_name("fleet-with-shop.yaml")
    with_stack.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    result = sandbox_cli("validate", NAME, "--config", str(with_stack), "--output", "json", api_url=prefect_server)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["application_stacks"] == ["shop"]
    readiness = {r["object"]: r["ready"] for r in report["readiness"]}
    assert readiness["Kustomization/flux-system/app-shop"] is True
    cluster = SimulatedCluster(simulation_dir(config))
    assert cluster.get(ObjectRef("v1", "ConfigMap", "shop-settings", "shop")) is not None
