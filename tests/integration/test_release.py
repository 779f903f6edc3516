"""Releases against real parts: git tags on a bare remote (the demo setup), a real OCI
registry (docker-registry on loopback), and the Prefect server for the approval gate.

The acceptance story: on the demo setup, publish 1.2.3, then a patch release reaches
staging (1.2.x admits 1.2.4) while a minor release does not (1.3.0 needs a range
change, proposed by pull request); production moves only through an approved pull
request that changes one line.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sandbox.config import FleetConfig, load_config
from sandbox.demo import prepare_demo
from sandbox.drivers.git import GitCli
from sandbox.drivers.oci_artifact import (
    CREATED_ANNOTATION,
    FLUX_CONFIG_MEDIA_TYPE,
    FLUX_CONTENT_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE,
    REVISION_ANNOTATION,
    SOURCE_ANNOTATION,
    FluxArtifact,
    tarball_entries,
    tarball_files,
)
from sandbox.drivers.registry import ArtifactExistsError, OrasRegistry, RegistryConfig, RegistryUnavailableError
from sandbox.proc import run
from sandbox.release.context import ReleaseContext, build_release_context
from sandbox.release.errors import ReleaseError, ReleaseExistsError
from sandbox.release.plan import release_plan
from sandbox.release.production import plan_production
from sandbox.release.proposals import propose_range
from sandbox.release.publish import publish_artifact, release, tag_release
from sandbox.release.settings import source_url
from tests.integration.registry_fixture import LocalRegistry, oci_registry  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "release"


def git(repo: Path, *args: str) -> str:
    """Read-only git on a (bare) repository."""
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@dataclass
class Demo:
    """The demo setup with its own repository in the test registry."""

    config_path: Path
    config: FleetConfig
    remote: Path
    registry: RegistryConfig
    work: Path

    def context(self) -> ReleaseContext:
        return build_release_context(self.config, registry=self.registry)

    def change_platform(self, note: str) -> str:
        """Merge a change of the platform stack into main (as a merged pull request would); the new head."""
        checkout = self.work / f"edit-{len(list(self.work.glob('edit-*')))}"
        tool = GitCli()
        tool.clone(str(self.remote), checkout)
        path = checkout / "platform" / "configs" / "namespace.yaml"
        path.write_text(path.read_text() + f"# {note}\n")
        commit = tool.commit_all(checkout, f"platform: {note}")
        assert commit is not None
        tool.push(checkout, "main")
        return commit

    def merge(self, branch: str) -> str:
        """Merge a pull request's branch into main, as the git host does; the new head."""
        checkout = self.work / f"merge-{len(list(self.work.glob('merge-*')))}"
        tool = GitCli()
        tool.clone(str(self.remote), checkout)
        run(tool.command(checkout, "merge", "--no-ff", "--no-edit", f"origin/{branch}"), timeout_is_retryable=False)
        tool.push(checkout, "main")
        return self.main()

    def main(self) -> str:
        return git(self.remote, "rev-parse", "main")

    def tag_commit(self, tag: str) -> str:
        return git(self.remote, "rev-parse", f"{tag}^{{commit}}")


@pytest.fixture
def demo(tmp_path: Path, oci_registry: LocalRegistry, request: pytest.FixtureRequest) -> Demo:  # noqa: F811
    config_path = prepare_demo(tmp_path / "demo")
    repository = "fleet/" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    work = tmp_path / "work"
    work.mkdir()
    return Demo(
        config_path=config_path,
        config=load_config(config_path),
        remote=tmp_path / "demo" / "remote.git",
        registry=oci_registry.settings(repository),
        work=work,
    )


def row(plan: Any, name: str) -> Any:
    return next(r for r in plan.environments if r.environment == name)


def pull_requests(demo: Demo) -> list[dict[str, Any]]:
    directory = demo.config.state_dir / "pull-requests"
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []


# -- the registry driver against a real registry ---------------------------------------------------


