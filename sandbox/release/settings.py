"""Release settings: which OCI registry releases go to, and the credentials for it."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sandbox.config import FleetConfig, TrackingKind
from sandbox.drivers.git import GitDriver
from sandbox.drivers.registry import RegistryConfig, RegistryCredentials
from sandbox.errors import ConfigError, InvalidInputError
from sandbox.hardening import check_credentials_transport
from sandbox.redaction import register_basic_auth
from sandbox.release.platform_source import PlatformSource, read_platform_source


def configured_registry(config: FleetConfig) -> RegistryConfig | None:
    """The registry settings in fleet.yaml (``drivers.registry``), if any, ``layout_dir`` made absolute."""
    settings = config.drivers.registry
    if settings is not None and settings.layout_dir:
        return settings.model_copy(update={"layout_dir": str(config.path(settings.layout_dir))})
    return settings


def registry_from_sources(config: FleetConfig, sources: Mapping[str, PlatformSource | None]) -> RegistryConfig | None:
    """The registry the clusters read: the OCIRepository URL of a semver, then a tag, environment."""
    order = {TrackingKind.semver: 0, TrackingKind.tag: 1, TrackingKind.branch: 2}
    for name in sorted(config.environments, key=lambda n: order[config.environments[n].tracking.type]):
        source = sources.get(name)
        if source is not None and source.kind == "OCIRepository" and source.url:
            try:
                return RegistryConfig(url=source.url, insecure=source.insecure)
            except ValueError:
                continue
    return None


def registry_credentials(
    settings: RegistryConfig,
    *,
    password: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> RegistryCredentials | None:
    """Credentials from the environment (the password possibly from a Secret block, given here).

    Returns:
        ``None`` when neither username nor password is set (the docker config then applies).

    Raises:
        ConfigError: Only one of username and password is set (names the variables, not values),
            or they would be sent over plain HTTP (``insecure``) to another machine.
    """
    env = os.environ if environ is None else environ
    username = env.get(settings.username_env) or None
    secret = password or env.get(settings.password_env) or None
    # The password, and the basic-auth header it travels in, are redacted from everything from now on.
    register_basic_auth(username, secret)
    if username is None and secret is None:
        return None
    if username is None or secret is None:
        missing = settings.username_env if username is None else f"{settings.password_env} (or the Secret block)"
        raise ConfigError(f"registry credentials are incomplete: {missing} is not set")
    check_credentials_transport(settings.url, "the registry", plain_http=settings.insecure)
    return RegistryCredentials(username=username, password=secret)


def source_url(remote: str) -> str:
    """The fleet remote as the artifact's ``org.opencontainers.image.source``: no credentials.

    Local paths become ``file://`` URIs; ``user:password@`` is dropped from every URL and
    any user info from http(s) URLs (tokens travel there); ``ssh://git@host`` stays.
    """
    if "://" not in remote and not re.match(r"^[\w.-]+@[\w.-]+:", remote):
        return Path(remote).expanduser().resolve().as_uri()
    if re.match(r"^https?://", remote):
        return re.sub(r"^(https?://)[^/@\s]+@", r"\1", remote)
    return re.sub(r"(://)[^/@\s:]+:[^/@\s]+@", r"\1", remote)


def discover_registry(config: FleetConfig, git: GitDriver, *, workdir: Path | None = None) -> RegistryConfig:
    """Registry settings from fleet.yaml, else from the URL the clusters' OCIRepository reads.

    Raises:
        ConfigError: Neither names a registry.
    """
    configured = configured_registry(config)
    if configured is not None:
        return configured
    root = workdir or config.state_dir / "release"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="checkout-", dir=root) as tmp:
        repo = Path(tmp) / "repo"
        git.clone(config.remote_url, repo)
        git.checkout(repo, config.fleet_repo.default_branch)
        sources = {name: read_platform_source(repo, env) for name, env in config.environments.items()}
    derived = registry_from_sources(config, sources)
    if derived is None:
        raise ConfigError(
            "no OCI registry: add drivers.registry.url to fleet.yaml, pass --registry, "
            "or give an environment an OCIRepository with .spec.url"
        )
    return derived


def registry_override(config: FleetConfig, url: str | None, insecure: bool | None = None) -> RegistryConfig | None:
    """fleet.yaml's registry settings with the URL (and plain-HTTP flag) replaced, e.g. from ``--registry``.

    Returns:
        ``None`` when there is nothing to override (``url`` is ``None``).

    Raises:
        InvalidInputError: ``url`` is not an OCI repository URL.
    """
    if url is None:
        return None
    base = configured_registry(config)
    data: dict[str, Any] = base.model_dump() if base is not None else {}
    data["url"] = url
    data["layout_dir"] = None  # --registry names a registry server: the configured layout stands in for another
    if insecure is not None:
        data["insecure"] = insecure
    try:
        return RegistryConfig.model_validate(data)
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise InvalidInputError(f"--registry {url!r}: {message}") from None
