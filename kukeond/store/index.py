"""The metadata store's index: what it last saw of each file and directory of the tree.

Each document file is known by its version and a digest of its content
(:mod:`kukeond.store.versions`), each directory by its ``(inode, mtime)``
and sorted subdirectory names. A read checks the entry against the disk
first: by a ``stat``, or, when the tree is watched, by the inotify events
queued since (:mod:`kukeond.store.watch`), and reads the file again only
when it changed. The index also remembers which version the daemon last
read or wrote of each key, which is what a write expects to replace.
"""

from __future__ import annotations

import os
from typing import Any

from kukeond.base import naming
from kukeond.logs import Logger
from kukeond.store.documents import Document, Key, parse_document
from kukeond.store.errors import MetadataCorrupt
from kukeond.store.versions import (
    Stored,
    Version,
    content_digest,
    file_version,
    is_racy,
    version_of,
)
from kukeond.store.watch import TreeWatch


class MetadataIndex:
    """The files and directories of the metadata tree as last seen, re-checked on each read.

    The base of :class:`~kukeond.store.metadata.MetadataStore`, which
    serves its reads and writes from it.
    """

    log = Logger()

    def __init__(self, run_path: str, *, watch: bool) -> None:
        self.run_path = run_path
        self._watching = watch
        self._watch: TreeWatch | None = None
        # keys whose cached document / listing no event has touched since it was read
        self._fresh: set[Key] = set()
        self._fresh_dirs: set[Key] = set()
        # moves whenever the cache may have changed; listings made within one epoch are kept
        self._epoch = 0
        self._listed: dict[tuple[int, Key, Any], tuple[int, list[tuple[Key, Any]]]] = {}
        self._files: dict[Key, Stored] = {}
        # the version the last read parsed and its document, until a decode takes it:
        # a version that had to be read is decoded without a second read
        self._last_read: tuple[Stored, Document] | None = None
        # parent key -> (the directory's (inode, mtime), its subdirectory names, sorted)
        self._dirs: dict[Key, tuple[tuple[int, int], tuple[str, ...]]] = {}
        # key -> version the daemon last read or wrote (None: saw it absent); the
        # writer thread updates it too, so queued writes expect their predecessors
        self._seen: dict[Key, Version | None] = {}
        # keys with a write or delete queued or running: reads leave _seen to the writer
        self._pending: dict[Key, int] = {}
        self._paths: dict[Key, str] = {}

    def _forget_fresh(self) -> None:
        self._epoch += 1
        self._fresh.clear()
        self._fresh_dirs.clear()
        self._listed.clear()

    def _sync(self) -> None:
        """Forget what the events queued since the last read say may have changed."""
        watch = self._watch
        if watch is None:
            if not self._watching:
                return
            try:
                watch = self._watch = TreeWatch(naming.data_dir(self.run_path))
            except OSError as exc:
                self._watching = False
                self.log.warn("not watching the metadata tree: {error}", error=str(exc))
                return
        changes = watch.changes()
        if not changes:
            return
        if changes.everything:
            self._forget_fresh()
            return
        self._epoch += 1
        self._fresh.difference_update(changes.documents)
        self._fresh_dirs.difference_update(changes.listings)
        for top in changes.subtrees:
            size = len(top)
            for fresh in (self._fresh, self._fresh_dirs):
                fresh.difference_update([k for k in fresh if k[:size] == top])

    def _watched(self, key: Key) -> bool:
        """Watch ``key``'s directory (and its ancestors) before it is read; whether it is."""
        return self._watch is not None and self._watch.watch(key)

    def _path(self, key: Key) -> str:
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = naming.metadata_path(self.run_path, *key)
        return path

    def _current(self, key: Key) -> Stored | None:
        """The file's current version, parsed only when it changed; ``None`` if absent.

        Callers take the queued changes first (:meth:`_sync`).
        """
        if key in self._fresh:
            return self._files[key]
        self._epoch += 1
        watched = self._watched(key)
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            self._absent(key)
            return None
        cached = self._files.get(key)
        if cached is not None and cached.version == version_of(st) and not is_racy(st.st_mtime_ns):
            if watched:
                self._fresh.add(key)
            return cached
        stored, doc = self._fetch(key, path, cached, watched)
        # Nobody else sees this document: a decode of this version may use it.
        self._last_read = None if stored is None or doc is None else (stored, doc)
        return stored

    def _fetch(
        self, key: Key, path: str, cached: Stored | None, watched: bool
    ) -> tuple[Stored | None, Document | None]:
        """Read the file: its version (recorded) and document (``None``: absent or unusable)."""
        got = self._read(key, path)
        if got is None:
            self._absent(key)
            return None, None
        stored, doc = got
        if cached is not None and cached.same_content(stored):
            stored = cached  # the same content keeps its decoded values
        self._files[key] = stored
        if watched:
            self._fresh.add(key)
        self._observe(key, stored.version)
        return stored, doc

    def _document(self, key: Key) -> tuple[Stored, Document] | None:
        """The usable current version of ``key`` and its document, read from the disk.

        ``None`` when absent; raises :class:`MetadataCorrupt` when unusable.
        """
        self._sync()
        stored, doc = self._fetch(key, self._path(key), self._files.get(key), self._watched(key))
        if stored is None:
            return None
        if stored.corrupt is not None:
            raise stored.corrupt
        assert doc is not None
        return stored, doc

    def _absent(self, key: Key) -> None:
        self._files.pop(key, None)
        self._fresh.discard(key)
        self._observe(key, None)

    def _observe(self, key: Key, version: Version | None) -> None:
        # A read racing our own write could record the older version after the
        # writer recorded the newer one; while a write is queued, it decides.
        if key not in self._pending:
            self._seen[key] = version

    def _read(self, key: Key, path: str) -> tuple[Stored, Document | None] | None:
        """The file's document with the version of exactly what was read; ``None`` if absent."""
        try:
            with open(path, "rb") as fh:
                version = version_of(os.fstat(fh.fileno()))
                raw = fh.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            return self._unusable(key, path, file_version(path) or (0, 0, 0), str(exc))
        try:
            doc = parse_document(raw)
        except ValueError as exc:
            return self._unusable(key, path, version, str(exc))
        return Stored(version, content_digest(raw)), doc

    def _unusable(self, key: Key, path: str, version: Version, reason: str) -> tuple[Stored, None]:
        self.log.warn("skipping unreadable metadata {path}: {reason}", path=path, reason=reason)
        return Stored(version, None, MetadataCorrupt(key, path, reason)), None

    def _subdirs(self, key: Key) -> tuple[str, ...]:
        """Names of the directories below ``key``'s directory that could hold resources."""
        if key in self._fresh_dirs:
            return self._dirs[key][1]
        self._epoch += 1
        watched = self._watched(key)
        directory = os.path.join(naming.data_dir(self.run_path), *key)
        try:
            st = os.stat(directory)
        except (FileNotFoundError, NotADirectoryError):
            self._dirs.pop(key, None)
            self._fresh_dirs.discard(key)
            return ()
        version = (st.st_ino, st.st_mtime_ns)
        cached = self._dirs.get(key)
        if cached is not None and cached[0] == version and not is_racy(st.st_mtime_ns):
            if watched:
                self._fresh_dirs.add(key)
            return cached[1]
        try:
            with os.scandir(directory) as entries:
                names = tuple(
                    sorted(
                        e.name
                        for e in entries
                        if e.is_dir(follow_symlinks=False) and naming.is_safe_path_component(e.name)
                    )
                )
        except (FileNotFoundError, NotADirectoryError):
            self._dirs.pop(key, None)
            self._fresh_dirs.discard(key)
            return ()
        self._dirs[key] = (version, names)
        if watched:
            self._fresh_dirs.add(key)
        return names
