"""The lifecycle run's summary artifact and the fleet status report, as Markdown (issue 18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.config import FleetConfig
from sandbox.demo import demo_config
from sandbox.drivers.cluster import ClusterDriver
from sandbox.environments import EnvironmentNotProvisionedError
from sandbox.fleet_status import fleet_status
from sandbox.models import STAGE_ORDER, SandboxKind, SandboxRecord, SandboxStatus, Stage
from sandbox.run_summary import MAX_INLINE_IMAGE_BYTES, StageLine, image_markdown, lifecycle_summary

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_the_summary_lists_every_stage_in_order_with_its_result() -> None:
    lines = [StageLine(stage=s, outcome="executed", summary=f"{s.value} done | ok") for s in STAGE_ORDER[:3]]
    lines += [StageLine(stage=s, outcome="not run") for s in STAGE_ORDER[3:]]
    text = lifecycle_summary(name="s1", lifecycle_id="abc", lines=lines, results={}, failed="bootstrap: boom")
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[1] for row in rows] == [s.value for s in STAGE_ORDER]
    assert "| 1 | provision | executed | provision done \\| ok |" in text
    assert text.startswith("# Sandbox `s1`: FAILED: bootstrap: boom")


def test_the_summary_shows_the_pull_request_and_its_description_without_html_folds() -> None:
    body = "Promotes `s1`.\n\n<details><summary>diff</summary>\n\n```diff\n+x\n```\n</details>\n"
    results: dict[Stage, dict[str, Any]] = {
        Stage.promote: {
            "pull_request": {"number": 7, "url": "https://github.com/o/r/pull/7", "title": "OPS-1: x"},
            "body": body,
        }
    }
    text = lifecycle_summary(name="s1", lifecycle_id="abc", lines=[], results=results)
    assert "Pull request #7: [https://github.com/o/r/pull/7](https://github.com/o/r/pull/7)" in text
    assert "**diff**" in text and "```diff\n+x\n```" in text and "<details>" not in text
    # The local stand-in's "URL" is a file: shown, not linked.
    results[Stage.promote]["pull_request"]["url"] = "/state/pull-requests/7.json"
    assert "Pull request #7: `/state/pull-requests/7.json`" in lifecycle_summary(
        name="s1", lifecycle_id="abc", lines=[], results=results
    )


def test_the_chart_is_inline_and_bounded(tmp_path: Path) -> None:
    chart = tmp_path / "comparison.png"
    chart.write_bytes(PNG)
    image = image_markdown(chart, "chart")
    assert image is not None and image.startswith("![chart](data:image/png;base64,iVBORw0KGgo")
    text = lifecycle_summary(name="s", lifecycle_id="a", lines=[], results={}, chart=image, artifacts=["perf-s"])
    assert "## Performance comparison" in text and image in text and "- [perf-s](/artifacts/key/perf-s)" in text
    chart.write_bytes(PNG + b"\0" * MAX_INLINE_IMAGE_BYTES)
    assert image_markdown(chart, "chart") is None
    assert image_markdown(tmp_path / "missing.png", "chart") is None
    (tmp_path / "not.png").write_text("<svg/>")
    assert image_markdown(tmp_path / "not.png", "chart") is None


class OneCluster:
    """Enough of a ClusterDriver for the fleet status: development's Flux objects."""

    def __init__(self, ready: bool) -> None:
        status = "True" if ready else "False"
        self.objects: list[dict[str, Any]] = [
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": name, "namespace": "flux-system", "generation": 1},
                "status": {
                    "observedGeneration": 1,
                    "lastAppliedRevision": "main@sha1:0123456789ab",
                    "conditions": [{"type": "Ready", "status": status, "reason": "R", "message": "m"}],
                },
            }
            for name in ("flux-system", "apps")
        ]

    def list(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None) -> Any:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, ref: Any) -> Any:
        return next((o for o in self.objects if o["metadata"]["name"] == ref.name and o["kind"] == ref.kind), None)


def record(name: str, **changes: Any) -> SandboxRecord:
    values: dict[str, Any] = {
        "name": name,
        "kind": SandboxKind.platform,
        "source_env": "development",
        "lifecycle_id": "l1",
        "status": SandboxStatus.active,
        "created_at": NOW - timedelta(hours=5),
        "expires_at": NOW + timedelta(hours=67),
        "owner": "ana",
        "hourly_cost": 2.0,
    }
    return SandboxRecord.model_validate({**values, **changes})


def test_the_fleet_status_shows_environments_and_live_sandboxes(tmp_path: Path) -> None:
    config = FleetConfig.model_validate(demo_config(tmp_path))

    def connect(env: str) -> ClusterDriver:
        if env == "production":
            raise EnvironmentNotProvisionedError("no cluster known for environment 'production'")
        return OneCluster(ready=env == "development")  # type: ignore[return-value]

    records = [
        record("s-live"),
        record("s-old", expires_at=NOW - timedelta(hours=4)),
        record("s-kept", keep=True),
        record("s-gone", status=SandboxStatus.destroyed),
    ]
    status = fleet_status(config, records, connect, NOW)
    envs = {env.name: env for env in status.environments}
    assert envs["development"].ready and envs["development"].applied == "main@sha1:0123456789ab"
    assert envs["development"].tracks == "branch main" and envs["staging"].tracks == "semver 1.2.x"
    assert not envs["staging"].ready and envs["staging"].state.startswith("2 of 2 not Ready")
    assert envs["production"].state == "cluster not read: no cluster known for environment 'production'"
    lines = {s.name: s for s in status.sandboxes}
    assert set(lines) == {"s-live", "s-old", "s-kept"}
    assert (lines["s-live"].age, lines["s-live"].expiry, lines["s-live"].cost_so_far) == ("5h", "in 2d19h", 10.0)
    assert lines["s-old"].expiry == "EXPIRED 4h ago" and lines["s-kept"].expiry == "kept (--keep)"
    text = status.markdown()
    assert "1 of 3 long-lived environment(s) Ready; 3 live sandbox(es)." in text
    assert "| s-live | ana | platform | active | 5h | in 2d19h | 10.00 |" in text


def test_ages_and_expiries_are_shown_to_the_minute() -> None:
    from sandbox.fleet_status import sandbox_line

    fresh = record("s", created_at=NOW - timedelta(seconds=30), expires_at=NOW + timedelta(days=2, seconds=86_325))
    line = sandbox_line(fresh, NOW)
    assert (line.age, line.expiry) == ("<1m", "in 2d23h58m")
