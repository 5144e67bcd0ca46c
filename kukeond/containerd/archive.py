"""Read image archives: OCI image layouts and docker-save tarballs, as a tar or a directory.

``open_archive(source)`` parses the archive and returns an ``ImageArchive``:
the images it names, each with its target descriptor and the blobs to ingest
(children before parents, with the garbage-collection labels containerd
expects), and verified access to every blob's bytes. Both the gRPC client and
the in-memory fake import through this module, so they accept and refuse the
same inputs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from kukeond.containerd.errors import DigestMismatch, ImageFormatError
from kukeond.containerd.reference import host_platform, normalize_reference, sha256_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
LAYER_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
LABEL_UNCOMPRESSED = "containerd.io/uncompressed"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (the fields containerd records)."""

    media_type: str
    digest: str
    size: int


@dataclass
class BlobPlan:
    """One blob to ingest, with the labels to commit it with."""

    descriptor: Descriptor
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ManifestPlan:
    """The manifest chosen for this host: its config, layers and their diff IDs."""

    descriptor: Descriptor
    config: Descriptor
    layers: list[Descriptor]
    diff_ids: list[str]


@dataclass
class ImagePlan:
    """An image to record: its name, target descriptor and what to ingest for it."""

    name: str
    target: Descriptor
    blobs: list[BlobPlan]
    manifest: ManifestPlan


class ImageArchive:
    """A parsed image archive; close it (or use ``with``) to release temp files."""

    def __init__(self, reader: _BlobReader, images: list[ImagePlan]) -> None:
        self._reader = reader
        self.images = images

    def blobs(self) -> list[BlobPlan]:
        """Every blob to ingest, each once, children before parents."""
        seen: dict[str, BlobPlan] = {}
        for image in self.images:
            for blob in image.blobs:
                seen.setdefault(blob.descriptor.digest, blob)
        return list(seen.values())

    def chunks(self, descriptor: Descriptor) -> Iterator[bytes]:
        """Yield the blob's bytes; raise ``DigestMismatch`` at the end if they are wrong."""
        hasher = hashlib.sha256()
        total = 0
        with self._reader.open(descriptor.digest) as stream:
            while True:
                try:
                    chunk = stream.read(_CHUNK)
                except (OSError, EOFError, tarfile.TarError, gzip.BadGzipFile) as exc:
                    raise ImageFormatError(f"blob {descriptor.digest}: {exc}") from exc
                if not chunk:
                    break
                hasher.update(chunk)
                total += len(chunk)
                yield chunk
        actual = "sha256:" + hasher.hexdigest()
        if actual != descriptor.digest or total != descriptor.size:
            raise DigestMismatch(
                f"blob {descriptor.digest} (size {descriptor.size}) has digest {actual} "
                f"and size {total}"
            )

    def verify(self) -> None:
        """Read every blob to ingest and check its digest and size."""
        for blob in self.blobs():
            for _ in self.chunks(blob.descriptor):
                pass

    def close(self) -> None:
        """Release the archive's files."""
        self._reader.close()

    def __enter__(self) -> ImageArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _BlobReader:
    """Bytes by digest, over a directory, a tar file or in-memory synthetic blobs."""

    def __init__(self) -> None:
        self.synthetic: dict[str, bytes] = {}
        self.aliases: dict[str, str] = {}
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        self._root: str | None = None
        self._cleanup: list[Any] = []

    def use_dir(self, root: str) -> None:
        self._root = root

    def use_tar(self, tar: tarfile.TarFile) -> None:
        self._tar = tar
        try:
            for member in tar.getmembers():
                if member.isreg():
                    self._members[os.path.normpath(member.name).lstrip("/")] = member
        except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
            raise ImageFormatError(f"not a readable tar archive: {exc}") from exc

    def has_file(self, path: str) -> bool:
        if self._root is not None:
            return os.path.isfile(os.path.join(self._root, path))
        return os.path.normpath(path) in self._members

    def open_file(self, path: str) -> IO[bytes]:
        if self._root is not None:
            return open(os.path.join(self._root, path), "rb")
        member = self._members.get(os.path.normpath(path))
        if member is None or self._tar is None:
            raise ImageFormatError(f"archive has no file {path}")
        stream = self._tar.extractfile(member)
        if stream is None:
            raise ImageFormatError(f"archive entry {path} is not a file")
        return stream

    def read_file(self, path: str) -> bytes:
        try:
            with self.open_file(path) as stream:
                return stream.read()
        except (OSError, EOFError, tarfile.TarError, gzip.BadGzipFile) as exc:
            raise ImageFormatError(f"cannot read {path}: {exc}") from exc

    def has(self, digest: str) -> bool:
        return digest in self.synthetic or self.has_file(self._path(digest))

    def open(self, digest: str) -> IO[bytes]:
        if digest in self.synthetic:
            return io.BytesIO(self.synthetic[digest])
        return self.open_file(self._path(digest))

    def read(self, digest: str) -> bytes:
        if digest in self.synthetic:
            return self.synthetic[digest]
        return self.read_file(self._path(digest))

    def _path(self, digest: str) -> str:
        if digest in self.aliases:
            return self.aliases[digest]
        algorithm, _, hexpart = digest.partition(":")
        if not algorithm or not hexpart or "/" in hexpart or ".." in hexpart:
            raise ImageFormatError(f"invalid digest {digest!r}")
        return f"blobs/{algorithm}/{hexpart}"

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
        for item in self._cleanup:
            item.close()


