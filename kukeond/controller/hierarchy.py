"""The realm > space > stack hierarchy: one implementation for the three levels.

Each level is a metadata document ``RUN/data/<key>/metadata.json`` plus a
cgroup, and some levels own one more host object (a realm its containerd
namespace, a space its CNI network). Creating, re-ensuring, deleting with or
without cascade and purging follow the same steps at every level; a
:class:`Level` subclass says only what differs: the document type, the words
of its errors, its extra host object and the level below it.

Nothing here knows the wire: the RPC handlers (:mod:`kukeond.handlers`),
ApplyDocuments and the cascades call these methods and build replies from
what they return.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from kukeond import errors
from kukeond.api import docrules
from kukeond.api import v1beta1 as v1
from kukeond.base import gojson, naming
from kukeond.controller import common
from kukeond.controller.common import q
from kukeond.controller.failures import EXPECTED_FAILURES, log_step_failure
from kukeond.controller.runtime import Runtime
from kukeond.host.cgroups import CgroupError
from kukeond.logs import Logger
from kukeond.store.documents import Key

log = Logger()


D = TypeVar("D", v1.RealmDoc, v1.SpaceDoc, v1.StackDoc)


@dataclass
class Ensured(Generic[D]):
    """The outcome of a create: the stored document and what existed before."""

    doc: D
    created: bool
    cgroup_existed: bool = False
    extra_existed: bool = False
    """The level's own host object (namespace, network) existed before the call."""


