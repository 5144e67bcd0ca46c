"""How the store tells one version of a metadata file from another.

A file's version is its ``(inode, mtime, size)``; a digest of its content
tells a re-read of the same bytes from a change, and a version touched
within :data:`RACY_NS` is never trusted, since two writes within one
timestamp tick can look alike. :class:`Stored` is what the store keeps of
one version.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kukeond.store.documents import Document
from kukeond.store.errors import MetadataCorrupt

Version = tuple[int, int, int]
"""A file's ``(st_ino, st_mtime_ns, st_size)``: changes whenever its content is replaced."""

RACY_NS = 100_000_000
"""A file or directory changed this recently (ns) is re-read rather than trusted."""


def version_of(st: os.stat_result) -> Version:
    """The version a ``stat`` result describes."""
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def file_version(path: str) -> Version | None:
    """The version of the file at ``path``; ``None`` when there is none."""
    try:
        return version_of(os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


def is_racy(mtime_ns: int) -> bool:
    """Whether a change at ``mtime_ns`` is too recent to trust a matching version."""
    return time.time_ns() - mtime_ns < RACY_NS


def content_digest(raw: bytes) -> bytes:
    """The digest that tells a file's content from another's."""
    return hashlib.blake2b(raw, digest_size=16).digest()


@dataclass(eq=False, slots=True)
class Stored:
    """One version of one metadata file: a digest of its content, or why it is unusable.

    The document is not kept (the disk has it); ``decoded`` holds what
    :meth:`~kukeond.store.metadata.MetadataStore.decoded` computed from this version.
    """

    version: Version
    digest: bytes | None
    corrupt: MetadataCorrupt | None = None
    decoded: dict[Callable[[Document], Any], Any] = field(default_factory=dict)

    def same_content(self, other: Stored) -> bool:
        """Whether ``other`` is this version with this content (and usable)."""
        return (
            self.digest is not None
            and self.version == other.version
            and self.digest == other.digest
        )
