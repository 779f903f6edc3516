"""Prefect settings the CLI decides before Prefect is imported.

Prefect reads its settings from the environment when it is first imported, so
the CLI sets defaults (never overriding what the user set) and imports the
flows lazily afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path


def configure_prefect(state_dir: Path) -> None:
    """Persist task results next to the sandbox state unless configured otherwise.

    Checkpoints must survive the process so a rerun can resume; the user's own
    ``PREFECT_RESULTS_LOCAL_STORAGE_PATH`` (or a storage block) wins.
    """
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(state_dir / "prefect-results"))
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")
    # The CLI prints its own summary; keep Prefect's console logs to the point.
    os.environ.setdefault("PREFECT_LOGGING_LOG_PRINTS", "true")
