"""Release logic without outside systems: the Flux artifact format, release decisions,
the plan, ranges, settings, and the CLI commands that need no registry."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sandbox.config import DriversConfig, FleetConfig, load_config
from sandbox.drivers.oci_artifact import (
    CREATED_ANNOTATION,
    FLUX_CONFIG_MEDIA_TYPE,
    FLUX_CONTENT_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE,
    REVISION_ANNOTATION,
    SOURCE_ANNOTATION,
    FluxArtifact,
    build_flux_tarball,
    tarball_entries,
    tarball_files,
)
from sandbox.drivers.registry import (
    ArtifactExistsError,
    FluxCliRegistry,
    InMemoryRegistry,
    OrasRegistry,
    RegistryConfig,
    RegistryCredentials,
    flux_push_command,
)
from sandbox.errors import ConfigError, InvalidInputError
from sandbox.release.decision import decide_release
from sandbox.release.errors import ReleaseExistsError
from sandbox.release.plan import EnvironmentPlan, ReleasePlan, compute_plan
from sandbox.release.platform_source import PlatformSource, parse_platform_source
from sandbox.release.settings import (
    configured_registry,
    registry_credentials,
    registry_from_sources,
    registry_override,
    source_url,
)
from sandbox.release.versions import newest_release, previous_release, suggest_range
from sandbox.versions import resolve, satisfies
from sandbox.wiring import build_registry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "release"
STACK = FIXTURES / "stack"
MAIN = "a" * 40
OLD = "b" * 40


def stack_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def fleet_config(staging_range: str = "1.2.x", production_tag: str = "1.2.3") -> FleetConfig:
    tf = {"module": "infra/cluster"}
    return FleetConfig.model_validate(
        {
            "fleet_repo": {"remote": "/srv/fleet.git"},
            "environments": {
                "development": {
                    "cluster_dir": "clusters/development",
                    "tracking": {"type": "branch", "branch": "main"},
                    "terraform": tf,
                },
                "staging": {
                    "cluster_dir": "clusters/staging",
                    "tracking": {"type": "semver", "range": staging_range},
                    "terraform": tf,
                },
                "production": {
                    "cluster_dir": "clusters/production",
                    "tracking": {"type": "tag", "tag": production_tag},
                    "terraform": tf,
                },
            },
        }
    )


REGISTRY = "oci://registry.example.com/fleet/platform"


def example_sources(example_repo: Path) -> dict[str, PlatformSource | None]:
    return {
        env: parse_platform_source(
            (example_repo / "clusters" / env / "platform.yaml").read_text(), file=f"clusters/{env}/platform.yaml"
        )
        for env in ("development", "staging", "production")
    }


def plan_for(
    example_repo: Path,
    tags: list[str],
    version: str | None = None,
    config: FleetConfig | None = None,
    branches: tuple[str, ...] = (),
) -> ReleasePlan:
    return compute_plan(
        config or fleet_config(),
        example_sources(example_repo),
        registry_tags=tags,
        branch_heads={"main": MAIN, **dict.fromkeys(branches, OLD)},
        main_commit=MAIN,
        registry_url=REGISTRY,
        version=version,
    )


def row(plan: ReleasePlan, name: str) -> EnvironmentPlan:
    return next(r for r in plan.environments if r.environment == name)


# -- the Flux tarball ---------------------------------------------------------------------


def test_tarball_walks_like_go_with_neutral_metadata() -> None:
    entries = tarball_entries(build_flux_tarball(STACK))
    names = [e.name for e in entries]
    # Go's filepath.Walk: root first, each directory's entries sorted, depth first.
    assert names == [".", "a", "a/kustomization.yaml", "a/namespace.yaml", "a-b.yaml", "b", "b/config.yaml"]
    assert names != sorted(names)  # a plain path sort would put a-b.yaml before a/...
    for entry in entries:
        assert (entry.uid, entry.gid, entry.uname, entry.gname, entry.mtime) == (0, 0, "", "", 0)
        assert entry.mode == (0o755 if entry.isdir() else 0o644)
        assert entry.isdir() or entry.isfile()


def test_tarball_holds_the_directory_contents() -> None:
    assert tarball_files(build_flux_tarball(STACK)) == stack_files(STACK)


def test_tarball_is_reproducible_across_mtimes_and_umask(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(STACK, copy)
    for path in copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
        path.chmod(0o700 if path.is_dir() else 0o600)
    assert build_flux_tarball(copy) == build_flux_tarball(STACK)
    layer = build_flux_tarball(STACK)
    assert layer[4:8] == b"\0\0\0\0"  # gzip header mtime
    assert not layer[3] & 0x08  # no file name in the gzip header


def test_tarball_keeps_executables_and_skips_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "stack"
    shutil.copytree(STACK, root)
    script = root / "hooks.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o775)
    (root / "link.yaml").symlink_to(root / "a-b.yaml")
    entries = {e.name: e for e in tarball_entries(build_flux_tarball(root))}
    assert entries["hooks.sh"].mode == 0o755
    assert "link.yaml" not in entries


def test_artifact_manifest_has_flux_media_types_and_annotations() -> None:
    artifact = FluxArtifact(STACK, "https://git.example/fleet", f"1.2.4@sha1:{MAIN}", "2026-11-24T10:00:00Z")
    manifest = json.loads(artifact.manifest)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == OCI_MANIFEST_MEDIA_TYPE
    assert manifest["config"]["mediaType"] == FLUX_CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [FLUX_CONTENT_MEDIA_TYPE]
    assert manifest["annotations"] == {
        SOURCE_ANNOTATION: "https://git.example/fleet",
        REVISION_ANNOTATION: f"1.2.4@sha1:{MAIN}",
        CREATED_ANNOTATION: "2026-11-24T10:00:00Z",
    }
    layer = manifest["layers"][0]
    assert layer["digest"] == "sha256:" + hashlib.sha256(artifact.layer).hexdigest()
    assert layer["size"] == len(artifact.layer)
    config = json.loads(artifact.config)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(gzip.decompress(artifact.layer)).hexdigest()]
    assert artifact.digest == "sha256:" + hashlib.sha256(artifact.manifest).hexdigest()


def test_in_memory_registry_refuses_an_existing_tag() -> None:
    registry = InMemoryRegistry()
    artifact = FluxArtifact(STACK, "s", "1.0.0@sha1:x", "2026-01-01T00:00:00Z")
    registry.push_artifact("1.0.0", artifact)
    with pytest.raises(ArtifactExistsError, match="1.0.0"):
        registry.push_artifact("1.0.0", artifact)
    assert registry.pushes == 1
    assert tarball_files(registry.pull_content("1.0.0")) == stack_files(STACK)


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "url", "host", "repository"),
    [
        (
            "oci://127.0.0.1:5000/fleet/platform",
            "oci://127.0.0.1:5000/fleet/platform",
            "127.0.0.1:5000",
            "fleet/platform",
        ),
        ("ghcr.io/org/fleet/platform/", "oci://ghcr.io/org/fleet/platform", "ghcr.io", "org/fleet/platform"),
        ("https://localhost:5001/platform", "oci://localhost:5001/platform", "localhost:5001", "platform"),
    ],
)
def test_registry_url_is_normalised(given: str, url: str, host: str, repository: str) -> None:
    settings = RegistryConfig(url=given)
    assert (settings.url, settings.host, settings.repository) == (url, host, repository)


@pytest.mark.parametrize(
    "bad", ["oci://registry.example.com", "oci://host/Fleet/Platform", "oci:///fleet", "oci://host/a//b"]
)
def test_registry_url_rejects_what_is_no_repository(bad: str) -> None:
    with pytest.raises(ValueError):
        RegistryConfig(url=bad)


def test_registry_override_and_discovery(example_repo: Path) -> None:
    config = fleet_config()
    assert configured_registry(config) is None
    assert registry_override(config, None) is None
    override = registry_override(config, "oci://127.0.0.1:5000/fleet/platform", True)
    assert override is not None and (override.url, override.insecure) == ("oci://127.0.0.1:5000/fleet/platform", True)
    with pytest.raises(InvalidInputError, match="--registry"):
        registry_override(config, "oci://nohost")
    derived = registry_from_sources(config, example_sources(example_repo))
    assert derived is not None and derived.url == "oci://registry.example.com/fleet/platform"


def test_fleet_yaml_configures_the_registry_under_drivers(tmp_path: Path) -> None:
    data = fleet_config().model_dump(mode="json", exclude={"base_dir"})
    data["drivers"]["registry"] = {"url": "127.0.0.1:5000/fleet/platform", "insecure": True, "auth": "basic"}
    path = tmp_path / "fleet.yaml"
    path.write_text(json.dumps(data))
    config = load_config(path)
    assert config.drivers.registry is not None and configured_registry(config) == config.drivers.registry
    assert (config.drivers.registry.url, config.drivers.registry.host) == (
        "oci://127.0.0.1:5000/fleet/platform",
        "127.0.0.1:5000",
    )
    # The model documents the file (and the Prefect UI form): every field has a description.
    assert all(f.description for f in RegistryConfig.model_fields.values())
    assert DriversConfig.model_fields["registry"].description
    override = registry_override(config, "oci://127.0.0.1:5001/other")
    assert override is not None and (override.url, override.insecure, override.auth) == (
        "oci://127.0.0.1:5001/other",
        True,
        "basic",
    )
    data["drivers"]["registry"] = {"url": "oci://registry.example.com"}
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"drivers\.registry\.url: .*no valid repository path"):
        load_config(path)
    data["drivers"]["registry"] = {"url": "oci://registry.example.com/p", "pasword_env": "X"}
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"drivers\.registry\.pasword_env"):
        load_config(path)


def test_the_flux_cli_pushes_when_it_is_on_path() -> None:
    url = "oci://127.0.0.1:5000/fleet/platform"
    on_path = shutil.which("true")  # any executable stands for a flux CLI on PATH; nothing is run
    assert on_path is not None
    assert type(build_registry(RegistryConfig(url=url, flux_binary=on_path))) is FluxCliRegistry
    assert type(build_registry(RegistryConfig(url=url, flux_binary="no-such-flux"))) is OrasRegistry
    assert type(build_registry(RegistryConfig(url=url, flux_binary=on_path, push_with="oras"))) is OrasRegistry
    heard: list[str] = []
    forced = build_registry(
        RegistryConfig(url=url, flux_binary="no-such-flux", push_with="flux"), progress=heard.append
    )
    assert type(forced) is OrasRegistry and heard == ["no-such-flux is not on PATH: pushing with oras instead"]


def test_credentials_come_in_pairs_and_never_show_the_password() -> None:
    settings = RegistryConfig(url=REGISTRY)
    assert registry_credentials(settings, environ={}) is None
    creds = registry_credentials(
        settings, environ={"FLEET_REGISTRY_USERNAME": "robot", "FLEET_REGISTRY_PASSWORD": "s3cret-pw"}
    )
    assert creds == RegistryCredentials("robot", "s3cret-pw")
    assert "s3cret-pw" not in repr(creds)
    assert registry_credentials(settings, password="from-block", environ={"FLEET_REGISTRY_USERNAME": "robot"}) == (
        RegistryCredentials("robot", "from-block")
    )
    with pytest.raises(ConfigError, match="FLEET_REGISTRY_USERNAME") as failure:
        registry_credentials(settings, environ={"FLEET_REGISTRY_PASSWORD": "s3cret-pw"})
    assert "s3cret-pw" not in str(failure.value)


def test_flux_push_command_redacts_credentials() -> None:
    settings = RegistryConfig(url="oci://127.0.0.1:5000/fleet/platform", insecure=True, push_with="flux")
    artifact = FluxArtifact(STACK, "https://git.example/fleet", f"1.2.4@sha1:{MAIN}", "2026-01-01T00:00:00Z")
    command = flux_push_command(settings, "1.2.4", artifact, RegistryCredentials("robot", "s3cret-pw"))
    assert command.argv[:4] == ("flux", "push", "artifact", "oci://127.0.0.1:5000/fleet/platform:1.2.4")
    assert f"--path={STACK}" in command.argv
    assert f"--revision=1.2.4@sha1:{MAIN}" in command.argv
    assert "--insecure-registry" in command.argv
    assert "s3cret-pw" not in command.describe()


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("https://x-access-token:tok@github.com/org/fleet.git", "https://github.com/org/fleet.git"),
        ("https://tok@github.com/org/fleet.git", "https://github.com/org/fleet.git"),
        ("ssh://git@github.com/org/fleet", "ssh://git@github.com/org/fleet"),
        ("ssh://user:pw@host/org/fleet", "ssh://host/org/fleet"),
        ("git@github.com:org/fleet.git", "git@github.com:org/fleet.git"),
        ("/srv/fleet.git", "file:///srv/fleet.git"),
    ],
)
def test_source_url_carries_no_credentials(remote: str, expected: str) -> None:
    assert source_url(remote) == expected


# -- deciding a release ----------------------------------------------------------------------------


def test_bump_takes_the_highest_tag_in_git_or_registry() -> None:
    decision = decide_release(git_tags={"1.2.3": OLD}, registry_tags=["1.2.3", "1.2.4"], main_commit=MAIN, bump="minor")
    assert (decision.version, decision.commit, decision.create_tag) == ("1.3.0", MAIN, True)
    assert decide_release(git_tags={}, registry_tags=[], main_commit=MAIN).version == "0.1.0"


def test_an_interrupted_release_is_finished_not_bumped_past() -> None:
    # 1.2.4 was tagged at main, its push failed; the same request again finishes it.
    decision = decide_release(
        git_tags={"1.2.3": OLD, "1.2.4": MAIN}, registry_tags=["1.2.3"], main_commit=MAIN, bump="patch"
    )
    assert (decision.version, decision.create_tag, decision.resumed) == ("1.2.4", False, True)
    # A different bump is a different release.
    other = decide_release(
        git_tags={"1.2.3": OLD, "1.2.4": MAIN}, registry_tags=["1.2.3"], main_commit=MAIN, bump="minor"
    )
    assert (other.version, other.create_tag) == ("1.3.0", True)
    assert any("1.2.4 has no artifact" in w for w in other.warnings)


def test_explicit_version_resumes_at_main_and_refuses_elsewhere() -> None:
    resumed = decide_release(git_tags={"1.2.3": MAIN}, registry_tags=[], main_commit=MAIN, version="1.2.3")
    assert (resumed.version, resumed.commit, resumed.create_tag) == ("1.2.3", MAIN, False)
    with pytest.raises(ReleaseExistsError, match=r"git tag 1\.2\.3 already exists at b{12}"):
        decide_release(git_tags={"1.2.3": OLD}, registry_tags=[], main_commit=MAIN, version="1.2.3")
    as_is = decide_release(
        git_tags={"1.2.3": OLD}, registry_tags=[], main_commit=MAIN, version="1.2.3", existing_tag=True
    )
    assert (as_is.commit, as_is.create_tag) == (OLD, False)


def test_published_tags_are_never_overwritten() -> None:
    with pytest.raises(ReleaseExistsError, match=r"registry tag 1\.3\.0"):
        decide_release(git_tags={}, registry_tags=["1.3.0"], main_commit=MAIN, version="1.3.0")
    with pytest.raises(ReleaseExistsError, match="v1.3.0"):
        decide_release(git_tags={"v1.3.0": OLD}, registry_tags=[], main_commit=MAIN, version="1.3.0")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bump": "patch", "version": "1.2.4"},
        {"version": "v1.2.4"},
        {"version": "1.2"},
        {"existing_tag": True},
        {"bump": "huge"},
    ],
)
def test_invalid_release_requests(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        decide_release(git_tags={}, registry_tags=[], main_commit=MAIN, **kwargs)  # type: ignore[arg-type]


def test_newest_and_previous_release() -> None:
    tags = ["1.2.3", "latest", "1.3.0-rc.1", "1.2.4", "v1.1.0"]
    assert newest_release(tags) == "1.3.0-rc.1"
    assert previous_release(tags, "1.2.4") == "1.2.3"
    assert previous_release(tags, "1.2.3") == "v1.1.0"
    assert previous_release(tags, "v1.1.0") is None


@pytest.mark.parametrize(
    ("current", "version", "expected"),
    [
        ("1.2.x", "1.3.0", "1.3.x"),
        ("1.2.X", "2.0.0", "2.0.x"),
        ("1.x", "2.0.0", "2.x"),
        ("1", "2.1.0", "2.x"),
        ("^1.2.0", "2.0.0", "^2.0.0"),
        ("~1.2.0", "1.3.1", "~1.3.1"),
        (">=1.0.0 <2.0.0", "2.0.0", "2.0.x"),
    ],
)
def test_suggested_ranges_keep_the_style_and_admit_the_release(current: str, version: str, expected: str) -> None:
    suggestion = suggest_range(current, version)
    assert suggestion == expected
    assert satisfies(suggestion, version)


# -- reading cluster files and planning ---------------------------------------------------------------


def test_platform_source_is_read_as_flux_reads_it(example_repo: Path) -> None:
    sources = example_sources(example_repo)
    assert sources["development"] is not None and sources["development"].tracking == "branch"
    staging, production = sources["staging"], sources["production"]
    assert staging is not None and (staging.tracking, staging.reference) == ("semver", "1.2.x")
    assert production is not None and (production.tracking, production.reference) == ("tag", "1.2.3")
    mixed = parse_platform_source((FIXTURES / "sources.yaml").read_text(), file="sources.yaml")
    assert mixed is not None
    assert (mixed.name, mixed.semver, mixed.semver_filter, mixed.insecure) == (
        "platform",
        ">=1.2.0 <2.0.0",
        r"^v?1\.[0-9]+\.[0-9]+$",
        True,
    )


def test_plan_patch_release_reaches_staging_only(example_repo: Path) -> None:
    plan = plan_for(example_repo, ["1.2.3", "1.2.4"])
    assert plan.version == "1.2.4" and plan.published and not plan.major_bump
    staging, production = row(plan, "staging"), row(plan, "production")
    assert (staging.before, staging.after, staging.changes) == ("1.2.3", "1.2.4", True)
    assert any("picks up 1.2.4 automatically" in n for n in staging.notes)
    assert (production.before, production.after, production.changes) == ("1.2.3", "1.2.3", False)
    assert any("promote-production" in n for n in production.notes)
    development = row(plan, "development")
    assert (development.before, development.after) == (f"main@{MAIN[:12]}", f"main@{MAIN[:12]}")
    assert plan.range_changes == {}


def test_plan_minor_release_outside_the_range_needs_a_range_change(example_repo: Path) -> None:
    plan = plan_for(example_repo, ["1.2.3", "1.2.4", "1.3.0"])
    staging = row(plan, "staging")
    assert (staging.before, staging.after, staging.changes) == ("1.2.4", "1.2.4", False)
    assert plan.range_changes == {"staging": "1.3.x"}
    assert any("propose-range --env staging --range 1.3.x" in n for n in staging.notes)
    assert not plan.major_bump


def test_plan_names_the_branches_that_propose_the_changes(example_repo: Path) -> None:
    plan = plan_for(
        example_repo,
        ["1.2.3", "1.2.4", "1.3.0"],
        branches=("release/staging-range-1.3.x", "release/production-1.3.0"),
    )
    staging, production = row(plan, "staging"), row(plan, "production")
    assert plan.range_proposals == {"staging": "release/staging-range-1.3.x"}
    assert any("proposed on branch release/staging-range-1.3.x" in n for n in staging.notes)
    assert (staging.after, production.after) == ("1.2.4", "1.2.3")  # nothing moves before the merges
    assert any("proposed on branch release/production-1.3.0" in n for n in production.notes)
    # A branch for another range is not this proposal.
    other = plan_for(example_repo, ["1.2.3", "1.3.0"], branches=("release/staging-range-1.4.x",))
    assert other.range_proposals == {} and other.range_changes == {"staging": "1.3.x"}


def test_plan_for_an_unpublished_major_flags_it(example_repo: Path) -> None:
    plan = plan_for(example_repo, ["1.2.3", "1.2.4"], version="2.0.0")
    assert (plan.version, plan.published, plan.major_bump) == ("2.0.0", False, True)
    assert plan.range_changes == {"staging": "2.0.x"}
    assert row(plan, "staging").after == "1.2.4"


def test_plan_cross_checks_fleet_yaml_and_the_registry(example_repo: Path) -> None:
    plan = plan_for(example_repo, ["1.2.4"], config=fleet_config(staging_range="1.x", production_tag="1.2.2"))
    staging, production = row(plan, "staging"), row(plan, "production")
    assert staging.reference == "1.2.x"  # Flux reads the cluster file, not fleet.yaml
    assert any("fleet.yaml says range 1.x" in n for n in staging.notes)
    assert any("fleet.yaml says tag 1.2.2" in n for n in production.notes)
    assert any("1.2.3 is not in" in n for n in production.notes)


def test_plan_applies_the_semver_filter() -> None:
    config = fleet_config(staging_range=">=1.2.0 <2.0.0")
    staging = parse_platform_source((FIXTURES / "sources.yaml").read_text(), file="clusters/staging/platform.yaml")
    tags = ["1.2.3", "1.3.1", "1.5.0+build.3"]
    assert resolve(">=1.2.0 <2.0.0", tags) == "1.5.0+build.3"  # what the range alone would pick
    plan = compute_plan(
        config,
        {"staging": staging},
        registry_tags=tags,
        branch_heads={},
        main_commit=MAIN,
        registry_url="oci://127.0.0.1:5000/fleet/platform",
    )
    assert (row(plan, "staging").before, row(plan, "staging").after) == ("1.3.1", "1.3.1")


# -- the CLI without outside systems ----------------------------------------------------------------------


def cli_app() -> typer.Typer:
    """The ``sandbox`` command line, with the release commands registered by cli/main.py."""
    from cli.main import app

    return app


@pytest.mark.parametrize(
    ("args", "code", "stdout"),
    [
        (["--range", "1.2.x", "--tags", "1.2.3,1.3.0,v1.2.4,latest"], 0, "v1.2.4\n"),
        (["--range", ">=1.0.0-0 <2", "--tags", "1.5.0-rc.1, 0.9.0"], 0, "1.5.0-rc.1\n"),
        (["--range", "2.x", "--tags", "1.2.3,1.3.0"], 1, ""),
        (["--range", "1.2.x ||| nonsense", "--tags", "1.2.3"], 2, ""),
    ],
)
def test_resolve_command(args: list[str], code: int, stdout: str) -> None:
    result = CliRunner().invoke(cli_app(), ["resolve", *args])
    assert result.exit_code == code, result.output
    assert result.stdout == stdout
    if code:
        assert result.stderr.startswith("sandbox: error: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["release", "--bump", "patch", "--version", "1.2.4"], "not both"),
        (["release", "--version", "1.2"], "invalid release version"),
        (["release", "--existing-tag"], "--existing-tag needs --version"),
        (["release", "--registry", "oci://nohost"], "--registry"),
        (["release", "--insecure-registry"], "goes with --registry"),
        (["release", "--output", "yaml"], "--output"),
        (["release", "plan", "--version", "next"], "invalid release version"),
        (["release", "propose-range", "--range", "not a range!"], "invalid semver range"),
        (["release", "propose-range", "--range", "1.3.x", "--env", "qa"], "unknown environment"),
        (["release", "promote-production"], "--version X.Y.Z or --rollback"),
        (["release", "promote-production", "--version", "1.2.4", "--rollback"], "--version X.Y.Z or --rollback"),
        (["release", "promote-production", "--version", "1.2.4", "--reason", "because"], "--reason goes with"),
        (["release", "promote-production", "--version", "bad tag"], "not a valid OCI tag"),
    ],
)
def test_release_commands_refuse_bad_input_before_anything_runs(args: list[str], message: str, tmp_path: Path) -> None:
    # A valid fleet.yaml whose remote does not exist: any git or registry access would fail with exit 1.
    config = tmp_path / "fleet.yaml"
    config.write_text(json.dumps(fleet_config().model_dump(mode="json", exclude={"base_dir"})))
    result = CliRunner().invoke(cli_app(), [*args, "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("sandbox: error: ") and message in result.stderr, result.stderr


def test_plan_table_lists_every_environment(example_repo: Path) -> None:
    from cli.release_cmd import render_plan

    lines = render_plan(plan_for(example_repo, ["1.2.3", "1.2.4", "1.3.0"]))
    assert lines[0].startswith("release 1.3.0 (published)")
    header = lines[2].split()
    assert header == ["ENVIRONMENT", "TRACKS", "BEFORE", "AFTER", "CHANGE"]
    table = {line.split()[0]: line.split() for line in lines[3:6]}
    assert table["staging"][1:] == ["semver", "1.2.x", "1.2.4", "1.2.4", "-"]
    assert table["production"][1:] == ["tag", "1.2.3", "1.2.3", "1.2.3", "-"]
    assert any(line.startswith("staging: 1.3.0 (newer) is outside 1.2.x") for line in lines)
    assert lines[-1] == (
        "RANGE CHANGE: 1.3.0 is outside a semver range: staging needs range 1.3.x by pull request "
        "(sandbox release propose-range --env staging --range 1.3.x)"
    )
    major = render_plan(plan_for(example_repo, ["1.2.3"], version="2.0.0", branches=("release/staging-range-2.0.x",)))
    assert major[0].startswith("release 2.0.0 (not published yet)")
    assert major[-1] == (
        "MAJOR BUMP: 2.0.0 raises the major version (a breaking release): staging needs range 2.0.x by pull request "
        "(proposed on branch release/staging-range-2.0.x)"
    )
    assert not any(line.startswith(("MAJOR", "RANGE")) for line in render_plan(plan_for(example_repo, ["1.2.4"])))


def test_approval_form_shows_the_plan_and_defaults_to_no() -> None:
    from flows.release import ProductionApproval

    form = ProductionApproval.with_initial_data(
        description="plan", from_tag="1.2.3", to_tag="1.2.4", staging_runs="staging runs 1.2.4"
    )
    answer = form.model_validate({"reason": "looks good"})
    assert (answer.from_tag, answer.to_tag, answer.approve) == ("1.2.3", "1.2.4", False)
    schema = form.model_json_schema()
    assert schema["properties"]["approve"]["type"] == "boolean"
    assert {"from_tag", "to_tag", "staging_runs", "approve", "reason"} <= set(schema["properties"])


def test_tarfile_listing_of_the_example_platform(example_repo: Path) -> None:
    names = [entry.name for entry in tarball_entries(build_flux_tarball(example_repo / "platform"))]
    assert names[0] == "."
    assert set(names[1:]) == {
        p.relative_to(example_repo / "platform").as_posix() for p in (example_repo / "platform").rglob("*")
    }
