"""The OCI registry driver: Flux artifacts of the platform stack (and Helm charts).

The artifacts themselves (their media types, tarballs and manifests, built byte for
byte) are :mod:`sandbox.drivers.oci_artifact`'s; the driver pushes and reads them.

* :class:`OrasRegistry` speaks the OCI distribution API through oras-py (its session,
  token/basic authentication and docker config credentials, blob uploads), with its
  own manifest upload so the bytes, and so the digest, are exactly the ones built here.
  A Helm chart goes up through the same code (:meth:`OrasRegistry.push_helm_chart`).
* :class:`FluxCliRegistry` pushes with ``flux push artifact`` instead (when the flux
  CLI is on PATH, unless ``push_with: oras``) and reads with oras.
* :class:`InMemoryRegistry` is the fake for tests without a registry.

Every implementation refuses to push a tag that already exists: a published release
is never overwritten. (The OCI API has no conditional manifest PUT, so two pushes of
the same new tag at the same instant can still race; releases run one at a time.)
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from sandbox.config import RegistryConfig
from sandbox.drivers.oci_artifact import (
    FLUX_CONTENT_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE,
    REVISION_ANNOTATION,
    FluxArtifact,
    HelmChartArtifact,
)
from sandbox.drivers.oci_artifact import sha256_digest as _sha256
from sandbox.errors import ConflictError, PermanentError, RetryableError, SandboxError
from sandbox.proc import Command, CompletedCommand, run, tail
from sandbox.redaction import redact, register_basic_auth

# Distribution spec: tags.
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# -- errors ---------------------------------------------------------------------------


class RegistryError(PermanentError):
    """The registry refused a request (not found, invalid manifest, denied)."""


class RegistryAuthError(RegistryError):
    """The registry rejected our credentials (or demanded some we do not have)."""


class RegistryUnavailableError(RetryableError):
    """The registry did not answer, or answered with a temporary failure."""


class ArtifactExistsError(ConflictError):
    """The tag already exists in the registry; published artifacts are never overwritten."""


# -- configuration --------------------------------------------------------------------
# The settings (``drivers.registry`` in fleet.yaml) are :class:`sandbox.config.RegistryConfig`,
# re-exported here for the driver's users.


@dataclass(frozen=True)
class RegistryCredentials:
    """Username and password (or token) for the registry; the password is never printed."""

    username: str
    password: str = field(repr=False)


def validate_tag(tag: str) -> str:
    """Check ``tag`` is a valid OCI tag.

    Raises:
        RegistryError: Not a valid tag.
    """
    if not _TAG_RE.fullmatch(tag):
        raise RegistryError(f"{tag!r} is not a valid OCI tag")
    return tag


class LayerDescriptor(BaseModel):
    """A blob a manifest refers to."""

    media_type: str
    digest: str
    size: int


class ArtifactManifest(BaseModel):
    """A manifest read from the registry."""

    tag: str
    digest: str
    media_type: str
    config: LayerDescriptor
    layers: list[LayerDescriptor]
    annotations: dict[str, str] = Field(default_factory=dict)

    @property
    def revision(self) -> str | None:
        """``org.opencontainers.image.revision``."""
        return self.annotations.get(REVISION_ANNOTATION)


class PushedArtifact(BaseModel):
    """An artifact now in the registry."""

    url: str = Field(description="oci://host/repository:tag")
    tag: str
    digest: str = Field(description="Manifest digest")


def _parse_manifest(tag: str, digest: str, data: Mapping[str, Any]) -> ArtifactManifest:
    def descriptor(raw: Mapping[str, Any]) -> LayerDescriptor:
        return LayerDescriptor(media_type=raw.get("mediaType", ""), digest=raw["digest"], size=int(raw["size"]))

    try:
        return ArtifactManifest(
            tag=tag,
            digest=digest,
            media_type=data.get("mediaType", ""),
            config=descriptor(data["config"]),
            layers=[descriptor(layer) for layer in data.get("layers", [])],
            annotations=dict(data.get("annotations") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"manifest of {tag} is not an OCI image manifest ({type(exc).__name__})") from None


def content_layer(manifest: ArtifactManifest) -> LayerDescriptor:
    """The Flux content layer of a manifest.

    Raises:
        RegistryError: The manifest has no layer of Flux's content media type.
    """
    for layer in manifest.layers:
        if layer.media_type == FLUX_CONTENT_MEDIA_TYPE:
            return layer
    raise RegistryError(f"{manifest.tag} is not a Flux artifact: no {FLUX_CONTENT_MEDIA_TYPE} layer")


# -- the Protocol -----------------------------------------------------------------------


@runtime_checkable
class OciRegistry(Protocol):
    """One OCI repository holding the platform stack's artifacts."""

    url: str

    def list_tags(self) -> list[str]:
        """Every tag in the repository, in registry order (empty when it has none yet)."""
        ...

    def get_manifest(self, tag: str) -> ArtifactManifest | None:
        """The manifest under ``tag``, or ``None`` when the tag does not exist."""
        ...

    def push_artifact(self, tag: str, artifact: FluxArtifact) -> PushedArtifact:
        """Upload ``artifact`` under the new ``tag``; refuse an existing tag (:class:`ArtifactExistsError`)."""
        ...

    def pull_content(self, tag: str) -> bytes:
        """The Flux content layer (gzipped tar) of the artifact under ``tag``."""
        ...


