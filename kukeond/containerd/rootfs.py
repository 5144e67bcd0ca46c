"""Read a few files of an image's root filesystem straight from its layer blobs.

The OCI spec builder resolves user and group names against the rootfs's
``/etc/passwd`` and ``/etc/group``. containerd's own client mounts the
snapshot to read them; reading the layer tarballs instead needs no mount
and works wherever the content store is reachable. Layers are applied
bottom to top with the OCI whiteout rules (``.wh.<name>`` deletes a path,
``.wh..wh..opq`` empties a directory), so the result is the file as the
container would see it.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
from collections.abc import Iterable, Sequence
from typing import IO, cast

from kukeond.containerd.errors import ImageFormatError

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
MAX_FILE_BYTES = 1 << 20


def _clean(path: str) -> str:
    """``/etc/passwd``, ``./etc/passwd`` and ``etc/passwd`` all become ``etc/passwd``."""
    return posixpath.normpath("/" + path).lstrip("/")


def _open_layer(media_type: str, stream: IO[bytes] | io.RawIOBase) -> tarfile.TarFile:
    if media_type.endswith("zstd"):
        raise ImageFormatError(f"zstd layers are not supported ({media_type})")
    if stream.seekable():
        buffered = cast(IO[bytes], stream)
        head = stream.read(2)
        stream.seek(0)
    else:
        reader = io.BufferedReader(cast(io.RawIOBase, stream))
        head, buffered = reader.peek(2)[:2], reader
    source: IO[bytes] = (
        cast(IO[bytes], gzip.GzipFile(fileobj=buffered)) if head == b"\x1f\x8b" else buffered
    )
    return tarfile.open(fileobj=source, mode="r|")


class ChunkReader(io.RawIOBase):
    """A binary stream over an iterator of byte chunks (e.g. a content read stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        """Fill ``buffer`` from the pending chunk, pulling the next one when empty."""
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def read_files(
    layers: Iterable[tuple[str, IO[bytes] | io.RawIOBase]], paths: Sequence[str]
) -> dict[str, bytes | None]:
    """Return the content of each of ``paths`` after applying ``layers`` (bottom first).

    ``layers`` yields ``(media_type, binary stream)``; gzip or plain tar.
    A path that is absent, deleted by a whiteout, or not a regular file maps
    to ``None``. Raises ``ImageFormatError`` for an unreadable layer.
    """
    wanted = {_clean(p): p for p in paths}
    found: dict[str, bytes | None] = {clean: None for clean in wanted}
    for media_type, stream in layers:
        try:
            with _open_layer(media_type, stream) as tar:
                for member in tar:
                    _apply(member, tar, found)
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise ImageFormatError(f"layer unreadable: {exc}") from exc
    return {original: found[clean] for clean, original in wanted.items()}


def _apply(member: tarfile.TarInfo, tar: tarfile.TarFile, found: dict[str, bytes | None]) -> None:
    name = _clean(member.name)
    directory, base = posixpath.split(name)
    if base == OPAQUE_WHITEOUT:
        for path in found:
            if posixpath.dirname(path) == directory:
                found[path] = None
        return
    if base.startswith(WHITEOUT_PREFIX):
        target = posixpath.join(directory, base[len(WHITEOUT_PREFIX) :])
        if target in found:
            found[target] = None
        return
    if name not in found:
        return
    if member.isfile() and member.size <= MAX_FILE_BYTES:
        handle = tar.extractfile(member)
        found[name] = handle.read() if handle is not None else None
    else:
        found[name] = None
