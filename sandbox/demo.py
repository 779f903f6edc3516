"""The demo's embedded defaults: an example fleet repo, a bare remote, a fleet.yaml.

``prepare_demo`` is idempotent: it finishes a half-made setup and leaves a
finished one untouched, so ``sandbox demo --workdir DIR`` can be rerun.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from sandbox.drivers.git import GitDriver
from sandbox.hardening import private_umask
from sandbox.lifecycle_request import LifecycleRequest, SandboxChange, ScalarChange
from sandbox.progress import Progress, quiet
from sandbox.wiring import build_git

EXAMPLE_REPO = Path(__file__).resolve().parents[1] / "examples" / "fleet-repo"
EXAMPLE_URL = "ssh://git@github.com/example-org/fleet-infra"
DEMO_SANDBOX = "sandbox-demo"
DEMO_RELEASE_TAG = "1.2.3"
#: The registry the example fleet's OCIRepositories name; the demo keeps it as an OCI
#: image layout directory (``<workdir>/registry``): no registry server, and simulated
#: clusters read the artifacts pushed there (:mod:`sandbox.drivers.oci_layout`).
DEMO_REGISTRY_URL = "oci://registry.example.com/fleet/platform"
DEMO_REGISTRY_LAYOUT = "registry"
#: Written once the demo's first release (its tag and OCI artifact) is published.
RELEASE_PUBLISHED_MARKER = ".demo-release-published"


def demo_config(workdir: Path) -> dict[str, object]:
    """The demo's fleet.yaml content."""
    module = "infra/cluster"
    return {
        "fleet_repo": {"remote": "remote.git", "default_branch": "main"},
        "environments": {
            "development": {
                "cluster_dir": "clusters/development",
                "tracking": {"type": "branch", "branch": "main"},
                "terraform": {
                    "module": module,
                    "variables": {"kubernetes_version": "1.31", "node_count": 1, "node_size": "small"},
                },
            },
            "staging": {
                "cluster_dir": "clusters/staging",
                "tracking": {"type": "semver", "range": "1.2.x"},
                "terraform": {
                    "module": module,
                    "variables": {"kubernetes_version": "1.31", "node_count": 3, "node_size": "large"},
                },
            },
            "production": {
                "cluster_dir": "clusters/production",
                "tracking": {"type": "tag", "tag": DEMO_RELEASE_TAG},
                "terraform": {
                    "module": module,
                    "variables": {"kubernetes_version": "1.31", "node_count": 3, "node_size": "large"},
                },
            },
        },
        "sandbox": {"default_ttl": "72h", "state_dir": "state"},
        # Illustrative per-node rates so `sandbox list` and cleanup reports show costs.
        "cost": {"currency": "USD", "hourly_rates": {"small": 0.05, "large": 0.4}},
        "drivers": {
            "cluster": {
                "type": "simulated",
                "simulation": {"readiness_delay_seconds": 0.2},
                "ready_timeout_seconds": 120,
                "teardown_timeout_seconds": 60,
            },
            "load_generator": {"users": 4, "duration_seconds": 2},
            "registry": {"url": DEMO_REGISTRY_URL, "layout_dir": DEMO_REGISTRY_LAYOUT},
        },
    }


#: Written first into a directory the demo takes, so a rerun knows the directory is the demo's.
DEMO_MARKER = ".fleet-sandbox-demo"
#: The first line of the fleet.yaml the demo writes (demos made before the marker have it).
DEMO_CONFIG_HEADER = "# fleet-sandbox demo configuration (written by `sandbox demo`)"


def _is_demo_dir(workdir: Path) -> bool:
    if (workdir / DEMO_MARKER).is_file():
        return True
    config = workdir / "fleet.yaml"
    if not config.is_file() or config.is_symlink():
        return False
    with config.open("rb") as handle:
        return handle.read(len(DEMO_CONFIG_HEADER)) == DEMO_CONFIG_HEADER.encode()