def registry_status_error(status: int, message: str) -> RegistryError | RegistryUnavailableError:
    """The error for a registry that answered HTTP ``status``: how every path here classifies it.

    401 and 403 are rejected credentials (:class:`RegistryAuthError`, permanent); 429
    and 5xx a registry that is overloaded or down (:class:`RegistryUnavailableError`,
    retried); anything else a refusal (:class:`RegistryError`, permanent). The oras
    path reads the status from the response, ``flux push`` from what flux prints
    (:func:`classify_flux_push`).
    """
    if status in (401, 403):
        return RegistryAuthError(message)
    if status == 429 or status >= 500:
        return RegistryUnavailableError(message)
    return RegistryError(message)


def _exists_error(url: str, tag: str) -> ArtifactExistsError:
    return ArtifactExistsError(f"registry tag {tag} already exists in {url}; published artifacts are never overwritten")


# -- the in-memory fake ---------------------------------------------------------------------


class InMemoryRegistry:
    """An :class:`OciRegistry` in memory, for tests that need no registry.

    Args:
        url: The repository URL it pretends to be.
    """

    def __init__(self, url: str = "oci://registry.invalid/fleet/platform") -> None:
        self.url = url
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.pushes = 0

    def list_tags(self) -> list[str]:
        """Tags in push order."""
        return list(self.manifests)

    def get_manifest(self, tag: str) -> ArtifactManifest | None:
        """The stored manifest, or ``None``."""
        raw = self.manifests.get(tag)
        return None if raw is None else _parse_manifest(tag, _sha256(raw), json.loads(raw))

    def push_artifact(self, tag: str, artifact: FluxArtifact) -> PushedArtifact:
        """Store the artifact under a new tag."""
        validate_tag(tag)
        if tag in self.manifests:
            raise _exists_error(self.url, tag)
        self.blobs[_sha256(artifact.config)] = artifact.config
        self.blobs[_sha256(artifact.layer)] = artifact.layer
        self.manifests[tag] = artifact.manifest
        self.pushes += 1
        return PushedArtifact(url=f"{self.url}:{tag}", tag=tag, digest=artifact.digest)

    def pull_content(self, tag: str) -> bytes:
        """The content layer under ``tag``."""
        manifest = self.get_manifest(tag)
        if manifest is None:
            raise RegistryError(f"{self.url}:{tag} does not exist")
        return self.blobs[content_layer(manifest).digest]


# -- where credentials may go ------------------------------------------------------------


def _netloc(scheme: str, host: str, port: int | None) -> tuple[str, int]:
    return host.lower().strip("[]"), port or (443 if scheme == "https" else 80)


