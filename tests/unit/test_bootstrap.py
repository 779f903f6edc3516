"""Installing Flux on a cluster (``install_flux``): what is applied, in which order, and the git credentials."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from sandbox import fleetrepo
from sandbox.drivers.cluster import ObjectRef
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.errors import ConfigError
from sandbox.lifecycle import Secrets, install_flux

EXAMPLE_FLUX_DIR = Path(__file__).resolve().parents[2] / "examples" / "fleet-repo" / "clusters" / "development"
SECRET = ObjectRef("v1", "Secret", "flux-system", "flux-system")
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUtZXhhbXBsZQ\n-----END OPENSSH PRIVATE KEY-----"
)
KNOWN_HOSTS = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"


def cluster_dir(tmp_path: Path, url: str) -> Path:
    """A cluster directory with the example's Flux components and a gotk-sync.yaml fetching ``url``."""
    root = tmp_path / "clusters" / "sandbox-a"
    (root / "flux-system").mkdir(parents=True)
    shutil.copy(EXAMPLE_FLUX_DIR / fleetrepo.COMPONENTS_FILE, root / fleetrepo.COMPONENTS_FILE)
    sync = fleetrepo.render_gotk_sync(name="sandbox-a", url=url, branch="OPS-1-x", path="clusters/sandbox-a")
    fleetrepo.write_bootstrap_files(root, sync)
    return root


def stored_secret(cluster: SimulatedCluster) -> dict[str, str]:
    secret = cluster.get(SECRET)
    assert secret is not None
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_an_ssh_fleet_gets_flux_identity_and_known_hosts(tmp_path: Path) -> None:
    cluster = SimulatedCluster(tmp_path / "cluster")
    (tmp_path / "cluster").mkdir()
    root = cluster_dir(tmp_path, "ssh://git@github.com/example-org/fleet-infra.git")
    install_flux(cluster, root, git_token="a-token", ssh_identity=PRIVATE_KEY, known_hosts=KNOWN_HOSTS)
    assert stored_secret(cluster) == {"identity": PRIVATE_KEY + "\n", "known_hosts": KNOWN_HOSTS}


def test_an_https_fleet_gets_username_and_password(tmp_path: Path) -> None:
    cluster = SimulatedCluster(tmp_path / "cluster")
    (tmp_path / "cluster").mkdir()
    root = cluster_dir(tmp_path, "https://github.com/example-org/fleet-infra.git")
    install_flux(cluster, root, git_token="a-token", ssh_identity=PRIVATE_KEY, known_hosts=KNOWN_HOSTS)
    assert stored_secret(cluster) == {"username": "git", "password": "a-token"}


@pytest.mark.parametrize(
    ("identity", "known_hosts", "message"),
    [
        (None, KNOWN_HOSTS, "Flux needs an SSH private key .*drivers.git.ssh_key_secret_block"),
        (PRIVATE_KEY, None, "Flux needs the host's keys in drivers.git.known_hosts"),
    ],
)
def test_an_ssh_fleet_without_its_key_is_refused_before_anything_is_applied(
    tmp_path: Path, identity: str | None, known_hosts: str | None, message: str
) -> None:
    cluster = SimulatedCluster(tmp_path / "cluster")
    (tmp_path / "cluster").mkdir()
    root = cluster_dir(tmp_path, "ssh://git@github.com/example-org/fleet-infra.git")
    with pytest.raises(ConfigError, match=message) as refused:
        install_flux(cluster, root, git_token=None, ssh_identity=identity, known_hosts=known_hosts)
    assert "PRIVATE KEY" not in str(refused.value) and "\n" not in str(refused.value)
    assert cluster.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == []


def test_the_ssh_key_is_a_secret_value() -> None:
    assert PRIVATE_KEY in Secrets(git_ssh_identity=PRIVATE_KEY).values()
