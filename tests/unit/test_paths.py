"""No host file leaves through a checkout: links that lead outside a fleet checkout are refused.

The attack (issue 17, item 1): the fleet repository holds ``clusters/development``
as a symbolic link to a directory of the worker (``~/.ssh``), or a manifest as a
link to a host file. Followed, clone copied the key into the sandbox directory,
committed and pushed it. Every reader and writer goes through :mod:`sandbox.paths`;
these tests pin the guard itself and each file-level operation built on it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox import fleetrepo, paths
from sandbox.deprecations import scan_path
from sandbox.errors import InvalidInputError
from sandbox.paths import OutsideRepositoryError
from sandbox.policy import RULE_LINKS_INSIDE, check_repository

PLANTED_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAplantedHostKey\n-----END OPENSSH PRIVATE KEY-----\n"
)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory of the machine outside the checkout, holding a private key."""
    directory = tmp_path / "host-ssh"
    directory.mkdir()
    (directory / "id_ed25519").write_text(PLANTED_KEY)
    (directory / "config.yaml").write_text("kind: ConfigMap\nmetadata: {name: from-the-host}\n")
    return directory


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small fleet checkout: development with a manifest, a link inside, and Flux's directory."""
    root = tmp_path / "repo"
    dev = root / "clusters" / "development"
    (dev / "flux-system").mkdir(parents=True)
    (dev / "apps.yaml").write_text("kind: Kustomization\nmetadata: {name: apps}\n")
    (dev / "flux-system" / "gotk-sync.yaml").write_text("# development's own\n")
    (root / "apps").mkdir()
    (root / "apps" / "shared.yaml").write_text("kind: ConfigMap\nmetadata: {name: shared}\n")
    os.symlink("../../apps/shared.yaml", dev / "shared.yaml")  # inside: kept as a link
    return root