def test_registry_push_list_pull_and_refuse(oci_registry: LocalRegistry) -> None:  # noqa: F811
    settings = oci_registry.settings("fleet/driver")
    registry = OrasRegistry(settings)
    assert registry.list_tags() == []  # the repository does not exist before the first push
    artifact = FluxArtifact(
        FIXTURES / "stack", "https://git.example/fleet", "1.0.0@sha1:" + "c" * 40, "2026-11-24T10:00:00Z"
    )
    pushed = registry.push_artifact("1.0.0", artifact)
    assert (pushed.url, pushed.digest) == (f"{settings.url}:1.0.0", artifact.digest)
    assert registry.list_tags() == ["1.0.0"]

    manifest = registry.get_manifest("1.0.0")
    assert manifest is not None
    assert (manifest.media_type, manifest.config.media_type) == (OCI_MANIFEST_MEDIA_TYPE, FLUX_CONFIG_MEDIA_TYPE)
    assert [layer.media_type for layer in manifest.layers] == [FLUX_CONTENT_MEDIA_TYPE]
    assert manifest.annotations == {
        SOURCE_ANNOTATION: "https://git.example/fleet",
        REVISION_ANNOTATION: "1.0.0@sha1:" + "c" * 40,
        CREATED_ANNOTATION: "2026-11-24T10:00:00Z",
    }
    assert manifest.digest == artifact.digest

    # The bytes the registry serves are the manifest built here (so the digest is ours).
    base = f"http://{settings.host}/v2/{settings.repository}"
    request = urllib.request.Request(f"{base}/manifests/1.0.0", headers={"Accept": OCI_MANIFEST_MEDIA_TYPE})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        served = response.read()
        assert response.headers["Content-Type"] == OCI_MANIFEST_MEDIA_TYPE
    assert "sha256:" + hashlib.sha256(served).hexdigest() == artifact.digest
    with urllib.request.urlopen(f"{base}/blobs/{manifest.config.digest}", timeout=10) as response:  # noqa: S310
        config = json.loads(response.read())
    assert config["rootfs"]["type"] == "layers" and len(config["rootfs"]["diff_ids"]) == 1

    content = registry.pull_content("1.0.0")
    assert tarball_files(content) == {
        p.relative_to(FIXTURES / "stack").as_posix(): p.read_bytes()
        for p in (FIXTURES / "stack").rglob("*")
        if p.is_file()
    }
    assert all((e.uid, e.gid, e.mtime) == (0, 0, 0) for e in tarball_entries(content))

    with pytest.raises(ArtifactExistsError, match=r"registry tag 1\.0\.0 already exists"):
        registry.push_artifact("1.0.0", FluxArtifact(FIXTURES / "stack", "x", "other", "2026-11-25T00:00:00Z"))
    assert registry.get_manifest("1.0.0") is not None and registry.get_manifest("1.0.0").digest == artifact.digest  # type: ignore[union-attr]
    assert registry.get_manifest("9.9.9") is None


def test_an_unreachable_registry_is_a_retryable_failure(oci_registry: LocalRegistry) -> None:  # noqa: F811
    closed = RegistryConfig(url="oci://127.0.0.1:9/fleet/platform", insecure=True, timeout_seconds=2)
    with pytest.raises(RegistryUnavailableError) as failure:
        OrasRegistry(closed).list_tags()
    assert failure.value.retryable


# -- the acceptance story on the demo setup -------------------------------------------------------------


