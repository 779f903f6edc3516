from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from sandbox import fleetrepo
from sandbox.errors import ConflictError, InvalidInputError
from sandbox.yamledit import YamlEditError
from tests.hypothesis_profiles import property_settings


@pytest.fixture
def repo(tmp_path: Path, example_repo: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(example_repo, target)
    return target


def test_copy_excludes_gotk_sync_and_keeps_bytes_and_modes(repo: Path) -> None:
    script = repo / "clusters/development/hooks.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    report = fleetrepo.copy_cluster_dir(repo / "clusters/development", repo / "clusters/sandbox-a", repo=repo)
    assert report.excluded == ["flux-system/gotk-sync.yaml"]
    assert not (repo / "clusters/sandbox-a/flux-system/gotk-sync.yaml").exists()
    for rel in report.copied:
        assert filecmp.cmp(repo / "clusters/development" / rel, repo / "clusters/sandbox-a" / rel, shallow=False)
    assert os.stat(repo / "clusters/sandbox-a/hooks.sh").st_mode & 0o777 == 0o755


def test_every_gotk_sync_yaml_is_left_out_on_clone_and_copy_back_as_rsync_exclude_does(repo: Path) -> None:
    """The seed's ``rsync --exclude 'gotk-sync.yaml'`` matches the name at any depth, not only flux-system/."""
    nested = repo / "clusters/development/tenants/team-a/gotk-sync.yaml"
    nested.parent.mkdir(parents=True)
    nested.write_text("# team-a's own sync\n")
    (repo / "clusters/development/tenants/team-a/kustomization.yaml").write_text("resources: []\n")
    report = fleetrepo.copy_cluster_dir(repo / "clusters/development", repo / "clusters/sandbox-a", repo=repo)
    assert sorted(report.excluded) == ["flux-system/gotk-sync.yaml", "tenants/team-a/gotk-sync.yaml"]
    assert not (repo / "clusters/sandbox-a/tenants/team-a/gotk-sync.yaml").exists()
    assert (repo / "clusters/sandbox-a/tenants/team-a/kustomization.yaml").exists()
    assert fleetrepo.sandbox_copy_matches(repo / "clusters/development", repo / "clusters/sandbox-a", repo=repo)
    # A sandbox that grew a gotk-sync.yaml somewhere: promotion copies it back to development neither.
    (repo / "clusters/sandbox-a/tenants/team-b").mkdir()
    (repo / "clusters/sandbox-a/tenants/team-b/gotk-sync.yaml").write_text("# the sandbox's\n")
    report = fleetrepo.promote_cluster_dir(repo / "clusters/sandbox-a", repo / "clusters/development", repo=repo)
    assert not (repo / "clusters/development/tenants/team-b").exists()
    assert nested.read_text() == "# team-a's own sync\n"  # development's own: never touched
    assert "tenants/team-b/gotk-sync.yaml" in report.excluded


def test_copy_refuses_existing_target(repo: Path) -> None:
    fleetrepo.copy_cluster_dir(repo / "clusters/development", repo / "clusters/sandbox-a", repo=repo)
    with pytest.raises(ConflictError, match="already exists"):
        fleetrepo.copy_cluster_dir(repo / "clusters/development", repo / "clusters/sandbox-a", repo=repo)


def test_retarget_changes_only_the_branch_line(repo: Path) -> None:
    target = repo / "clusters/sandbox-a"
    fleetrepo.copy_cluster_dir(repo / "clusters/development", target, repo=repo)
    before = (target / "platform.yaml").read_text()
    retargets = fleetrepo.retarget_git_sources(target, "main", "OPS-1-try-upgrade", repo=repo)
    after = (target / "platform.yaml").read_text()
    assert [(r.file, r.edit.old, r.edit.new) for r in retargets] == [("platform.yaml", "main", "OPS-1-try-upgrade")]
    diff = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert diff == [
        (
            "    branch: main # development follows main; a platform sandbox retargets this to its branch",
            "    branch: OPS-1-try-upgrade # development follows main; a platform sandbox retargets this to its branch",
        )
    ]
    assert "# --8<-- [start:repo]" in after


def test_retarget_with_nothing_to_retarget(repo: Path) -> None:
    target = repo / "clusters/perf"
    fleetrepo.copy_cluster_dir(repo / "clusters/production", target, repo=repo)
    assert fleetrepo.retarget_git_sources(target, "main", "x", repo=repo) == []


def test_retarget_round_trips_only_files_with_a_git_repository_document(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file naming GitRepository only in text (Flux's CRDs) is not round-trip loaded; invalid YAML still is."""
    target = repo / "clusters/sandbox-a"
    fleetrepo.copy_cluster_dir(repo / "clusters/development", target, repo=repo)
    (target / "crds.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n"
        "  name: gitrepositories.source.toolkit.fluxcd.io\nspec:\n  names:\n    kind: GitRepository\n"
    )
    round_tripped: list[str] = []
    edit = fleetrepo.set_scalar

    def recording(text: str, *args: object, source: str = "<yaml>", **kwargs: object) -> object:
        round_tripped.append(source)
        return edit(text, *args, source=source, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fleetrepo, "set_scalar", recording)
    retargets = fleetrepo.retarget_git_sources(target, "main", "OPS-1-x", repo=repo)
    assert [r.file for r in retargets] == ["platform.yaml"]
    assert "crds.yaml" not in round_tripped and "platform.yaml" in round_tripped
    (target / "broken.yaml").write_text("kind: GitRepository\nspec: [unclosed\n")
    with pytest.raises(YamlEditError, match=r"broken.yaml.*invalid YAML"):
        fleetrepo.retarget_git_sources(target, "OPS-1-x", "main", repo=repo)


def test_gotk_sync_rendered_for_the_sandbox() -> None:
    text = fleetrepo.render_gotk_sync(
        name="sandbox-a", url="file:///r.git", branch="OPS-1-x", path="clusters/sandbox-a"
    )
    assert "branch: OPS-1-x" in text
    assert "path: ./clusters/sandbox-a" in text
    assert "url: file:///r.git" in text
    assert "secretRef:\n    name: flux-system" in text


def test_promote_mirrors_sandbox_but_never_gotk_sync(repo: Path) -> None:
    dev = repo / "clusters/development"
    sandbox = repo / "clusters/sandbox-a"
    fleetrepo.copy_cluster_dir(dev, sandbox, repo=repo)
    dev_sync = (dev / "flux-system/gotk-sync.yaml").read_bytes()
    fleetrepo.write_bootstrap_files(
        sandbox, fleetrepo.render_gotk_sync(name="s", url="u", branch="b", path="clusters/sandbox-a"), repo=repo
    )
    (sandbox / "apps.yaml").write_text((sandbox / "apps.yaml").read_text().replace('"6.7.1"', '"6.7.2"'))
    (sandbox / "new.yaml").write_text("kind: ConfigMap\n")
    (dev / "old.yaml").write_text("kind: Secret\n")
    report = fleetrepo.promote_cluster_dir(sandbox, dev, repo=repo)
    assert sorted(report.copied) == ["apps.yaml", "new.yaml"]
    assert report.removed == ["old.yaml"]
    assert (dev / "flux-system/gotk-sync.yaml").read_bytes() == dev_sync
    assert not sandbox.exists()


def test_discover_environments(repo: Path, tmp_path: Path) -> None:
    assert fleetrepo.discover_environments(repo) == ["development", "local", "production", "staging"]
    with pytest.raises(InvalidInputError, match="no clusters/ directory"):
        fleetrepo.discover_environments(tmp_path)


names = st.text(alphabet="abcdefgh", min_size=1, max_size=6)
trees = st.dictionaries(
    st.lists(names, min_size=1, max_size=3).map(lambda parts: "/".join(parts) + ".yaml"),
    st.binary(max_size=64),
    max_size=8,
)


@property_settings(40, suppress=[HealthCheck.function_scoped_fixture])
@given(tree=trees, sync=st.binary(min_size=1, max_size=32))
def test_clone_then_promote_without_change_is_identity(
    tmp_path_factory: pytest.TempPathFactory, tree: dict[str, bytes], sync: bytes
) -> None:
    root = tmp_path_factory.mktemp("prop")
    dev = root / "clusters/development"
    written: dict[str, bytes] = {}
    for rel, data in tree.items():
        path = dev / rel
        if any(p.is_file() for p in path.parents if p != dev and dev in p.parents) or path.is_dir():
            continue  # a file where a directory is needed: skip that path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written[rel] = data
    (dev / "flux-system").mkdir(parents=True, exist_ok=True)
    (dev / "flux-system/gotk-sync.yaml").write_bytes(sync)
    sandbox = root / "clusters/sandbox-x"
    if not written:  # nothing but gotk-sync.yaml: there is nothing to clone
        with pytest.raises(InvalidInputError, match="nothing to clone"):
            fleetrepo.copy_cluster_dir(dev, sandbox, repo=root)
        return
    fleetrepo.copy_cluster_dir(dev, sandbox, repo=root)
    assert not (sandbox / "flux-system/gotk-sync.yaml").exists()
    (sandbox / "flux-system").mkdir(parents=True, exist_ok=True)
    (sandbox / "flux-system/gotk-sync.yaml").write_bytes(b"sandbox's own sync")
    report = fleetrepo.promote_cluster_dir(sandbox, dev, repo=root)
    assert report.unchanged
    assert (dev / "flux-system/gotk-sync.yaml").read_bytes() == sync
    for rel, data in written.items():
        assert (dev / rel).read_bytes() == data


def test_bootstrap_files_refuse_a_kustomization_that_is_not_utf8(tmp_path: Path) -> None:
    """A non-UTF-8 flux-system/kustomization.yaml is a one-line error naming it, not a UnicodeDecodeError."""
    kustomization = tmp_path / fleetrepo.FLUX_KUSTOMIZATION_FILE
    kustomization.parent.mkdir(parents=True)
    kustomization.write_bytes(b"resources:\n  - \xff\xfe.yaml\n")
    with pytest.raises(InvalidInputError, match=r"flux-system/kustomization\.yaml is not UTF-8") as raised:
        fleetrepo.write_bootstrap_files(tmp_path, "# sync\n", repo=tmp_path)
    assert "\n" not in str(raised.value)
    assert kustomization.read_bytes() == b"resources:\n  - \xff\xfe.yaml\n"  # left as it was


def test_bootstrap_files_replace_a_sync_file_that_is_not_utf8(tmp_path: Path) -> None:
    """gotk-sync.yaml is bootstrap's own: whatever bytes it holds, it is rewritten, never decoded."""
    sync = tmp_path / fleetrepo.SYNC_FILE
    sync.parent.mkdir(parents=True)
    sync.write_bytes(b"\xff\xfe")
    written = fleetrepo.write_bootstrap_files(tmp_path, "# sync\n", repo=tmp_path)
    assert written == [str(fleetrepo.SYNC_FILE), str(fleetrepo.FLUX_KUSTOMIZATION_FILE)]
    assert sync.read_text(encoding="utf-8") == "# sync\n"
    assert fleetrepo.write_bootstrap_files(tmp_path, "# sync\n", repo=tmp_path) == []


def test_components_that_are_not_utf8_or_not_yaml_are_named_in_one_line(tmp_path: Path) -> None:
    latin1 = tmp_path / "gotk-components.yaml"
    latin1.write_bytes(b"kind: Namespace\nmetadata: {name: caf\xe9}\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Namespace\nmetadata: [unclosed\n", encoding="utf-8")

    with pytest.raises(InvalidInputError, match=r"gotk-components\.yaml is not UTF-8 text \(invalid byte at offset"):
        fleetrepo.read_documents(latin1, repo=tmp_path)
    with pytest.raises(InvalidInputError, match=r"broken\.yaml is not valid YAML at line \d+") as raised:
        fleetrepo.read_documents(broken, repo=tmp_path)
    assert "\n" not in str(raised.value)
    (tmp_path / "ok.yaml").write_text("---\nkind: Namespace\n---\n# only a comment\n", encoding="utf-8")
    assert fleetrepo.read_documents(tmp_path / "ok.yaml", repo=tmp_path) == [{"kind": "Namespace"}]