def open_archive(
    source: str | os.PathLike[str] | BinaryIO, name: str | None = None
) -> ImageArchive:
    """Parse an image archive.

    ``source`` is a directory holding an OCI image layout, the path of a tar
    (OCI layout or docker-save, gzip-compressed or not), or a binary file
    object of such a tar. ``name`` names the image when the archive holds one
    unnamed image. Blocking; raises ``ImageFormatError`` on bad input.
    """
    reader = _BlobReader()
    try:
        if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
            reader.use_dir(os.fspath(source))
        else:
            reader.use_tar(_open_tar(source, reader))
        if reader.has_file("index.json"):
            images = _oci_images(reader, name)
        elif reader.has_file("manifest.json"):
            images = _docker_images(reader, name)
        else:
            raise ImageFormatError("archive has neither index.json nor manifest.json")
        if not images:
            raise ImageFormatError("archive names no image (pass a name for an unnamed image)")
        return ImageArchive(reader, images)
    except BaseException:
        reader.close()
        raise


def _open_tar(source: str | os.PathLike[str] | BinaryIO, reader: _BlobReader) -> tarfile.TarFile:
    if isinstance(source, (str, os.PathLike)):
        try:
            stream: BinaryIO = open(source, "rb")
        except OSError as exc:
            raise ImageFormatError(f"cannot open image archive {os.fspath(source)}: {exc}") from exc
        reader._cleanup.append(stream)
    else:
        stream = source
    head = stream.read(2)
    # Decompress (or copy an unseekable stream) once, so members can be read in any order.
    spooled = tempfile.TemporaryFile(prefix="kukeond-image-")
    reader._cleanup.append(spooled)
    try:
        if head == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=_Prefixed(head, stream)) as unzipped:
                shutil.copyfileobj(unzipped, spooled, _CHUNK)
        else:
            spooled.write(head)
            shutil.copyfileobj(stream, spooled, _CHUNK)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ImageFormatError(f"cannot decompress image archive: {exc}") from exc
    spooled.seek(0)
    try:
        return tarfile.open(fileobj=spooled, mode="r:")
    except (tarfile.TarError, EOFError) as exc:
        raise ImageFormatError(f"not a tar archive: {exc}") from exc


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageFormatError(f"{what} is not valid JSON: {exc}") from exc


