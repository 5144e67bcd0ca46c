"""Cells by key: create or start, read with live states, start, stop, kill, delete, purge.

Every mutating operation holds the cell's store lock (``store.lock((R, S, K, C))``)
for its whole read-modify-write, so calls on one cell are serialised while
calls on different cells run in parallel. The lifecycle itself lives in
:class:`kukeond.controller.cell_runner.CellRunner`.

Functions other controllers call (each takes the cell's lock itself unless
it says otherwise):

* :func:`delete_cell` ``(runtime, key)`` / :func:`purge_cell` ``(runtime, key)``
  — cascades from stacks, spaces and realms; ``key`` is ``(R, S, K, C)``.
  ``delete_cell`` raises ``KukeonError`` (``failed to delete cell: …``) when
  a container cannot be removed; ``purge_cell`` returns the problems it
  tolerated.
* :func:`create_or_start_cell` ``(runtime, doc)`` — what CreateCell does
  for a validated ``CellDoc`` (ApplyDocuments).
* :func:`start_cell` / :func:`stop_cell` / :func:`kill_cell`
  ``(runtime, key)`` — lifecycle by key (reconciler restarts, auto-delete).
* ``runtime.cells`` (:mod:`kukeond.controller.cell_runner`), to be used
  while already holding the cell's lock: ``load``, ``save``, ``start``,
  ``stop(doc, kill=…)``, ``delete``, ``purge``, ``live_statuses(doc)``,
  ``recreate(doc, ns)``; and the pure helpers ``statuses_from(doc,
  container_ids, task_status_by_id)`` and ``derive_cell_state(doc,
  statuses, cgroup_ok)`` that compute the reconciler's per-cell state from
  one namespace listing (§7.2 of the behaviour spec).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from kukeond import errors
from kukeond.api import docrules
from kukeond.api.v1beta1 import (
    READY,
    CellDoc,
    ContainerSpec,
    SpaceDoc,
)
from kukeond.base import gojson, naming
from kukeond.containerd import errors as cerrors
from kukeond.controller import common, secrets
from kukeond.controller.cell_files import check_volumes
from kukeond.controller.cell_reads import decode_cell, finish_output, stored_cell
from kukeond.controller.cell_state import CellKey, as_kukeon_error, cell_key, derive_cell_state
from kukeond.controller.common import (
    matching_array,
    q,
    read_doc,
    required,
)
from kukeond.controller.failures import EXPECTED_FAILURES
from kukeond.controller.runtime import Runtime

ROOT_HOST_NETWORK_MISMATCH = (
    "explicit rootContainerId must have hostNetwork: true when any cell container has "
    "hostNetwork: true"
)


def not_found(key: CellKey) -> errors.KukeonError:
    """The plain not-found error of Start/Stop/Kill/Delete/Purge Cell."""
    realm, space, stack, cell = key
    return errors.KukeonError(
        f"cell {q(cell)} not found in realm {q(realm)}, space {q(space)}, stack {q(stack)}"
    )


def identify(doc: CellDoc) -> CellKey:
    """Trimmed ``(R, S, K, C)`` of a request, name-required errors in the reference order."""
    name = required(doc.metadata.name, errors.CellNameRequired)
    realm = required(doc.spec.realmId, errors.RealmNameRequired)
    space = required(doc.spec.spaceId, errors.SpaceNameRequired)
    stack = required(doc.spec.stackId, errors.StackNameRequired)
    return (realm, space, stack, name)


output = finish_output
"""A cell as it leaves the daemon (``containers`` arrays never null)."""


def merge_space_defaults(runtime: Runtime, doc: CellDoc) -> None:
    """Apply the parent space's ``spec.defaults.container`` to every container (shallow)."""
    realm, space = doc.spec.realmId, doc.spec.spaceId
    stored = read_doc(runtime, (realm, space), SpaceDoc, "Space")
    if stored is None:
        raise errors.SpaceNotFound.after(f"failed to get space {q(space)} in realm {q(realm)}")
    defaults = stored.spec.defaults.container if stored.spec.defaults else None
    if defaults is None:
        return
    for container in doc.spec.containers or []:
        if not container.user:
            container.user = defaults.user
        if not container.readOnlyRootFilesystem and defaults.readOnlyRootFilesystem is not None:
            container.readOnlyRootFilesystem = defaults.readOnlyRootFilesystem
        if container.capabilities is None and defaults.capabilities is not None:
            container.capabilities = defaults.capabilities.clone()
        if not container.securityOpts and defaults.securityOpts:
            container.securityOpts = list(defaults.securityOpts)
        if not container.tmpfs and defaults.tmpfs:
            container.tmpfs = [t.clone() for t in defaults.tmpfs]
        if container.resources is None and defaults.resources is not None:
            container.resources = defaults.resources.clone()


