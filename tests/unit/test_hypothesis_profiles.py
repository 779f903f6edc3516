"""The hypothesis profiles: CI runs are the same run every time; exploring is a choice."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.hypothesis_profiles import CI, CI_EXAMPLES, EXPLORE, EXPLORE_EXAMPLES, property_settings


def test_ci_profile_is_derandomized_and_not_timed() -> None:
    ci = settings.get_profile(CI)
    assert ci.derandomize and ci.database is None
    # Both measure wall time, so a loaded machine would fail a correct test.
    assert ci.deadline is None and HealthCheck.too_slow in ci.suppress_health_check


def test_ci_is_the_profile_unless_one_is_asked_for(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--hypothesis-profile"):
        pytest.skip("a profile was chosen on the command line")
    assert settings.get_current_profile_name() == CI
    assert settings.get_profile(settings.get_current_profile_name()).derandomize


def test_explore_profile_is_random_with_more_examples() -> None:
    explore = settings.get_profile(EXPLORE)
    assert not explore.derandomize and explore.database is not None
    assert explore.deadline is None and explore.max_examples > CI_EXAMPLES


def test_property_settings_scale_with_the_profile_and_keep_its_suppressions() -> None:
    fixture = [HealthCheck.function_scoped_fixture]
    with_ci = property_settings(40, suppress=fixture, profile=settings.get_profile(CI))
    assert with_ci.max_examples == 40 and with_ci.derandomize
    assert set(with_ci.suppress_health_check) == {HealthCheck.too_slow, HealthCheck.function_scoped_fixture}
    exploring = property_settings(40, suppress=fixture, profile=settings.get_profile(EXPLORE))
    assert exploring.max_examples == 40 * EXPLORE_EXAMPLES // CI_EXAMPLES and not exploring.derandomize
