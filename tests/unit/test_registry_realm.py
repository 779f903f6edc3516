"""Registry credentials go only where they belong (issue 17 item 4).

A registry answering 401 names a token realm; oras sent the username and password
to it wherever it was (another port, plain HTTP). Here a hostile registry on
loopback names a realm on another port: nothing may reach it. Real oras, real
HTTP on loopback; the registry is a few lines of ``http.server`` because it is
the attacker.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.config import RegistryConfig
from sandbox.drivers.registry import OrasRegistry, RegistryAuthError, RegistryCredentials, token_realm_problem
from tests.hostile_registry import Recorder, hostile_servers

PASSWORD = "registry-realm-password-7c1d9e"


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    """A registry and a token server elsewhere (another port), both recording every request."""
    with hostile_servers() as made:
        yield made


def _registry(server: Recorder) -> OrasRegistry:
    settings = RegistryConfig(
        url=f"oci://127.0.0.1:{server.server_address[1]}/fleet/platform", insecure=True, timeout_seconds=10
    )
    return OrasRegistry(settings, RegistryCredentials("fleet-bot", PASSWORD))


def test_credentials_never_go_to_a_realm_on_another_port(servers: tuple[Recorder, Recorder]) -> None:
    registry_server, elsewhere = servers
    registry_server.realm = f"http://127.0.0.1:{elsewhere.server_address[1]}/token"
    with pytest.raises(RegistryAuthError) as caught:
        _registry(registry_server).list_tags()
    assert "refusing to send the registry credentials to the token realm" in str(caught.value)
    assert "not the registry's own host" in str(caught.value)
    assert elsewhere.seen == []  # nothing at all reached it
    assert all(auth == "" for _, auth in registry_server.seen)


def test_the_registrys_own_realm_gets_them(servers: tuple[Recorder, Recorder]) -> None:
    registry_server, elsewhere = servers
    registry_server.realm = f"http://127.0.0.1:{registry_server.server_address[1]}/token"
    assert _registry(registry_server).list_tags() == ["1.0.0"]
    assert any(path.startswith("/token") and auth.startswith("Basic ") for path, auth in registry_server.seen)
    assert elsewhere.seen == []


@pytest.mark.parametrize(
    ("realm", "url", "insecure", "problem"),
    [
        ("https://registry.example.test/token", "oci://registry.example.test/fleet", False, None),
        ("https://registry.example.test:443/token", "oci://registry.example.test/fleet", False, None),
        ("/token", "oci://registry.example.test/fleet", False, "not the registry's own host registry.example.test"),
        ("registry.example.test/token", "oci://registry.example.test/fleet", False, None),
        ("https://auth.example.test/token", "oci://registry.example.test/fleet", False, "not the registry's own host"),
        ("https://registry.example.test:8443/t", "oci://registry.example.test/fleet", False, "not the registry's own"),
        ("http://registry.example.test/token", "oci://registry.example.test/fleet", False, "not the registry's own"),
        ("http://registry.example.test:443/t", "oci://registry.example.test/fleet", False, "not https"),
        ("http://127.0.0.1:5000/token", "oci://127.0.0.1:5000/fleet", True, None),
        ("http://127.0.0.1:5001/token", "oci://127.0.0.1:5000/fleet", True, "not the registry's own host"),
    ],
)
def test_which_realms_may_have_the_credentials(realm: str, url: str, insecure: bool, problem: str | None) -> None:
    found = token_realm_problem(realm, RegistryConfig(url=url, insecure=insecure))
    assert (found is None) if problem is None else (found is not None and found.startswith(problem)), found
