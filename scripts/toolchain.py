#!/usr/bin/env python3
"""Build the real-cluster toolchain (kube-apiserver, etcd, kwok, Flux controllers, ...) from Go modules.

``make toolchain`` runs this. It reads ``toolchain/components.json`` and, for every component whose binaries or
data files are missing from the cache, builds them from the component's wrapper module ``toolchain/<dir>``
(a go.mod + go.sum that pin the upstream module and restate its replaces). Python 3.11 stdlib only: it runs
before the project's venv exists.

Cache layout, outside the checkout (``$FLEET_SANDBOX_CACHE``, default ``~/.cache/fleet-sandbox``)::

    bin/<binary>-<version>-<key>        e.g. bin/kube-apiserver-v1.36.3-3f9c2a71d0
    data/<data name>-<version>-<key>.yaml

``<key>`` is a short hash of the component's manifest entry and of every file in its wrapper folder (go.mod,
go.sum, main.go), so any change of a pin, a replace or an ldflag names a new file and triggers a rebuild, while
old files are left alone (a checkout of an older commit still finds its own binaries). sandbox/toolchain.py
computes the same paths from the same manifest; tests/unit/test_toolchain.py checks that the two agree.

Options: ``--json`` / ``--print-env`` print where everything is (no build, no go needed), ``--only NAME`` builds the
named components (also those skipped by default, e.g. opentofu when terraform is on PATH).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "toolchain" / "components.json"

#: A cold kube-apiserver build took ~15 min on 2 loaded cores; an hour per binary means something hangs.
BUILD_TIMEOUT_S = 3600
#: Module downloads and `go env`; the proxy answers in seconds when it answers at all.
GO_QUERY_TIMEOUT_S = 600
CHECK_TIMEOUT_S = 60
#: How long go gets to clean up after SIGINT before it is killed.
STOP_GRACE_S = 15
#: How much of the Go error the one failure line carries.
ERROR_TAIL_CHARS = 400

#: Words in go's output that mean the module proxy could not be reached (as opposed to refusing a version).
UNREACHABLE_MARKERS = (
    "dial tcp",
    "no such host",
    "connection refused",
    "i/o timeout",
    "TLS handshake timeout",
    "network is unreachable",
    "Client.Timeout exceeded",
)


class ToolchainError(Exception):
    """A failure shown to the user as one line (no traceback)."""


class ProxyUnreachableError(ToolchainError):
    """Every further component would fail the same way: stop at once."""


@dataclass(frozen=True)
class Component:
    """One entry of toolchain/components.json."""

    name: str
    module: str
    version: str
    dir: str = ""
    binaries: dict[str, str] = field(default_factory=dict)
    build_flags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    check: dict[str, Any] = field(default_factory=dict)
    data: dict[str, list[str]] = field(default_factory=dict)
    skip_if_on_path: str = ""
    unavailable: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def wrapper(self) -> Path:
        return REPO / "toolchain" / self.dir


def load_components(manifest: Path = MANIFEST) -> list[Component]:
    try:
        doc = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise ToolchainError(f"cannot read {manifest}: {exc}") from exc
    components = []
    for entry in doc["components"]:
        components.append(
            Component(
                name=entry["name"],
                module=entry["module"],
                version=entry["version"],
                dir=entry.get("dir", ""),
                binaries=dict(entry.get("binaries", {})),
                build_flags=tuple(entry.get("build_flags", ())),
                ldflags=tuple(entry.get("ldflags", ())),
                check=dict(entry.get("check", {})),
                data={k: list(v) for k, v in entry.get("data", {}).items()},
                skip_if_on_path=entry.get("skip_if_on_path", ""),
                unavailable=entry.get("unavailable", ""),
                raw=entry,
            )
        )
    return components


def cache_root() -> Path:
    configured = os.environ.get("FLEET_SANDBOX_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "fleet-sandbox"


def component_key(component: Component) -> str:
    """The short hash in every cached file name (same rule as sandbox/toolchain.py: keep them in step)."""
    digest = hashlib.sha256(json.dumps(component.raw, sort_keys=True).encode())
    if component.dir:
        for path in sorted(p for p in component.wrapper.iterdir() if p.is_file()):
            digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def binary_paths(component: Component, root: Path) -> dict[str, Path]:
    key = component_key(component)
    return {name: root / "bin" / f"{name}-{component.version}-{key}" for name in component.binaries}


def data_paths(component: Component, root: Path) -> dict[str, Path]:
    key = component_key(component)
    return {name: root / "data" / f"{name}-{component.version}-{key}.yaml" for name in component.data}


def is_cached(component: Component, root: Path) -> bool:
    wanted = [*binary_paths(component, root).values(), *data_paths(component, root).values()]
    return all(path.is_file() for path in wanted)


def go_env() -> dict[str, str]:
    """The machine's environment (GOPROXY, GOSUMDB, GOFLAGS, GOCACHE stay as configured) plus the build rules."""
    env = dict(os.environ)
    # Fail loudly instead of downloading another Go when a go.mod names a newer one; static binaries.
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "0"
    return env


