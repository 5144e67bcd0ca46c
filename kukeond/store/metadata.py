"""The metadata tree ``RUN/data/R[/S[/K[/C]]]/metadata.json``: the disk is the truth.

Documents are plain JSON dicts (the v1beta1 documents in their Go JSON
shape); the store neither knows nor needs their classes. A resource is
addressed by its *key*: ``(R,)``, ``(R, S)``, ``(R, S, K)`` or
``(R, S, K, C)``.

Other writers share the tree: ``kuke delete -f`` and ``kuke --no-daemon``
run the reference's controller in-process on the run path, and a second
daemon may take the host over. So:

* Every read reflects the disk. The index knows each file by *version*,
  its ``(inode, mtime, size)``, plus a digest of its content; each read
  stats the file (a couple of microseconds on a local file system) and reads
  it again only when it changed. The documents themselves are not held: a
  decoded JSON tree costs about 7 KiB per cell, and the page cache keeps the
  file, so :meth:`MetadataStore.get` reads and parses it (about 20 us for a
  cell, twice the deep copy of a held tree; the hot reads go through
  :meth:`MetadataStore.decoded` instead). A directory's listing is cached
  per the directory's own ``(inode, mtime)``, which moves whenever an entry
  is added or removed. A version touched within :data:`RACY_NS` is never
  trusted from the cache, since two writes within one timestamp tick can
  look alike; a re-read of such a file that finds the same digest keeps
  what was decoded.
* With ``watch=True`` (the daemon's store) inotify says what changed instead
  (:mod:`kukeond.store.watch`): every read first takes the queued events,
  and a document or listing read since its directory was watched, with no
  event since, is served without a ``stat``. The kernel queues an event
  during the system call that changes the tree, so a change another writer
  has made is seen by the next read all the same.
* No write replaces a document that changed on disk since the daemon last
  saw it: :meth:`MetadataStore.put` compares the file's version with the
  one expected (by default the last the daemon read or wrote, or an explicit
  ``expect`` from :meth:`MetadataStore.version`) right before the rename and
  raises :class:`DocumentChanged` instead of writing. A document that
  vanished is not recreated by a write that expected it to exist.
* Disk writes run on the store's own single-thread pool: fsync of a file and
  its directory costs 0.3 ms on an idle local disk (``bench/store_write.py``)
  but tens of milliseconds on a busy one, too long for the reactor thread.
  One thread also keeps writes in submission order. There is no timeout on
  these calls: a thread cannot be interrupted, and reporting a write as
  failed while it may still land would misreport what the disk holds.
  ``inline=True`` runs the work in the calling thread (tests, tools).
* :meth:`MetadataStore.decoded` keeps one decoded object per document
  version (its class is the caller's business), so hot reads skip both the
  read and the decode; only what callers ask for this way is held.
* :meth:`MetadataStore.lock` hands out one lock per key; request handlers and
  the reconciler hold it around read-modify-write of a document.
* :meth:`MetadataStore.load` sweeps the temp files an interrupted write left
  anywhere in the tree, then reads every document once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from kukeond.base import atomic, gojson, naming
from kukeond.logs import Logger
from kukeond.store.locks import KeyedLock
from kukeond.store.watch import TreeWatch

Key = tuple[str, ...]
Document = dict[str, Any]
Version = tuple[int, int, int]
"""A file's ``(st_ino, st_mtime_ns, st_size)``: changes whenever its content is replaced."""

ACCEPTED_API_VERSIONS = ("", "v1beta1")

RACY_NS = 100_000_000
"""A file or directory changed this recently (ns) is re-read rather than trusted."""

_LAST_SEEN = object()
_ABSENT = object()


class MetadataCorrupt(Exception):
    """A metadata file exists but cannot be used (wire Kind ``ConversionFailed``)."""

    wire_kind = "ConversionFailed"

    def __init__(self, key: Key, path: str, reason: str) -> None:
        super().__init__(f"conversion failed: {path}: {reason}")
        self.key = key
        self.path = path
        self.reason = reason


class DocumentChanged(Exception):
    """A write found the file changed (or gone, or created) since it was read.

    Nothing was written; the caller reads the document again and decides anew.
    """

    def __init__(self, key: Key, path: str) -> None:
        super().__init__(
            f"metadata {path} was changed by another writer since it was read; "
            "nothing was overwritten, retry"
        )
        self.key = key
        self.path = path