def test_patch_reaches_staging_minor_needs_a_range_change(demo: Demo) -> None:
    ctx = demo.context()
    # The demo's git tag 1.2.3 has no artifact yet: publishing it finishes that release.
    first = release(ctx, version="1.2.3")
    assert (first.version, first.tag_created) == ("1.2.3", False)
    assert first.revision == f"1.2.3@sha1:{demo.tag_commit('1.2.3')}"
    assert first.source == source_url(str(demo.remote))

    patch_head = demo.change_platform("a patch")
    patch = release(ctx, bump="patch")
    assert (patch.version, patch.tag_created, patch.commit) == ("1.2.4", True, patch_head)
    assert git(demo.remote, "cat-file", "-t", "1.2.4") == "tag"  # annotated
    assert demo.tag_commit("1.2.4") == patch_head
    plan = release_plan(ctx)
    assert plan.version == "1.2.4"
    staging, production = row(plan, "staging"), row(plan, "production")
    assert (staging.before, staging.after) == ("1.2.3", "1.2.4")  # 1.2.x admits the patch
    assert (production.before, production.after) == ("1.2.3", "1.2.3")
    assert row(plan, "development").after == f"main@{patch_head[:12]}"

    minor_head = demo.change_platform("a minor feature")
    minor = release(ctx, bump="minor")
    assert (minor.version, minor.commit) == ("1.3.0", minor_head)
    plan = release_plan(ctx)
    staging, production = row(plan, "staging"), row(plan, "production")
    assert (plan.version, staging.before, staging.after) == ("1.3.0", "1.2.4", "1.2.4")  # 1.2.x does not admit 1.3.0
    assert plan.range_changes == {"staging": "1.3.x"} and not plan.major_bump
    assert (production.before, production.after) == ("1.2.3", "1.2.3")
    assert release_plan(ctx, version="2.0.0").major_bump

    # Each artifact holds platform/ as it was at its tag.
    registry = OrasRegistry(demo.registry)
    assert b"# a minor feature" in tarball_files(registry.pull_content("1.3.0"))["configs/namespace.yaml"]
    assert b"# a minor feature" not in tarball_files(registry.pull_content("1.2.4"))["configs/namespace.yaml"]
    assert sorted(registry.list_tags()) == ["1.2.3", "1.2.4", "1.3.0"]

    with pytest.raises(ReleaseExistsError, match=r"1\.3\.0"):
        release(ctx, version="1.3.0")


def test_existing_tags_are_refused_and_interrupted_releases_finished(demo: Demo) -> None:
    ctx = demo.context()
    release(ctx, version="1.2.3")
    demo.change_platform("work after 1.2.3")

    # A registry tag without a git tag: refused, and no git tag is made.
    OrasRegistry(demo.registry).push_artifact(
        "1.2.4", FluxArtifact(FIXTURES / "stack", "elsewhere", "1.2.4@sha1:" + "d" * 40, "2026-01-01T00:00:00Z")
    )
    with pytest.raises(ReleaseExistsError, match=r"registry tag 1\.2\.4"):
        release(ctx, version="1.2.4")
    assert "1.2.4" not in git(demo.remote, "tag").split()

    # The tag is pushed, then the artifact push "fails": the same request finishes it, not 1.2.6.
    tagged = tag_release(ctx, bump="patch")
    assert (tagged.version, tagged.tag_created) == ("1.2.5", True)
    resumed = release(ctx, bump="patch")
    assert (resumed.version, resumed.tag_created, resumed.commit) == ("1.2.5", False, tagged.commit)
    again = publish_artifact(ctx, tagged)  # a task retry after a push that did land
    assert again.already_published and again.digest == resumed.digest

    # A git tag elsewhere than main is never moved; --existing-tag publishes it where it is.
    old_head = demo.main()
    GitCli().tag(demo.remote, "1.4.0", "platform 1.4.0")  # tags main's head in the bare remote
    demo.change_platform("main moves on")
    with pytest.raises(ReleaseExistsError, match=r"git tag 1\.4\.0 already exists at"):
        release(ctx, version="1.4.0")
    published = release(ctx, version="1.4.0", existing_tag=True)
    assert published.revision == f"1.4.0@sha1:{old_head}"
    assert demo.tag_commit("1.4.0") == old_head


