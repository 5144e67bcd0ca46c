"""What a containerd client has learned about images, so later containers skip re-reading it.

Content is addressed by digest: what an image target resolves to (the host
platform's manifest, its config document, the layer diff IDs) cannot change
while that content exists, and the snapshot chain unpacked for a target stays
while an image holds it. Entries are kept per namespace and dropped when the
namespace's images change through the client, or when containerd answers
that something cached is gone (the caller then takes the full path once).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any

from kukeond.containerd.archive import Descriptor


@dataclass(frozen=True)
class ResolvedImage:
    """An image target resolved for the host platform."""

    walked: tuple[Descriptor, ...]
    """Every descriptor from the target down: index(es), manifest, config, layers."""
    config: Descriptor
    diff_ids: tuple[str, ...]
    config_doc: Any
    """The parsed config document (hand out ``config_copy()``, never this object)."""

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        """The layer descriptors, in the order of ``diff_ids``."""
        return self.walked[-len(self.diff_ids) :] if self.diff_ids else ()

    def config_copy(self) -> Any:
        """A copy of the config document that callers may change."""
        return copy.deepcopy(self.config_doc)


class ImageCache:
    """Thread-safe memory of resolved targets, content checks and unpacked chains."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resolved: dict[tuple[str, str], ResolvedImage] = {}
        self._content_sizes: dict[tuple[str, str], int] = {}
        self._unpacked: dict[tuple[str, str, str], str] = {}

    def resolved(self, namespace: str, digest: str) -> ResolvedImage | None:
        """The resolution of target ``digest``, if known."""
        with self._lock:
            return self._resolved.get((namespace, digest))

    def remember_resolved(self, namespace: str, digest: str, resolved: ResolvedImage) -> None:
        """Record what target ``digest`` resolves to."""
        with self._lock:
            self._resolved[(namespace, digest)] = resolved

    def content_size(self, namespace: str, digest: str) -> int | None:
        """The checked total content size under target ``digest``, if known."""
        with self._lock:
            return self._content_sizes.get((namespace, digest))

    def remember_content_size(self, namespace: str, digest: str, size: int) -> None:
        """Record that every blob under target ``digest`` is present, totalling ``size``."""
        with self._lock:
            self._content_sizes[(namespace, digest)] = size

    def unpacked(self, namespace: str, digest: str, snapshotter: str) -> str | None:
        """The top chain ID unpacked for target ``digest`` in ``snapshotter``, if known."""
        with self._lock:
            return self._unpacked.get((namespace, digest, snapshotter))

    def remember_unpacked(self, namespace: str, digest: str, snapshotter: str, top: str) -> None:
        """Record that target ``digest`` is unpacked in ``snapshotter`` up to chain ``top``."""
        with self._lock:
            self._unpacked[(namespace, digest, snapshotter)] = top

    def forget(self, namespace: str) -> None:
        """Drop everything known about ``namespace``."""
        with self._lock:
            _drop(self._resolved, namespace)
            _drop(self._content_sizes, namespace)
            _drop(self._unpacked, namespace)


def _drop(table: dict[Any, Any], namespace: str) -> None:
    for key in [k for k in table if k[0] == namespace]:
        del table[key]