def assign_ids(runtime: Runtime, doc: CellDoc, container: ContainerSpec) -> None:
    """Fill a container's owner names, containerd ID (checked) and conflist path."""
    realm, space, stack, cell = cell_key(doc)
    container.realmId, container.spaceId = realm, space
    container.stackId, container.cellId = stack, cell
    if container.root:
        cid = naming.root_containerd_id(space, stack, cell)
    else:
        cid = naming.containerd_id(space, stack, cell, container.id)
    try:
        container.containerdId = naming.check_containerd_id(cid)
    except naming.InvalidName as exc:
        raise errors.KukeonError(str(exc)) from None
    if not container.cniConfigPath:
        container.cniConfigPath = runtime.cells.conflist_path(realm, space)


def prepare_new_cell(runtime: Runtime, doc: CellDoc) -> None:
    """Space defaults, root container, containerd IDs and volume checks of a new cell."""
    merge_space_defaults(runtime, doc)
    root = docrules.ensure_root_container(doc)
    containers = doc.spec.containers or []
    if any(c.hostNetwork for c in containers) and not root.hostNetwork:
        raise errors.KukeonError(ROOT_HOST_NETWORK_MISMATCH)
    for container in containers:
        assign_ids(runtime, doc, container)
        try:
            check_volumes(container)
        except ValueError as exc:
            raise errors.KukeonError(str(exc)) from None
        # A missing secret source fails the request before anything exists.
        secrets.check(container, os.environ)


@dataclass
class CellCreation:
    """What creating (or re-ensuring) and starting a cell found and did."""

    cell: CellDoc | None = None
    MetadataExistsPre: bool = False
    CgroupExistsPre: bool = False
    CgroupCreated: bool = False
    RootContainerExistsPre: bool = False
    CgroupExistsPost: bool = False
    RootContainerExistsPost: bool = False
    Created: bool = False
    containers: list[tuple[str, bool, bool]] = field(default_factory=list)
    """``(name, existed before, exists after)`` of each container the request named."""


async def create_or_start_cell(runtime: Runtime, doc: CellDoc) -> CellCreation:
    """Provision ``doc`` (or ensure the stored cell of that name) and start it.

    ``doc`` must have passed the request checks (names, document rules,
    :func:`docrules.default_cell`). Takes the cell's lock.
    """
    runner = runtime.cells
    key = cell_key(doc)
    requested = [c.id for c in doc.spec.containers or []]
    requested_root = doc.spec.rootContainerId
    result = CellCreation()
    async with runtime.store.lock(key):
        stored = runner.load(key)
        result.MetadataExistsPre = stored is not None
        ns = runner.namespace(key[0])
        if stored is not None:
            cell = stored
            result.CgroupExistsPre = runtime.cgroups.exists(runner.cgroup_path(cell))
            result.RootContainerExistsPre = await _root_exists(runner, cell, ns)
            try:
                result.CgroupCreated = runner.ensure_cgroup(cell)
                # Written again only when missing: a running cell's etc-hosts holds
                # its address, which only its start knows.
                run = runtime.run_path
                if not all(
                    os.path.exists(path(run, *key))
                    for path in (naming.etc_hosts_path, naming.etc_hostname_path)
                ):
                    await runner.render_etc_files(cell)
            except EXPECTED_FAILURES as exc:
                raise errors.CreateCell.around(as_kukeon_error(exc)) from exc
            cell = await runner.save(cell)
        else:
            try:
                prepare_new_cell(runtime, doc)
                result.CgroupExistsPre = runtime.cgroups.exists(runner.cgroup_path(doc))
                result.CgroupCreated = await runner.provision(doc)
            except errors.KukeonError as exc:
                raise errors.CreateCell.around(exc) from exc
            cell = doc
        before = {c.id for c in stored.spec.containers or []} if stored is not None else set()
        try:
            cell = await runner.start(cell)
        except errors.KukeonError as exc:
            raise exc.wrap("failed to start cell containers") from exc
        after = {c.id for c in cell.spec.containers or []}
        result.cell = output(cell)
        if stored is None:
            # The stored cell names its root; the reference's reply to a new cell
            # carries only the rootContainerId of the request.
            result.cell.spec.rootContainerId = requested_root
        result.CgroupExistsPost = runtime.cgroups.exists(runner.cgroup_path(cell))
        result.RootContainerExistsPost = await _root_exists(runner, cell, ns)
        result.Created = stored is None
        result.containers = [(name, name in before, name in after) for name in requested]
    return result


