"""An OCI image layout directory standing in for a registry (``drivers.registry.layout_dir``).

The demo has no registry server: ``sandbox release`` publishes the platform's Flux
artifact into a directory in the `OCI image layout
<https://github.com/opencontainers/image-spec/blob/main/image-layout.md>`_ format
(``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``), byte for byte what a
registry would store: the same manifest, config and content layer with Flux's media
types. The simulated source-controller reads an OCIRepository whose ``.spec.url`` is
the registry's from that same directory, so what a simulated staging cluster runs is
the artifact that was pushed, not a git tag.

Tags are the ``org.opencontainers.image.ref.name`` annotations of ``index.json``'s
manifest descriptors, as ``oras`` and ``skopeo`` write them. ``index.json`` is replaced
atomically (written beside it, then renamed) under an exclusive ``flock`` of the
directory's ``.lock`` file, so two publishers never lose each other's tag.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from sandbox.drivers.oci_artifact import FLUX_CONFIG_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, FluxArtifact
from sandbox.drivers.registry import (
    ArtifactManifest,
    PushedArtifact,
    RegistryError,
    _exists_error,
    _parse_manifest,
    content_layer,
    validate_tag,
)

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

#: Largest blob read back (a platform stack's layer is kilobytes; this bounds a corrupt file).
MAX_BLOB_BYTES = 256 * 1024 * 1024


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class OciLayoutRegistry:
    """An :class:`~sandbox.drivers.registry.OciRegistry` kept in an OCI image layout directory.

    Args:
        url: The repository URL it stands in for (``oci://host/path``), as OCIRepositories name it.
        layout_dir: The layout directory (created on the first push).
    """

    def __init__(self, url: str, layout_dir: Path) -> None:
        self.url = url
        self.layout_dir = Path(layout_dir)

    # -- reading ------------------------------------------------------------------------

    def _index(self) -> dict[str, Any]:
        path = self.layout_dir / "index.json"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": OCI_INDEX_MEDIA_TYPE, "manifests": []}
        except OSError as exc:
            raise RegistryError(f"cannot read the OCI layout {self.layout_dir}: {exc.strerror}") from None
        try:
            index = json.loads(raw)
        except ValueError:
            raise RegistryError(f"{path} is not JSON: not an OCI image layout") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise RegistryError(f"{path} has no manifests list: not an OCI image layout")
        return index

    def _descriptors(self) -> dict[str, dict[str, Any]]:
        """Tag -> manifest descriptor, in index order."""
        tagged: dict[str, dict[str, Any]] = {}
        for descriptor in self._index()["manifests"]:
            if not isinstance(descriptor, dict):
                continue
            tag = (descriptor.get("annotations") or {}).get(REF_NAME_ANNOTATION)
            if isinstance(tag, str) and isinstance(descriptor.get("digest"), str):
                tagged[tag] = descriptor
        return tagged

    def blob(self, digest: str) -> bytes:
        """The blob ``digest`` (``sha256:<hex>``), checked against its digest.

        Raises:
            RegistryError: It is missing, too large, or its content does not match the digest.
        """
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            raise RegistryError(f"unsupported blob digest {digest[:80]!r} in {self.layout_dir}")
        path = self.layout_dir / "blobs" / "sha256" / hexdigest
        try:
            if path.stat().st_size > MAX_BLOB_BYTES:
                raise RegistryError(f"blob {digest} in {self.layout_dir} is larger than {MAX_BLOB_BYTES} bytes")
            data = path.read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"blob {digest} is missing from the OCI layout {self.layout_dir}") from None
        except OSError as exc:
            raise RegistryError(f"cannot read blob {digest} of {self.layout_dir}: {exc.strerror}") from None
        if _digest(data) != digest:
            raise RegistryError(f"blob {digest} in {self.layout_dir} does not match its digest")
        return data

    def list_tags(self) -> list[str]:
        """Every tag, in the order they were pushed."""
        return list(self._descriptors())

    def get_manifest(self, tag: str) -> ArtifactManifest | None:
        """The manifest under ``tag``, or ``None``."""
        descriptor = self._descriptors().get(tag)
        if descriptor is None:
            return None
        digest = str(descriptor["digest"])
        try:
            data = json.loads(self.blob(digest))
        except ValueError:
            raise RegistryError(f"manifest of {tag} in {self.layout_dir} is not JSON") from None
        if not isinstance(data, dict):
            raise RegistryError(f"manifest of {tag} in {self.layout_dir} is not an OCI image manifest")
        return _parse_manifest(tag, digest, data)

    def pull_content(self, tag: str) -> bytes:
        """The Flux content layer (gzipped tar) under ``tag``.

        Raises:
            RegistryError: No such tag, or it is not a Flux artifact.
        """
        manifest = self.get_manifest(tag)
        if manifest is None:
            raise RegistryError(f"{self.url}:{tag} does not exist")
        if manifest.config.media_type != FLUX_CONFIG_MEDIA_TYPE:
            raise RegistryError(f"{self.url}:{tag} is not a Flux artifact: config is {manifest.config.media_type!r}")
        return self.blob(content_layer(manifest).digest)

    # -- writing ------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.layout_dir.mkdir(parents=True, exist_ok=True)
        with open(self.layout_dir / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name[:16]}-", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _put_blob(self, data: bytes) -> str:
        digest = _digest(data)
        path = self.layout_dir / "blobs" / "sha256" / digest.partition(":")[2]
        if not path.is_file():  # content-addressed: an existing blob is this blob
            self._write(path, data)
        return digest

    def push_artifact(self, tag: str, artifact: FluxArtifact) -> PushedArtifact:
        """Store ``artifact`` under the new ``tag``; an existing tag is refused, never overwritten."""
        validate_tag(tag)
        with self._locked():
            index = self._index()
            if tag in self._descriptors():
                raise _exists_error(self.url, tag)
            self._put_blob(artifact.config)
            self._put_blob(artifact.layer)
            digest = self._put_blob(artifact.manifest)
            layout = self.layout_dir / "oci-layout"
            if not layout.is_file():
                self._write(layout, json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode())
            index.setdefault("schemaVersion", 2)
            index.setdefault("mediaType", OCI_INDEX_MEDIA_TYPE)
            index["manifests"].append(
                {
                    "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                    "digest": digest,
                    "size": len(artifact.manifest),
                    "annotations": {REF_NAME_ANNOTATION: tag},
                }
            )
            self._write(self.layout_dir / "index.json", json.dumps(index, indent=2).encode())
        return PushedArtifact(url=f"{self.url}:{tag}", tag=tag, digest=digest)


def extract_content(content: bytes, destination: Path) -> None:
    """Unpack a Flux content layer into ``destination`` (which must not exist yet).

    Only regular files and directories are written, each inside ``destination``:
    an entry with an absolute name or ``..`` is refused.

    Raises:
        RegistryError: The layer is not a gzipped tar, or an entry would leave ``destination``.
    """
    destination.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
            for member in tar.getmembers():
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise RegistryError(f"artifact entry {member.name[:80]!r} leads outside the artifact")
                target = destination.joinpath(*[part for part in name.parts if part != "."])
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    extracted = tar.extractfile(member)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(extracted.read() if extracted is not None else b"")
                    if member.mode & 0o111:
                        target.chmod(0o755)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise RegistryError(f"the artifact layer cannot be unpacked: {type(exc).__name__}") from None
