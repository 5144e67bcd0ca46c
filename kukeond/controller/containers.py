"""Container RPCs: Create/Get/List/Start/Stop/Kill/Delete/Purge/Attach/Log Container.

Containers live inside their cell's document, so every call is addressed
through the cell (``spec.realmId/spaceId/stackId/cellId``) and mutating
calls hold the cell's store lock. The root container is managed through its
cell only. Logs and terminals never travel over RPC: LogContainer and
AttachContainer answer with host paths the client opens itself.
"""

from __future__ import annotations

from typing import Any

from kukeond import errors
from kukeond.api import docrules, kukeonv1, wire_results
from kukeond.api.structs import DecodeError
from kukeond.api.v1beta1 import (
    READY,
    STOPPED,
    UNKNOWN,
    CellDoc,
    ContainerDoc,
    ContainerSpec,
    ContainerStatus,
)
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.controller import cellspec
from kukeond.controller.cell_files import check_volumes
from kukeond.controller.cell_runner import (
    REASON_START_CONTAINER,
    CellKey,
    CellRunner,
    as_kukeon_error,
    containerd_id_of,
    root_container,
)
from kukeond.controller.cells import assign_ids, merge_space_defaults
from kukeond.controller.common import as_output, matching_keys, q, required, validated
from kukeond.controller.failures import EXPECTED_FAILURES
from kukeond.controller.runtime import Runtime
from kukeond.controller.stopping import DELETE_GRACE, STOP_GRACE
from kukeond.rpc.dispatch import Handler
from kukeond.store.metadata import MetadataCorrupt

CREATE_FIELDS = (
    "image",
    "command",
    "args",
    "volumes",
    "user",
    "readOnlyRootFilesystem",
    "capabilities",
    "securityOpts",
    "tmpfs",
    "resources",
)
"""The only fields CreateContainer takes from the request (as the reference)."""


def identify(doc: ContainerDoc, fallback_to_id: bool) -> tuple[CellKey, str]:
    """``((R, S, K, C), name)`` of a request; name-required errors in the reference order."""
    raw = doc.metadata.name
    if fallback_to_id and not (raw or "").strip():
        raw = doc.spec.id
    name = required(raw, errors.ContainerNameRequired)
    realm = required(doc.spec.realmId, errors.RealmNameRequired)
    space = required(doc.spec.spaceId, errors.SpaceNameRequired)
    stack = required(doc.spec.stackId, errors.StackNameRequired)
    cell = required(doc.spec.cellId, errors.CellNameRequired)
    return (realm, space, stack, cell), name


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


def result_doc(
    request: ContainerDoc,
    spec: ContainerSpec | None,
    name: str,
    state: str,
    echo_labels: bool = False,
) -> ContainerDoc:
    """The ContainerDoc of a reply: stored spec without ``containerdId``, given state."""
    doc = ContainerDoc()
    as_output(doc, "Container")
    doc.metadata.name = name
    labels = request.metadata.labels
    doc.metadata.labels = labels if echo_labels else (labels if labels is not None else {})
    if spec is not None:
        doc.spec = spec.clone()
        doc.spec.containerdId = ""
    doc.status = ContainerStatus(name=name, id=name, state=state)
    return doc