async def _root_exists(runner: Any, cell: CellDoc, ns: str) -> bool:
    try:
        return await runner.root_exists(cell, ns)
    except cerrors.ContainerdError:
        return False


async def _locked(runtime: Runtime, key: CellKey, action: str) -> CellDoc:
    runner = runtime.cells
    async with runtime.store.lock(key):
        cell = runner.load(key)
        if cell is None:
            raise not_found(key)
        if action == "start":
            return await runner.start(cell)
        return await runner.stop(cell, kill=action == "kill")


async def start_cell(runtime: Runtime, key: CellKey) -> CellDoc:
    """Start a stored cell (no-op when it runs); takes the lock."""
    return await _locked(runtime, key, "start")


async def stop_cell(runtime: Runtime, key: CellKey) -> CellDoc:
    """Stop a stored cell (SIGTERM, grace, SIGKILL; containers removed); takes the lock."""
    return await _locked(runtime, key, "stop")


async def kill_cell(runtime: Runtime, key: CellKey) -> CellDoc:
    """Kill a stored cell (SIGKILL; containers removed); takes the lock."""
    return await _locked(runtime, key, "kill")


async def delete_cell(runtime: Runtime, key: CellKey) -> CellDoc | None:
    """Delete a cell; ``None`` if it did not exist. Takes the lock."""
    runner = runtime.cells
    async with runtime.store.lock(key):
        cell = runner.load(key)
        if cell is None:
            return None
        await runner.delete(cell)
        return cell


async def purge_cell(runtime: Runtime, key: CellKey) -> list[str]:
    """Purge a cell (tolerating failures, which are returned). Takes the lock."""
    runner = runtime.cells
    async with runtime.store.lock(key):
        cell = runner.load(key)
        if cell is None:
            return []
        return await runner.purge(cell)


@dataclass
class LiveCell:
    """A stored cell's kept text with the states containerd gives now."""

    text: gojson.RawJSON
    cgroup_exists: bool
    root_exists: bool


async def read_live(runtime: Runtime, key: CellKey) -> LiveCell | None:
    """The stored cell of ``key`` with live container states; ``None`` if there is none.

    One listing says which of the cell's containers (and its root) exist,
    and a task is asked for where one does; a read arriving while the same
    query runs for another one shares its answer. The text is the stored
    version's, with the live statuses spliced in.
    """
    text = stored_cell(runtime, key)
    if text is None:
        return None
    runner = runtime.cells
    try:
        live = await runner.shared_states(runner.namespace(key[0]), text.query, text.running)
    except cerrors.ContainerdError:
        live = None  # the stored statuses stand; the root counts as absent
    cell = text.raw if live is None else text.with_states(live.states)
    group = common.cgroup_of(runtime, text.cgroup_path, *text.key)
    root = live is not None and live.present is not None and text.root_cid in live.present
    return LiveCell(cell, runtime.cgroups.exists(group), root)


def list_cells(runtime: Runtime, wanted: tuple[str, str, str]) -> bytes:
    """The JSON array text of the matching stored cells (empty names match all).

    Each cell's text is built once per stored version, and the array is
    kept while nothing in the tree changed.
    """
    return matching_array(runtime, 4, wanted, decode_cell, _raw_text)


def _raw_text(text: Any) -> gojson.RawJSON:
    return text.raw


async def start_stopped_cell(runtime: Runtime, key: CellKey) -> CellDoc:
    """Start a stored cell whose workloads are not running; refuse a running one."""
    runner = runtime.cells
    async with runtime.store.lock(key):
        cell = runner.load(key)
        if cell is None:
            raise not_found(key)
        statuses = await runner.live_statuses(cell)
        name = q(key[3])
        # The workloads decide, not a root left running after its
        # workloads were stopped on request: such a cell starts again.
        if derive_cell_state(cell, statuses, True) == READY:
            raise errors.KukeonError(
                f"cell {name} has running containers and must first be stopped"
            )
        if not statuses and cell.status.state == READY:
            raise errors.KukeonError(
                f"cell {name} is already in Ready state and must first be stopped"
            )
        return await runner.start(cell)


async def purge_stored_cell(runtime: Runtime, key: CellKey) -> tuple[CellDoc, list[str]]:
    """Purge a stored cell; returns it and the problems tolerated. Takes the lock."""
    runner = runtime.cells
    async with runtime.store.lock(key):
        cell = runner.load(key)
        if cell is None:
            raise not_found(key)
        return cell, await runner.purge(cell)
