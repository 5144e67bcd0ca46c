"""The metadata tree ``RUN/data/R[/S[/K[/C]]]/metadata.json`` with an in-memory index.

Documents are plain JSON dicts (the v1beta1 documents in their Go JSON
shape); the store neither knows nor needs their classes. A resource is
addressed by its *key*: ``(R,)``, ``(R, S)``, ``(R, S, K)`` or
``(R, S, K, C)``.

* :meth:`MetadataStore.load` scans the tree once at start-up; afterwards
  reads (:meth:`~MetadataStore.get`, :meth:`~MetadataStore.children`, …)
  are served from memory and never touch the disk.
* Writes and deletes go to disk first and update the index when they
  succeeded, so the index never shows something the disk does not hold.
* Disk work runs on the store's own single-thread pool: fsync of a file and
  its directory costs 0.3 ms on an idle local disk (``bench/store_write.py``)
  but tens of milliseconds on a busy one, too long for the reactor thread.
  One thread also keeps writes in submission order. There is no timeout on
  these calls: a thread cannot be interrupted, and reporting a write as
  failed while it may still land would let index and disk disagree.
  ``inline=True`` runs the work in the calling thread (tests, tools).
* :meth:`MetadataStore.decoded` keeps one decoded object per document (its
  class is the caller's business) until the document is rewritten, so hot
  reads skip both the copy and the decode.
* :meth:`MetadataStore.lock` hands out one lock per key; request handlers and
  the reconciler hold it around read-modify-write of a document.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from kukeond.api import gojson
from kukeond.host import naming
from kukeond.logs import Logger
from kukeond.store import atomic
from kukeond.store.locks import KeyedLock

Key = tuple[str, ...]
Document = dict[str, Any]

ACCEPTED_API_VERSIONS = ("", "v1beta1")


class MetadataCorrupt(Exception):
    """A metadata file exists but cannot be used (wire Kind ``ConversionFailed``)."""

    wire_kind = "ConversionFailed"

    def __init__(self, key: Key, path: str, reason: str) -> None:
        super().__init__(f"conversion failed: {path}: {reason}")
        self.key = key
        self.path = path
        self.reason = reason


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
    """The run path's metadata documents, indexed in memory."""

    log = Logger()

    def __init__(
        self,
        run_path: str,
        *,
        inline: bool = False,
        clock: Callable[[], str] = gojson.now,
        reactor: Any = None,
    ) -> None:
        self.run_path = run_path
        self._inline = inline
        self._clock = clock
        self._docs: dict[Key, Document] = {}
        self._corrupt: dict[Key, MetadataCorrupt] = {}
        # parent key -> names of its stored children, so listing one level is not a full scan
        self._kids: dict[Key, set[str]] = {}
        # key -> (the stored dict decoded, {decoder: its result}); stale once _docs moves on
        self._decoded: dict[Key, tuple[Document, dict[Callable[[Document], Any], Any]]] = {}
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
        """Stop the write thread after the queued writes have run."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.stop()

    def load(self) -> int:
        """Scan the tree into the index (blocking; run once before serving).

        Corrupt or unsupported files are skipped with a warning, remembered
        so :meth:`get` reports them, and never listed. Temp files of an
        interrupted write are removed. Returns the number of documents loaded.
        """
        self._docs.clear()
        self._corrupt.clear()
        self._decoded.clear()
        self._scan(naming.data_dir(self.run_path), ())
        self._kids.clear()
        for key in self._docs:
            self._kids.setdefault(key[:-1], set()).add(key[-1])
        self.log.info(
            "metadata index loaded: {documents} documents, {corrupt} skipped",
            documents=len(self._docs),
            corrupt=len(self._corrupt),
        )
        return len(self._docs)

    def _scan(self, directory: str, key: Key) -> None:
        if key:
            for path in atomic.remove_stale_temps(directory):
                self.log.warn("removed temp file of an interrupted write: {path}", path=path)
            self._load_one(key)
        if len(key) == 4:
            return
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and naming.is_safe_path_component(entry.name):
                self._scan(entry.path, (*key, entry.name))

    def _load_one(self, key: Key) -> None:
        path = self.path(key)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._mark_corrupt(key, path, str(exc))
            return
        try:
            self._docs[key] = parse_document(raw)
        except ValueError as exc:
            self._mark_corrupt(key, path, str(exc))

    def _mark_corrupt(self, key: Key, path: str, reason: str) -> None:
        self.log.warn("skipping unreadable metadata {path}: {reason}", path=path, reason=reason)
        self._corrupt[key] = MetadataCorrupt(key, path, reason)

    # reads (memory only)

    def path(self, key: Key) -> str:
        """Absolute path of the ``metadata.json`` of ``key``."""
        return naming.metadata_path(self.run_path, *_check_key(key))

    def exists(self, key: Key) -> bool:
        """Whether a usable document is stored under ``key``."""
        return tuple(key) in self._docs

    def get(self, key: Key) -> Document | None:
        """A copy of the document under ``key``; ``None`` if absent.

        Raises :class:`MetadataCorrupt` if the file exists but was unusable.
        """
        key = _check_key(key)
        doc = self._docs.get(key)
        if doc is not None:
            return copy_json(doc)
        if key in self._corrupt:
            raise self._corrupt[key]
        return None

    def decoded(self, key: Key, decode: Callable[[Document], Any]) -> Any:
        """``decode(document)`` of ``key``, computed once per stored version; ``None`` if absent.

        The result is shared by every caller, and is the same object, until
        the document is rewritten or removed: callers must not modify it
        (copy it first). ``decode`` must neither modify nor keep the dict it
        is given, and is the cache key (pass the same function every time).
        Its exceptions propagate and nothing is cached. Raises
        :class:`MetadataCorrupt` like :meth:`get`.
        """
        key = _check_key(key)
        doc = self._docs.get(key)
        if doc is None:
            if key in self._corrupt:
                raise self._corrupt[key]
            return None
        entry = self._decoded.get(key)
        if entry is None or entry[0] is not doc:
            entry = self._decoded[key] = (doc, {})
        values = entry[1]
        if decode in values:
            return values[decode]
        value = values[decode] = decode(doc)
        return value

    def children(self, key: Key = ()) -> list[str]:
        """Names of the stored resources directly below ``key``, sorted.

        ``()`` lists realms, ``(R,)`` the spaces of R, and so on.
        """
        return sorted(self._kids.get(_check_key(key, allow_empty=True), ()))

    def list(self, key: Key = ()) -> list[tuple[Key, Document]]:
        """``(key, copy of document)`` of every resource directly below ``key``, sorted."""
        key = _check_key(key, allow_empty=True)
        return [((*key, name), copy_json(self._docs[(*key, name)])) for name in self.children(key)]

    def keys(self, depth: int) -> list[Key]:
        """Every stored key with ``depth`` names (4 = all cells), sorted."""
        return sorted(k for k in self._docs if len(k) == depth)

    def corrupt(self) -> dict[Key, MetadataCorrupt]:
        """The files skipped as unusable, by key."""
        return dict(self._corrupt)

    # writes (disk first, then index)

    def lock(self, key: Key) -> Any:
        """Async context manager serialising work on ``key``: ``async with store.lock(k):``."""
        return self._locks(_check_key(key))

    def put(self, key: Key, doc: Document, *, stamp: bool = True) -> Deferred[Document]:
        """Persist ``doc`` under ``key``; fires with the document as stored.

        With ``stamp`` the ``status`` timestamps are set first (see
        :func:`stamp_lifecycle`). The caller's dict is not modified.
        """
        key = _check_key(key)
        stored = copy.deepcopy(doc)
        if stamp:
            stamp_lifecycle(stored, self._clock())
        data = render_document(stored)
        path = self.path(key)

        def write() -> bool:
            return atomic.atomic_write(path, data)

        def written(existed: bool) -> Document:
            self._docs[key] = stored
            self._kids.setdefault(key[:-1], set()).add(key[-1])
            self._corrupt.pop(key, None)
            if existed:
                self.log.info("metadata file already exists, overwriting: {path}", path=path)
            else:
                self.log.info("metadata file written: {path}", path=path)
            return copy.deepcopy(stored)

        return self._run(write).addCallback(written)

    def delete(self, key: Key) -> Deferred[bool]:
        """Remove ``metadata.json`` of ``key`` and its directory if that is now empty.

        Fires with whether a document was there; missing is not an error.
        """
        key = _check_key(key)
        path = self.path(key)

        def removed(existed: bool) -> bool:
            if self._docs.pop(key, None) is not None:
                self._unlist(key)
            self._corrupt.pop(key, None)
            self._decoded.pop(key, None)
            return existed

        return self._run(lambda: atomic.remove_file_and_empty_dir(path)).addCallback(removed)

    def purge(self, key: Key) -> Deferred[None]:
        """Remove the whole directory of ``key`` (documents below it included)."""
        key = _check_key(key)
        directory = naming.resource_dir(self.run_path, *key)

        def removed(_: None) -> None:
            if self._docs.pop(key, None) is not None:
                self._unlist(key)
            self._forget(self._docs, key)
            self._forget(self._kids, key)
            self._forget(self._corrupt, key)
            self._forget(self._decoded, key)

        return self._run(lambda: atomic.remove_tree(directory)).addCallback(removed)

    def _unlist(self, key: Key) -> None:
        names = self._kids.get(key[:-1])
        if names is not None:
            names.discard(key[-1])
            if not names:
                del self._kids[key[:-1]]

    @staticmethod
    def _forget(index: dict[Key, Any], key: Key) -> None:
        for stale in [k for k in index if k[: len(key)] == key]:
            del index[stale]

    def _run(self, work: Callable[[], Any]) -> Deferred[Any]:
        if self._inline:
            return maybeDeferred(work)
        if self._pool is None:
            raise RuntimeError("MetadataStore.start() must be called before writing")
        return deferToThreadPool(self._reactor, self._pool, work)