def _descriptor(obj: Any, what: str) -> Descriptor:
    try:
        media_type = obj.get("mediaType", "")
        digest, size = obj["digest"], int(obj["size"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ImageFormatError(f"{what}: malformed descriptor {obj!r}") from exc
    if not isinstance(digest, str) or not digest.startswith("sha256:") or size < 0:
        raise ImageFormatError(f"{what}: unsupported descriptor {obj!r}")
    return Descriptor(media_type, digest, size)


def _oci_images(reader: _BlobReader, name: str | None) -> list[ImagePlan]:
    index = _json(reader.read_file("index.json"), "index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise ImageFormatError("index.json has no manifests list")
    images = []
    for entry in entries:
        target = _descriptor(entry, "index.json")
        annotations = entry.get("annotations") or {}
        image_name = annotations.get(NAME_ANNOTATION) or _full_ref(annotations.get(REF_ANNOTATION))
        if image_name is None and name is not None and len(entries) == 1:
            image_name = name
        if image_name is None:
            continue
        blobs: list[BlobPlan] = []
        manifest = _walk(reader, target, blobs, selected=True)
        if manifest is None:
            raise ImageFormatError(f"{image_name}: no manifest for platform {host_platform()}")
        images.append(ImagePlan(normalize_reference(image_name), target, blobs, manifest))
    return images


def _full_ref(ref: str | None) -> str | None:
    if ref and ("/" in ref or ":" in ref):
        return ref
    return None


def _walk(
    reader: _BlobReader, desc: Descriptor, blobs: list[BlobPlan], selected: bool
) -> ManifestPlan | None:
    """Plan ``desc`` and its children; return the manifest chosen for this host."""
    if desc.media_type not in INDEX_TYPES | MANIFEST_TYPES:
        raise ImageFormatError(f"unsupported media type {desc.media_type!r} for {desc.digest}")
    if not reader.has(desc.digest):
        if selected:
            raise ImageFormatError(f"blob {desc.digest} is missing from the archive")
        return None
    raw = reader.read(desc.digest)
    if sha256_digest(raw) != desc.digest:
        raise DigestMismatch(f"blob {desc.digest} does not match its content")
    doc = _json(raw, desc.digest)
    if desc.media_type in INDEX_TYPES:
        children = [_descriptor(m, desc.digest) for m in doc.get("manifests") or []]
        platforms = [m.get("platform") for m in doc.get("manifests") or []]
        chosen = _choose(platforms)
        plan = None
        labels = {}
        for i, (child, is_chosen) in enumerate(zip(children, chosen, strict=True)):
            found = _walk(reader, child, blobs, selected and is_chosen)
            if reader.has(child.digest):
                labels[f"containerd.io/gc.ref.content.m.{i}"] = child.digest
            if is_chosen and found is not None:
                plan = found
        blobs.append(BlobPlan(desc, labels))
        return plan
    config = _descriptor(doc.get("config"), desc.digest)
    layers = [_descriptor(layer, desc.digest) for layer in doc.get("layers") or []]
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise ImageFormatError(f"unsupported layer media type {layer.media_type!r}")
    present = [d for d in [config, *layers] if reader.has(d.digest)]
    if len(present) < len(layers) + 1:
        if selected:
            missing = next(d for d in [config, *layers] if not reader.has(d.digest))
            raise ImageFormatError(f"blob {missing.digest} is missing from the archive")
        return None
    config_raw = reader.read(config.digest)
    if sha256_digest(config_raw) != config.digest:
        raise DigestMismatch(f"config blob {config.digest} does not match its content")
    diff_ids = ((_json(config_raw, "image config").get("rootfs") or {}).get("diff_ids")) or []
    if len(diff_ids) != len(layers):
        raise ImageFormatError(
            f"image config lists {len(diff_ids)} diff IDs for {len(layers)} layers"
        )
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        blobs.append(BlobPlan(layer, {LABEL_UNCOMPRESSED: diff_id}))
    blobs.append(BlobPlan(config, {}))
    labels = {"containerd.io/gc.ref.content.config": config.digest}
    for i, layer in enumerate(layers):
        labels[f"containerd.io/gc.ref.content.l.{i}"] = layer.digest
    blobs.append(BlobPlan(desc, labels))
    return ManifestPlan(desc, config, layers, list(diff_ids))


def _choose(platforms: list[Any]) -> list[bool]:
    """Mark the first manifest whose platform matches this host (or the only one)."""
    want_os, want_arch = host_platform()
    chosen = [False] * len(platforms)
    for i, plat in enumerate(platforms):
        if not plat or (plat.get("os") == want_os and plat.get("architecture") == want_arch):
            chosen[i] = True
            break
    if len(platforms) == 1:
        chosen[0] = True
    return chosen


def _docker_images(reader: _BlobReader, name: str | None) -> list[ImagePlan]:
    entries = _json(reader.read_file("manifest.json"), "manifest.json")
    if not isinstance(entries, list):
        raise ImageFormatError("manifest.json is not a list")
    images = []
    for entry in entries:
        try:
            config_path, layer_paths = entry["Config"], list(entry["Layers"])
            tags = list(entry.get("RepoTags") or [])
        except (KeyError, TypeError) as exc:
            raise ImageFormatError(f"manifest.json: malformed entry {entry!r}") from exc
        if not tags and name is not None and len(entries) == 1:
            tags = [name]
        config_raw = reader.read_file(config_path)
        config = Descriptor(DOCKER_CONFIG, sha256_digest(config_raw), len(config_raw))
        reader.synthetic[config.digest] = config_raw
        layers = [_docker_layer(reader, path) for path in layer_paths]
        diff_ids = ((_json(config_raw, "image config").get("rootfs") or {}).get("diff_ids")) or []
        if len(diff_ids) != len(layers):
            raise ImageFormatError(
                f"image config lists {len(diff_ids)} diff IDs for {len(layers)} layers"
            )
        manifest_doc = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": _descriptor_json(config),
            "layers": [_descriptor_json(d) for d in layers],
        }
        manifest_raw = json.dumps(manifest_doc, separators=(",", ":")).encode()
        target = Descriptor(DOCKER_MANIFEST, sha256_digest(manifest_raw), len(manifest_raw))
        reader.synthetic[target.digest] = manifest_raw
        for tag in tags:
            blobs: list[BlobPlan] = []
            plan = _walk(reader, target, blobs, selected=True)
            if plan is not None:
                images.append(ImagePlan(normalize_reference(tag), target, blobs, plan))
    return images


def _descriptor_json(desc: Descriptor) -> dict[str, Any]:
    return {"mediaType": desc.media_type, "size": desc.size, "digest": desc.digest}


def _docker_layer(reader: _BlobReader, path: str) -> Descriptor:
    hasher = hashlib.sha256()
    size = 0
    head = b""
    try:
        with reader.open_file(path) as stream:
            while chunk := stream.read(_CHUNK):
                if not head:
                    head = chunk[:2]
                hasher.update(chunk)
                size += len(chunk)
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise ImageFormatError(f"cannot read layer {path}: {exc}") from exc
    digest = "sha256:" + hasher.hexdigest()
    reader.aliases[digest] = os.path.normpath(path)
    gzipped = head == b"\x1f\x8b"
    media_type = "application/vnd.docker.image.rootfs.diff.tar" + (".gzip" if gzipped else "")
    return Descriptor(media_type, digest, size)
