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
  is added or removed. A version touched within
  :data:`~kukeond.store.versions.RACY_NS` is never
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
  raises :class:`~kukeond.store.errors.DocumentChanged` instead of writing. A document that
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
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from kukeond.base import atomic, gojson, naming
from kukeond.store.documents import Document, Key, check_key, render_document, stamp_lifecycle
from kukeond.store.errors import DocumentChanged, MetadataCorrupt
from kukeond.store.index import MetadataIndex
from kukeond.store.locks import KeyedLock
from kukeond.store.versions import Stored, Version, content_digest, file_version, version_of

_LAST_SEEN = object()
_ABSENT = object()


def _file_names(directory: str) -> list[str]:
    try:
        return [e.name for e in os.scandir(directory) if e.is_file(follow_symlinks=False)]
    except OSError:
        return []


class MetadataStore(MetadataIndex):
    """The run path's metadata documents, read through to the disk (see the module docstring)."""

    def __init__(
        self,
        run_path: str,
        *,
        inline: bool = False,
        clock: Callable[[], str] = gojson.now,
        reactor: Any = None,
        watch: bool = False,
    ) -> None:
        super().__init__(run_path, watch=watch)
        self._inline = inline
        self._clock = clock
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
        return naming.metadata_path(self.run_path, *check_key(key))

    def exists(self, key: Key) -> bool:
        """Whether a usable document is stored under ``key``."""
        self._sync()
        stored = self._current(check_key(key))
        return stored is not None and stored.corrupt is None

    def _usable(self, key: Key) -> Stored | None:
        self._sync()
        stored = self._current(check_key(key))
        if stored is None:
            return None
        if stored.corrupt is not None:
            raise stored.corrupt
        return stored

    def get(self, key: Key) -> Document | None:
        """The document under ``key``, read from the disk (the caller's own); ``None`` if absent.

        Raises :class:`MetadataCorrupt` if the file exists but is unusable.
        """
        found = self._document(check_key(key))
        return None if found is None else found[1]

    def version(self, key: Key) -> Version | None:
        """The version of ``key`` the daemon last read or wrote (``None``: absent).

        Pass it as ``expect`` to :meth:`put` to write only if the file is
        still that version; take it right after the read it belongs to.
        """
        return self._seen.get(check_key(key))

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
        """Decode ``key``, kept with the version read; ``_ABSENT`` if it vanished.

        The document of a version the validating read just parsed is used as it
        is; otherwise the file is read again.
        """
        last, self._last_read = self._last_read, None
        if last is not None and self._files.get(key) is last[0]:
            stored, doc = last
            value = stored.decoded.get(decode, _ABSENT)
            if value is _ABSENT:
                value = stored.decoded[decode] = decode(doc)
            return value
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
        key = check_key(key, allow_empty=True)
        if len(key) == 4:
            return []
        self._sync()
        out = []
        for name in self._subdirs(key):
            stored = self._current((*key, name))
            if stored is not None and stored.corrupt is None:
                out.append(name)
        return out

    def keys(self, depth: int, under: Key = ()) -> list[Key]:
        """Every stored key with ``depth`` names (4 = all cells) that starts with ``under``, sorted.

        Only the last level needs a usable document: a cell whose stack
        document is missing is still found.
        """
        under = check_key(under, allow_empty=True)
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
        under = check_key(under, allow_empty=True)
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
        return self._locks(check_key(key))

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
        key = check_key(key)
        stored = copy.deepcopy(doc)
        if stamp:
            stamp_lifecycle(stored, self._clock())
        data = render_document(stored)
        path = self.path(key)

        def write() -> tuple[bool, Version]:
            wanted = self._seen.get(key) if expect is _LAST_SEEN else expect
            if file_version(path) != wanted:
                raise DocumentChanged(key, path)
            version = version_of(atomic.atomic_write(path, data))
            self._seen[key] = version
            return wanted is not None, version

        def written(outcome: tuple[bool, Version]) -> Document:
            existed, version = outcome
            self._epoch += 1
            self._files[key] = Stored(version, content_digest(data))
            if existed:
                self.log.info("metadata file already exists, overwriting: {path}", path=path)
            else:
                self.log.info("metadata file written: {path}", path=path)
            return stored  # the store keeps only the version and digest: the copy is the caller's

        return self._writing(key, write).addCallback(written)

    def delete(self, key: Key) -> Deferred[bool]:
        """Remove ``metadata.json`` of ``key`` and its directory if that is now empty.

        Fires with whether a document was there; missing is not an error.
        """
        key = check_key(key)
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
        key = check_key(key)
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
