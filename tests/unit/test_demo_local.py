"""The local demo's setup (sandbox.demo.prepare_local_demo) and ``sandbox demo --cluster``'s refusals.

The lifecycle on a real local cluster itself is tests/real/test_local_sandbox.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sandbox.config import load_config
from sandbox.demo import local_flux_url, prepare_local_demo
from sandbox.localcluster.endpoints import LOCAL_FLEET_URL
from sandbox.policy import check_repository


def _show(remote: Path, path: str) -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(remote), "show", f"main:{path}"], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_the_local_demo_is_one_canary_environment_on_real_clusters(tmp_path: Path) -> None:
    config_path = prepare_local_demo(tmp_path / "demo", "/opt/venv/bin/python", 24567)
    config = load_config(config_path)
    assert sorted(config.environments) == ["development", "local", "production", "staging"]
    local = config.environments["local"]
    assert local.canary and local.terraform.module == "infra/local-cluster"
    assert local.terraform.variables["python"] == "/opt/venv/bin/python"
    assert config.drivers.cluster.type == "kubernetes"
    assert config.flux_url == local_flux_url(24567) == "http://127.0.0.1:24567/remote.git"
    # Every URL naming the fleet in the example is the served remote in the demo's copy.
    remote = tmp_path / "demo" / "remote.git"
    for path in ("clusters/local/platform.yaml", "clusters/local/flux-system/gotk-sync.yaml"):
        text = _show(remote, path)
        assert config.flux_url in text and LOCAL_FLEET_URL not in text
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(remote), str(checkout)], check=True)
    assert check_repository(checkout, config).violations == []
    # Idempotent: a finished setup is left as it is.
    before = config_path.read_text()
    assert prepare_local_demo(tmp_path / "demo", sys.executable, 1) == config_path
    assert config_path.read_text() == before


def _run(*args: str, **env: str) -> tuple[int, str]:
    """``sandbox ARGS`` (the console script); exit code and stderr."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "sandbox"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    return done.returncode, done.stderr


def test_an_unknown_cluster_is_a_usage_error(tmp_path: Path) -> None:
    code, err = _run("demo", "--cluster", "kind", "--workdir", str(tmp_path / "d"))
    assert code == 2 and "--cluster must be simulated or local" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_the_local_demo_without_the_toolchain_names_what_is_missing(tmp_path: Path) -> None:
    code, err = _run(
        "demo", "--cluster", "local", "--workdir", str(tmp_path / "d"), FLEET_SANDBOX_CACHE=str(tmp_path / "empty")
    )
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("sandbox: error: etcd ") and "make toolchain" in err
    assert not (tmp_path / "d").exists()  # refused before anything was written