def token_realm_problem(realm: str, settings: RegistryConfig) -> str | None:
    """Why the registry's credentials must not go to ``realm`` (``None``: they may).

    A registry answering 401 names a token realm; oras would send it the username
    and password (basic auth) to get a token, wherever it is. They go only to the
    registry's own host and port, over https -- or plain http when the registry
    itself is configured ``insecure``, which is only allowed on this machine.
    """
    from urllib.parse import urlsplit

    from sandbox.hardening import is_loopback

    registry_scheme = "http" if settings.insecure else "https"
    registry = urlsplit(f"{registry_scheme}://{settings.host}")
    parts = urlsplit(realm if "://" in realm else f"{registry_scheme}://{realm}")
    try:
        where = _netloc(parts.scheme, parts.hostname or "", parts.port)
    except ValueError:
        return "not a URL"
    if where != _netloc(registry.scheme, registry.hostname or "", registry.port):
        return f"not the registry's own host {settings.host}"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and settings.insecure and is_loopback(parts.hostname):
        return None
    return "not https"


def _guard_token_realm(auth: Any, settings: RegistryConfig) -> None:
    """Make oras' token backend refuse a realm :func:`token_realm_problem` objects to, before it sends anything."""
    request_token = getattr(auth, "request_token", None)
    if request_token is None:
        return  # basic auth: credentials only ever go to the registry itself

    def guarded(header: Any) -> Any:
        realm = str(getattr(header, "realm", "") or "")
        problem = token_realm_problem(realm, settings)
        if problem is not None:
            shown = redact(realm.split("?", 1)[0])[:200]
            raise RegistryAuthError(
                f"registry {settings.host}: refusing to send the registry credentials to the token realm "
                f"{shown}: {problem}"
            )
        return request_token(header)

    auth.request_token = guarded


# -- oras-py ---------------------------------------------------------------------------


def _oras_registry_class() -> type[Any]:
    """An oras ``Registry`` whose requests neither retry nor wait forever.

    oras-py retries every failed request up to five times with sleeps growing to 83
    seconds; Prefect's task retries (for :class:`RegistryUnavailableError` only) are
    the one retry policy here, so the undecorated request function is used. A
    transport adapter gives every request a timeout (oras passes none).
    """
    import oras.provider
    import requests
    from requests.adapters import HTTPAdapter

    undecorated = getattr(oras.provider.Registry.do_request, "__wrapped__", oras.provider.Registry.do_request)

    class _TimeoutAdapter(HTTPAdapter):
        def __init__(self, timeout: float) -> None:
            super().__init__()
            self.timeout = timeout

        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = self.timeout
            return super().send(request, **kwargs)

    class _Registry(oras.provider.Registry):
        def __init__(self, *args: Any, timeout: float, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            adapter = _TimeoutAdapter(timeout)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)

        def do_request(self, *args: Any, **kwargs: Any) -> requests.Response:
            return undecorated(self, *args, **kwargs)

    return _Registry


