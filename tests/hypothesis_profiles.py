"""Hypothesis settings profiles, and the settings a property test asks for on top of them.

* ``ci`` (the default, what ``make test`` runs): derandomized and without the
  example database, so a run is the same run on every machine and every time;
  no deadline and no ``too_slow`` health check, because both measure wall time
  and fail a correct test on a loaded machine.
* ``explore`` (``make test-explore``): random, ten times the examples, with the
  local example database (``.hypothesis/``) so a failure it finds replays first
  next time. For looking for new bugs, not for a pass/fail gate.

A test's own ``@settings(...)`` overrides the profile field by field, so tests
take :func:`property_settings`, which scales their example count to the
profile and adds their health-check suppressions to the profile's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

CI = "ci"
EXPLORE = "explore"
CI_EXAMPLES = 100  # what a test asking for ``n`` examples gets ``n`` of
EXPLORE_EXAMPLES = 10 * CI_EXAMPLES
# Named outright: with ``CI`` set in the environment Hypothesis's own default
# profile has no database, and ``explore`` would inherit that.
EXAMPLE_DATABASE_DIR = ".hypothesis/examples"


def register_profiles() -> None:
    """Register ``ci`` and ``explore``, and load ``ci`` (``--hypothesis-profile`` loads another later)."""
    settings.register_profile(
        CI,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        max_examples=CI_EXAMPLES,
        print_blob=True,
    )
    settings.register_profile(
        EXPLORE,
        derandomize=False,
        database=DirectoryBasedExampleDatabase(EXAMPLE_DATABASE_DIR),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        max_examples=EXPLORE_EXAMPLES,
        print_blob=True,
    )
    settings.load_profile(CI)


def property_settings(
    examples: int,
    *,
    explore_examples: int | None = None,
    suppress: Iterable[HealthCheck] = (),
    profile: settings | None = None,
    **overrides: Any,
) -> settings:
    """Settings for one property test, relative to the loaded profile.

    Must be called at import time of the test module (as a decorator), which is
    after pytest has loaded the profile chosen on its command line.

    Args:
        examples: The examples the test runs under ``ci``; other profiles scale it.
        explore_examples: The examples under ``explore`` when ten times ``examples`` is not
            what the test needs (a differential test against a peer asks for far more).
        suppress: Health checks to suppress besides the profile's own.
        profile: The profile to build on; the loaded one by default.
        overrides: Any other settings the test needs (e.g. ``phases``).
    """
    name = settings.get_current_profile_name()
    profile = profile or settings.get_profile(name)
    count = examples * profile.max_examples // CI_EXAMPLES
    if explore_examples is not None and profile is settings.get_profile(EXPLORE):
        count = explore_examples
    return settings(
        parent=profile,
        max_examples=max(1, count),
        suppress_health_check=[*profile.suppress_health_check, *suppress],
        **overrides,
    )