def test_propose_range_lets_staging_pick_the_minor(demo: Demo) -> None:
    ctx = demo.context()
    release(ctx, version="1.2.3")
    demo.change_platform("minor")
    release(ctx, bump="minor")
    change = propose_range(ctx, range_="1.3.x")
    assert change.pull_request is not None and change.branch == "release/staging-range-1.3.x"
    [recorded] = pull_requests(demo)
    assert (recorded["head"], recorded["base"]) == ("release/staging-range-1.3.x", "main")
    diff = git(demo.remote, "diff", "main", change.branch)
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == [
        '-    semver: "1.2.x" # staging: automatic minor/patch updates within 1.2',
        '+    semver: "1.3.x" # staging: automatic minor/patch updates within 1.2',
    ]
    # Proposing again reuses the branch and its open pull request.
    assert propose_range(ctx, range_="1.3.x").pull_request.created is False  # type: ignore[union-attr]

    # Once merged, staging follows the new range.
    subprocess.run(
        ["git", "--git-dir", str(demo.remote), "update-ref", "refs/heads/main", f"refs/heads/{change.branch}"],
        check=True,
    )
    staging = row(release_plan(ctx), "staging")
    assert (staging.reference, staging.after) == ("1.3.x", "1.3.0")


def test_production_needs_a_published_tag(demo: Demo) -> None:
    ctx = demo.context()
    release(ctx, version="1.2.3")
    with pytest.raises(ReleaseError, match=r"1\.9\.9 is not published"):
        plan_production(ctx, version="1.9.9")
    with pytest.raises(ReleaseError, match="no published release before 1.2.3"):
        plan_production(ctx, rollback=True)


# -- the approval gate (Prefect) ----------------------------------------------------------------------------


def _start_production_flow(demo: Demo, **parameters: Any) -> tuple[Any, dict[str, Any], Any]:
    from cli.release_cmd import run_flow_in_thread, wait_for_paused_run
    from flows.release import release_production
    from tasks.release import ReleaseTarget

    marker = f"test-{re.sub(r'[^a-z0-9]+', '-', demo.registry.repository)}"
    worker, box = run_flow_in_thread(
        release_production,
        marker,
        target=ReleaseTarget(config_path=str(demo.config_path), registry=demo.registry),
        approval_timeout_seconds=120,
        approval_poll_seconds=1,
        **parameters,
    )
    run_id = wait_for_paused_run(worker, marker)
    assert run_id is not None, box
    return worker, box, run_id


def _two_releases(demo: Demo) -> None:
    ctx = demo.context()
    release(ctx, version="1.2.3")
    demo.change_platform("patch")
    release(ctx, bump="patch")


def test_approved_production_bump_opens_a_one_line_pull_request(demo: Demo, prefect_server: str) -> None:
    from prefect.flow_runs import resume_flow_run

    _two_releases(demo)
    worker, box, run_id = _start_production_flow(demo, version="1.2.4")
    assert pull_requests(demo) == []  # nothing before the approval
    resume_flow_run(run_id, run_input={"approve": True, "reason": "soaked in staging for a week"})
    worker.join(60)
    report = box["state"].result()
    assert report.outcome == "proposed"
    assert (report.plan.from_tag, report.plan.to_tag) == ("1.2.3", "1.2.4")
    assert report.plan.staging == {"staging": "1.2.4"}
    [recorded] = pull_requests(demo)
    assert (recorded["head"], recorded["base"], recorded["title"]) == (
        "release/production-1.2.4",
        "main",
        "production: platform 1.2.3 -> 1.2.4",
    )
    assert "soaked in staging for a week" in recorded["body"]
    diff = git(demo.remote, "diff", "main", "release/production-1.2.4")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == [
        '-    tag: "1.2.3" # production: a fixed, known version; bumped by an approved pull request',
        '+    tag: "1.2.4" # production: a fixed, known version; bumped by an approved pull request',
    ]
    assert git(demo.remote, "diff", "--stat", "main", "release/production-1.2.4").count("|") == 1