class OrasRegistry:
    """:class:`OciRegistry` over the OCI distribution API, through oras-py.

    Args:
        settings: Where the repository is and how to reach it.
        credentials: Explicit credentials; without them the docker config
            (``~/.docker/config.json`` and its credential helpers) is used, as Flux does.
    """

    def __init__(self, settings: RegistryConfig, credentials: RegistryCredentials | None = None) -> None:
        import oras.container

        self.settings = settings
        self.url = settings.url
        self._secrets = tuple(s for s in (credentials.password if credentials else "",) if s)
        if credentials is not None:
            register_basic_auth(credentials.username, credentials.password)
        registry_class = _oras_registry_class()
        self._oras = registry_class(
            hostname=settings.host,
            insecure=settings.insecure,
            auth_backend=settings.auth,
            timeout=settings.timeout_seconds,
        )
        namespace, _, name = settings.repository.rpartition("/")
        self._container = oras.container.Container(f"{settings.repository}:latest", registry=settings.host)
        # Set explicitly: oras' name parser would take a dotted first path segment for a host.
        self._container.registry = settings.host
        self._container.namespace = namespace or None
        self._container.repository = name
        _guard_token_realm(self._oras.auth, settings)  # before any credential is set or sent
        if credentials is not None:
            self._oras.auth.set_basic_auth(credentials.username, credentials.password)
        else:
            self._guard(lambda: self._oras.auth.load_configs(self._container), "read the docker config")
        self._reachable = False

    # -- plumbing --
    def _base(self) -> str:
        return f"{'http' if self.settings.insecure else 'https'}://{self.settings.host}"

    def _repo_url(self, suffix: str) -> str:
        return f"{self._base()}/v2/{self.settings.repository}/{suffix}"

    def _clean(self, text: str) -> str:
        return " ".join(redact(str(text), self._secrets).split())[:300]

    def _guard(self, call: Any, what: str) -> Any:
        """Run an oras/requests call, mapping transport failures to our errors."""
        import requests

        try:
            return call()
        except requests.exceptions.SSLError as exc:
            raise RegistryError(
                f"{self.settings.host}: TLS failed ({type(exc).__name__}); set insecure for a plain-HTTP registry"
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise RegistryUnavailableError(
                f"registry {self.settings.host} unreachable while trying to {what}: {type(exc).__name__}"
            ) from None
        except (ValueError, RuntimeError) as exc:
            # oras raises ValueError for authentication it cannot perform.
            if "authentication" in str(exc).lower():
                raise RegistryAuthError(f"registry {self.settings.host}: {self._clean(str(exc))}") from None
            raise RegistryError(f"registry {self.settings.host}: {what}: {self._clean(str(exc))}") from None

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        self._ping()
        response = self._guard(lambda: self._oras.do_request(url, method, **kwargs), what)
        self._check(response, what, allow=(404,))
        return response

    def _check(self, response: Any, what: str, allow: tuple[int, ...] = ()) -> None:
        status = response.status_code
        if status < 300 or status in allow:
            return
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict))
        except ValueError:
            detail = response.reason or ""
        message = f"registry {self.settings.host}: {what}: HTTP {status} {self._clean(detail)}".rstrip()
        raise registry_status_error(status, message)

    def _ping(self) -> None:
        """Fail fast (retryably) when the registry does not answer at all."""
        if self._reachable:
            return
        response = self._guard(
            lambda: self._oras.session.get(f"{self._base()}/v2/", timeout=min(self.settings.timeout_seconds, 10)),
            "reach /v2/",
        )
        if response.status_code >= 500:
            raise RegistryUnavailableError(f"registry {self.settings.host}: /v2/ answered HTTP {response.status_code}")
        self._reachable = True  # 200 and 401 both mean a registry is there

    # -- the Protocol --
    def list_tags(self) -> list[str]:
        """Every tag, following the API's pagination (``Link`` headers)."""
        import urllib.parse

        tags: list[str] = []
        url = self._repo_url("tags/list?n=1000")
        while url:
            response = self._request("GET", url, "list tags")
            if response.status_code == 404:
                return tags  # the repository does not exist until the first push
            tags.extend(response.json().get("tags") or [])
            link = response.links.get("next", {}).get("url")
            url = urllib.parse.urljoin(self._base(), link) if link else ""
        return tags

    def get_manifest(self, tag: str) -> ArtifactManifest | None:
        """The manifest under ``tag``, or ``None``."""
        validate_tag(tag)
        response = self._request(
            "GET", self._repo_url(f"manifests/{tag}"), f"read {tag}", headers={"Accept": OCI_MANIFEST_MEDIA_TYPE}
        )
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest") or _sha256(response.content)
        return _parse_manifest(tag, digest, response.json())

    def tag_exists(self, tag: str) -> bool:
        """Whether ``tag`` exists (a HEAD request)."""
        validate_tag(tag)
        response = self._request(
            "HEAD", self._repo_url(f"manifests/{tag}"), f"check {tag}", headers={"Accept": OCI_MANIFEST_MEDIA_TYPE}
        )
        return bool(response.status_code != 404)

    def push_artifact(self, tag: str, artifact: FluxArtifact) -> PushedArtifact:
        """Upload the config and layer blobs, then the manifest under the new ``tag``."""
        return self._push(tag, artifact)

    def push_helm_chart(self, chart: HelmChartArtifact) -> PushedArtifact:
        """Upload a Helm chart as ``helm push`` does: under the tag of its version, in the repository of its name.

        The repository's last path segment must be the chart's name (helm's strict mode):
        an OCI ``HelmRepository`` at ``oci://host/<parent>`` then serves it as chart ``<name>``.

        Raises:
            PermanentError: The chart directory is not a valid chart.
            RegistryError: The repository is not named after the chart, or the registry refused the push.
            ArtifactExistsError: That version is already in the registry (never overwritten).
            RegistryUnavailableError: The registry did not answer.
        """
        if self.settings.repository.rpartition("/")[2] != chart.name:
            raise RegistryError(
                f"{self.url}: a chart named {chart.name!r} is pushed to a repository named after it "
                f"(oci://{self.settings.host}/.../{chart.name})"
            )
        return self._push(chart.tag, chart)

    def _push(self, tag: str, artifact: FluxArtifact | HelmChartArtifact) -> PushedArtifact:
        """Upload an artifact's config and layer blobs, then its manifest under the new ``tag``."""
        if self.tag_exists(tag):
            raise _exists_error(self.url, tag)
        with tempfile.TemporaryDirectory(prefix="oci-artifact-") as tmp:
            for name, blob, media_type in (
                ("config.json", artifact.config, artifact.config_media_type),
                ("content.tar.gz", artifact.layer, artifact.layer_media_type),
            ):
                path = Path(tmp) / name
                path.write_bytes(blob)
                descriptor = {"mediaType": media_type, "size": len(blob), "digest": _sha256(blob)}
                response = self._guard(
                    lambda p=path, d=descriptor: self._oras.upload_blob(str(p), self._container, d),
                    f"upload {name}",
                )
                self._check(response, f"upload {name}")
        response = self._request(
            "PUT",
            self._repo_url(f"manifests/{tag}"),
            f"push manifest {tag}",
            data=artifact.manifest,
            headers={"Content-Type": OCI_MANIFEST_MEDIA_TYPE},
        )
        self._check(response, f"push manifest {tag}")
        digest = response.headers.get("Docker-Content-Digest") or artifact.digest
        if digest != artifact.digest:
            raise RegistryError(f"registry stored {tag} as {digest}, expected {artifact.digest}")
        return PushedArtifact(url=f"{self.url}:{tag}", tag=tag, digest=digest)

    def pull_content(self, tag: str) -> bytes:
        """Download the content layer and check its digest."""
        manifest = self.get_manifest(tag)
        if manifest is None:
            raise RegistryError(f"{self.url}:{tag} does not exist")
        layer = content_layer(manifest)
        response = self._request("GET", self._repo_url(f"blobs/{layer.digest}"), f"download {tag}")
        self._check(response, f"download {tag}")
        if _sha256(response.content) != layer.digest:
            raise RegistryError(f"{self.url}:{tag}: downloaded layer does not match its digest {layer.digest}")
        return bytes(response.content)