class ContainerHandlers:
    """The KukeonV1 container methods."""

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

    async def create(self, args: Any) -> Any:
        """CreateContainer: add the container to its cell (if new) and start it."""
        request: ContainerDoc = args.Doc
        docrules.normalize_request_doc(request)
        raw_name = (
            request.metadata.name if (request.metadata.name or "").strip() else request.spec.id
        )
        name = validated("container", raw_name)
        key, _ = identify(request, fallback_to_id=True)
        if not request.spec.image.strip():
            raise errors.KukeonError("invalid image reference")
        fresh = ContainerSpec(id=request.spec.id.strip() or name)
        for field in CREATE_FIELDS:
            value = getattr(request.spec, field)
            setattr(fresh, field, value.clone() if hasattr(value, "clone") else value)
        fresh.id = validated("container", fresh.id)
        if not fresh.volumes:  # the reference stores kuke's empty list as null
            fresh.volumes = None
        try:
            check_volumes(fresh)
        except ValueError as exc:
            raise errors.KukeonError(str(exc)) from None
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
        result = wire_results.CreateContainerResult(
            Container=result_doc(request, container, name, state or READY),
            CellMetadataExistsPre=True,
            CellMetadataExistsPost=True,
            ContainerExistsPre=existing is not None,
            ContainerExistsPost=True,
            ContainerCreated=existing is None,
            Started=True,
        )
        return kukeonv1.CreateContainerReply(Result=result)

    def lookup(self, request: ContainerDoc) -> tuple[CellDoc, ContainerSpec, str]:
        """Get/Attach/Log: the cell and container named by ``metadata.name`` (plain errors)."""
        key, name = identify(request, fallback_to_id=False)
        cell = self.runner.load(key)
        if cell is None:
            raise errors.KukeonError(f"failed to get cell {q(key[3])}: cell not found")
        container = find(cell, name)
        if container is None:
            raise errors.KukeonError(
                f"container {q(name)} not found in cell {q(key[3])} at run-path "
                f"{q(self.rt.run_path)}"
            )
        return cell, container, name

    async def get(self, args: Any) -> Any:
        """GetContainer: the stored spec with its live state."""
        docrules.normalize_request_doc(args.Doc)
        cell, container, name = self.lookup(args.Doc)
        try:
            state = await self.state_of(cell, container)
        except cerrors.ContainerdError:
            state = UNKNOWN
        result = wire_results.GetContainerResult(
            Container=result_doc(args.Doc, container, name, state),
            CellMetadataExists=True,
            ContainerExists=True,
        )
        return kukeonv1.GetContainerReply(Result=result)

    async def list(self, args: Any) -> Any:
        """ListContainers: container specs of matching stored cells (root flagged)."""
        wanted = (
            args.RealmName.strip(),
            args.SpaceName.strip(),
            args.StackName.strip(),
            args.CellName.strip(),
        )
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
        return kukeonv1.ListContainersReply(Containers=out)

    async def start(self, args: Any) -> Any:
        """StartContainer: the root refused; the cell's root must run."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=True)
        async with self.rt.store.lock(key):
            cell, container = self.load_target(key, name, "start")
            cell = await self.start_one(cell, container)
            container = find(cell, name) or container
            state = await self.state_of(cell, container)
        result = wire_results.StartContainerResult(
            Container=result_doc(args.Doc, container, name, state or READY), Started=True
        )
        return kukeonv1.StartContainerReply(Result=result)

    async def _halt(self, args: Any, grace: float, verb: str, strict: bool) -> tuple:
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=True)
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
        return container, name, state

    async def stop(self, args: Any) -> Any:
        """StopContainer: SIGTERM, grace, SIGKILL, then the containerd container is removed."""
        container, name, state = await self._halt(args, STOP_GRACE, "stop", strict=False)
        doc = (
            result_doc(args.Doc, container, name, state)
            if container is not None
            else as_output(args.Doc, "Container")
        )
        return kukeonv1.StopContainerReply(
            Result=wire_results.StopContainerResult(Container=doc, Stopped=True)
        )

    async def kill(self, args: Any) -> Any:
        """KillContainer: SIGKILL now, then the containerd container is removed."""
        container, name, state = await self._halt(args, 0.0, "kill", strict=True)
        return kukeonv1.KillContainerReply(
            Result=wire_results.KillContainerResult(
                Container=result_doc(args.Doc, container, name, state or STOPPED), Killed=True
            )
        )

    async def _remove(self, cell: CellDoc, container: ContainerSpec) -> None:
        ns = self.runner.namespace(cell.spec.realmId)
        cid = containerd_id_of(cell, container)
        await self.runner.scrub_network(cell, [cid])
        try:
            await self.runner.remove_container(ns, cid, DELETE_GRACE)
        except cerrors.ContainerdError as exc:
            raise as_kukeon_error(exc) from exc
        cell.spec.containers = [c for c in cell.spec.containers or [] if c is not container]
        cell.status.containers = [s for s in cell.status.containers or [] if s.id != container.id]

    async def delete(self, args: Any) -> Any:
        """DeleteContainer: stop, remove from containerd and from the cell spec."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=False)
        async with self.rt.store.lock(key):
            cell, container = self.load_target(key, name, "delete")
            await self._remove(cell, container)
            await self.runner.save(cell)
        result = wire_results.DeleteContainerResult(
            Container=result_doc(args.Doc, container, name, READY, echo_labels=True),
            CellMetadataExists=True,
            ContainerExists=True,
            Deleted=["container", "task"],
        )
        return kukeonv1.DeleteContainerReply(Result=result)

    async def purge(self, args: Any) -> Any:
        """PurgeContainer: delete if present, then sweep by containerd ID; errors in Purged."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=True)
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
                    await self._remove(cell, container)
                    await self.runner.save(cell)
                ns = self.runner.namespace(key[0])
                await self.runner.remove_container(ns, cid, 0.0)
            except (errors.KukeonError, cerrors.ContainerdError) as exc:
                problems.append(str(exc))
            await self.runner.scrub_network(cell, [cid])
        purged = [f"purge-error:{p}" for p in problems] or [
            "cni-resources",
            "ipam-allocation",
            "cache-entries",
        ]
        result = wire_results.PurgeContainerResult(
            Container=result_doc(args.Doc, container, name, READY, echo_labels=True),
            CellMetadataExists=True,
            ContainerExists=container is not None,
            Deleted=["container", "task"] if container is not None else None,
            Purged=purged,
        )
        return kukeonv1.PurgeContainerReply(Result=result)

    async def attach(self, args: Any) -> Any:
        """AttachContainer: the tty socket path of an attachable container."""
        docrules.normalize_request_doc(args.Doc)
        cell, container, name = self.lookup(args.Doc)
        if not container.attachable:
            raise errors.AttachNotSupported()
        path = naming.tty_socket_path(self.rt.run_path, *self._names(cell, name))
        return kukeonv1.AttachContainerReply(
            Result=wire_results.AttachContainerResult(HostSocketPath=path)
        )

    async def log(self, args: Any) -> Any:
        """LogContainer: the capture file (attachable) or the shim log file."""
        docrules.normalize_request_doc(args.Doc)
        cell, container, name = self.lookup(args.Doc)
        names = self._names(cell, name)
        result = wire_results.LogContainerResult()
        if container.attachable:
            result.HostCapturePath = naming.tty_capture_path(self.rt.run_path, *names)
        else:
            result.HostLogPath = naming.container_log_path(self.rt.run_path, *names)
        return kukeonv1.LogContainerReply(Result=result)

    @staticmethod
    def _names(cell: CellDoc, name: str) -> tuple[str, str, str, str, str]:
        spec = cell.spec
        return (spec.realmId, spec.spaceId, spec.stackId, cell.metadata.name, name)


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """The container methods of the KukeonV1 service."""
    h = ContainerHandlers(runtime)
    return {
        "CreateContainer": h.create,
        "GetContainer": h.get,
        "ListContainers": h.list,
        "StartContainer": h.start,
        "StopContainer": h.stop,
        "KillContainer": h.kill,
        "DeleteContainer": h.delete,
        "PurgeContainer": h.purge,
        "AttachContainer": h.attach,
        "LogContainer": h.log,
    }
