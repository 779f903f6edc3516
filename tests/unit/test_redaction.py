"""The one URL redaction, used wherever a URL is shown (preflight's remote, a load target's URL)."""

from __future__ import annotations

import pytest

from sandbox.redaction import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bot:ghp_secret@github.com/org/fleet.git", "https://***@github.com/org/fleet.git"),
        ("https://load:s3cret@shop.example/", "https://***@shop.example/"),
        ("ssh://git@github.com/org/fleet", "ssh://***@github.com/org/fleet"),
        # A password holding an "@" is hidden whole, up to the host.
        ("https://user:p@ss@host.example/x", "https://***@host.example/x"),
        # An "@" after the host (path, query) is no user info.
        ("https://host.example/a@b?c=d@e", "https://host.example/a@b?c=d@e"),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x"),
        ("/srv/git/fleet.git", "/srv/git/fleet.git"),
        ("git@github.com:org/fleet.git", "git@github.com:org/fleet.git"),
        ("", ""),
    ],
)
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_no_url_stays_none() -> None:
    assert redact_url(None) is None
