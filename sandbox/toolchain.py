"""Where the real-cluster binaries are: kube-apiserver, etcd, kwok, the Flux controllers, semver-peer.

``make toolchain`` (scripts/toolchain.py) builds them from the pinned Go modules in ``toolchain/`` into a cache
outside the checkout; this module finds them from the same manifest, ``toolchain/components.json``, without
running anything (no subprocess, no Go). The cache file names carry a short hash of the component's manifest entry
and of its wrapper files, computed here exactly as the script computes it, so a binary built from other pins is
never picked up. tests/unit/test_toolchain.py checks that both agree.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import ToolNotFoundError

#: The checkout this module lives in; the manifest and wrapper folders are read from there.
REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "FLEET_SANDBOX_CACHE"


@dataclass(frozen=True)
class ToolchainFile:
    """One binary or data file of the toolchain, and whether ``make toolchain`` has built it."""

    name: str
    component: str
    version: str
    path: Path
    kind: str  # "binary" or "data"

    @property
    def built(self) -> bool:
        return self.path.is_file()


def cache_root() -> Path:
    """``$FLEET_SANDBOX_CACHE``, else ``~/.cache/fleet-sandbox`` (the same rule as scripts/toolchain.py)."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "fleet-sandbox"


def _manifest(repo: Path) -> list[dict[str, Any]]:
    doc = json.loads((repo / "toolchain" / "components.json").read_text())
    components: list[dict[str, Any]] = doc["components"]
    return components


def _key(entry: dict[str, Any], repo: Path) -> str:
    # Must match scripts/toolchain.py component_key: the entry as sorted JSON, then each wrapper file by name.
    digest = hashlib.sha256(json.dumps(entry, sort_keys=True).encode())
    if entry.get("dir"):
        wrapper = repo / "toolchain" / entry["dir"]
        for path in sorted(p for p in wrapper.iterdir() if p.is_file()):
            digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def files(repo: Path = REPO_ROOT, cache: Path | None = None) -> dict[str, ToolchainFile]:
    """Every binary and data file the manifest names (built or not), by name; unavailable components are left out."""
    root = cache if cache is not None else cache_root()
    found: dict[str, ToolchainFile] = {}
    for entry in _manifest(repo):
        if entry.get("unavailable"):
            continue
        key = _key(entry, repo)
        name, version = entry["name"], entry["version"]
        for binary in entry.get("binaries", {}):
            path = root / "bin" / f"{binary}-{version}-{key}"
            found[binary] = ToolchainFile(binary, name, version, path, "binary")
        for data in entry.get("data", {}):
            path = root / "data" / f"{data}-{version}-{key}.yaml"
            found[data] = ToolchainFile(data, name, version, path, "data")
    return found


def locate(name: str, repo: Path = REPO_ROOT, cache: Path | None = None) -> Path:
    """The path of a built binary or data file (``kube-apiserver``, ``source-controller-crds``, ...).

    Raises:
        ToolNotFoundError: the manifest does not name it, or it is not built yet (run ``make toolchain``).
    """
    known = files(repo, cache)
    if name not in known:
        raise ToolNotFoundError(f"{name} is not part of the toolchain (toolchain/components.json)")
    item = known[name]
    if not item.built:
        raise ToolNotFoundError(f"{name} {item.version} is not built: run `make toolchain` (looked for {item.path})")
    return item.path