def tail(text: str) -> str:
    """The last lines of go's output on one line, bounded."""
    # "go: downloading M v" progress lines say nothing about the failure.
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("go: downloading ")]
    joined = " | ".join(lines[-4:])
    return joined if len(joined) <= ERROR_TAIL_CHARS else "..." + joined[-ERROR_TAIL_CHARS:]


def stop_group(proc: subprocess.Popen[str]) -> None:
    """Interrupt go and its compilers, then kill what is left.

    SIGINT first: go then removes its /tmp/go-build* work dir (hundreds of MB for a big build), which SIGKILL leaves.
    """
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.communicate(timeout=grace)  # keep draining its output: go blocked on a full pipe would not exit
            return
        except subprocess.TimeoutExpired:
            continue


def run_go(argv: list[str], cwd: Path, timeout: float) -> str:
    """Run a go command; its own process group, so a timeout or Ctrl-C also stops the compilers it started."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=go_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException as exc:  # timeout, KeyboardInterrupt: nothing of the group may outlive us
        stop_group(proc)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise ToolchainError(f"{' '.join(argv[:2])} did not finish in {timeout:.0f}s") from None
        raise
    if proc.returncode != 0:
        if any(marker in out for marker in UNREACHABLE_MARKERS):
            proxy = go_env().get("GOPROXY") or "the default GOPROXY"
            raise ProxyUnreachableError(f"Go module proxy unreachable ({proxy}): {tail(out)}")
        raise ToolchainError(tail(out))
    return out


def module_dir(component: Component, module: str) -> Path:
    """Where the module zip is unpacked (downloading it if needed), resolved inside the wrapper module."""
    out = run_go(["go", "mod", "download", "-json", module], component.wrapper, GO_QUERY_TIMEOUT_S)
    info = json.loads(out[out.index("{") :])
    if info.get("Error"):
        raise ToolchainError(info["Error"])
    return Path(info["Dir"])


def ldflags(component: Component) -> str:
    return " ".join(flag.replace("{version}", component.version) for flag in component.ldflags)


def check_binary(component: Component, name: str, path: Path) -> None:
    """Start the new binary once: a build that links but cannot start must not enter the cache."""
    if not component.check:
        return
    argv = [str(path), *component.check["args"]]
    try:
        result = subprocess.run(
            argv, cwd=path.parent, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{name} {' '.join(component.check['args'])} did not exit in {CHECK_TIMEOUT_S}s") from exc
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise ToolchainError(f"{name} {' '.join(component.check['args'])} exited {result.returncode}: {tail(output)}")
    expect = component.check.get("expect")
    if expect and expect not in output:
        raise ToolchainError(f"{name} {' '.join(component.check['args'])} does not say {expect}: {tail(output)}")


def build(component: Component, root: Path, jobs: int) -> None:
    """Build every binary and data file of a component into a temp dir, then move each into place atomically."""
    for sub in ("bin", "data", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # tmp/ is on the cache's filesystem, so os.replace is an atomic rename; nothing half-written is ever visible.
    with tempfile.TemporaryDirectory(prefix=f"{component.name}-", dir=root / "tmp") as tmp_name:
        tmp = Path(tmp_name)
        staged: list[tuple[Path, Path]] = []
        for name, dest in binary_paths(component, root).items():
            out = tmp / name
            argv = ["go", "build", f"-p={jobs}", "-trimpath", "-buildvcs=false", *component.build_flags]
            argv += [f"-ldflags={ldflags(component)}", "-o", str(out), component.binaries[name]]
            run_go(argv, component.wrapper, BUILD_TIMEOUT_S)
            check_binary(component, name, out)
            staged.append((out, dest))
        if component.data:
            source = module_dir(component, f"{component.module}@{component.version}")
            for name, dest in data_paths(component, root).items():
                out = tmp / f"{name}.yaml"
                out.write_text(collect_yaml(source, component.data[name]))
                staged.append((out, dest))
        for out, dest in staged:
            os.replace(out, dest)


def collect_yaml(source: Path, patterns: list[str]) -> str:
    """Concatenate the module's YAML files (in the manifest's order, globs sorted) into one multi-document file."""
    docs = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(source / pattern)))
        if not matches:
            raise ToolchainError(f"{pattern} not found in {source}")
        for match in matches:
            text = Path(match).read_text().strip()
            text = text.removeprefix("---").strip()
            docs.append(f"# from {Path(match).relative_to(source)}\n{text}\n")
    return "---\n".join(docs)


@contextlib.contextmanager
def cache_lock(root: Path) -> Iterator[None]:
    """One `make toolchain` at a time per cache: two would build the same binaries twice and race on tmp/."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"toolchain: another build holds {root / '.lock'}; waiting for it", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        # Leftovers of a killed run (SIGKILL skips the temp dir cleanup); safe under the lock.
        shutil.rmtree(root / "tmp", ignore_errors=True)
        yield