def parse_document(raw: bytes) -> Document:
    """Decode a metadata file the way the reference reads it.

    Invalid UTF-8 becomes U+FFFD (as Go's decoder does); the top level must
    be an object whose ``apiVersion`` is empty or ``v1beta1``. Raises
    ``ValueError`` with the reason otherwise.
    """
    doc = json.loads(raw.decode("utf-8", "replace"))
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, found {type(doc).__name__}")
    version = doc.get("apiVersion") or ""
    if version not in ACCEPTED_API_VERSIONS:
        raise ValueError(f"unsupported apiVersion: {version}")
    return doc


def render_document(doc: Document) -> bytes:
    """File content for ``doc``: Go ``MarshalIndent`` with two spaces, plus a newline."""
    return (gojson.dumps_indent(doc) + "\n").encode("utf-8")


def stamp_lifecycle(doc: Document, now: str) -> None:
    """Set ``status`` timestamps in place as every reference persist does.

    ``createdAt`` only when zero, ``updatedAt`` always, ``readyAt`` the first
    time the document is written in state ``Ready``.
    """
    status = doc.get("status")
    if not isinstance(status, dict):
        return
    if _is_zero(status.get("createdAt")):
        status["createdAt"] = now
    status["updatedAt"] = now
    if status.get("state") == "Ready" and _is_zero(status.get("readyAt")):
        status["readyAt"] = now


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON tree (dicts, lists, scalars), several times faster than deepcopy.

    Values of any other type fall back to :func:`copy.deepcopy`.
    """
    kind = type(value)
    # Leaves are tested inline: a call per string would double the cost.
    if kind is dict:
        return {k: v if type(v) in _JSON_SCALARS else copy_json(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _JSON_SCALARS else copy_json(v) for v in value]
    if kind in _JSON_SCALARS:
        return value
    return copy.deepcopy(value)


_JSON_SCALARS = frozenset((str, int, float, bool, type(None)))


def _is_zero(value: Any) -> bool:
    return not value or value == gojson.ZERO_TIME


def _version_of(st: os.stat_result) -> Version:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def file_version(path: str) -> Version | None:
    """The version of the file at ``path``; ``None`` when there is none."""
    try:
        return _version_of(os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


def _racy(mtime_ns: int) -> bool:
    return time.time_ns() - mtime_ns < RACY_NS


def _digest(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


@dataclass(eq=False, slots=True)
class _Stored:
    """One version of one metadata file: a digest of its content, or why it is unusable.

    The document is not kept (the disk has it); ``decoded`` holds what
    :meth:`MetadataStore.decoded` computed from this version.
    """

    version: Version
    digest: bytes | None
    corrupt: MetadataCorrupt | None = None
    decoded: dict[Callable[[Document], Any], Any] = field(default_factory=dict)

    def same_content(self, other: _Stored) -> bool:
        """Whether ``other`` is this version with this content (and usable)."""
        return (
            self.digest is not None
            and self.version == other.version
            and self.digest == other.digest
        )


def _file_names(directory: str) -> list[str]:
    try:
        return [e.name for e in os.scandir(directory) if e.is_file(follow_symlinks=False)]
    except OSError:
        return []


def _check_key(key: Key, *, allow_empty: bool = False) -> Key:
    key = tuple(key)
    low = 0 if allow_empty else 1
    if not low <= len(key) <= 4:
        raise ValueError(f"a metadata key has one to four names, got {key!r}")
    for name in key:
        if not naming.is_safe_path_component(name):
            raise ValueError(f"name {name!r} cannot be used as a path component")
    return key


class MetadataStore:
    """The run path's metadata documents, read through to the disk (see the module docstring)."""

    log = Logger()

    def __init__(
        self,
        run_path: str,
        *,
        inline: bool = False,
        clock: Callable[[], str] = gojson.now,
        reactor: Any = None,
        watch: bool = False,
    ) -> None:
        self.run_path = run_path
        self._inline = inline
        self._watching = watch
        self._watch: TreeWatch | None = None
        # keys whose cached document / listing no event has touched since it was read
        self._fresh: set[Key] = set()
        self._fresh_dirs: set[Key] = set()
        # moves whenever the cache may have changed; listings made within one epoch are kept
        self._epoch = 0
        self._listed: dict[tuple[int, Key, Any], tuple[int, list[tuple[Key, Any]]]] = {}
        self._clock = clock
        self._files: dict[Key, _Stored] = {}
        # parent key -> (the directory's (inode, mtime), its subdirectory names, sorted)
        self._dirs: dict[Key, tuple[tuple[int, int], tuple[str, ...]]] = {}
        # key -> version the daemon last read or wrote (None: saw it absent); the
        # writer thread updates it too, so queued writes expect their predecessors
        self._seen: dict[Key, Version | None] = {}
        # keys with a write or delete queued or running: reads leave _seen to the writer
        self._pending: dict[Key, int] = {}
        self._paths: dict[Key, str] = {}
        self._locks = KeyedLock()
        self._pool: ThreadPool | None = None
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor

    # life cycle

    def start(self) -> None:
        """Start the store's write thread (no-op when ``inline``)."""
        if self._inline or self._pool is not None:
            return
        self._pool = ThreadPool(minthreads=0, maxthreads=1, name="kukeond-store")
        self._pool.start()

    def stop(self) -> None:
        """Stop the write thread after the queued writes have run; stop watching."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.stop()
        self._watching = False
        if self._watch is not None:
            watch, self._watch = self._watch, None
            watch.close()
        self._forget_fresh()

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

    def load(self) -> int:
        """Sweep interrupted writes' temp files from the run path, then read every document.

        Blocking; run once before serving. Corrupt or unsupported files are
        reported with a warning and never listed. Returns the number of
        usable documents.
        """
        self._files.clear()
        self._dirs.clear()
        self._seen.clear()
        self._forget_fresh()
        # Network files share the tree and the temp names; the run path's own
        # files (the instance file) are written the same way.
        top: list[tuple[str, list[str], list[str]]] = [
            (self.run_path, [], _file_names(self.run_path))
        ]
        for directory, _dirs, names in [*top, *os.walk(naming.data_dir(self.run_path))]:
            for name in names:
                if atomic.is_temp_name(name):
                    path = os.path.join(directory, name)
                    if atomic.unlink_quietly(path):
                        self.log.warn(
                            "removed temp file of an interrupted write: {path}", path=path
                        )
        documents = sum(len(self.keys(depth)) for depth in (1, 2, 3, 4))
        self.log.info(
            "metadata tree read: {documents} documents, {corrupt} unusable",
            documents=documents,
            corrupt=len(self.corrupt()),
        )
        return documents

    # reads (validated against the disk)

    def path(self, key: Key) -> str:
        """Absolute path of the ``metadata.json`` of ``key``."""
        return naming.metadata_path(self.run_path, *_check_key(key))

    def _path(self, key: Key) -> str:
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = naming.metadata_path(self.run_path, *key)
        return path

    def _current(self, key: Key) -> _Stored | None:
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
        if cached is not None and cached.version == _version_of(st) and not _racy(st.st_mtime_ns):
            if watched:
                self._fresh.add(key)
            return cached
        return self._fetch(key, path, cached, watched)[0]

    def _fetch(
        self, key: Key, path: str, cached: _Stored | None, watched: bool
    ) -> tuple[_Stored | None, Document | None]:
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

    def _document(self, key: Key) -> tuple[_Stored, Document] | None:
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

    def _read(self, key: Key, path: str) -> tuple[_Stored, Document | None] | None:
        """The file's document with the version of exactly what was read; ``None`` if absent."""
        try:
            with open(path, "rb") as fh:
                version = _version_of(os.fstat(fh.fileno()))
                raw = fh.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            return self._unusable(key, path, file_version(path) or (0, 0, 0), str(exc))
        try:
            doc = parse_document(raw)
        except ValueError as exc:
            return self._unusable(key, path, version, str(exc))
        return _Stored(version, _digest(raw)), doc

    def _unusable(self, key: Key, path: str, version: Version, reason: str) -> tuple[_Stored, None]:
        self.log.warn("skipping unreadable metadata {path}: {reason}", path=path, reason=reason)
        return _Stored(version, None, MetadataCorrupt(key, path, reason)), None

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
        if cached is not None and cached[0] == version and not _racy(st.st_mtime_ns):
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

    def exists(self, key: Key) -> bool:
        """Whether a usable document is stored under ``key``."""
        self._sync()
        stored = self._current(_check_key(key))
        return stored is not None and stored.corrupt is None

    def _usable(self, key: Key) -> _Stored | None:
        self._sync()
        stored = self._current(_check_key(key))
        if stored is None:
            return None
        if stored.corrupt is not None:
            raise stored.corrupt
        return stored

    def get(self, key: Key) -> Document | None:
        """The document under ``key``, read from the disk (the caller's own); ``None`` if absent.

        Raises :class:`MetadataCorrupt` if the file exists but is unusable.
        """
        found = self._document(_check_key(key))
        return None if found is None else found[1]

    def version(self, key: Key) -> Version | None:
        """The version of ``key`` the daemon last read or wrote (``None``: absent).

        Pass it as ``expect`` to :meth:`put` to write only if the file is
        still that version; take it right after the read it belongs to.
        """
        return self._seen.get(_check_key(key))

    def decoded(self, key: Key, decode: Callable[[Document], Any]) -> Any:
        """``decode(document)`` of ``key``, computed once per stored version; ``None`` if absent.

        The result is shared by every caller, and is the same object, until
        the file changes: callers must not modify it (copy it first).
        ``decode`` must neither modify nor keep the dict it is given, and is
        the cache key (pass the same function every time). Its exceptions
        propagate and nothing is cached. Raises :class:`MetadataCorrupt` like
        :meth:`get`.
        """
        stored = self._usable(key)
        if stored is None:
            return None
        values = stored.decoded
        if decode in values:
            return values[decode]
        value = self._decode(key, decode)
        return None if value is _ABSENT else value

    def _decode(self, key: Key, decode: Callable[[Document], Any]) -> Any:
        """Read ``key`` and decode it, kept with the version read; ``_ABSENT`` if it vanished."""
        found = self._document(key)
        if found is None:
            return _ABSENT
        stored, doc = found
        values = stored.decoded
        value = values.get(decode, _ABSENT)
        if value is _ABSENT:  # a version other than the one stat saw may have been read
            value = values[decode] = decode(doc)
        return value

    def children(self, key: Key = ()) -> list[str]:
        """Names of the resources with a usable document directly below ``key``, sorted.

        ``()`` lists realms, ``(R,)`` the spaces of R, and so on.
        """
        key = _check_key(key, allow_empty=True)
        if len(key) == 4:
            return []
        self._sync()
        out = []
        for name in self._subdirs(key):
            stored = self._current((*key, name))
            if stored is not None and stored.corrupt is None:
                out.append(name)
        return out

    def documents(self, key: Key = ()) -> list[tuple[Key, Document]]:
        """``(key, document)`` of every resource directly below ``key``, sorted, read from disk."""
        key = _check_key(key, allow_empty=True)
        if len(key) == 4:
            return []
        self._sync()
        out = []
        for name in self._subdirs(key):
            child = (*key, name)
            stored, doc = self._fetch(
                child, self._path(child), self._files.get(child), self._watched(child)
            )
            if stored is not None and doc is not None:
                out.append((child, doc))
        return out

    def keys(self, depth: int, under: Key = ()) -> list[Key]:
        """Every stored key with ``depth`` names (4 = all cells) that starts with ``under``, sorted.

        Only the last level needs a usable document: a cell whose stack
        document is missing is still found.
        """
        under = _check_key(under, allow_empty=True)
        if len(under) >= depth:
            return [under] if len(under) == depth and self.exists(under) else []
        self._sync()
        level: list[Key] = [under]
        for _ in range(depth - 1 - len(under)):
            level = [(*parent, name) for parent in level for name in self._subdirs(parent)]
        return [(*parent, name) for parent in level for name in self.children(parent)]

    def decoded_keys(
        self, depth: int, under: Key, decode: Callable[[Document], Any]
    ) -> list[tuple[Key, Any]]:
        """``(key, decode(document))`` of every key :meth:`keys` gives, sorted.

        Each file is validated against the disk once (one ``stat``, or none
        when the store watches the tree and nothing changed), and ``decode``
        runs once per stored version as in :meth:`decoded`, whose rules apply.
        A watching store hands out the same list again while nothing in the
        tree changed: callers must not modify it.
        """
        under = _check_key(under, allow_empty=True)
        if len(under) >= depth:
            if len(under) == depth and self.exists(under):
                return [(under, self.decoded(under, decode))]
            return []
        self._sync()
        epoch = self._epoch
        listed = self._listed.get((depth, under, decode))
        if listed is not None and listed[0] == epoch:
            return listed[1]
        level: list[Key] = [under]
        for _ in range(depth - 1 - len(under)):
            level = [(*parent, name) for parent in level for name in self._subdirs(parent)]
        out = []
        fresh, files = self._fresh, self._files
        for parent in level:
            for name in self._subdirs(parent):
                key = (*parent, name)
                stored = files[key] if key in fresh else self._current(key)
                if stored is None or stored.corrupt is not None:
                    continue
                value = stored.decoded.get(decode, _ABSENT)
                if value is _ABSENT:
                    try:
                        value = self._decode(key, decode)
                    except MetadataCorrupt:  # changed since the stat: skipped like the others
                        continue
                    if value is _ABSENT:
                        continue
                out.append((key, value))
        if self._watch is not None and self._epoch == epoch:
            # Everything came from what no event has touched: good until something does.
            if len(self._listed) >= 64:
                self._listed.clear()
            self._listed[(depth, under, decode)] = (epoch, out)
        return out

    def corrupt(self) -> dict[Key, MetadataCorrupt]:
        """The unusable files of the tree, by key."""
        found: dict[Key, MetadataCorrupt] = {}
        self._sync()
        level: list[Key] = [()]
        for _ in range(4):
            level = [(*parent, name) for parent in level for name in self._subdirs(parent)]
            for key in level:
                stored = self._current(key)
                if stored is not None and stored.corrupt is not None:
                    found[key] = stored.corrupt
        return found

    # writes (disk first, checked against what was read)

    def lock(self, key: Key) -> Any:
        """Async context manager serialising work on ``key``: ``async with store.lock(k):``."""
        return self._locks(_check_key(key))

    def put(
        self, key: Key, doc: Document, *, stamp: bool = True, expect: Any = _LAST_SEEN
    ) -> Deferred[Document]:
        """Persist ``doc`` under ``key``; fires with the document as stored.

        With ``stamp`` the ``status`` timestamps are set first (see
        :func:`stamp_lifecycle`). The caller's dict is not modified. Fails
        with :class:`DocumentChanged`, writing nothing, when the file is no
        longer the version ``expect`` (by default the one the daemon last
        read or wrote; ``None`` expects no file).
        """
        key = _check_key(key)
        stored = copy.deepcopy(doc)
        if stamp:
            stamp_lifecycle(stored, self._clock())
        data = render_document(stored)
        path = self.path(key)

        def write() -> tuple[bool, Version]:
            wanted = self._seen.get(key) if expect is _LAST_SEEN else expect
            if file_version(path) != wanted:
                raise DocumentChanged(key, path)
            version = _version_of(atomic.atomic_write(path, data))
            self._seen[key] = version
            return wanted is not None, version

        def written(outcome: tuple[bool, Version]) -> Document:
            existed, version = outcome
            self._epoch += 1
            self._files[key] = _Stored(version, _digest(data))
            if existed:
                self.log.info("metadata file already exists, overwriting: {path}", path=path)
            else:
                self.log.info("metadata file written: {path}", path=path)
            return copy.deepcopy(stored)

        return self._writing(key, write).addCallback(written)

    def delete(self, key: Key) -> Deferred[bool]:
        """Remove ``metadata.json`` of ``key`` and its directory if that is now empty.

        Fires with whether a document was there; missing is not an error.
        """
        key = _check_key(key)
        path = self.path(key)

        def remove() -> bool:
            existed = atomic.remove_file_and_empty_dir(path)
            self._seen[key] = None
            return existed

        def removed(existed: bool) -> bool:
            self._epoch += 1
            self._files.pop(key, None)
            self._fresh.discard(key)
            return existed

        return self._writing(key, remove).addCallback(removed)

    def purge(self, key: Key) -> Deferred[None]:
        """Remove the whole directory of ``key`` (documents below it included)."""
        key = _check_key(key)
        directory = naming.resource_dir(self.run_path, *key)

        def removed(_: None) -> None:
            self._epoch += 1
            for index in (self._seen, self._files, self._dirs):
                for stale in [k for k in index if k[: len(key)] == key]:
                    del index[stale]
            for fresh in (self._fresh, self._fresh_dirs):
                fresh.difference_update([k for k in fresh if k[: len(key)] == key])

        return self._writing(key, lambda: atomic.remove_tree(directory)).addCallback(removed)

    def _writing(self, key: Key, work: Callable[[], Any]) -> Deferred[Any]:
        """Run disk ``work`` for ``key`` on the writer, marking the key pending meanwhile."""
        self._pending[key] = self._pending.get(key, 0) + 1

        def done(result: Any) -> Any:
            left = self._pending.pop(key) - 1
            if left:
                self._pending[key] = left
            return result

        return self._run(work).addBoth(done)

    def _run(self, work: Callable[[], Any]) -> Deferred[Any]:
        if self._inline:
            return maybeDeferred(work)
        if self._pool is None:
            raise RuntimeError("MetadataStore.start() must be called before writing")
        return deferToThreadPool(self._reactor, self._pool, work)
