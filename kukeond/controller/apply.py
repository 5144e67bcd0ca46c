"""Apply: create or update resources from multi-document YAML (``ApplyDocuments``).

Parsing and validation (:mod:`kukeond.api.yamldoc`) reject the whole request
on any bad document, as the reference does. Then documents are applied in
dependency order (Realm, Space, Stack, Cell, Container; ties keep input
order), each reported ``created``, ``updated``, ``unchanged`` or ``failed``
with its ``Changes`` and ``Details``. Missing parents are created.

Differences from the reference (doc/reconcile.md): labels the daemon owns
(``*.kukeon.io``) never count as a change, so re-applying the same YAML
reports ``unchanged`` for every kind; space defaults are merged into the
desired containers before comparing, for the same reason; containers added
or changed in a running cell are started (the reference creates them
stopped), and a changed root recreates and restarts the whole cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kukeond import errors
from kukeond.api import docrules
from kukeond.api import v1beta1 as v1
from kukeond.api.structs import GoStruct
from kukeond.controller import cells
from kukeond.controller.cell_runner import CellRunner
from kukeond.controller.cell_state import containerd_id_of, root_container, workloads
from kukeond.controller.common import q, read_doc, validated
from kukeond.controller.containers import CellContainers
from kukeond.controller.failures import EXPECTED_FAILURES
from kukeond.controller.hierarchy import Level
from kukeond.controller.realms import RealmLevel
from kukeond.controller.runtime import Runtime
from kukeond.controller.spaces import SpaceLevel
from kukeond.controller.stacks import StackLevel
from kukeond.controller.stopping import STOP_GRACE
from kukeond.logs import Logger
from kukeond.store.documents import Key

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
FAILED = "failed"

SYSTEM_LABEL_SUFFIX = ".kukeon.io"

CONTAINER_FIELDS = (
    "image",
    "command",
    "args",
    "env",
    "ports",
    "volumes",
    "privileged",
    "user",
    "readOnlyRootFilesystem",
    "capabilities",
    "securityOpts",
    "tmpfs",
    "resources",
)
"""Container fields an apply compares; the first three need the container recreated."""

RUNTIME_FIELDS = frozenset(("image", "command", "args"))


class Breaking(Exception):
    """A change the daemon cannot make in place."""

    def __init__(self, kind: str, name: str, fields: list[str]) -> None:
        word = kind.lower()
        super().__init__(
            f"{word} {q(name)} has breaking changes: [{' '.join(fields)}]. "
            f"Delete the {word} and recreate it with the new spec"
        )


@dataclass
class Applied:
    """What happened to one document of a batch."""

    index: int
    kind: str
    name: str
    action: str
    error: str = ""
    changes: list[str] | None = None
    details: dict[str, str] | None = None


class Outcome:
    """What applying one document did."""

    def __init__(
        self, action: str, changes: list[str] | None = None, details: dict[str, str] | None = None
    ) -> None:
        self.action, self.changes, self.details = action, changes, details


def user_labels(labels: dict[str, str] | None) -> dict[str, str]:
    """Labels without the ones the daemon manages (``*.kukeon.io``)."""
    return {k: v for k, v in (labels or {}).items() if not k.endswith(SYSTEM_LABEL_SUFFIX)}


def merged_labels(stored: dict[str, str] | None, desired: dict[str, str] | None) -> dict:
    """Desired user labels plus the stored daemon-managed ones."""
    kept = {k: v for k, v in (stored or {}).items() if k.endswith(SYSTEM_LABEL_SUFFIX)}
    return {**user_labels(desired), **kept}


def plain(value: Any) -> Any:
    """A comparable form: structs as wire dicts, empty values as None."""
    if isinstance(value, GoStruct):
        value = value.to_wire()
    elif isinstance(value, list):
        value = [plain(v) for v in value]
    return value or None


def container_changes(desired: v1.ContainerSpec, stored: v1.ContainerSpec) -> list[str]:
    """The compared fields that differ, in :data:`CONTAINER_FIELDS` order."""
    return [f for f in CONTAINER_FIELDS if plain(getattr(desired, f)) != plain(getattr(stored, f))]


@dataclass(frozen=True)
class Compared:
    """A spec field of a realm, space or stack that an apply may change."""

    name: str
    detail: str
    """Its key in ``Details``."""
    message: Callable[[Any, Any], str]
    """``(stored, desired)`` → the ``Details`` text."""
    when_given: bool = False
    """Only a non-empty desired value counts (an empty one keeps the stored value)."""


_REALM_FIELDS = (
    Compared(
        "registryCredentials",
        "spec.registryCredentials",
        lambda _old, _new: "registry credentials changed",
    ),
)
_SPACE_FIELDS = (
    Compared(
        "defaults", "spec.defaults.container", lambda _old, _new: "container defaults changed"
    ),
)
_STACK_FIELDS = (
    Compared(
        "id", "spec.id", lambda old, new: f"ID changed from {q(old)} to {q(new)}", when_given=True
    ),
)


class Applier:
    """Applies parsed documents through the resource controllers."""

    log = Logger()

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.runner: CellRunner = runtime.cells
        self.containers = CellContainers(runtime)

    async def apply(self, raw: bytes) -> list[Applied]:
        """Parse, validate, then apply every valid document; say what happened to each.

        Documents that do not parse or validate come first in the result, as
        ``failed`` with the reference's line for them; the valid ones are
        applied in kind order (parents first) all the same.
        """
        from kukeond.api import yamldoc  # with PyYAML: loaded by the first apply

        parsed, rejected = yamldoc.parse_documents(raw)
        order = {kind: i for i, kind in enumerate(yamldoc.KINDS)}
        ordered = sorted(parsed, key=lambda p: (order[p.kind], p.index))
        done = [
            Applied(bad.index, bad.kind, bad.name, FAILED, str(bad), None, {}) for bad in rejected
        ]
        for item in ordered:
            entry = Applied(item.index, item.kind, item.name, "")
            step = getattr(self, "_" + item.kind.lower())
            try:
                outcome = await step(item.doc)
            except Exception as exc:  # noqa: BLE001  (a failed document never stops the rest)
                if not isinstance(exc, (*EXPECTED_FAILURES, Breaking)):
                    self.log.failure(
                        "apply of {kind} {name} failed", kind=item.kind, name=item.name
                    )
                entry.action, entry.error, entry.details = FAILED, str(exc), {}
            else:
                entry.action = outcome.action
                entry.changes, entry.details = outcome.changes, outcome.details
            done.append(entry)
        return done

    # --- parents ---------------------------------------------------------------

    async def _ensure_realm(self, name: str) -> None:
        if not self.rt.store.exists((name,)):
            await self._realm(v1.RealmDoc(metadata=v1.RealmMetadata(name=name)))

    async def _ensure_space(self, realm: str, name: str) -> None:
        await self._ensure_realm(realm)
        if not self.rt.store.exists((realm, name)):
            doc = v1.SpaceDoc(metadata=v1.SpaceMetadata(name=name))
            doc.spec.realmId = realm
            await self._space(doc)

    async def _ensure_stack(self, realm: str, space: str, name: str) -> None:
        await self._ensure_space(realm, space)
        if not self.rt.store.exists((realm, space, name)):
            doc = v1.StackDoc(metadata=v1.StackMetadata(name=name))
            doc.spec.realmId, doc.spec.spaceId = realm, space
            await self._stack(doc)

    async def _update(self, key: tuple[str, ...], cls: type, kind: str, change: Any) -> None:
        async with self.rt.store.lock(key):
            stored = read_doc(self.rt, key, cls, kind)
            if stored is None:
                raise errors.KukeonError(f"{kind.lower()} {q(key[-1])} disappeared")
            change(stored)
            await self.rt.store.put(key, stored.to_wire())

    # --- realm / space / stack ---------------------------------------------------

    async def _realm(self, doc: v1.RealmDoc) -> Outcome:
        key = (validated("realm", doc.metadata.name),)
        return await self._level_doc(RealmLevel(self.rt), doc, key, "namespace", _REALM_FIELDS)

    async def _space(self, doc: v1.SpaceDoc) -> Outcome:
        name = validated("space", doc.metadata.name)
        await self._ensure_realm(doc.spec.realmId)
        key = (doc.spec.realmId, name)
        return await self._level_doc(SpaceLevel(self.rt), doc, key, "cniConfigPath", _SPACE_FIELDS)

    async def _stack(self, doc: v1.StackDoc) -> Outcome:
        name = validated("stack", doc.metadata.name)
        realm, space = doc.spec.realmId, doc.spec.spaceId
        await self._ensure_space(realm, space)
        key = (realm, space, name)
        return await self._level_doc(StackLevel(self.rt), doc, key, "", _STACK_FIELDS)

    async def _level_doc(
        self, level: Level[Any], doc: Any, key: Key, fixed: str, compared: tuple[Compared, ...]
    ) -> Outcome:
        """Create a realm, space or stack, or update its labels and ``compared`` fields.

        A different value of the ``fixed`` spec field (when the document gives
        one) cannot be applied: the whole document is refused.
        """
        stored = level.read(key)
        if stored is None:
            await level.create(doc.clone())
            return Outcome(CREATED)
        wanted = getattr(doc.spec, fixed) if fixed else ""
        if wanted and wanted != getattr(stored.spec, fixed):
            raise Breaking(level.doc_kind, key[-1], [f"spec.{fixed}"])
        details = {}
        if user_labels(doc.metadata.labels) != user_labels(stored.metadata.labels):
            details["metadata.labels"] = "labels changed"
        for field in compared:
            desired, current = getattr(doc.spec, field.name), getattr(stored.spec, field.name)
            if (desired or not field.when_given) and plain(desired) != plain(current):
                details[field.detail] = field.message(current, desired)
        if not details:
            return Outcome(UNCHANGED)

        def change(current: Any) -> None:
            current.metadata.labels = merged_labels(current.metadata.labels, doc.metadata.labels)
            for field in compared:
                desired = getattr(doc.spec, field.name)
                if desired or not field.when_given:
                    setattr(current.spec, field.name, desired)

        await self._update(key, level.doc_type, level.doc_kind, change)
        return Outcome(UPDATED, list(details), details)

    # --- cell --------------------------------------------------------------------

    def _desired_cell(self, doc: v1.CellDoc) -> v1.CellDoc:
        """The request as CreateCell would store it (checked, defaulted, defaults merged)."""
        docrules.normalize_request_doc(doc)
        doc.metadata.name = validated("cell", doc.metadata.name)
        for container in doc.spec.containers or []:
            container.id = validated("container", container.id)
        docrules.default_cell(doc)
        cells.merge_space_defaults(self.rt, doc)
        return doc

    async def _cell(self, doc: v1.CellDoc) -> Outcome:
        spec = doc.spec
        await self._ensure_stack(spec.realmId, spec.spaceId, spec.stackId)
        desired = self._desired_cell(doc)
        key = (spec.realmId, spec.spaceId, spec.stackId, desired.metadata.name)
        if not self.rt.store.exists(key):
            await cells.create_or_start_cell(self.rt, desired)
            return Outcome(CREATED)
        async with self.rt.store.lock(key):
            stored = self.runner.load(key)
            if stored is None:
                raise cells.not_found(key)
            return await self._update_cell(desired, stored)

    async def _update_cell(self, desired: v1.CellDoc, stored: v1.CellDoc) -> Outcome:
        details: dict[str, str] = {}
        changes: list[str] = []
        if user_labels(desired.metadata.labels) != user_labels(stored.metadata.labels):
            changes.append("metadata.labels")
            details["metadata.labels"] = "labels changed"
            stored.metadata.labels = merged_labels(stored.metadata.labels, desired.metadata.labels)
        ns = self.runner.namespace(stored.spec.realmId)
        wanted_root = self._explicit_root(desired)
        current_root = root_container(stored)
        if wanted_root is not None and (
            current_root is None
            or any(
                plain(getattr(wanted_root, f)) != plain(getattr(current_root, f))
                for f in RUNTIME_FIELDS
            )
        ):
            return await self._recreate_cell(desired, stored, changes, details)
        running = await self._root_running(stored, ns)
        restart, removed = self._merge_workloads(desired, stored, changes, details)
        if not changes:
            if stored.status.state == v1.STOPPED:
                await self.runner.start(stored)
                notes = ["runtime stopped: containers re-materialized"] + [
                    f"container {q(c.id)} re-materialized" for c in workloads(stored)
                ]
                return Outcome(UPDATED, notes, None)
            return Outcome(UNCHANGED)
        cell = await self.runner.save(stored)
        if running:
            for cid in removed:
                await self.runner.remove_container(ns, cid, STOP_GRACE)
            for name in restart:
                container = next(c for c in cell.spec.containers or () if c.id == name)
                cell = await self.containers.start_one(cell, container)
        return Outcome(UPDATED, changes, details)

    @staticmethod
    def _explicit_root(doc: v1.CellDoc) -> v1.ContainerSpec | None:
        root_id = docrules.resolve_root_container(doc.spec)
        return (
            next((c for c in doc.spec.containers or [] if c.id == root_id), None)
            if root_id
            else None
        )

    async def _root_running(self, cell: v1.CellDoc, ns: str) -> bool:
        root = root_container(cell)
        if root is None:
            return False
        state = await self.runner.container_state_live(ns, containerd_id_of(cell, root))
        return state == v1.READY

    def _merge_workloads(
        self,
        desired: v1.CellDoc,
        stored: v1.CellDoc,
        changes: list[str],
        details: dict[str, str],
    ) -> tuple[list[str], list[str]]:
        """Bring ``stored``'s workloads in line with ``desired``; returns (to start, removed)."""
        root = root_container(stored)
        wanted = [
            c
            for c in desired.spec.containers or []
            if not (c.root or c.id == desired.spec.rootContainerId)
        ]
        have = {c.id: c for c in workloads(stored)}
        restart, removed = [], []
        merged = [root] if root is not None else []
        for container in wanted:
            current = have.pop(container.id, None)
            if current is None:
                cells.assign_ids(self.rt, stored, container)
                changes.append(f"container {q(container.id)} added")
                details[f"container.{container.id}"] = "added"
                restart.append(container.id)
                merged.append(container)
                continue
            fields = container_changes(container, current)
            if fields:
                for f in fields:
                    setattr(current, f, getattr(container, f))
                changes.append(f"container {q(container.id)} updated: {', '.join(fields)}")
                details[f"container.{container.id}"] = "updated: " + ", ".join(fields)
                if RUNTIME_FIELDS.intersection(fields):
                    restart.append(container.id)
            merged.append(current)
        for name, container in have.items():
            changes.append(f"container {q(name)} removed")
            details[f"container.{name}"] = "removed"
            removed.append(containerd_id_of(stored, container))
        stored.spec.containers = merged
        return restart, removed

    async def _recreate_cell(
        self, desired: v1.CellDoc, stored: v1.CellDoc, changes: list[str], details: dict[str, str]
    ) -> Outcome:
        stopped = await self.runner.stop(stored)
        stopped.spec.containers = desired.spec.containers
        stopped.spec.rootContainerId = desired.spec.rootContainerId
        docrules.ensure_root_container(stopped)
        for container in stopped.spec.containers or ():
            cells.assign_ids(self.rt, stopped, container)
        await self.runner.start(stopped)
        details["rootContainer"] = "root container spec changed (image, command, or args)"
        return Outcome(UPDATED, [*changes, "root container recreated"], details)

    # --- container ---------------------------------------------------------------

    async def _container(self, doc: v1.ContainerDoc) -> Outcome:
        spec = doc.spec
        name = validated("container", doc.metadata.name)
        key = (spec.realmId, spec.spaceId, spec.stackId, spec.cellId)
        async with self.rt.store.lock(key):
            cell = self.runner.load(key)
            if cell is None:
                raise errors.KukeonError(
                    f"parent cell {q(spec.cellId)} not found: cell {q(spec.cellId)} not found "
                    f"in realm {q(spec.realmId)}, space {q(spec.spaceId)}, "
                    f"stack {q(spec.stackId)}"
                )
            wanted = spec.clone()
            wanted.id = name
            probe = v1.CellDoc(metadata=cell.metadata.clone(), spec=cell.spec.clone())
            probe.spec.containers = [wanted]
            cells.merge_space_defaults(self.rt, probe)
            ns = self.runner.namespace(key[0])
            running = await self._root_running(cell, ns)
            current = next((c for c in cell.spec.containers or [] if c.id == name), None)
            if current is None:
                cells.assign_ids(self.rt, cell, wanted)
                cell.spec.containers = [*(cell.spec.containers or []), wanted]
                cell = await self.runner.save(cell)
                if running:
                    await self.containers.start_one(cell, wanted)
                return Outcome(CREATED)
            fields = container_changes(wanted, current)
            if not fields:
                return Outcome(UNCHANGED)
            if current is root_container(cell) and RUNTIME_FIELDS.intersection(fields):
                raise Breaking(v1.KIND_CONTAINER, name, ["spec.rootContainer"])
            for f in fields:
                setattr(current, f, getattr(wanted, f))
            cell = await self.runner.save(cell)
            if running and RUNTIME_FIELDS.intersection(fields):
                container = next(c for c in cell.spec.containers or () if c.id == name)
                await self.containers.start_one(cell, container)
        details = {f"spec.{f}": f"{f} changed" for f in fields}
        return Outcome(UPDATED, [f"spec.{f}" for f in fields], details)
