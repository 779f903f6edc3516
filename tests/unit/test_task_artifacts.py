"""Prefect artifact keys: one rule for the provision and align plans and the performance reports."""

from __future__ import annotations

import pytest

from tasks.artifacts import artifact_key


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        (("provision-plan", "sandbox-plan"), "provision-plan-sandbox-plan"),
        (("align-plan", "development"), "align-plan-development"),
        (("perf", "Smoke Test", "production"), "perf-smoke-test-production"),
        (("perf-summary", "soak/v2", "prod_eu"), "perf-summary-soak-v2-prod-eu"),
        # Dashes a part holds are kept: sandboxes a--b and a-b get different keys.
        (("provision-plan", "a--b"), "provision-plan-a--b"),
        (("x", "-edge-"), "x--edge"),
    ],
)
def test_artifact_keys_are_lowercase_letters_digits_and_dashes(parts: tuple[str, ...], key: str) -> None:
    assert artifact_key(*parts) == key