def claim_demo_workdir(workdir: Path, label: str = "--workdir") -> Path:
    """Check that ``workdir`` can be the demo's directory, and mark it, before anything else is written.

    A new or empty directory, or one a demo made, is taken; anything else is
    refused untouched: the demo (re)writes ``remote.git`` and ``fleet.yaml`` there.

    Args:
        workdir: The directory asked for.
        label: What the user set it with, named in errors (``--workdir``, or the environment variable).

    Returns:
        The directory, resolved.

    Raises:
        InvalidInputError: ``workdir`` is a file, a directory holding something
            else, or cannot be created or written.
    """
    from sandbox.errors import InvalidInputError

    workdir = workdir.expanduser().resolve()
    if workdir.exists() and not workdir.is_dir():
        raise InvalidInputError(f"{label} {workdir} is not a directory")
    if workdir.is_dir():
        if _is_demo_dir(workdir):
            if not os.access(workdir, os.W_OK):
                raise InvalidInputError(f"{label} {workdir} is not writable")
            return workdir
        if any(workdir.iterdir()):
            raise InvalidInputError(
                f"{label} {workdir} is not empty and not a demo directory (no {DEMO_MARKER}): "
                "give a new or empty directory"
            )
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / DEMO_MARKER).write_text("made by `sandbox demo`\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{label} {workdir} cannot be written: {exc.strerror or exc}") from None
    return workdir


#: The ``local`` environment's Terraform stack in the example fleet (a real cluster on this machine).
LOCAL_MODULE = "infra/local-cluster"


def local_demo_config(workdir: Path, flux_url: str, python: str) -> dict[str, object]:
    """The fleet.yaml of the demo on a real local cluster (``sandbox demo --cluster local``, ``make demo-local``).

    The environment ``local`` (a canary following ``main``), whose sandboxes each get their own local cluster from
    the ``infra/local-cluster`` stack (docs/local-cluster.md); the clusters are real, so the cluster driver is
    ``kubernetes`` and Flux fetches the fleet repository from ``flux_url`` (the demo's remote served over smart HTTP
    on loopback). The example's other environments are configured as in :func:`demo_config` (the fleet policy
    knows their directories for what they are), but nothing here provisions them.

    Args:
        workdir: The demo's directory.
        flux_url: Where the local clusters' source-controller fetches the remote, ``http://127.0.0.1:<port>/...``.
        python: The interpreter the stack's local-exec runs ``python -m sandbox.localcluster`` with (this venv's).
    """
    environments = dict(demo_config(workdir)["environments"])  # type: ignore[call-overload]
    return {
        "fleet_repo": {"remote": "remote.git", "default_branch": "main", "flux_url": flux_url},
        "environments": {
            **environments,
            "local": {
                "cluster_dir": "clusters/local",
                "canary": True,
                "tracking": {"type": "branch", "branch": "main"},
                "terraform": {
                    "module": LOCAL_MODULE,
                    "variables": {
                        "kubernetes_version": "1.36",
                        "node_count": 1,
                        "node_size": "kwok",
                        "python": python,
                    },
                },
            },
        },
        "sandbox": {"default_ttl": "72h", "state_dir": "state"},
        "drivers": {
            "cluster": {"type": "kubernetes", "ready_timeout_seconds": 300, "teardown_timeout_seconds": 120},
            "load_generator": {"users": 4, "duration_seconds": 2},
        },
        # The local clusters' nodes are simulated (kwok): no workload answers HTTP, so the
        # performance test loads the stand-in, by this explicit choice (a real cluster refuses otherwise).
        "performance": {"stand_in_on_real_clusters": True},
    }


