"""The containers of a cell: add, start, stop, kill, remove and sweep one workload.

Containers live inside their cell's document, so every operation is
addressed through the cell's key and the mutating ones hold the cell's
store lock. The root container is managed through its cell only: these
operations refuse it. Logs and terminals never travel over RPC; the paths
the client opens itself come from :mod:`kukeond.base.naming`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kukeond import errors
from kukeond.api.gotypes import DecodeError
from kukeond.api.v1beta1 import CellDoc, ContainerSpec
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.controller import cellspec
from kukeond.controller.cell_runner import CellRunner
from kukeond.controller.cell_state import (
    REASON_START_CONTAINER,
    CellKey,
    as_kukeon_error,
    containerd_id_of,
    root_container,
)
from kukeond.controller.cells import assign_ids, merge_space_defaults
from kukeond.controller.common import matching_keys, q
from kukeond.controller.failures import EXPECTED_FAILURES
from kukeond.controller.runtime import Runtime
from kukeond.controller.stopping import DELETE_GRACE
from kukeond.store.errors import MetadataCorrupt


def find(cell: CellDoc, name: str) -> ContainerSpec | None:
    """The container called ``name`` in the cell spec."""
    return next((c for c in cell.spec.containers or [] if c.id == name), None)


def cell_missing(key: CellKey) -> errors.KukeonError:
    """``cell "C" not found in realm "R", space "S", stack "K"``."""
    realm, space, stack, cell = key
    return errors.KukeonError(
        f"cell {q(cell)} not found in realm {q(realm)}, space {q(space)}, stack {q(stack)}"
    )


def container_missing(name: str, cell: str) -> errors.KukeonError:
    """``container "X" not found in cell "C"``."""
    return errors.KukeonError(f"container {q(name)} not found in cell {q(cell)}")


_PAST = {"start": "started", "stop": "stopped", "kill": "killed", "delete": "deleted"}


def root_refused(action: str, cell: str) -> errors.KukeonError:
    """Refusal to ``action`` (start, stop, kill, delete) the root container directly."""
    return errors.KukeonError(
        f"root container cannot be {_PAST[action]} directly, {action} the cell instead "
        f"using 'kuke {action} cell {cell}'"
    )


@dataclass
class Added:
    """What adding (or finding) and starting a container did."""

    container: ContainerSpec
    existed: bool
    state: str


class CellContainers:
    """The containers of stored cells over one :class:`Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.runner: CellRunner = runtime.cells

    def load_cell(self, key: CellKey) -> CellDoc:
        """The stored cell or the plain not-found error."""
        cell = self.runner.load(key)
        if cell is None:
            raise cell_missing(key)
        return cell

    def load_target(self, key: CellKey, name: str, verb: str) -> tuple[CellDoc, ContainerSpec]:
        """The cell and its container ``name``, which must exist and not be the root."""
        cell, container = self.load_target_if_any(key, name, verb)
        if container is None:
            raise container_missing(name, key[3])
        return cell, container

    def load_target_if_any(
        self, key: CellKey, name: str, verb: str
    ) -> tuple[CellDoc, ContainerSpec | None]:
        """The cell and its container ``name`` (``None`` when missing), never the root."""
        cell = self.load_cell(key)
        container = find(cell, name)
        if container is not None and container is root_container(cell):
            raise root_refused(verb, key[3])
        return cell, container

    async def state_of(self, cell: CellDoc, container: ContainerSpec) -> str:
        """Live state of one container of ``cell``."""
        ns = self.runner.namespace(cell.spec.realmId)
        return await self.runner.container_state_live(ns, containerd_id_of(cell, container))

    async def start_one(self, cell: CellDoc, container: ContainerSpec) -> CellDoc:
        """Recreate and start a workload joined to the running root; persist statuses."""
        runner = self.runner
        ns = runner.namespace(cell.spec.realmId)
        name = cell.metadata.name
        root = root_container(cell)
        assert root is not None
        try:
            root_task = await self.rt.containerd.task_state(ns, containerd_id_of(cell, root))
        except cerrors.NotFound:
            root_task = None
        except cerrors.ContainerdError as exc:
            raise as_kukeon_error(exc) from exc
        if root_task is None or root_task.status != "running" or not root_task.pid:
            raise errors.KukeonError(
                f"root container of cell {q(name)} is not running; start the cell first "
                f"using 'kuke start cell {name}'"
            )
        cid = containerd_id_of(cell, container)
        ctx = runner.context(cell, ns)
        try:
            await runner.remove_container(ns, cid, 0.0)
            images = await runner.image_configs(ns, [container], ctx.realm)
            await runner.create_and_start(
                ctx,
                cell,
                container,
                cid,
                images[container.id],
                cellspec.namespace_paths(root_task.pid),
            )
        except Exception as exc:
            await runner.mark_failed(cell, REASON_START_CONTAINER, exc)
            if not isinstance(exc, EXPECTED_FAILURES):
                raise  # a bug: the dispatcher logs it; the Failed cell is repaired by a start
            raise as_kukeon_error(exc) from exc
        return await runner.mark_ready(cell, ns)

    async def add(self, key: CellKey, fresh: ContainerSpec) -> Added:
        """Add ``fresh`` to the cell unless it has a container of that ID; start it."""
        async with self.rt.store.lock(key):
            cell = self.runner.load(key)
            if cell is None:
                raise errors.KukeonError(f"cell {q(key[3])} not found")
            existing = find(cell, fresh.id)
            if existing is None:
                try:
                    probe = CellDoc(spec=cell.spec.clone(), metadata=cell.metadata.clone())
                    probe.spec.containers = [fresh]
                    merge_space_defaults(self.rt, probe)
                    assign_ids(self.rt, cell, fresh)
                except errors.KukeonError as exc:
                    raise errors.CreateCell.around(exc) from exc
                cell.spec.containers = [*(cell.spec.containers or []), fresh]
                cell = await self.runner.save(cell)
                container = find(cell, fresh.id) or fresh
            else:
                container = existing
            if container.root:
                raise root_refused("start", key[3])
            cell = await self.start_one(cell, container)
            container = find(cell, fresh.id) or container
            state = await self.state_of(cell, container)
        return Added(container, existing is not None, state)

    def lookup(self, key: CellKey, name: str) -> tuple[CellDoc, ContainerSpec]:
        """The cell and its container ``name``, the root included (plain errors)."""
        cell = self.runner.load(key)
        if cell is None:
            raise errors.KukeonError(f"failed to get cell {q(key[3])}: cell not found")
        container = find(cell, name)
        if container is None:
            raise errors.KukeonError(
                f"container {q(name)} not found in cell {q(key[3])} at run-path "
                f"{q(self.rt.run_path)}"
            )
        return cell, container

    def specs(self, wanted: tuple[str, str, str, str]) -> list[ContainerSpec]:
        """Container specs of the matching stored cells (empty names match all), root flagged."""
        out = []
        for realm, space, stack, cell_name in matching_keys(self.rt, 4, wanted):
            try:
                cell = self.runner.load((realm, space, stack, cell_name))
            except (MetadataCorrupt, DecodeError):  # unreadable cells are skipped, as in List*
                continue
            if cell is None:
                continue
            root = root_container(cell)
            for container in cell.spec.containers or []:
                spec = container.clone()
                if container is root:
                    spec.root = True
                out.append(spec)
        return out

    async def start(self, key: CellKey, name: str) -> tuple[ContainerSpec, str]:
        """Start one workload of a cell whose root runs; return it and its live state."""
        async with self.rt.store.lock(key):
            cell, container = self.load_target(key, name, "start")
            cell = await self.start_one(cell, container)
            container = find(cell, name) or container
            return container, await self.state_of(cell, container)

    async def halt(
        self, key: CellKey, name: str, grace: float, verb: str, strict: bool
    ) -> tuple[ContainerSpec | None, str]:
        """Stop (``grace`` > 0) or kill a workload and remove its containerd container.

        Without ``strict`` a container the cell does not list is still
        stopped by its derived containerd ID and comes back as ``None``.
        """
        async with self.rt.store.lock(key):
            cell, container = self.load_target_if_any(key, name, verb)
            if container is None and strict:
                raise container_missing(name, key[3])
            ns = self.runner.namespace(key[0])
            realm, space, stack, cell_name = key
            cid = (
                containerd_id_of(cell, container)
                if container is not None
                else naming.containerd_id(space, stack, cell_name, name)
            )
            try:
                await self.runner.remove_container(ns, cid, grace)
            except cerrors.ContainerdError as exc:
                raise as_kukeon_error(exc) from exc
            cell.status.containers = await self.runner.live_statuses(cell, ns)
            cell = await self.runner.save(cell)
            state = await self.runner.container_state_live(ns, cid)
        return container, state

    async def remove(self, cell: CellDoc, container: ContainerSpec) -> None:
        """Remove one container from containerd, its network and the cell document."""
        ns = self.runner.namespace(cell.spec.realmId)
        cid = containerd_id_of(cell, container)
        await self.runner.scrub_network(cell, [cid])
        try:
            await self.runner.remove_container(ns, cid, DELETE_GRACE)
        except cerrors.ContainerdError as exc:
            raise as_kukeon_error(exc) from exc
        cell.spec.containers = [c for c in cell.spec.containers or [] if c is not container]
        cell.status.containers = [s for s in cell.status.containers or [] if s.id != container.id]

    async def delete(self, key: CellKey, name: str) -> ContainerSpec:
        """Stop and remove a workload, from containerd and from its cell."""
        async with self.rt.store.lock(key):
            cell, container = self.load_target(key, name, "delete")
            await self.remove(cell, container)
            await self.runner.save(cell)
        return container

    async def purge(self, key: CellKey, name: str) -> tuple[ContainerSpec | None, list[str]]:
        """Delete the container if the cell lists it, then sweep by containerd ID.

        Returns the container (``None`` when the cell did not list it) and the
        problems met, which do not stop the sweep.
        """
        problems = []
        async with self.rt.store.lock(key):
            cell = self.load_cell(key)
            if self.rt.store.get((key[0],)) is None:
                raise errors.KukeonError(f"realm {q(key[0])} not found")
            container = find(cell, name)
            _, space, stack, cell_name = key
            cid = (
                containerd_id_of(cell, container)
                if container is not None
                else naming.containerd_id(space, stack, cell_name, name)
            )
            if container is not None and container is root_container(cell):
                raise root_refused("delete", key[3])
            try:
                if container is not None:
                    await self.remove(cell, container)
                    await self.runner.save(cell)
                ns = self.runner.namespace(key[0])
                await self.runner.remove_container(ns, cid, 0.0)
            except (errors.KukeonError, cerrors.ContainerdError) as exc:
                problems.append(str(exc))
            await self.runner.scrub_network(cell, [cid])
        return container, problems


def container_names(cell: CellDoc, name: str) -> tuple[str, str, str, str, str]:
    """``(realm, space, stack, cell, container)``: the names of its host paths."""
    spec = cell.spec
    return (spec.realmId, spec.spaceId, spec.stackId, cell.metadata.name, name)
