"""The validate stage's reading of control-plane versions as providers spell them."""

from __future__ import annotations

import pytest

from sandbox.errors import InvalidInputError
from sandbox.validation import minor_version_of


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1.31", "1.31"),
        ("v1.31.2", "1.31"),
        ("1.31-eks", "1.31"),
        ("1.29.3-gke.1093000", "1.29"),
        (None, None),
        ("", None),
    ],
)
def test_minor_version_of_provider_spellings(given: str | None, expected: str | None) -> None:
    assert minor_version_of(given) == expected


@pytest.mark.parametrize("given", ["latest", "one.two", "1"])
def test_minor_version_of_refuses_what_is_not_a_version(given: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid Kubernetes version"):
        minor_version_of(given)