class Level(ABC, Generic[D]):
    """One level of the hierarchy over one :class:`Runtime`.

    Subclasses set the class attributes and override the hooks; the
    ``key`` of a document is its names from the realm down, e.g.
    ``(realm, space)`` for a space.
    """

    kind: ClassVar[str]
    """The level's word in messages: ``realm``, ``space``, ``stack``."""
    child_word: ClassVar[str]
    """The word for the level below, in cascade messages and ``Deleted`` entries."""
    doc_type: type[D]
    status_type: ClassVar[type]
    name_required: ClassVar[type[errors.Sentinel]]
    create_step: ClassVar[type[errors.Sentinel]]
    first_state: ClassVar[str] = v1.PENDING
    """The state written before the host objects are made."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    @property
    def doc_kind(self) -> str:
        """The document ``kind`` (``Realm``, ``Space``, ``Stack``)."""
        return self.kind.capitalize()

    # --- hooks ----------------------------------------------------------------------

    def parents(self, doc: D) -> tuple[str, ...]:
        """The names above this level, required (empty for a realm)."""
        return ()

    def check_parent(self, key: Key) -> None:
        """Refuse to create below a parent that is not stored (a realm has none)."""

    @abstractmethod
    def not_found(self, key: Key) -> errors.KukeonError:
        """The plain (Kind ``Unknown``) error of a missing document."""

    def check(self, key: Key, doc: D) -> None:
        """Validate ``doc`` before anything is written."""

    async def make_extra(self, key: Key, doc: D, new: bool) -> bool:
        """Make (or re-ensure) the level's own host object; return whether it existed."""
        return False

    async def after_cgroup(self, key: Key, doc: D) -> None:
        """Steps that need the cgroup and the extra object (a space's egress policy)."""

    def repairs(self, state: str) -> bool:
        """Whether re-ensuring a document in ``state`` sets it Ready."""
        return state != v1.READY

    @abstractmethod
    async def remove(self, key: Key) -> None:
        """Tear down the level's own host objects and its metadata (children are gone)."""

    @abstractmethod
    async def delete_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Delete the child ``key`` in a cascade (taking the child's lock)."""

    @abstractmethod
    async def purge_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Purge the child ``key`` in a cascade (taking the child's lock)."""

    # --- create -----------------------------------------------------------------------

    def key_for_create(self, doc: D) -> Key:
        """Normalize and default a create request's document; return its key."""
        docrules.normalize_request_doc(doc)
        name = common.validated(self.kind, doc.metadata.name)
        doc.metadata.name = name
        key = (*self.parents(doc), name)
        self.apply_defaults(doc, key)
        return key

    @abstractmethod
    def apply_defaults(self, doc: D, key: Key) -> None:
        """Write the checked names back into a create request's document, with defaults."""

    async def create(self, doc: D) -> Ensured[D]:
        """Provision a new document and its host objects, or re-ensure a stored one."""
        key = self.key_for_create(doc)
        self.check_parent(key)
        async with self.rt.store.lock(key):
            stored = self.read(key)
            try:
                if stored is None:
                    return await self._provision(key, doc)
                return await self._ensure(key, stored)
            except EXPECTED_FAILURES as exc:
                raise self.create_step.around(exc) from None

    def _make_cgroup(self, group: str) -> list[str]:
        try:
            return list(self.rt.cgroups.create(group))
        except (CgroupError, OSError, ValueError) as exc:
            raise errors.KukeonError(f"failed to create {self.kind} cgroup: {exc}") from None

    async def _provision(self, key: Key, doc: D) -> Ensured[D]:
        store = self.rt.store
        self.check(key, doc)
        common.as_output(doc, self.doc_kind)
        doc.status = self.status_type(state=self.first_state)
        await store.put(key, doc.to_wire())
        try:
            await self.make_extra(key, doc, new=True)
            group = naming.cgroup_path(self.rt.cgroup_root, *key)
            doc.status.subtreeControllers = self._make_cgroup(group) or None
            doc.status.cgroupPath = group
            await self.after_cgroup(key, doc)
        except Exception as exc:
            # Any failure, a bug included, leaves Failed, which the next create repairs.
            doc.status.state = v1.FAILED
            doc.status.reason = f"Create{self.doc_kind}Failed"
            doc.status.message = str(exc)
            try:
                await store.put(key, doc.to_wire())
            except Exception as write_error:  # noqa: BLE001 - the first error is reported
                log_step_failure(log, write_error, f"cannot mark {self.kind} failed")
            raise
        doc.status.state = v1.READY
        await store.put(key, doc.to_wire())
        return Ensured(doc, created=True)

    async def _ensure(self, key: Key, stored: D) -> Ensured[D]:
        self.check(key, stored)
        before = stored.to_wire()
        extra_existed = await self.make_extra(key, stored, new=False)
        group = common.cgroup_of(self.rt, stored.status.cgroupPath, *key)
        cgroup_existed = self.rt.cgroups.exists(group)
        controllers = self._make_cgroup(group) or None
        await self.after_cgroup(key, stored)
        stored.status.cgroupPath = group
        stored.status.subtreeControllers = controllers
        if self.repairs(stored.status.state):
            common.mark_ready(stored.status)
        stored = await common.save_if_changed(
            self.rt, key, stored, before, self.doc_type, self.doc_kind
        )
        return Ensured(
            stored, created=False, cgroup_existed=cgroup_existed, extra_existed=extra_existed
        )

    # --- read -------------------------------------------------------------------------

    def identify(self, doc: D) -> Key:
        """The key a Get/Delete/Purge request names (every name required)."""
        name = common.required(doc.metadata.name, self.name_required)
        return (*self.parents(doc), name)

    def read(self, key: Key) -> D | None:
        """The stored document, or ``None`` when there is none."""
        return common.read_doc(self.rt, key, self.doc_type, self.doc_kind)

    def empty(self) -> D:
        """The document a Get of a missing one answers."""
        return common.empty_doc(self.doc_type, self.doc_kind)

    def cgroup_exists(self, key: Key, stored: D) -> bool:
        """Whether the stored document's cgroup (or the default one) exists."""
        return self.rt.cgroups.exists(common.cgroup_of(self.rt, stored.status.cgroupPath, *key))

    def list_stored(self, wanted: tuple[str, ...]) -> list[gojson.RawJSON]:
        """Every readable document below the given parent names (empty = any), by key.

        Each comes as its wire text, built once per stored version.
        """
        parents: list[Key] = [()]
        above: Key
        for want in wanted:
            below: list[Key] = []
            for above in parents:
                names = [want] if want else self.children(above)
                below += [(*above, name) for name in names if common.safe(name)]
            parents = below
        found: list[gojson.RawJSON] = []
        for key in parents:
            found += common.list_wire(self.rt, key, self.doc_type, self.doc_kind)
        return found

    def children(self, key: Key) -> list[str]:
        """Names of the stored children of ``key``."""
        return self.rt.store.children(key)

    # --- delete and purge -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _stored_locked(self, key: Key) -> AsyncIterator[D]:
        """The stored document of ``key`` under its lock, or the not-found error."""
        if not common.safe(*key):
            raise self.not_found(key)
        async with self.rt.store.lock(key):
            stored = self.read(key)
            if stored is None:
                raise self.not_found(key)
            yield stored

    async def delete(self, key: Key, force: bool, cascade: bool) -> tuple[D, list[str]]:
        """Delete a stored document (children first with ``cascade``).

        Returns the document as it was and the ``child:name`` entries removed.
        """
        async with self._stored_locked(key) as stored:
            removed = self._child_entries(key) if cascade else []
            try:
                await self.delete_cascade(key, force, cascade)
            except EXPECTED_FAILURES as exc:
                raise errors.wrap(exc, f"failed to delete {self.kind}") from None
        return stored, removed

    def _child_entries(self, key: Key) -> list[str]:
        return [f"{self.child_word}:{child}" for child in self.children(key)]

    async def delete_locked(self, key: Key, force: bool, cascade: bool) -> None:
        """Delete ``key`` as a cascade from above does: under its own lock."""
        async with self.rt.store.lock(key):
            await self.delete_cascade(key, force, cascade)

    async def delete_cascade(self, key: Key, force: bool, cascade: bool) -> None:
        """Delete the children (``cascade``) or refuse if there are some, then ``key``."""
        await self._each_child(key, force, cascade, "delete", self.delete_child)
        await self.remove(key)

    async def _each_child(self, key: Key, force: bool, cascade: bool, verb: str, op: Any) -> None:
        children = self.children(key)
        if cascade:
            for child in children:
                try:
                    await op((*key, child), force, cascade)
                except EXPECTED_FAILURES as exc:
                    raise errors.wrap(
                        exc, f"failed to {verb} {self.child_word} {q(child)}"
                    ) from None
        elif not force and children:
            raise errors.ResourceHasDependencies(
                f"{self.kind} {q(key[-1])} has {len(children)} {self.child_word}(s). "
                f"Use --cascade to {verb} them or --force to skip validation"
            )

    def stored_cgroup(self, key: Key) -> str:
        """The cgroup a stored document names, else the default one (no document needed)."""
        store = self.rt.store
        raw = store.get(key) if store.exists(key) else {}
        stored_path = ((raw or {}).get("status") or {}).get("cgroupPath") or ""
        return common.cgroup_of(self.rt, stored_path, *key)


class ChildLevel(Level[D]):
    """A level below the realm: purged by the generic purge, which sweeps what is left."""

    async def purge(self, key: Key, force: bool, cascade: bool) -> tuple[D, list[str], str]:
        """Delete plus sweeping, for a stored document; a failure is returned, not raised.

        Returns the document, the ``child:name`` entries and the failure text
        (empty when the purge succeeded).
        """
        async with self._stored_locked(key) as stored:
            removed = self._child_entries(key) if cascade else []
            try:
                await self.purge_cascade(key, force, cascade)
            except EXPECTED_FAILURES as exc:
                log.warn(f"purge of {self.kind} {{key}} failed: {{error}}", key=key, error=str(exc))
                return stored, removed, str(exc)
        return stored, removed, ""

    async def purge_locked(self, key: Key, force: bool, cascade: bool) -> None:
        """Purge ``key`` as a cascade from above does: under its own lock."""
        async with self.rt.store.lock(key):
            await self.purge_cascade(key, force, cascade)

    async def purge_cascade(self, key: Key, force: bool, cascade: bool) -> None:
        """Purge the children (``cascade``) or refuse if there are some, delete, sweep."""
        await self._each_child(key, force, cascade, "purge", self.purge_child)
        try:
            await self.delete_cascade(key, force, cascade)
        except EXPECTED_FAILURES as exc:
            raise errors.wrap(exc, f"failed to delete {self.kind}") from None
        await self.purge_leftovers(key)

    @abstractmethod
    async def purge_leftovers(self, key: Key) -> None:
        """Sweep what a delete leaves behind (labelled containers, cgroup, directory)."""