def prepare_demo(
    workdir: Path, git: GitDriver | None = None, example: Path = EXAMPLE_REPO, *, development: bool = True
) -> Path:
    """Write the example fleet repo, its bare remote and fleet.yaml into ``workdir``.

    Args:
        workdir: The demo's directory.
        git: The git driver.
        example: The example fleet repository to start from.
        development: Also provision development's (simulated) cluster and bootstrap
            Flux on it from ``clusters/development`` (see :func:`ensure_development`).

    Returns:
        The path of the demo's fleet.yaml.
    """
    git = git or build_git()
    workdir = workdir.resolve()
    config_path = workdir / "fleet.yaml"
    # The demo's state (inventory, terraform state, the published release) is private as the CLI's is, also when
    # this is called from a process that did not harden itself (a test, the bench).
    with private_umask():
        if not config_path.exists():  # fleet.yaml is written last
            _write_repo_and_config(workdir, git, example)
        ensure_release_published(config_path)
        if development:
            ensure_development(config_path)
    return config_path


def ensure_release_published(config_path: Path) -> None:
    """Publish the demo release ``1.2.3`` (its tag is pushed already) as the OCI artifact staging and production read.

    Into the registry's OCI image layout, as ``sandbox release --existing-tag`` would:
    the whole release path (``sandbox release plan``, a new release, staging's range
    picking it up, production's plan and approval) then works on the demo. Idempotent.
    A configuration without ``drivers.registry.layout_dir`` (one edited by hand) is left alone.
    """
    from sandbox.config import load_config
    from sandbox.release.context import build_release_context
    from sandbox.release.publish import TaggedRelease, publish_artifact

    config = load_config(config_path)
    if config.drivers.registry is None or not config.drivers.registry.layout_dir:
        return
    marker = config.state_dir / RELEASE_PUBLISHED_MARKER
    if marker.is_file():
        return
    ctx = build_release_context(config)
    commit = ctx.git.remote_tags(ctx.remote).get(DEMO_RELEASE_TAG)
    if commit is None:
        return  # the demo's tag was deleted by hand: nothing to publish
    publish_artifact(ctx, TaggedRelease(version=DEMO_RELEASE_TAG, commit=commit, tag_created=False))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{DEMO_RELEASE_TAG} published to {config.drivers.registry.url}\n", encoding="utf-8")


#: Written once development's cluster is provisioned and bootstrapped.
DEVELOPMENT_READY_MARKER = ".demo-bootstrapped"


def ensure_development(config_path: Path, progress: Progress | None = None) -> Path:
    """Give the demo a development cluster, as a real fleet has one: provisioned and bootstrapped.

    The environment's cluster module is applied with development's variables
    (state in ``<state_dir>/environments/development/terraform``, the simulated
    cluster beside it), then Flux is installed from ``clusters/development``
    with its own gotk-sync.yaml, so it follows ``main`` of the demo's remote.
    ``sandbox watch development`` watches this cluster. Idempotent.

    Returns:
        Development's state directory.
    """
    from sandbox.config import load_config
    from sandbox.environments import bootstrap_environment, environment_state_dir, provision_environment
    from sandbox.wiring import build_drivers

    config = load_config(config_path)
    state = environment_state_dir(config, "development")
    if (state / DEVELOPMENT_READY_MARKER).is_file():
        return state
    drivers = build_drivers(config)
    report = progress or quiet
    cluster = provision_environment(config, "development", drivers.terraform, drivers.git, report)
    bootstrap_environment(config, "development", cluster, drivers.git, progress=report)
    (state / DEVELOPMENT_READY_MARKER).write_text("development provisioned and bootstrapped\n", encoding="utf-8")
    return state


