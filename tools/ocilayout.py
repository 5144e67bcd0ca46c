"""Deterministic OCI image tarballs, written without a registry or docker.

Shared by the busybox test image (``tests/support/image.py``) and the kukeond
image (``tools/build_oci_image.py``): tar entries with fixed owners and
mtimes, gzip without a name or time stamp, JSON documents with sorted keys.
The same inputs always give the same bytes, so the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'

Entry = tuple[tarfile.TarInfo, "bytes | None"]


def digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_info(
    name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, mtime: int = 0
) -> tarfile.TarInfo:
    """A root-owned tar entry with a fixed mtime."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def tar_bytes(entries: Sequence[Entry]) -> bytes:
    """A PAX tar of ``entries`` (data ``None`` for directories and links)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out.getvalue()


def gzip_bytes(data: bytes, level: int = 9) -> bytes:
    """``data`` gzipped with no file name and mtime 0."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=level) as gz:
        gz.write(data)
    return buf.getvalue()


@dataclass(frozen=True)
class Blob:
    """One content-addressed blob, held in memory (``data``) or in a file (``path``)."""

    media_type: str
    digest: str
    size: int
    data: bytes | None = None
    path: str | None = None
    diff_id: str | None = None
    """For a layer: the digest of its uncompressed tar."""

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Blob:
        """A blob of ``data`` held in memory."""
        return cls(media_type, digest(data), len(data), data=data)

    def descriptor(self) -> dict:
        """The OCI descriptor pointing at this blob."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def open(self) -> IO[bytes]:
        """Read the blob's bytes."""
        if self.data is not None:
            return io.BytesIO(self.data)
        return open(self.path, "rb")  # type: ignore[arg-type]


def layer_blob(raw_tar: bytes) -> Blob:
    """A gzip layer blob from an uncompressed layer tar held in memory."""
    gz = gzip_bytes(raw_tar)
    return Blob(LAYER_TYPE, digest(gz), len(gz), data=gz, diff_id=digest(raw_tar))


class _Hashing(io.RawIOBase):
    """A write-through stream that hashes and counts what passes."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


def directory_layer(root: str, out_path: str, mtime: int, level: int = 6) -> Blob:
    """Write ``root`` as a gzip layer to ``out_path``: sorted entries, numeric owners, fixed mtimes.

    Modes (setuid included), owners and hard links are kept; sockets, fifos and
    device nodes are left out (the runtime provides ``/dev``), as is
    everything below ``dev``, ``proc`` and ``sys``.
    """
    with open(out_path, "wb") as sink:
        compressed = _Hashing(sink)
        with gzip.GzipFile(
            fileobj=compressed, mode="wb", mtime=0, filename="", compresslevel=level
        ) as gz:
            raw = _Hashing(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                _add_tree(tar, root, mtime)
    return Blob(
        LAYER_TYPE,
        "sha256:" + compressed.sha.hexdigest(),
        compressed.size,
        path=out_path,
        diff_id="sha256:" + raw.sha.hexdigest(),
    )


_EMPTY_DIRS = {"dev", "proc", "sys"}


def _add_tree(tar: tarfile.TarFile, root: str, mtime: int) -> None:
    links: dict[tuple[int, int], str] = {}

    def add(path: str, name: str) -> None:
        st = os.lstat(path)
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = mtime
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            if name in _EMPTY_DIRS:
                return
            for child in sorted(os.listdir(path)):
                add(os.path.join(path, child), f"{name}/{child}")
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
            tar.addfile(info)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                info.type = tarfile.LNKTYPE
                info.linkname = links[key]
                tar.addfile(info)
                return
            links[key] = name
            info.size = st.st_size
            with open(path, "rb") as f:
                tar.addfile(info, f)

    for child in sorted(os.listdir(root)):
        add(os.path.join(root, child), child)


def image_blobs(
    config: dict, layers: Sequence[Blob], annotations: dict[str, str] | None = None
) -> tuple[Blob, Blob]:
    """The config and manifest blobs of an image; ``config`` gets its ``rootfs`` here."""
    body = dict(config, rootfs={"type": "layers", "diff_ids": [b.diff_id for b in layers]})
    config_blob = Blob.of(CONFIG_TYPE, json.dumps(body, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_blob.descriptor(),
        "layers": [b.descriptor() for b in layers],
    }
    if annotations:
        manifest["annotations"] = annotations
    return config_blob, Blob.of(MANIFEST_TYPE, json.dumps(manifest, sort_keys=True).encode())


def index_bytes(manifest: Blob, ref: str) -> bytes:
    """``index.json`` naming ``manifest`` as ``ref`` (for containerd and for OCI tools)."""
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [
                dict(
                    manifest.descriptor(),
                    annotations={
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": tag,
                    },
                )
            ],
        },
        sort_keys=True,
    ).encode()


def layout_files(
    ref: str, config: Blob, manifest: Blob, layers: Sequence[Blob]
) -> list[tuple[str, Blob | bytes]]:
    """The files of an OCI image layout, in the order they are written."""
    files: list[tuple[str, Blob | bytes]] = [
        ("oci-layout", LAYOUT),
        ("index.json", index_bytes(manifest, ref)),
    ]
    files += [(f"blobs/sha256/{b.digest[7:]}", b) for b in (config, manifest, *layers)]
    return files


def write_layout_tar(
    path: str, ref: str, config: Blob, manifest: Blob, layers: Sequence[Blob], mtime: int = 0
) -> None:
    """Write the image as an OCI image-layout tarball at ``path`` (atomically)."""
    tmp = f"{path}.tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("blobs/", "blobs/sha256/"):
            tar.addfile(tar_info(name, tarfile.DIRTYPE, 0o755, mtime))
        for name, item in layout_files(ref, config, manifest, layers):
            info = tar_info(name, mtime=mtime)
            if isinstance(item, bytes):
                info.size = len(item)
                tar.addfile(info, io.BytesIO(item))
            else:
                info.size = item.size
                with item.open() as f:
                    tar.addfile(info, f)
    os.replace(tmp, path)


def write_layout_dir(
    directory: str, ref: str, config: Blob, manifest: Blob, layers: Sequence[Blob]
) -> None:
    """Write the image as an OCI image-layout directory."""
    for name, item in layout_files(ref, config, manifest, layers):
        target = os.path.join(directory, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            if isinstance(item, bytes):
                out.write(item)
            else:
                with item.open() as f:
                    out.write(f.read())