# -- flux push artifact -------------------------------------------------------------------


def flux_push_command(
    settings: RegistryConfig,
    tag: str,
    artifact: FluxArtifact,
    credentials: RegistryCredentials | None = None,
    *,
    cwd: Path | None = None,
) -> Command:
    """The ``flux push artifact`` command for ``artifact`` (built, not run).

    Credentials go in ``--creds`` (redacted from every error); without them flux
    reads the docker config.
    """
    argv = [
        settings.flux_binary,
        "push",
        "artifact",
        f"{settings.url}:{tag}",
        f"--path={artifact.directory}",
        f"--source={artifact.source}",
        f"--revision={artifact.revision}",
        "--output=json",
    ]
    redacted: tuple[str, ...] = ()
    if settings.insecure:
        argv.append("--insecure-registry")
    if credentials is not None:
        argv.append(f"--creds={credentials.username}:{credentials.password}")
        redacted = (credentials.password,)
    return Command(
        argv=tuple(argv), cwd=cwd or artifact.directory, timeout=settings.timeout_seconds * 5, redact=redacted
    )


# flux prints go-containerregistry's transport errors: "unexpected status code 503
# Service Unavailable" when the registry answered without a body it understood,
# else the registry's own error code ("UNAUTHORIZED: authentication required").
_FLUX_STATUS = re.compile(r"unexpected status code (\d{3})\b")
_FLUX_ERROR_CODE = re.compile(r"\b(UNAUTHORIZED|DENIED|TOOMANYREQUESTS|UNAVAILABLE):")
#: The registry's error codes (OCI distribution spec, and distribution's UNAVAILABLE) as the status they come with.
_FLUX_ERROR_CODE_STATUS = {"UNAUTHORIZED": 401, "DENIED": 403, "TOOMANYREQUESTS": 429, "UNAVAILABLE": 503}
# The registry did not answer at all: what the oras path sees as a connection error or timeout.
_FLUX_UNREACHABLE = re.compile(
    r"connection refused|connection reset|no such host|i/o timeout|TLS handshake timeout|"
    r"context deadline exceeded|network is unreachable|unexpected EOF",
    re.IGNORECASE,
)


