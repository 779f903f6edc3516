"""Application stacks on a platform sandbox: the Flux objects that deploy them, and applying them.

The seed asks platform engineers to deploy the application teams' stacks onto a
platform sandbox and confirm a healthy state before a platform change reaches
the teams. Each stack configured in ``validation.application_stacks`` becomes a
GitRepository and a Kustomization named ``app-<name>`` in ``flux-system`` (what
``flux create source git`` and ``flux create kustomization`` would make),
applied straight to the sandbox's cluster by the validate stage -- never
committed to the sandbox branch, so promotion never carries them back.

Readiness is then waited for like every other Flux object, and teardown deletes
them first (tier ``applications``): their workloads may hold load balancers and
volumes that the platform's controllers must still be running to clean up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from sandbox.config import ApplicationStack, FleetConfig
from sandbox.drivers.cluster import FLUX_NAMESPACE, GITREPOSITORY_API, KUSTOMIZATION_API, ClusterDriver, Manifest

#: Prefix of the Flux objects of a stack (``app-<name>``).
OBJECT_PREFIX = "app-"
#: Label on every object this module applies: which stack it deploys.
STACK_LABEL = "fleet-sandbox.io/application-stack"
#: The sandbox's own git credentials secret (written by bootstrap), for stacks in the fleet repository.
FLEET_SECRET = "flux-system"

_TEARDOWN_TIER = "fleet-sandbox.io/teardown-tier"


def object_name(stack: ApplicationStack) -> str:
    """``app-<name>``: the GitRepository and the Kustomization of a stack."""
    return f"{OBJECT_PREFIX}{stack.name}"


def _kustomization_path(path: str) -> str:
    normal = PurePosixPath(path.strip()).as_posix()
    return "./" if normal in ("", ".") else f"./{normal.removeprefix('./')}"


def auth_secret_name(stack: ApplicationStack) -> str:
    """``app-<name>-auth``: the Secret with the token that reads a stack's repository."""
    return f"{object_name(stack)}-auth"


def stack_manifests(stack: ApplicationStack, *, url: str, fleet_url: str, token: str | None = None) -> list[Manifest]:
    """The objects that deploy ``stack`` from ``url``: a credentials Secret (with a token), source, Kustomization.

    Args:
        stack: The stack's configuration.
        url: Its repository's git URL.
        fleet_url: The fleet repository's URL: a stack kept there reads it with
            the sandbox's own ``flux-system`` secret.
        token: A token that reads the stack's repository (from the stack's
            Secret block or environment variable); written into the sandbox
            as ``app-<name>-auth``, never logged.
    """
    name = object_name(stack)
    labels = {STACK_LABEL: stack.name}
    ref = {"tag": stack.tag} if stack.tag else {"branch": stack.branch}
    source_spec: dict[str, Any] = {"interval": "1m0s", "ref": ref, "url": url}
    documents: list[Manifest] = []
    if token:
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": auth_secret_name(stack), "namespace": FLUX_NAMESPACE, "labels": labels},
                "type": "Opaque",
                "stringData": {"username": "git", "password": token},
            }
        )
        source_spec["secretRef"] = {"name": auth_secret_name(stack)}
    elif url == fleet_url:
        source_spec["secretRef"] = {"name": FLEET_SECRET}
    kustomization_spec: dict[str, Any] = {
        "interval": "10m0s",
        "path": _kustomization_path(stack.path),
        "prune": True,
        "wait": True,
        "sourceRef": {"kind": "GitRepository", "name": name},
    }
    if stack.target_namespace:
        kustomization_spec["targetNamespace"] = stack.target_namespace
    return [
        *documents,
        {
            "apiVersion": GITREPOSITORY_API,
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": FLUX_NAMESPACE, "labels": labels},
            "spec": source_spec,
        },
        {
            "apiVersion": KUSTOMIZATION_API,
            "kind": "Kustomization",
            "metadata": {
                "name": name,
                "namespace": FLUX_NAMESPACE,
                "labels": labels,
                # Workloads hold custom objects (ingresses, volumes): deleted before the platform.
                "annotations": {_TEARDOWN_TIER: "applications"},
            },
            "spec": kustomization_spec,
        },
    ]


def fleet_repo_paths(config: FleetConfig) -> list[str]:
    """The repository paths of the stacks kept in the fleet repository (the static scan reads them too).

    A stack at the repository's root is left out: that would scan every
    environment's clusters, not the stack.
    """
    paths = (
        _kustomization_path(stack.path).removeprefix("./")
        for stack in config.validation.application_stacks
        if config.is_fleet_url(config.stack_url(stack))
    )
    return [path for path in paths if path]


def manifests_for(config: FleetConfig, tokens: Mapping[str, str] | None = None) -> list[Manifest]:
    """The objects of every configured stack, each stack's credentials and source before its Kustomization.

    Args:
        config: The fleet configuration.
        tokens: Tokens by stack name, resolved by the caller from each stack's
            Secret block or environment variable.

    Raises:
        ConfigError: A stack's URL is one Flux on a real cluster cannot fetch
            (a local path, an scp-style address, an ssh:// one the sandbox
            holds no key for), naming the stack's key.
    """
    documents: list[Manifest] = []
    for index, stack in enumerate(config.validation.application_stacks):
        token = (tokens or {}).get(stack.name)
        url = config.checked_stack_url(index, stack)
        documents += stack_manifests(stack, url=url, fleet_url=config.flux_url, token=token)
    return documents


def deploy(cluster: ClusterDriver, manifests: Iterable[Manifest], progress: Callable[[str], Any]) -> list[str]:
    """Apply the stacks' objects (server-side apply: a rerun changes nothing); the stack names deployed."""
    deployed: list[str] = []
    for manifest in manifests:
        cluster.apply(manifest)
        if manifest["kind"] == "Kustomization":
            stack = manifest["metadata"]["labels"][STACK_LABEL]
            deployed.append(stack)
            progress(
                f"application stack {stack}: applied GitRepository and Kustomization "
                f"{FLUX_NAMESPACE}/{manifest['metadata']['name']} (path {manifest['spec']['path']})"
            )
    return deployed
