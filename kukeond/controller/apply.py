"""``KukeonV1.ApplyDocuments``: create or update resources from multi-document YAML.

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

from typing import Any

from kukeond import errors
from kukeond.api import docrules, kukeonv1
from kukeond.api import v1beta1 as v1
from kukeond.api.structs import GoStruct
from kukeond.controller import cells
from kukeond.controller.cell_runner import (
    CellRunner,
    containerd_id_of,
    root_container,
    workloads,
)
from kukeond.controller.common import q, read_doc, validated
from kukeond.controller.containers import ContainerHandlers
from kukeond.controller.failures import EXPECTED_FAILURES
from kukeond.controller.realms import Realms
from kukeond.controller.runtime import Runtime
from kukeond.controller.spaces import Spaces
from kukeond.controller.stacks import Stacks
from kukeond.controller.stopping import STOP_GRACE
from kukeond.logs import Logger
from kukeond.rpc.dispatch import Handler

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


class Applier:
    """Applies parsed documents through the resource controllers."""

    log = Logger()

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.runner: CellRunner = runtime.cells
        self.containers = ContainerHandlers(runtime)

    async def apply(self, raw: bytes) -> Any:
        """Parse, validate, then apply every valid document; fires with the result.

        Documents that do not parse or validate come first in the result, as
        ``failed`` with the reference's line for them; the valid ones are
        applied in kind order (parents first) all the same.
        """
        from kukeond.api import yamldoc  # with PyYAML: loaded by the first apply

        parsed, rejected = yamldoc.parse_documents(raw)
        order = {kind: i for i, kind in enumerate(yamldoc.KINDS)}
        ordered = sorted(parsed, key=lambda p: (order[p.kind], p.index))
        result = kukeonv1.ApplyDocumentsResult(Resources=[])
        for bad in rejected:
            result.Resources.append(
                kukeonv1.ApplyResourceResult(
                    Index=bad.index,
                    Kind=bad.kind,
                    Name=bad.name,
                    Action=FAILED,
                    Error=str(bad),
                    Details={},
                )
            )
        for item in ordered:
            entry = kukeonv1.ApplyResourceResult(Index=item.index, Kind=item.kind, Name=item.name)
            step = getattr(self, "_" + item.kind.lower())
            try:
                outcome = await step(item.doc)
            except Exception as exc:  # noqa: BLE001  (a failed document never stops the rest)
                if not isinstance(exc, (*EXPECTED_FAILURES, Breaking)):
                    self.log.failure(
                        "apply of {kind} {name} failed", kind=item.kind, name=item.name
                    )
                entry.Action, entry.Error, entry.Details = FAILED, str(exc), {}
            else:
                entry.Action = outcome.action
                entry.Changes, entry.Details = outcome.changes, outcome.details
            result.Resources.append(entry)
        return result

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
        name = validated("realm", doc.metadata.name)
        key = (name,)
        stored = read_doc(self.rt, key, v1.RealmDoc, v1.KIND_REALM)
        if stored is None:
            await Realms(self.rt).create(kukeonv1.CreateRealmArgs(Doc=doc.clone()))
            return Outcome(CREATED)
        if doc.spec.namespace and doc.spec.namespace != stored.spec.namespace:
            raise Breaking(v1.KIND_REALM, name, ["spec.namespace"])
        details = {}
        if user_labels(doc.metadata.labels) != user_labels(stored.metadata.labels):
            details["metadata.labels"] = "labels changed"
        if plain(doc.spec.registryCredentials) != plain(stored.spec.registryCredentials):
            details["spec.registryCredentials"] = "registry credentials changed"
        if not details:
            return Outcome(UNCHANGED)

        def change(current: v1.RealmDoc) -> None:
            current.metadata.labels = merged_labels(current.metadata.labels, doc.metadata.labels)
            current.spec.registryCredentials = doc.spec.registryCredentials

        await self._update(key, v1.RealmDoc, v1.KIND_REALM, change)
        return Outcome(UPDATED, list(details), details)

    async def _space(self, doc: v1.SpaceDoc) -> Outcome:
        name = validated("space", doc.metadata.name)
        realm = doc.spec.realmId
        await self._ensure_realm(realm)
        key = (realm, name)
        stored = read_doc(self.rt, key, v1.SpaceDoc, v1.KIND_SPACE)
        if stored is None:
            await Spaces(self.rt).create(kukeonv1.CreateSpaceArgs(Doc=doc.clone()))
            return Outcome(CREATED)
        if doc.spec.cniConfigPath and doc.spec.cniConfigPath != stored.spec.cniConfigPath:
            raise Breaking(v1.KIND_SPACE, name, ["spec.cniConfigPath"])
        details = {}
        if user_labels(doc.metadata.labels) != user_labels(stored.metadata.labels):
            details["metadata.labels"] = "labels changed"
        if plain(doc.spec.defaults) != plain(stored.spec.defaults):
            details["spec.defaults.container"] = "container defaults changed"
        if not details:
            return Outcome(UNCHANGED)

        def change(current: v1.SpaceDoc) -> None:
            current.metadata.labels = merged_labels(current.metadata.labels, doc.metadata.labels)
            current.spec.defaults = doc.spec.defaults

        await self._update(key, v1.SpaceDoc, v1.KIND_SPACE, change)
        return Outcome(UPDATED, list(details), details)

    async def _stack(self, doc: v1.StackDoc) -> Outcome:
        name = validated("stack", doc.metadata.name)
        realm, space = doc.spec.realmId, doc.spec.spaceId
        await self._ensure_space(realm, space)
        key = (realm, space, name)
        stored = read_doc(self.rt, key, v1.StackDoc, v1.KIND_STACK)
        if stored is None:
            await Stacks(self.rt).create(kukeonv1.CreateStackArgs(Doc=doc.clone()))
            return Outcome(CREATED)
        details = {}
        if user_labels(doc.metadata.labels) != user_labels(stored.metadata.labels):
            details["metadata.labels"] = "labels changed"
        if doc.spec.id and doc.spec.id != stored.spec.id:
            details["spec.id"] = f"ID changed from {q(stored.spec.id)} to {q(doc.spec.id)}"
        if not details:
            return Outcome(UNCHANGED)

        def change(current: v1.StackDoc) -> None:
            current.metadata.labels = merged_labels(current.metadata.labels, doc.metadata.labels)
            current.spec.id = doc.spec.id or current.spec.id

        await self._update(key, v1.StackDoc, v1.KIND_STACK, change)
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
                container = next(c for c in cell.spec.containers if c.id == name)
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
        for container in stopped.spec.containers:
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
                container = next(c for c in cell.spec.containers if c.id == name)
                await self.containers.start_one(cell, container)
        details = {f"spec.{f}": f"{f} changed" for f in fields}
        return Outcome(UPDATED, [f"spec.{f}" for f in fields], details)


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """``ApplyDocuments``."""
    applier = Applier(runtime)

    async def apply_documents(args: Any) -> Any:
        result = await applier.apply(args.RawYAML or b"")
        return kukeonv1.ApplyDocumentsReply(Result=result)

    return {"ApplyDocuments": apply_documents}