def test_an_approval_survives_a_pause_whose_answer_was_lost(
    demo: Demo, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy server answers the pause too late; the client resends it and the server
    refuses the duplicate. The run is paused all the same: it must keep waiting for the
    approval rather than end paused with nobody there (seen once under CI load)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.flow_runs import resume_flow_run

    send: Any = SyncPrefectClient.request  # Any: its typed path literals are beside the point here
    resent: list[str] = []

    def lose_the_pause_answer(self: Any, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        state = (kwargs.get("json") or {}).get("state") or {}
        if path.endswith("/set_state") and state.get("type") == "PAUSED" and not resent:
            send(self, method, path, *args, **kwargs)  # accepted, but its answer never arrives
            resent.append(path)
        return send(self, method, path, *args, **kwargs)

    monkeypatch.setattr(SyncPrefectClient, "request", lose_the_pause_answer)
    _two_releases(demo)
    worker, box, run_id = _start_production_flow(demo, version="1.2.4")
    assert resent, "the pause was not resent; the test exercised nothing"
    resume_flow_run(run_id, run_input={"approve": True, "reason": "resent pause"})
    worker.join(60)
    report = box["state"].result()
    assert report.outcome == "proposed"
    [recorded] = pull_requests(demo)
    assert recorded["head"] == "release/production-1.2.4"
    assert "resent pause" in recorded["body"]


def test_rejected_production_bump_opens_nothing(demo: Demo, prefect_server: str) -> None:
    from prefect.flow_runs import resume_flow_run

    _two_releases(demo)
    worker, box, run_id = _start_production_flow(demo, version="1.2.4")
    resume_flow_run(run_id, run_input={"approve": False, "reason": "staging alerts"})
    worker.join(60)
    report = box["state"].result()
    assert (report.outcome, report.reason) == ("rejected", "staging alerts")
    assert pull_requests(demo) == []
    assert "release/production-1.2.4" not in git(demo.remote, "branch", "--list")


def test_an_edited_approval_form_approves_nothing(demo: Demo, prefect_server: str) -> None:
    from prefect.flow_runs import resume_flow_run

    _two_releases(demo)
    worker, box, run_id = _start_production_flow(demo, version="1.2.4")
    resume_flow_run(run_id, run_input={"approve": True, "to_tag": "9.9.9"})
    worker.join(60)
    state = box["state"]
    assert state.is_failed()
    assert "the approval names 1.2.3 -> 9.9.9" in str(state.result(raise_on_failure=False))
    assert pull_requests(demo) == []


# -- the command line: the acceptance story on the demo ---------------------------------------------------------


def cli_app() -> typer.Typer:
    """The ``sandbox`` command line (cli/main.py registers the release commands)."""
    from cli.main import app

    return app


def plan_table(stdout: str) -> dict[str, list[str]]:
    """``sandbox release plan``'s rows: environment -> [tracking, reference, before, after, change]."""
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) == 6 and cells[0] in ("development", "staging", "production"):
            rows[cells[0]] = cells[1:]
    return rows


def test_acceptance_releases_on_the_demo(demo: Demo, prefect_server: str) -> None:
    runner = CliRunner()
    app = cli_app()
    common = ["--config", str(demo.config_path), "--registry", demo.registry.url, "--insecure-registry"]

    def sandbox(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, [*args, *common])
        assert result.exit_code == code, result.output
        return result

    # The demo's production runs 1.2.3, a git tag without artifact yet: publishing it finishes that release.
    published = sandbox("release", "--version", "1.2.3")
    assert "release 1.2.3 published existing git tag" in published.stdout

    # A patch release: staging's range 1.2.x admits it, production stays.
    demo.change_platform("a fix")
    patch = sandbox("release", "--bump", "patch", "--output", "json")
    data = json.loads(patch.stdout)  # JSON goes to stdout alone; the flow run's line to stderr
    assert "flow run 'release-publish' (" in patch.stderr
    assert (data["version"], data["range_proposals"], data["plan"]["range_changes"]) == ("1.2.4", [], {})
    table = plan_table(sandbox("release", "plan").stdout)
    assert table["staging"] == ["semver", "1.2.x", "1.2.3", "1.2.4", "yes"]
    assert table["production"] == ["tag", "1.2.3", "1.2.3", "1.2.3", "-"]
    assert sandbox("resolve", "--range", "1.2.x").stdout == "1.2.4\n"  # from the registry's tags

    # A minor release: outside 1.2.x, so staging does not move and the range change is proposed.
    demo.change_platform("a minor feature")
    minor = sandbox("release", "--bump", "minor")
    assert "release 1.3.0 tagged and published" in minor.stdout
    assert "staging: range 1.2.x does not admit 1.3.0: range change proposed: pull request #1 " in minor.stdout
    assert "production: stays at 1.2.3 until an approved pull request moves it" in minor.stdout
    [range_pr] = pull_requests(demo)
    assert (range_pr["head"], range_pr["title"]) == (
        "release/staging-range-1.3.x",
        "staging: platform semver range -> 1.3.x",
    )
    plan = sandbox("release", "plan")
    table = plan_table(plan.stdout)
    assert table["staging"] == ["semver", "1.2.x", "1.2.4", "1.2.4", "-"]
    assert table["production"] == ["tag", "1.2.3", "1.2.3", "1.2.3", "-"]
    assert plan.stdout.splitlines()[-1] == (
        "RANGE CHANGE: 1.3.0 is outside a semver range: staging needs range 1.3.x by pull request "
        "(proposed on branch release/staging-range-1.3.x)"
    )
    again = sandbox("release", "propose-range", "--range", "1.3.x")  # the same proposal: reused
    assert "pull request #1 (already open) release/staging-range-1.3.x" in again.stdout
    major = sandbox("release", "plan", "--version", "2.0.0").stdout
    assert "MAJOR BUMP: 2.0.0 raises the major version (a breaking release): staging needs range 2.0.x" in major
    sandbox("release", "--version", "1.3.0", code=1)  # never overwritten

    # Merging the range pull request is what moves staging.
    demo.merge("release/staging-range-1.3.x")
    assert plan_table(sandbox("release", "plan").stdout)["staging"] == ["semver", "1.3.x", "(none)", "1.3.0", "yes"]

    # Production: the approved pull request, and nothing moves until it is merged.
    promoted = sandbox("release", "promote-production", "--version", "1.3.0", "--approve", "--reason", "soaked")
    assert "pull request #2 release/production-1.3.0: clusters/production/platform.yaml spec.ref.tag" in promoted.stdout
    plan = sandbox("release", "plan")
    assert plan_table(plan.stdout)["production"] == ["tag", "1.2.3", "1.2.3", "1.2.3", "-"]
    assert "production: 1.3.0 approved and proposed on branch release/production-1.3.0" in plan.stdout
    demo.merge("release/production-1.3.0")
    assert plan_table(sandbox("release", "plan").stdout)["production"] == ["tag", "1.3.0", "1.3.0", "1.3.0", "-"]

    # Rollback is the same flow with the previous release.
    rollback = sandbox("release", "promote-production", "--rollback", "--approve", "--reason", "alerts")
    assert "pull request #3 release/production-1.2.4:" in rollback.stdout
    [*_, rollback_pr] = pull_requests(demo)
    assert rollback_pr["title"] == "production: roll back platform 1.3.0 -> 1.2.4"
    diff = git(demo.remote, "diff", "main", "release/production-1.2.4", "--", "clusters")
    assert [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        '-    tag: "1.3.0" # production: a fixed, known version; bumped by an approved pull request',
        '+    tag: "1.2.4" # production: a fixed, known version; bumped by an approved pull request',
    ]


def test_resolve_exit_codes_of_the_installed_command() -> None:
    sandbox = Path(sys.executable).with_name("sandbox")
    tags = ["--tags", "1.2.3,v1.2.4,1.3.0,latest"]
    picked = subprocess.run([sandbox, "resolve", "--range", "1.2.x", *tags], capture_output=True, text=True)
    assert (picked.returncode, picked.stdout) == (0, "v1.2.4\n")
    none = subprocess.run([sandbox, "resolve", "--range", ">=2", *tags], capture_output=True, text=True)
    assert (none.returncode, none.stdout) == (1, "")
    assert none.stderr == "sandbox: error: no tag of 4 in --tags satisfies '>=2'\n"
    invalid = subprocess.run([sandbox, "resolve", "--range", "1.2.x ~> ^", *tags], capture_output=True, text=True)
    assert invalid.returncode == 2 and invalid.stderr.startswith("sandbox: error: invalid semver range")
