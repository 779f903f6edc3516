"""Work pools of fleet-sandbox, created or updated on the Prefect server from ``deployments/*-pool.json``.

Each ``<kind>-pool.json`` names a pool, its worker type, description and
concurrency limit, and optionally a base job template file beside it (without
one, the worker type's default template is used)::

    python -m deployments.pools                 # every pool in deployments/
    python -m deployments.pools --pool fleet-sandbox-process

The server is the one ``PREFECT_API_URL`` points at. The same can be done with
Prefect's CLI (``prefect work-pool create NAME --type T --base-job-template F``
and ``prefect work-pool set-concurrency-limit NAME N``); this keeps the settings
in one reviewed file per pool and is idempotent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from sandbox.errors import SandboxError

POOLS_DIR = Path(__file__).resolve().parent


class PoolSpec(BaseModel):
    """One ``*-pool.json``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Work pool name (deployments in prefect.yaml name it)")
    type: str = Field(description="Worker type: process, kubernetes, ...")
    description: str = ""
    concurrency_limit: int | None = Field(default=None, ge=0, description="Flow runs of the pool at once")
    base_job_template: str | None = Field(default=None, description="Job template file, relative to the spec")

    def job_template(self, directory: Path) -> dict[str, Any] | None:
        """The base job template, or ``None`` for the worker type's default."""
        if self.base_job_template is None:
            return None
        loaded: dict[str, Any] = json.loads((directory / self.base_job_template).read_text(encoding="utf-8"))
        return loaded


def load_pool_specs(directory: Path = POOLS_DIR) -> list[PoolSpec]:
    """Every ``*-pool.json`` in ``directory``, by file name."""
    return [
        PoolSpec.model_validate_json(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*-pool.json"))
    ]


def apply_pools(names: list[str] | None = None, directory: Path = POOLS_DIR) -> list[str]:
    """Create or update the pools (all, or those named) on the server; one line per pool.

    Raises:
        LookupError: A named pool has no spec.
    """
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    specs = load_pool_specs(directory)
    if names:
        unknown = sorted(set(names) - {spec.name for spec in specs})
        if unknown:
            raise LookupError(f"no pool spec in {directory} for: {', '.join(unknown)}")
        specs = [spec for spec in specs if spec.name in names]
    lines = []
    with get_client(sync_client=True) as client:
        for spec in specs:
            template = spec.job_template(directory)
            if template is None:
                template = anyio.run(get_default_base_job_template_for_infrastructure_type, spec.type) or {}
            pool = client.create_work_pool(
                WorkPoolCreate(
                    name=spec.name,
                    type=spec.type,
                    description=spec.description,
                    base_job_template=template,
                    concurrency_limit=spec.concurrency_limit,
                ),
                overwrite=True,
            )
            lines.append(f"{pool.name} ({pool.type}, concurrency limit {pool.concurrency_limit})")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m deployments.pools [--pool NAME]...``."""
    parser = argparse.ArgumentParser(prog="python -m deployments.pools", description=__doc__.splitlines()[0])
    parser.add_argument("--pool", action="append", default=None, help="only this pool (repeatable)")
    args = parser.parse_args(argv)
    try:
        for line in apply_pools(args.pool):
            print(f"work pool {line}")
    except (LookupError, OSError, ValueError, httpx.HTTPError, SandboxError) as exc:
        # One line, no traceback: a missing deployment, an unreachable server, a bad fleet.yaml.
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