def _write_repo_and_config(
    workdir: Path,
    git: GitDriver,
    example: Path,
    *,
    config: dict[str, object] | None = None,
    urls: dict[str, str] | None = None,
) -> None:
    config_path = workdir / "fleet.yaml"
    # The example names its fleet by URL; the demo's copy names the demo's remote instead.
    urls = urls if urls is not None else {EXAMPLE_URL: remote_uri(workdir)}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / DEMO_MARKER).write_text("made by `sandbox demo`\n", encoding="utf-8")
    remote = workdir / "remote.git"
    seed = workdir / "seed-checkout"
    for leftover in (remote, seed):  # a setup interrupted half-way starts over
        if leftover.exists():
            shutil.rmtree(leftover)
    git.init_bare(remote)
    shutil.copytree(example, seed)
    for path in seed.rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        replaced = text
        for old, new in urls.items():
            replaced = replaced.replace(old, new)
        if replaced != text:
            path.write_text(replaced, encoding="utf-8")
    git.init_repo(seed, str(remote))
    git.commit_all(seed, "fleet repository: clusters, platform stack, apps, cluster module")
    git.tag(seed, DEMO_RELEASE_TAG, f"platform {DEMO_RELEASE_TAG}")
    git.push(seed, "main")
    git.push_tag(seed, DEMO_RELEASE_TAG)
    shutil.rmtree(seed)
    tmp = config_path.with_suffix(".tmp")
    tmp.write_text(
        DEMO_CONFIG_HEADER
        + "\n"
        + yaml.safe_dump(config if config is not None else demo_config(workdir), sort_keys=False),
        encoding="utf-8",
    )
    tmp.rename(config_path)


def remote_uri(workdir: Path) -> str:
    """The ``file://`` URL of the demo's bare remote."""
    return (workdir.resolve() / "remote.git").as_uri()


def local_flux_url(port: int) -> str:
    """Where the local demo's clusters fetch its remote: ``remote.git`` served over smart HTTP on ``port``."""
    return f"http://127.0.0.1:{port}/remote.git"


def prepare_local_demo(workdir: Path, python: str, port: int, git: GitDriver | None = None) -> Path:
    """Write the local demo's fleet repo, bare remote and fleet.yaml into ``workdir`` (idempotent).

    Like :func:`prepare_demo`, but for :func:`local_demo_config`: every URL of the example that names the fleet
    (its GitHub URL, the ``local`` environment's loopback URL) becomes :func:`local_flux_url`, which the caller
    serves with :class:`sandbox.localcluster.git_http.GitHttpServer` (root ``workdir``) while clusters run.
    Nothing is provisioned here: each sandbox's cluster comes from its own ``infra/local-cluster`` stack.

    Returns:
        The path of the local demo's fleet.yaml.
    """
    from sandbox.localcluster.endpoints import LOCAL_FLEET_URL

    workdir = workdir.resolve()
    config_path = workdir / "fleet.yaml"
    if not config_path.exists():  # fleet.yaml is written last
        url = local_flux_url(port)
        _write_repo_and_config(
            workdir,
            git or build_git(),
            EXAMPLE_REPO,
            config=local_demo_config(workdir, url, python),
            urls={EXAMPLE_URL: url, LOCAL_FLEET_URL: url},
        )
    return config_path


#: The local demo's sandbox (its own local cluster).
LOCAL_DEMO_SANDBOX = "sandbox-local"


def local_demo_request(config_path: Path) -> LifecycleRequest:
    """The local demo's lifecycle: a platform sandbox from ``local`` that changes how often its configs sync."""
    return LifecycleRequest(
        config_path=str(config_path),
        name=LOCAL_DEMO_SANDBOX,
        source_env="local",
        ticket="OPS-2",
        summary="platform configs every 5m",
        change=SandboxChange(
            message="sync the platform configs every 5 minutes in the sandbox",
            edits=[
                ScalarChange(
                    file="platform.yaml",
                    kind="Kustomization",
                    name="platform-configs",
                    path=["spec", "interval"],
                    value="5m0s",
                )
            ],
        ),
    )


def demo_request(config_path: Path) -> LifecycleRequest:
    """The demo's lifecycle: a platform sandbox from development with a chart version bump."""
    return LifecycleRequest(
        config_path=str(config_path),
        name=DEMO_SANDBOX,
        source_env="development",
        ticket="OPS-1",
        summary="bump podinfo",
        change=SandboxChange(
            message="bump podinfo to 6.7.2 in the sandbox",
            edits=[
                ScalarChange(
                    file="apps.yaml",
                    kind="Kustomization",
                    name="apps",
                    path=["spec", "postBuild", "substitute", "podinfo_version"],
                    value="6.7.2",
                )
            ],
        ),
    )
