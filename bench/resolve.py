"""Semver range resolution over a large registry: ``resolve_10k_tags_ms`` and ``resolve_vs_masterminds_ratio``.

``sandbox.versions.resolve`` picks the tag a Flux OCIRepository with a semver
range pulls. The tags are 10,000 of a long-lived repository, listed in push
order (ascending versions: the worst case, since every candidate beats the best
so far and must be checked against the range), mixing releases, ``v``-prefixed
tags, prereleases, build metadata and tags that are not versions. The range is staging's kind: one minor line (the
one current at 90% of the history), prereleases admitted. The range's parse
cache is cleared before each resolution, so each one parses it too.

``resolve_vs_masterminds_ratio`` puts the same resolution beside ``semver-peer``
(toolchain/semver-peer: Flux's getTagBySemver with Masterminds/semver v3.5.0, in Go),
both timed inside their own process on the same range and tags, interleaved, in
the same run; the answers must agree.
"""

from __future__ import annotations

import json
import random
import subprocess
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


# -- the same resolution by the Go peer (Flux's own code path), measured in the same run ------------------

#: Resolutions per sample on each side; the fastest counts (the least disturbed by other processes on the machine).
PICKS_PER_SAMPLE = 3
PEER_TIMEOUT_S = 120


def peer_binary() -> str:
    """The built ``semver-peer`` (``make peers`` / ``make toolchain``)."""
    from sandbox.errors import ToolNotFoundError
    from sandbox.toolchain import locate

    try:
        return str(locate("semver-peer"))
    except ToolNotFoundError as exc:
        raise BenchError(f"{exc} (make peers builds it in seconds)") from exc


def peer_version(binary: str) -> str:
    """``semver-peer -version``: the peer's own version, the Masterminds/semver version it links, Go's."""
    done = subprocess.run(  # noqa: S603 - our own toolchain binary, argv list
        [binary, "-version"], capture_output=True, text=True, timeout=PEER_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"semver-peer -version exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def peer_pick_ms(binary: str, range_: str, tags: list[str]) -> tuple[str | None, float]:
    """The peer's answer and its fastest of :data:`PICKS_PER_SAMPLE` picks in ms, timed inside the Go process.

    One process per sample, one request line per pick: neither the process start nor JSON is timed.
    """
    request = json.dumps({"range": range_, "tags": tags, "repeat": 1}) + "\n"
    done = subprocess.run(  # noqa: S603 - our own toolchain binary, argv list
        [binary], input=request * PICKS_PER_SAMPLE, capture_output=True, text=True, timeout=PEER_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"semver-peer exited {done.returncode}: {done.stderr.strip()[-300:]}")
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    if len(answers) != PICKS_PER_SAMPLE or any("error" in answer for answer in answers):
        raise BenchError(f"semver-peer answered {done.stdout.strip()[:300]!r}")
    return answers[0]["tag"], min(answer["ns"] for answer in answers) / 1e6


def project_pick_ms(range_: str, tags: list[str]) -> tuple[str | None, float]:
    """The project's answer and its fastest of :data:`PICKS_PER_SAMPLE` resolutions in ms (range parsed afresh)."""
    fastest = float("inf")
    result = None
    for _ in range(PICKS_PER_SAMPLE):
        start = time.perf_counter()
        result = resolve_once(range_, tags)
        fastest = min(fastest, time.perf_counter() - start)
    return result, fastest * 1000


def run_peer(repetitions: int = REPETITIONS) -> list[Metric]:
    """``resolve_vs_masterminds_ratio``: the project's resolver / the Go peer, same range, same 10,000 tags."""
    binary = peer_binary()
    version = peer_version(binary)
    tags = generate_tags()
    range_, _ = minor_line_range(tags)
    ratios: list[float] = []
    project_ms: list[float] = []
    peer_ms: list[float] = []
    for _ in range(repetitions):  # interleaved, so both see the same machine load
        ours, ours_ms = project_pick_ms(range_, tags)
        theirs, theirs_ms = peer_pick_ms(binary, range_, tags)
        if ours != theirs:
            raise BenchError(f"the project resolved {range_!r} to {ours!r}, the Go peer to {theirs!r}")
        project_ms.append(ours_ms)
        peer_ms.append(theirs_ms)
        ratios.append(ours_ms / theirs_ms)
    log(
        f"resolve vs semver-peer: {median(project_ms):.1f} ms vs {median(peer_ms):.1f} ms "
        f"(ratio {median(ratios):.2f}; {version})"
    )
    return [
        Metric(
            name="resolve_vs_masterminds_ratio",
            bar=2,
            better="lower",
            unit="x",
            description=(
                f"versions.resolve({range_!r}) / semver-peer (Masterminds/semver, Flux's code path, in Go) "
                f"over the same {TAGS:,} tags, each timed in its own process (fastest of {PICKS_PER_SAMPLE} per sample)"
            ),
            samples=ratios,
            note=(
                f"project {median(project_ms):.1f} ms, semver-peer {median(peer_ms):.1f} ms per resolution "
                f"(medians); peer: {version}."
            ),
            peers={"semver-peer": version},
        )
    ]
