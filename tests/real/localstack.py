"""The example fleet's ``infra/local-cluster`` stack driven by real terraform, and kubectl, for the real tier."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.localcluster.processes import find_local_cluster_processes
from tests.polling import poll

EXAMPLE_REPO = Path(__file__).resolve().parents[2] / "examples" / "fleet-repo"

STACK = EXAMPLE_REPO / "infra" / "local-cluster"
#: The Flux install for a local cluster (rendered from the toolchain by scripts/render_local_flux.py).
FLUX_COMPONENTS = EXAMPLE_REPO / "clusters" / "local" / "flux-system" / "gotk-components.yaml"


def run(argv: list[str], cwd: Path, timeout: float = 900, stdin: str | None = None) -> str:
    """Run ``argv``; its stdout, or an AssertionError with the end of its output."""
    env = {**os.environ, "TF_IN_AUTOMATION": "1"}
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False, input=stdin
    )
    assert done.returncode == 0, f"{' '.join(argv[:3])} exited {done.returncode}: {(done.stdout + done.stderr)[-3000:]}"
    return done.stdout


@dataclass
class LocalStack:
    """One working directory of the stack (its own state), as a sandbox's."""

    terraform: str
    workdir: Path
    name: str

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / ".local-cluster"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def _vars(self) -> list[str]:
        return ["-var", f"python={sys.executable}", "-var", f"cluster_name={self.name}"]

    def apply(self) -> dict[str, Any]:
        """``terraform apply``: the cluster runs; its outputs (the kubeconfig written to :attr:`kubeconfig`)."""
        if not self.workdir.exists():
            shutil.copytree(STACK, self.workdir)
            run([self.terraform, "init", "-input=false", "-no-color"], self.workdir)
        run([self.terraform, "apply", "-auto-approve", "-input=false", "-no-color", *self._vars()], self.workdir)
        outputs = json.loads(run([self.terraform, "output", "-json"], self.workdir))
        assert outputs["kubeconfig"]["sensitive"] is True
        self.kubeconfig.write_text(outputs["kubeconfig"]["value"], encoding="utf-8")
        self.kubeconfig.chmod(0o600)
        return {key: value["value"] for key, value in outputs.items()}

    def destroy(self) -> None:
        """``terraform destroy``: every process stopped, the cluster directory deleted."""
        run([self.terraform, "destroy", "-auto-approve", "-input=false", "-no-color", *self._vars()], self.workdir)

    def ports(self) -> set[int]:
        """Every port the control plane listens on (from the cluster's cluster.json)."""
        info = json.loads((self.cluster_dir / "cluster.json").read_text(encoding="utf-8"))
        return {port for roles in info["ports"].values() for port in roles.values()}


class Kubectl:
    """kubectl with one kubeconfig."""

    def __init__(self, binary: str, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
        return run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args],
            self.kubeconfig.parent,
            timeout=timeout,
            stdin=stdin,
        )

    def json(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json"))


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of type ``kind``."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


def running_components(cluster_dir: Path) -> set[str]:
    """The components of the local cluster in ``cluster_dir`` that have a live process."""
    return {p.component for p in find_local_cluster_processes(cluster_dir)}


def scale_flux_controller(k: Kubectl, cluster_dir: Path, controller: str, replicas: int) -> None:
    """Scale a Flux controller's Deployment; return once its host process has stopped (0) or runs (1)."""
    k("-n", "flux-system", "scale", "deployment", controller, f"--replicas={replicas}")
    if replicas:
        poll(f"{controller} started again", lambda: controller in running_components(cluster_dir) or None, 120)
    else:
        poll(f"{controller} stopped", lambda: controller not in running_components(cluster_dir) or None, 120)
