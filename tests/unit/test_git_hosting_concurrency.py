"""Local pull requests opened at once (a team's workers promoting together) each get their own number."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sandbox.drivers.git_hosting import LocalGitHosting, PullRequest


def test_concurrent_pull_requests_get_distinct_numbers_and_none_is_lost(tmp_path: Path) -> None:
    heads = [f"OPS-{n}-change" for n in range(1, 13)]
    start = threading.Barrier(len(heads))

    def open_one(head: str) -> PullRequest:
        hosting = LocalGitHosting(tmp_path / "pull-requests")  # one per worker process, one directory
        start.wait()
        return hosting.open_pull_request(head=head, base="main", title=head, body="")

    with ThreadPoolExecutor(max_workers=len(heads)) as pool:
        opened = list(pool.map(open_one, heads))
    assert sorted(pr.number for pr in opened) == list(range(1, len(heads) + 1))
    stored = {json.loads(p.read_text())["head"]: int(p.stem) for p in (tmp_path / "pull-requests").glob("*.json")}
    assert stored == {pr.head: pr.number for pr in opened}
    assert not list((tmp_path / "pull-requests").glob("*.tmp")) and not list((tmp_path / "pull-requests").glob(".*"))