def tree(root: Path) -> dict[str, str]:
    """Every entry below ``root`` (links as their target, files as their text), for before/after checks."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = path.read_text(errors="replace")
    return found


# -- the guard -----------------------------------------------------------------------------------


def test_a_path_inside_is_returned_as_written_links_kept(repo: Path) -> None:
    assert paths.inside(repo, "clusters/development/shared.yaml") == repo / "clusters/development/shared.yaml"
    assert paths.inside(repo, repo / "clusters/development") == repo / "clusters/development"
    assert paths.inside(repo, "clusters/not-yet") == repo / "clusters/not-yet"  # need not exist
    entries = paths.entries(repo, "clusters/development")
    assert entries[Path("shared.yaml")].is_symlink()  # type: ignore[index]


def test_a_directory_link_leading_outside_is_refused_naming_it(repo: Path, host: Path) -> None:
    os.symlink(host, repo / "clusters" / "evil")
    with pytest.raises(OutsideRepositoryError) as raised:
        paths.inside(repo, "clusters/evil/id_ed25519")
    assert str(raised.value) == f"clusters/evil is a symbolic link to {host}, outside the fleet repository; refused"
    assert isinstance(raised.value, InvalidInputError)  # CLI exit 2
    with pytest.raises(OutsideRepositoryError, match="clusters/evil is a symbolic link"):
        paths.entries(repo, "clusters/evil")


@pytest.mark.parametrize(
    "target",
    [
        "/etc/hostname",  # absolute
        "../../../host-ssh/id_ed25519",  # relative, climbing out
        "chain-1",  # a chain of links ending outside
    ],
)
def test_a_file_link_leading_outside_is_refused(repo: Path, host: Path, target: str) -> None:
    dev = repo / "clusters" / "development"
    if target == "chain-1":
        os.symlink(host / "id_ed25519", dev / "chain-2")
        os.symlink("chain-2", dev / "chain-1")
    os.symlink(target, dev / "key.yaml")
    with pytest.raises(OutsideRepositoryError, match=r"clusters/development/(key|chain-\d)\.?\w* is a symbolic link"):
        paths.entries(repo, "clusters/development")
    with pytest.raises(OutsideRepositoryError):
        paths.inside(repo, "clusters/development/key.yaml")


def test_dot_dot_and_absolute_paths_outside_are_refused(repo: Path, host: Path) -> None:
    with pytest.raises(OutsideRepositoryError, match=r"\.\./host-ssh/id_ed25519 leads outside the fleet repository"):
        paths.inside(repo, "../host-ssh/id_ed25519")
    with pytest.raises(OutsideRepositoryError, match="leads outside"):
        paths.inside(repo, "clusters/../../host-ssh")
    with pytest.raises(OutsideRepositoryError, match="leads outside"):
        paths.inside(repo, host / "id_ed25519")


def test_a_link_loop_is_not_an_exception(repo: Path) -> None:
    dev = repo / "clusters" / "development"
    os.symlink("loop.yaml", dev / "loop.yaml")
    assert Path("loop.yaml") in paths.entries(repo, "clusters/development")


def test_leaving_links_lists_every_one_and_never_raises(repo: Path, host: Path) -> None:
    os.symlink(host, repo / "clusters" / "evil")
    os.symlink(host / "id_ed25519", repo / "apps" / "key.yaml")
    assert [(link.path, link.target) for link in paths.leaving_links(repo)] == [
        ("apps/key.yaml", str(host / "id_ed25519")),
        ("clusters/evil", str(host)),
    ]


# -- the operations built on it -----------------------------------------------------------------


def test_clone_refuses_a_cluster_directory_that_is_a_link_outside(repo: Path, host: Path) -> None:
    """The reported attack: clusters/<env> itself is a link to a host directory holding a key."""
    os.symlink(host, repo / "clusters" / "staging")
    before = tree(repo)
    with pytest.raises(OutsideRepositoryError, match="clusters/staging is a symbolic link"):
        fleetrepo.copy_cluster_dir(repo / "clusters/staging", repo / "clusters/sandbox-a", repo=repo)
    assert tree(repo) == before  # nothing copied
    assert not (repo / "clusters/sandbox-a").exists()


def test_clone_refuses_a_file_link_outside_and_keeps_links_inside(repo: Path, host: Path) -> None:
    dev = repo / "clusters" / "development"
    os.symlink(host / "id_ed25519", dev / "deploy-key")
    with pytest.raises(OutsideRepositoryError, match="clusters/development/deploy-key is a symbolic link"):
        fleetrepo.copy_cluster_dir(dev, repo / "clusters/sandbox-a", repo=repo)
    assert not (repo / "clusters/sandbox-a").exists()
    (dev / "deploy-key").unlink()
    fleetrepo.copy_cluster_dir(dev, repo / "clusters/sandbox-a", repo=repo)
    copied = repo / "clusters/sandbox-a/shared.yaml"
    assert copied.is_symlink() and os.readlink(copied) == "../../apps/shared.yaml"


def test_bootstrap_never_writes_or_reads_through_a_link_outside(repo: Path, host: Path) -> None:
    sandbox = repo / "clusters" / "sandbox-a"
    sandbox.mkdir()
    os.symlink(host, sandbox / "flux-system")
    before = tree(host)
    with pytest.raises(OutsideRepositoryError, match="clusters/sandbox-a/flux-system is a symbolic link"):
        fleetrepo.write_bootstrap_files(sandbox, "# sync\n", repo=repo)
    with pytest.raises(OutsideRepositoryError):
        fleetrepo.read_documents(sandbox / "flux-system" / "config.yaml", repo=repo)
    assert tree(host) == before  # no file of the machine written


def test_bootstrap_replaces_a_sync_file_link_instead_of_writing_through_it(repo: Path) -> None:
    sandbox = repo / "clusters" / "sandbox-a"
    (sandbox / "flux-system").mkdir(parents=True)
    os.symlink("../../../apps/shared.yaml", sandbox / fleetrepo.SYNC_FILE)
    fleetrepo.write_bootstrap_files(sandbox, "# sync\n", repo=repo)
    assert not (sandbox / fleetrepo.SYNC_FILE).is_symlink()
    assert (repo / "apps/shared.yaml").read_text().startswith("kind: ConfigMap")  # the link's target untouched


def test_promote_refuses_a_link_outside_before_changing_anything(repo: Path, host: Path) -> None:
    dev = repo / "clusters" / "development"
    sandbox = repo / "clusters" / "sandbox-a"
    fleetrepo.copy_cluster_dir(dev, sandbox, repo=repo)
    os.symlink(host / "id_ed25519", sandbox / "stolen.yaml")
    before = tree(repo)
    with pytest.raises(OutsideRepositoryError, match="clusters/sandbox-a/stolen.yaml is a symbolic link"):
        fleetrepo.promote_cluster_dir(sandbox, dev, repo=repo)
    assert tree(repo) == before


def test_a_terraform_module_leading_outside_is_refused(repo: Path, host: Path) -> None:
    (repo / "infra").mkdir()
    os.symlink(host, repo / "infra" / "cluster")
    with pytest.raises(OutsideRepositoryError, match="infra/cluster is a symbolic link"):
        fleetrepo.module_dir(repo, "infra/cluster")


def test_the_scan_refuses_a_link_outside_the_scanned_tree(repo: Path, host: Path) -> None:
    os.symlink(host / "config.yaml", repo / "clusters" / "development" / "host.yaml")
    with pytest.raises(OutsideRepositoryError, match="outside the fleet repository"):
        scan_path(repo / "clusters", within=repo)
    with pytest.raises(OutsideRepositoryError, match="outside the scanned directory"):
        scan_path(repo / "clusters")


def test_sandbox_check_reports_each_link_outside_as_a_violation(repo: Path, host: Path) -> None:
    os.symlink(host, repo / "clusters" / "production")
    report = check_repository(repo)
    links = [v for v in report.violations if v.rule == RULE_LINKS_INSIDE]
    assert [v.line() for v in links] == [
        f"clusters/production: links-inside: symbolic link to {host} leads outside the repository; "
        "nothing is read through it"
    ]
