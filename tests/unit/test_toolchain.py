"""Tests for the toolchain manifest: scripts/toolchain.py (the build) and sandbox.toolchain (the lookup) agree.

Nothing here runs Go: the build itself is checked by hand (docs/toolchain.md) and, later, by the smoke test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sandbox import toolchain
from sandbox.errors import ToolNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT_ROOT / "scripts" / "toolchain.py"


def _script() -> ModuleType:
    # The script is no package module (it runs before the venv exists): load it by path.
    spec = importlib.util.spec_from_file_location("toolchain_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _run_script(*args: str, cache: Path, path: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLEET_SANDBOX_CACHE=str(cache), **extra_env)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _fake_build(cache: Path) -> None:
    for item in toolchain.files(cache=cache).values():
        item.path.parent.mkdir(parents=True, exist_ok=True)
        item.path.write_text("built\n")


def test_the_script_and_the_module_name_the_same_files(tmp_path: Path) -> None:
    shown = json.loads(_run_script("--json", cache=tmp_path).stdout)
    from_script = {
        name: Path(path)
        for component in shown["components"].values()
        if component["available"]
        for name, path in {**component["binaries"], **component["data"]}.items()
    }
    from_module = {name: item.path for name, item in toolchain.files(cache=tmp_path).items()}
    assert from_script == from_module
    assert {"kube-apiserver", "etcd", "kwok", "source-controller", "source-controller-crds", "semver-peer"} <= set(
        from_module
    )
    assert all(path.is_relative_to(tmp_path) for path in from_module.values())


def test_the_key_in_the_file_names_changes_with_the_wrappers_go_sum(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(PROJECT_ROOT / "toolchain", repo / "toolchain")
    before = toolchain.files(repo=repo, cache=tmp_path)
    with (repo / "toolchain" / "etcd" / "go.sum").open("a") as handle:
        handle.write("example.com/other v1.0.0 h1:AAAA=\n")
    after = toolchain.files(repo=repo, cache=tmp_path)
    assert after["etcd"].path != before["etcd"].path
    assert after["etcd"].path.name.startswith("etcd-v3.6.16-")
    assert after["kube-apiserver"].path == before["kube-apiserver"].path
    script = _script()
    assert script.component_key(script.load_components()[0]) in before["kube-apiserver"].path.name


def test_a_component_the_proxy_does_not_serve_is_left_out() -> None:
    names = {item.component for item in toolchain.files(cache=Path("/nonexistent")).values()}
    assert "pluto" not in names
    assert "kubernetes" in names


def test_locate_says_to_run_make_toolchain_until_the_binary_is_built(tmp_path: Path) -> None:
    with pytest.raises(ToolNotFoundError, match="make toolchain"):
        toolchain.locate("kube-apiserver", cache=tmp_path)
    with pytest.raises(ToolNotFoundError, match="not part of the toolchain"):
        toolchain.locate("kubelet", cache=tmp_path)
    _fake_build(tmp_path)
    assert toolchain.locate("kube-apiserver", cache=tmp_path).read_text() == "built\n"


def test_a_second_run_builds_nothing_and_needs_no_go(tmp_path: Path) -> None:
    _fake_build(tmp_path)
    result = _run_script(cache=tmp_path, path="/nonexistent")
    assert result.returncode == 0, result.stderr
    assert f"all cached in {tmp_path}" in result.stdout
    env_lines = _run_script("--print-env", cache=tmp_path).stdout.splitlines()
    assert f"FLEET_SANDBOX_TOOL_KUBE_APISERVER={toolchain.locate('kube-apiserver', cache=tmp_path)}" in env_lines


def test_without_go_on_path_the_build_stops_with_one_line(tmp_path: Path) -> None:
    result = _run_script("--only", "etcd", cache=tmp_path, path="/nonexistent")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "toolchain: go not found on PATH (Go 1.26 is needed to build the toolchain)"
    ]
    assert not (tmp_path / "bin").exists()


def test_an_unreachable_module_proxy_is_one_line_and_leaves_nothing_half_built(tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.skip("go is not on PATH (CI fails this skip: tests/conftest.py)")
    cache, modules = tmp_path / "cache", tmp_path / "gomod"
    result = _run_script(
        "--only",
        "semver-peer",
        cache=cache,
        GOPROXY="http://127.0.0.1:9",  # the discard port: nothing listens, the connection is refused
        GOMODCACHE=str(modules),  # empty: every module must come from the proxy
        GOFLAGS="-mod=mod",
        GONOSUMDB="*",
        GOSUMDB="off",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    # The component's progress line ends in why it stopped: one line, naming it and the proxy.
    [line] = [entry for entry in (result.stdout + result.stderr).splitlines() if "unreachable" in entry]
    assert line.startswith(
        "toolchain: semver-peer v0.2.0 ... stopped: Go module proxy unreachable (http://127.0.0.1:9)"
    )
    built = [p for p in (cache / "bin").rglob("*") if p.is_file()] if (cache / "bin").exists() else []
    assert built == []
    assert not (cache / "tmp").exists() or not any((cache / "tmp").iterdir())


def test_an_unknown_component_is_one_line_too(tmp_path: Path) -> None:
    result = _run_script("--only", "kubelet", cache=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "toolchain: unknown component kubelet"