def require_go() -> None:
    if shutil.which("go") is None:
        raise ToolchainError("go not found on PATH (Go 1.26 is needed to build the toolchain)")


def describe(component: Component, root: Path) -> dict[str, Any]:
    return {
        "version": component.version,
        "module": component.module,
        "available": not component.unavailable,
        "unavailable": component.unavailable or None,
        "built": bool(component.binaries or component.data) and is_cached(component, root),
        "binaries": {name: str(path) for name, path in binary_paths(component, root).items()},
        "data": {name: str(path) for name, path in data_paths(component, root).items()},
    }


def print_json(components: list[Component], root: Path) -> None:
    doc = {"cache": str(root), "components": {c.name: describe(c, root) for c in components}}
    print(json.dumps(doc, indent=2))


def print_env(components: list[Component], root: Path) -> None:
    """Shell assignments, one per binary or data file: FLEET_SANDBOX_TOOL_KUBE_APISERVER=/path (built ones only)."""
    for component in components:
        if component.unavailable:
            continue
        paths = {**binary_paths(component, root), **data_paths(component, root)}
        for name, path in paths.items():
            if path.is_file():
                print(f"FLEET_SANDBOX_TOOL_{name.upper().replace('-', '_')}={path}")


def build_missing(components: list[Component], root: Path, only: set[str]) -> int:
    jobs = len(os.sched_getaffinity(0))
    wanted = [c for c in components if not only or c.name in only]
    todo: list[Component] = []
    for component in wanted:
        if component.unavailable:
            print(f"toolchain: {component.name} {component.version} not available: {component.unavailable}")
        elif component.skip_if_on_path and not only and shutil.which(component.skip_if_on_path):
            found = shutil.which(component.skip_if_on_path)
            print(f"toolchain: {component.name} {component.version} skipped ({component.skip_if_on_path} at {found})")
        elif is_cached(component, root):
            continue
        else:
            todo.append(component)
    # Asked for by name (--only), a component that cannot be had is a failure; in the full run it is only reported.
    refused = 1 if only and any(c.unavailable for c in wanted) else 0
    if not todo:
        if not refused:
            print(f"toolchain: all cached in {root}")
        return refused
    require_go()
    started = time.monotonic()
    failed = 0
    with cache_lock(root):
        # One component at a time: a kube-apiserver link alone takes GBs of memory; `-p` parallelises within it.
        for component in todo:
            if is_cached(component, root):  # built by the run we waited for
                continue
            # The line is finished when the build is, so a long build shows what it is busy with.
            print(f"toolchain: {component.name} {component.version} ...", end="", flush=True)
            begin = time.monotonic()
            try:
                build(component, root, jobs)
            except ProxyUnreachableError as exc:
                # Every further component would fail the same way: the one line says what is missing, and stops.
                print(f" stopped: {exc}", flush=True)
                return 1
            except ToolchainError as exc:
                # Go on with the others: one unbuildable component should not hold back the rest.
                print(f" FAILED after {time.monotonic() - begin:.0f}s: {exc}", flush=True)
                failed += 1
                continue
            except BaseException:
                print(" interrupted")
                raise
            print(f" built in {time.monotonic() - begin:.0f}s ({', '.join(component.binaries)})", flush=True)
    print(f"toolchain: {len(todo) - failed} built, {failed} failed in {time.monotonic() - started:.0f}s; cache {root}")
    return 1 if failed or refused else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # go runs in its own process group (so that it can be stopped as a whole): a SIGTERM to this script (make killed,
    # a CI time-out) must therefore be turned into the same clean stop as Ctrl-C, or the build would go on orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print where each binary and data file is, as JSON")
    mode.add_argument("--print-env", action="store_true", help="print NAME=path lines for the built files")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="build only this component")
    args = parser.parse_args(argv)
    try:
        components = load_components()
        root = cache_root()
        unknown = set(args.only) - {c.name for c in components}
        if unknown:
            raise ToolchainError(f"unknown component {', '.join(sorted(unknown))}")
        if args.json:
            print_json(components, root)
            return 0
        if args.print_env:
            print_env(components, root)
            return 0
        return build_missing(components, root, set(args.only))
    except ToolchainError as exc:
        print(f"toolchain: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("toolchain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
