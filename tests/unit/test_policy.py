"""The fleet policy (sandbox/policy.py) and ``sandbox check``, on fixture trees and real git checkouts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from cli.check_cmd import register
from sandbox.config import FleetConfig, load_config
from sandbox.demo import demo_config
from sandbox.errors import InvalidInputError
from sandbox.policy import (
    RULE_ENVIRONMENT_DIRECTORY,
    RULE_FIXED_TAG,
    RULE_NO_LINGERING_SANDBOX,
    RULE_OCI_ARTIFACT,
    RULE_SEMVER_RANGE,
    RULE_TRACKS_MAIN,
    RULES,
    Tracks,
    check_repository,
    config_violations,
    tracks_for,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policy"
EXAMPLE_REPO = Path(__file__).resolve().parents[2] / "examples" / "fleet-repo"

VIOLATIONS = [
    "clusters/development/platform.yaml: tracks-main: GitRepository platform tracks branch OPS-1-try-upgrade; "
    "development tracks the main branch",
    "clusters/development/flux-system/gotk-sync.yaml: own-gotk-sync: Kustomization flux-system points at "
    "./clusters/sandbox-a, not at its own path ./clusters/development",
    "clusters/development/flux-system/gotk-sync.yaml: own-gotk-sync: GitRepository flux-system tracks branch "
    "OPS-1-try-upgrade, not branch main",
    "clusters/production/notes.yaml: readable-yaml: not valid YAML: expected ',' or ']', but got '<stream end>'",
    "clusters/production/platform.yaml: fixed-tag: OCIRepository platform follows the semver range "
    "'>=1.2.0 <2.0.0'; production pins a fixed tag",
    "clusters/qa/platform.yaml: oci-artifact: GitRepository platform tracks git branch main; long-lived clusters "
    "track OCI artifacts (only development and canaries track main)",
    "clusters/staging/platform.yaml: semver-range: OCIRepository platform pins tag '1.2.3'; staging tracks a "
    "semver range (e.g. 1.2.x)",
    "clusters/staging/flux-system/gotk-sync.yaml: own-gotk-sync: missing: every cluster holds its own "
    "gotk-sync.yaml (for ./clusters/staging)",
    "clusters/sandbox-a/: no-lingering-sandbox: clusters/sandbox-a/ is not a long-lived environment: a sandbox "
    "directory must not linger on main (promote it or delete it)",
]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def git_repo(tree: Path, dest: Path) -> Path:
    """``tree`` committed on ``main`` of a new repository at ``dest``."""
    shutil.copytree(tree, dest)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "config", "user.name", "t")
    git(dest, "config", "user.email", "t@t")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "fleet")
    return dest


def platform_file(repo: Path, env: str) -> Path:
    return repo / "clusters" / env / "platform.yaml"


def test_the_example_fleet_repo_passes() -> None:
    report = check_repository(EXAMPLE_REPO)
    # local: a real local cluster's environment (clusters/local, scripts/render_local_flux.py)
    assert report.environments == ["development", "local", "production", "staging"]
    assert report.violations == []


def test_without_fleet_yaml_a_canary_is_declared_on_its_platform_source(tmp_path: Path) -> None:
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLE_REPO, repo)
    local = platform_file(repo, "local")
    text = local.read_text()
    assert 'fleet-sandbox.io/canary: "true"' in text
    local.write_text(text.replace('fleet-sandbox.io/canary: "true"', 'fleet-sandbox.io/canary: "no"'))
    assert [v.rule for v in check_repository(repo).violations] == ["oci-artifact"]
    local.write_text(text)
    assert check_repository(repo).violations == []
    # Declared or configured, a canary is never production or staging: their rules go by name.
    assert tracks_for("production", canary=True) is Tracks.fixed_tag


def test_a_clean_fleet_with_a_configured_canary_passes() -> None:
    config = load_config(FIXTURES / "clean" / "fleet.yaml")
    report = check_repository(FIXTURES / "clean", config)
    assert report.environments == ["canary", "development", "production", "staging"]
    assert report.ok


def test_without_configuration_a_canary_is_a_long_lived_cluster_tracking_git() -> None:
    report = check_repository(FIXTURES / "clean")
    assert report.lines() == [
        "clusters/canary/platform.yaml: oci-artifact: GitRepository platform tracks git branch main; long-lived "
        "clusters track OCI artifacts (only development and canaries track main)"
    ]


def test_each_rule_broken_once_is_one_line_naming_file_and_rule() -> None:
    report = check_repository(FIXTURES / "violations")
    assert report.environments == ["development", "production", "qa", "staging"]
    assert report.lines() == VIOLATIONS
    assert {v.rule for v in report.violations} <= set(RULES)
    assert all("\n" not in line for line in report.lines())


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ('    tag: "latest"\n', "pins tag 'latest', which is not a release version; production pins a fixed tag"),
        ("    tag: main\n", "pins tag 'main', which is not a release version; production pins a fixed tag"),
        ("    {}\n", "sets no tag (Flux pulls 'latest'); production pins a fixed tag"),
        ('    tag: "1.2.3"\n    semver: "1.2.x"\n', "follows the semver range '1.2.x'; production pins a fixed tag"),
    ],
)
def test_production_must_pin_a_release_tag(tmp_path: Path, ref: str, message: str) -> None:
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLE_REPO, repo)
    path = platform_file(repo, "production")
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(
            '    tag: "1.2.3" # production: a fixed, known version; bumped by an approved pull request\n', ref
        ),
        encoding="utf-8",
    )
    [violation] = check_repository(repo).violations
    assert (violation.file, violation.rule) == ("clusters/production/platform.yaml", RULE_FIXED_TAG)
    assert violation.message == f"OCIRepository platform {message}"


def test_production_pinned_by_digest_is_fixed(tmp_path: Path) -> None:
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLE_REPO, repo)
    path = platform_file(repo, "production")
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('tag: "1.2.3"', 'digest: "sha256:' + "a" * 64 + '"'), encoding="utf-8")
    assert check_repository(repo).ok


@pytest.mark.parametrize(
    ("semver", "message"),
    [
        ('"1.2.3"', "semver '1.2.3' admits a single version; staging tracks a range (e.g. 1.2.x)"),
        ('"=v1.2.3"', "semver '=v1.2.3' admits a single version; staging tracks a range (e.g. 1.2.x)"),
        ('">= one"', "invalid semver range"),
    ],
)
def test_staging_needs_a_real_range(tmp_path: Path, semver: str, message: str) -> None:
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLE_REPO, repo)
    path = platform_file(repo, "staging")
    path.write_text(path.read_text(encoding="utf-8").replace('semver: "1.2.x"', f"semver: {semver}"), encoding="utf-8")
    [violation] = check_repository(repo).violations
    assert (violation.file, violation.rule) == ("clusters/staging/platform.yaml", RULE_SEMVER_RANGE)
    assert message in violation.message


@pytest.mark.parametrize("semver", ['"1.2.x"', '"^1.2"', '">=1.2.0 <2.0.0"', '"1.x"'])
def test_staging_ranges_that_admit_patches_pass(tmp_path: Path, semver: str) -> None:
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLE_REPO, repo)
    path = platform_file(repo, "staging")
    path.write_text(path.read_text(encoding="utf-8").replace('semver: "1.2.x"', f"semver: {semver}"), encoding="utf-8")
    assert check_repository(repo).ok


def test_development_tracking_an_oci_artifact_breaks_tracks_main(tmp_path: Path) -> None:
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLE_REPO, repo)
    shutil.copy(platform_file(repo, "staging"), platform_file(repo, "development"))
    [violation] = check_repository(repo).violations
    assert (violation.file, violation.rule) == ("clusters/development/platform.yaml", RULE_TRACKS_MAIN)
    assert violation.message == (
        "OCIRepository platform tracks an OCI artifact; development tracks the main branch with a GitRepository"
    )


def test_staging_tracking_git_breaks_the_oci_rule(tmp_path: Path) -> None:
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLE_REPO, repo)
    shutil.copy(platform_file(repo, "development"), platform_file(repo, "staging"))
    [violation] = check_repository(repo).violations
    assert (violation.file, violation.rule) == ("clusters/staging/platform.yaml", RULE_OCI_ARTIFACT)


def test_a_missing_environment_directory_is_named(tmp_path: Path) -> None:
    repo = tmp_path / "fleet"
    shutil.copytree(FIXTURES / "clean", repo)
    shutil.rmtree(repo / "clusters" / "canary")
    report = check_repository(repo, load_config(repo / "fleet.yaml"))
    assert [(v.file, v.rule) for v in report.violations] == [("clusters/canary/", RULE_ENVIRONMENT_DIRECTORY)]


def test_configured_tracking_that_contradicts_the_rules_names_the_config_file() -> None:
    config = FleetConfig.model_validate(
        {
            "fleet_repo": {"remote": "x"},
            "environments": {
                "production": {
                    "cluster_dir": "clusters/production",
                    "tracking": {"type": "semver", "range": "1.x"},
                    "terraform": {"module": "m"},
                },
                "qa": {
                    "cluster_dir": "clusters/qa",
                    "tracking": {"type": "branch", "branch": "main"},
                    "terraform": {"module": "m"},
                },
                "eu": {
                    "cluster_dir": "clusters/eu",
                    "tracking": {"type": "tag", "tag": "1.0.0"},
                    "terraform": {"module": "m"},
                },
            },
        }
    )
    lines = [v.line() for v in config_violations(config, "fleet.yaml")]
    assert lines == [
        "fleet.yaml: fixed-tag: environment production is configured with tracking semver; production pins a fixed tag",
        "fleet.yaml: oci-artifact: environment qa is configured to track branch main; long-lived clusters track "
        "OCI artifacts (mark it canary: true if it is a canary)",
    ]
    assert tracks_for("eu", configured=config.environments["eu"].tracking.type) is Tracks.fixed_tag


def test_on_a_sandbox_branch_the_lingering_rule_reads_the_default_branch(tmp_path: Path) -> None:
    repo = git_repo(EXAMPLE_REPO, tmp_path / "fleet")
    git(repo, "checkout", "-q", "-b", "OPS-1-try")
    shutil.copytree(repo / "clusters" / "development", repo / "clusters" / "sandbox-a")
    (repo / "clusters" / "sandbox-a" / "flux-system" / "gotk-sync.yaml").unlink()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "sandbox")
    assert check_repository(repo).ok  # the sandbox's directory belongs on its branch
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "OPS-1-try")  # merged without promotion: it lingers on main
    assert [v.line() for v in check_repository(repo).violations] == [
        "clusters/sandbox-a/: no-lingering-sandbox: clusters/sandbox-a/ is not a long-lived environment: a sandbox "
        "directory must not linger on main (promote it or delete it)"
    ]


def test_a_checkout_without_its_default_branch_is_bad_input(tmp_path: Path) -> None:
    repo = git_repo(EXAMPLE_REPO, tmp_path / "fleet")
    git(repo, "branch", "-q", "-m", "main", "trunk")
    with pytest.raises(InvalidInputError, match="default branch 'main' not found"):
        check_repository(repo)


# -- sandbox check ---------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def invoke(app: typer.Typer, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_exit_0_on_the_example_repo(cli: typer.Typer) -> None:
    code, out, err = invoke(cli, "check", "--repo", str(EXAMPLE_REPO))
    assert code == 0, err
    assert "4 long-lived environment(s) (development, local, production, staging), 0 violation(s)" in out


def test_check_uses_the_repositorys_own_fleet_yaml(cli: typer.Typer) -> None:
    code, out, err = invoke(cli, "check", "--repo", str(FIXTURES / "clean"))
    assert code == 0, out + err
    assert "(canary, development, production, staging), 0 violation(s)" in out


def test_check_exit_1_one_line_per_violation(cli: typer.Typer) -> None:
    code, out, err = invoke(cli, "check", "--repo", str(FIXTURES / "violations"))
    assert code == 1
    assert out.splitlines()[: len(VIOLATIONS)] == VIOLATIONS
    assert err.strip().splitlines() == [f"sandbox: error: 9 fleet policy violation(s) in {FIXTURES / 'violations'}"]


def test_check_json_output(cli: typer.Typer) -> None:
    import json

    code, out, _ = invoke(cli, "check", "--repo", str(FIXTURES / "violations"), "--output", "json")
    assert code == 1
    data = json.loads(out)
    assert [f"{v['file']}: {v['rule']}: {v['message']}" for v in data["violations"]] == VIOLATIONS
    assert data["environments"] == ["development", "production", "qa", "staging"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repo", "/nonexistent/fleet"], "/nonexistent/fleet: no such directory"),
        (["--repo", str(FIXTURES)], "is not a fleet repository: no clusters/ directory"),
        (["--repo", str(EXAMPLE_REPO), "--config", "/nonexistent/fleet.yaml"], "no such configuration file"),
        (["--repo", str(EXAMPLE_REPO), "--output", "yaml"], "--output must be text or json"),
    ],
)
def test_check_bad_input_exit_2(cli: typer.Typer, args: list[str], message: str) -> None:
    code, _, err = invoke(cli, "check", *args)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err


def test_a_cluster_bootstrapped_for_itself_on_main_is_not_a_lingering_sandbox(tmp_path: Path) -> None:
    """The simulated demo's fleet.yaml leaves out the example's local environment: no violation for it."""
    repo = git_repo(EXAMPLE_REPO, tmp_path / "fleet")
    config_path = tmp_path / "fleet.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(tmp_path)))
    config = load_config(config_path)
    assert "local" not in config.environments
    report = check_repository(repo, config=config)
    assert not [v for v in report.violations if v.rule == RULE_NO_LINGERING_SANDBOX], report.violations
    # A copy of it whose sync follows another branch is a sandbox's, and lingers.
    shutil.copytree(repo / "clusters" / "local", repo / "clusters" / "sandbox-b")
    sync = repo / "clusters" / "sandbox-b" / "flux-system" / "gotk-sync.yaml"
    text = sync.read_text().replace("./clusters/local", "./clusters/sandbox-b")
    sync.write_text(text.replace("branch: main", "branch: OPS-2-try"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lingering")
    report = check_repository(repo, config=config)
    lines = [v.line() for v in report.violations if v.rule == RULE_NO_LINGERING_SANDBOX]
    assert lines and lines[0].startswith("clusters/sandbox-b/: no-lingering-sandbox"), lines
