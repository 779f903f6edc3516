"""Looking for secret values wherever a run leaves text.

The places: what a command printed, the Prefect server's own database file (logs,
flow- and task-run states and their messages, artifacts, parameters -- read as
raw bytes, so nothing the API would filter or page away is missed), the
inventory database file, the files of a state directory, persisted task
results, and the whole history of git remotes. A secret is looked for in the
forms it travels in: as written, and base64-encoded (an HTTP basic-auth header
of ``user:password``, a Kubernetes Secret's ``data``).
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path


def prefect_database() -> Path:
    """The SQLite file of the test session's Prefect server (``prefect_test_harness``)."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    path = Path(url.split(":///", 1)[1])
    assert path.is_file(), f"no Prefect database at {path}"
    return path


def flush_prefect_logs() -> None:
    """Send the logs this process has queued for the Prefect API (in-process runs ship them in the background)."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)


def prefect_database_text() -> str:
    """The Prefect database file and its write-ahead log, as text (bytes that are not UTF-8 replaced)."""
    path = prefect_database()
    parts = [p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.is_file()]
    return b"".join(parts).decode("utf-8", "replace")


def file_texts(root: Path, *, skip: Iterable[str] = ()) -> list[str]:
    """The text of every file below ``root`` (bytes that are not UTF-8 replaced), except names in ``skip``."""
    skipped = set(skip)
    if not root.exists():
        return []
    return [
        p.read_bytes().decode("utf-8", "replace")
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and not skipped & set(p.parts)
    ]


def remote_history(remote: Path, *, after: str | None = None) -> str:
    """Every commit of every ref of a bare remote, with its patch (what a push published).

    Args:
        remote: The bare repository.
        after: Leave out this commit and its ancestors (what the test itself pushed).
    """
    excluded = [f"^{after}"] if after else []
    return subprocess.run(
        ["git", "--git-dir", str(remote), "log", "--all", *excluded, "-p", "--format=%H %s%n%b"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def forms(value: str) -> Iterator[str]:
    """``value`` as written, and the base64 it travels in."""
    yield value
    yield base64.b64encode(value.encode()).decode()


def leaks(secrets: Mapping[str, str], places: Mapping[str, Iterable[str]]) -> list[str]:
    """``"<secret> in <place>"`` for each secret (in any of its :func:`forms`) found in a place."""
    found = []
    for place, texts in places.items():
        texts = list(texts)
        for name, value in secrets.items():
            if any(form in text for form in forms(value) for text in texts):
                found.append(f"{name} in {place}")
    return found
