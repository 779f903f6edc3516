"""Semver range resolution over a large registry: ``resolve_10k_tags_ms``.

``sandbox.versions.resolve`` picks the tag a Flux OCIRepository with a semver
range pulls. The tags are 10,000 of a long-lived repository, listed in push
order (ascending versions: the worst case, since every candidate beats the best
so far and must be checked against the range), mixing releases, ``v``-prefixed
tags, prereleases, build metadata and tags that are not versions. The range is staging's kind: one minor line (the
one current at 90% of the history), prereleases admitted. The range's parse
cache is cleared before each resolution, so each one parses it too.
"""

from __future__ import annotations

import random
import time

from bench.common import BenchError, Metric, log, median
from bench.profiling import Profiler
from sandbox import versions

#: Tags in the repository.
TAGS = 10_000
#: Repetitions (the figure is the median).
REPETITIONS = 9


def generate_tags(count: int = TAGS, seed: int = 11) -> list[str]:
    """``count`` tags in push order, deterministic for a seed."""
    rng = random.Random(seed)
    tags: list[str] = []
    major, minor, patch = 0, 1, 0
    while len(tags) < count:
        roll = rng.random()
        if roll < 0.002:
            major, minor, patch = major + 1, 0, 0
        elif roll < 0.1:
            minor, patch = minor + 1, 0
        else:
            patch += 1
        version = f"{major}.{minor}.{patch}"
        for rc in range(1, rng.randint(1, 3)):
            tags.append(f"{version}-rc.{rc}")
        tags.append(version if rng.random() < 0.8 else f"v{version}")
        extra = rng.random()
        if extra < 0.1:
            tags.append(f"{version}+build.{len(tags)}")
        elif extra < 0.2:
            tags.append(f"sha-{rng.getrandbits(40):010x}")
        elif extra < 0.22:
            tags.append(rng.choice(["latest", "main", f"{major}.{minor}", f"v{major}"]))
    return tags[:count]


def minor_line_range(tags: list[str]) -> tuple[str, str]:
    """A range admitting one minor line (prereleases too), and the line's ``X.Y.``."""
    for tag in tags[len(tags) * 9 // 10 :]:
        version = versions.parse_tag(tag)
        if version is not None:
            return (
                f">={version.major}.{version.minor}.0-0 <{version.major}.{version.minor + 1}.0-0",
                f"{version.major}.{version.minor}.",
            )
    raise BenchError("no version among the last tags")


def resolve_once(range_: str, tags: list[str]) -> str | None:
    """One resolution, the range parsed afresh."""
    versions.parse_constraint.cache_clear()
    return versions.resolve(range_, tags)


def run(repetitions: int = REPETITIONS) -> list[Metric]:
    """The metric."""
    tags = generate_tags()
    range_, line = minor_line_range(tags)
    expected = resolve_once(range_, tags)
    if expected is None or not expected.lstrip("v").startswith(line):
        raise BenchError(f"{range_!r} resolved to {expected!r}, not to a {line}x tag")
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        result = resolve_once(range_, tags)
        samples.append((time.perf_counter() - start) * 1000)
        if result != expected:
            raise BenchError(f"resolve changed its answer: {result!r} instead of {expected!r}")
    log(f"resolve: {range_!r} over {TAGS} tags -> {expected} in {median(samples):.1f} ms (median)")

    def profile(profiler: Profiler) -> None:
        profiler.call(lambda: resolve_once(range_, tags))

    return [
        Metric(
            name="resolve_10k_tags_ms",
            bar=200,
            better="lower",
            unit="ms",
            description=f"versions.resolve({range_!r}) over {TAGS:,} tags in push order",
            samples=samples,
            profile=profile,
        )
    ]