def classify_flux_push(done: CompletedCommand) -> SandboxError | None:
    """Classify a failed ``flux push artifact`` as the oras path classifies a failed request.

    The HTTP status flux reports goes through :func:`registry_status_error` (401/403
    permanent, 429/5xx retried); a registry that did not answer is
    :class:`RegistryUnavailableError` (retried). ``None`` (a generic, permanent
    :class:`~sandbox.errors.CommandFailedError`) for anything else.
    """
    output = f"{done.stderr}\n{done.stdout}"  # redacted by sandbox.proc.run
    target = redact(done.command.argv[3], done.command.redact) if len(done.command.argv) > 3 else "the registry"
    message = f"flux push artifact {target}: {tail(done.stderr or done.stdout)}"
    found = _FLUX_STATUS.search(output)
    if found:
        return registry_status_error(int(found.group(1)), message)
    code = _FLUX_ERROR_CODE.search(output)
    if code:
        return registry_status_error(_FLUX_ERROR_CODE_STATUS[code.group(1)], message)
    if _FLUX_UNREACHABLE.search(output):
        return RegistryUnavailableError(message)
    return None


class FluxCliRegistry(OrasRegistry):
    """Pushes with ``flux push artifact``; lists, reads and pulls through oras.

    Note that flux stamps ``created`` with the push time, so its digests differ per push.
    """

    def __init__(self, settings: RegistryConfig, credentials: RegistryCredentials | None = None) -> None:
        super().__init__(settings, credentials)
        self._credentials = credentials

    def push_artifact(self, tag: str, artifact: FluxArtifact) -> PushedArtifact:
        """Refuse an existing tag, then run ``flux push artifact``."""
        validate_tag(tag)
        if self.tag_exists(tag):
            raise _exists_error(self.url, tag)
        # A push killed at its timeout may run again: blobs are content-addressed, and a
        # release that finds the tag holding this revision counts it published
        # (sandbox.release.publish.publish_artifact).
        done = run(
            flux_push_command(self.settings, tag, artifact, self._credentials),
            classify=classify_flux_push,
            timeout_is_retryable=True,
        )
        try:
            digest = str(json.loads(done.stdout).get("digest") or "")
        except ValueError:
            digest = ""
        if not digest:
            manifest = self.get_manifest(tag)
            digest = manifest.digest if manifest else ""
        return PushedArtifact(url=f"{self.url}:{tag}", tag=tag, digest=digest)


__all__ = [
    "ArtifactExistsError",
    "ArtifactManifest",
    "FluxCliRegistry",
    "InMemoryRegistry",
    "LayerDescriptor",
    "OciRegistry",
    "OrasRegistry",
    "PushedArtifact",
    "RegistryAuthError",
    "RegistryConfig",
    "RegistryCredentials",
    "RegistryError",
    "RegistryUnavailableError",
    "classify_flux_push",
    "content_layer",
    "flux_push_command",
    "registry_status_error",
    "validate_tag",
]
