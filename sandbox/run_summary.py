"""A lifecycle run's summary as Markdown: stage → result, the pull request, the performance chart.

Prefect shows Markdown artifacts on the flow run's page and under their key, so
this is where a person reads what a run did without opening its logs. Pure
formatting: the caller publishes it (``tasks/artifacts.py`` redacts first).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from sandbox.models import Stage

#: Largest chart embedded inline (bytes of PNG): Prefect stores artifacts in its database.
MAX_INLINE_IMAGE_BYTES = 512 * 1024


class StageLine(BaseModel):
    """One stage's row in the summary."""

    stage: Stage
    outcome: str = Field(description="executed, cached, already completed, failed or not run")
    summary: str = ""


def _cell(text: str) -> str:
    """Text safe in one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


_SUMMARY_TAG = re.compile(r"^\s*<details>\s*<summary>(.*?)</summary>\s*$")
_HTML_ONLY = re.compile(r"^\s*</?(details|summary)>\s*$")


def _without_html(markdown: str) -> str:
    """GitHub Markdown without its ``<details>`` folds, which Prefect's Markdown renderer cannot show.

    A fold's ``<summary>`` becomes a bold line; what it folded is shown as it is.
    """
    lines = []
    for line in markdown.splitlines():
        fold = _SUMMARY_TAG.match(line)
        if fold:
            lines.append(f"**{fold.group(1).strip()}**")
        elif not _HTML_ONLY.match(line):
            lines.append(line)
    return "\n".join(lines)


def image_markdown(path: Path, alt: str) -> str | None:
    """An inline Markdown image of a PNG file (a ``data:`` URI), or ``None`` when it is missing or too big.

    Inline, the image is shown wherever the artifact is, with no file server
    and no worker disk the reader cannot reach.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_INLINE_IMAGE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_INLINE_IMAGE_BYTES or not data.startswith(b"\x89PNG"):
        return None
    return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"


def lifecycle_summary(
    *,
    name: str,
    lifecycle_id: str,
    lines: Sequence[StageLine],
    results: Mapping[Stage, Mapping[str, Any]],
    failed: str | None = None,
    performance: Sequence[Mapping[str, str]] = (),
    chart: str | None = None,
    artifacts: Sequence[str] = (),
) -> str:
    """The Markdown summary of one lifecycle run.

    Args:
        name: The sandbox.
        lifecycle_id: Its lifecycle.
        lines: Each planned stage, in lifecycle order.
        results: Stage → the ``details`` of its result, for the stages that finished.
        failed: Why the run failed, if it did.
        performance: The performance comparison's rows (``sandbox.perf.compare.table_rows``).
        chart: The performance chart as inline Markdown (:func:`image_markdown`), if drawn.
        artifacts: Keys of the run's other artifacts (plan, validation, performance table).
    """
    verdict = f"FAILED: {_cell(failed)}" if failed else "completed"
    out = [
        f"# Sandbox `{name}`: {verdict}",
        "",
        f"Lifecycle `{lifecycle_id}`.",
        "",
        "| # | stage | outcome | result |",
        "|---:|---|---|---|",
        *(
            f"| {i} | {line.stage.value} | {line.outcome} | {_cell(line.summary)} |"
            for i, line in enumerate(lines, start=1)
        ),
    ]
    promote = results.get(Stage.promote) or {}
    pull_request = promote.get("pull_request")
    if isinstance(pull_request, Mapping) and pull_request.get("url"):
        url = str(pull_request["url"])
        action = "Open the pull request" if pull_request.get("manual") else "Pull request"
        number = f" #{pull_request['number']}" if not pull_request.get("manual") else ""
        # A link only to a web page: the local stand-in's "URL" is a file on the worker.
        shown = f"[{url}]({url})" if url.startswith(("https://", "http://")) else f"`{url}`"
        out += ["", "## Pull request", "", f"{action}{number}: {shown}"]
        if pull_request.get("title"):
            out += ["", f"**{_cell(str(pull_request['title']))}**"]
        body = promote.get("body")
        if body:
            out += ["", "### Its description", "", _without_html(str(body)).strip()]
    elif promote.get("skipped") or promote.get("pull_request", "") is None:
        out += ["", "## Pull request", "", "None opened (see the promote stage's result)."]
    if performance or chart:
        out += ["", "## Performance comparison"]
        if performance:
            out += ["", "| metric | baseline | run | change | gate |", "|---|---:|---:|---:|---|"]
            for row in performance:
                cells = [_cell(row[column]) for column in ("metric", "baseline", "run", "change", "gate")]
                out.append(f"| {' | '.join(cells)} |")
        if chart:
            out += ["", chart]
    if artifacts:
        out += ["", "## Artifacts of this run", "", *(f"- [{key}](/artifacts/key/{key})" for key in artifacts)]
    return "\n".join(out) + "\n"
