"""`flux push artifact` failures are classified as the oras path classifies a registry's answers.

A fake ``flux`` on PATH prints what flux (go-containerregistry) prints for each
answer and exits 1; the tag check before the push (oras) is stubbed out.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.drivers.oci_artifact import FluxArtifact
from sandbox.drivers.registry import (
    FluxCliRegistry,
    RegistryAuthError,
    RegistryConfig,
    RegistryCredentials,
    RegistryError,
    RegistryUnavailableError,
)
from sandbox.errors import CommandFailedError, PermanentError

URL = "oci://127.0.0.1:5000/fleet/platform"
MANIFEST_URL = "https://127.0.0.1:5000/v2/fleet/platform/manifests/1.2.4"


def registry_behind_fake_flux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str) -> FluxCliRegistry:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    flux = bin_dir / "flux"
    flux.write_text(f"#!/bin/sh\ncat >&2 <<'EOF'\n{stderr}\nEOF\nexit 1\n", encoding="utf-8")
    flux.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    registry = FluxCliRegistry(RegistryConfig(url=URL, insecure=True), RegistryCredentials("robot", "s3cret-pw"))
    monkeypatch.setattr(registry, "tag_exists", lambda tag: False)
    return registry


def push(registry: FluxCliRegistry, tmp_path: Path) -> None:
    content = tmp_path / "platform"
    content.mkdir()
    (content / "kustomization.yaml").write_text("resources: []\n", encoding="utf-8")
    registry.push_artifact(
        "1.2.4", FluxArtifact(content, "https://git.example/fleet", "1.2.4@sha1:abc", "2026-01-01T00:00:00Z")
    )


@pytest.mark.parametrize(
    "stderr",
    [
        f"✗ PUT {MANIFEST_URL}: unexpected status code 503 Service Unavailable",
        f"✗ PUT {MANIFEST_URL}: unexpected status code 502 Bad Gateway: <html>bad gateway</html>",
        f"✗ PUT {MANIFEST_URL}: TOOMANYREQUESTS: too many requests",
        '✗ Get "https://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused',
    ],
)
def test_a_registry_that_is_down_or_overloaded_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str
) -> None:
    registry = registry_behind_fake_flux(tmp_path, monkeypatch, stderr)
    with pytest.raises(RegistryUnavailableError) as failure:
        push(registry, tmp_path)
    assert failure.value.retryable
    assert str(failure.value).startswith(f"flux push artifact {URL}:1.2.4: ")
    assert "s3cret-pw" not in str(failure.value)


@pytest.mark.parametrize(
    "stderr",
    [
        f"✗ PUT {MANIFEST_URL}: unexpected status code 401 Unauthorized",
        f"✗ PUT {MANIFEST_URL}: UNAUTHORIZED: authentication required; [map[Action:push Name:fleet/platform]]",
        f"✗ PUT {MANIFEST_URL}: DENIED: requested access to the resource is denied",
    ],
)
def test_rejected_credentials_are_permanent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str) -> None:
    registry = registry_behind_fake_flux(tmp_path, monkeypatch, stderr)
    with pytest.raises(RegistryAuthError) as failure:
        push(registry, tmp_path)
    assert not failure.value.retryable and isinstance(failure.value, PermanentError)


def test_a_refused_push_is_permanent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = registry_behind_fake_flux(
        tmp_path, monkeypatch, f"✗ PUT {MANIFEST_URL}: unexpected status code 400 Bad Request"
    )
    with pytest.raises(RegistryError) as failure:
        push(registry, tmp_path)
    assert not failure.value.retryable


def test_a_failure_flux_does_not_explain_stays_a_permanent_command_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registry_behind_fake_flux(tmp_path, monkeypatch, "✗ invalid path: no such directory")
    with pytest.raises(CommandFailedError) as failure:
        push(registry, tmp_path)
    assert not failure.value.retryable
