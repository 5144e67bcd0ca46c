"""Create/Get/List/Start/Stop/Kill/Delete/Purge/Attach/Log Container."""

from __future__ import annotations

from kukeond import errors
from kukeond.api import docrules
from kukeond.api import kukeonv1 as w
from kukeond.api import wire_results as r
from kukeond.api.v1beta1 import (
    READY,
    STOPPED,
    UNKNOWN,
    ContainerDoc,
    ContainerSpec,
    ContainerStatus,
)
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.controller.cell_files import check_volumes
from kukeond.controller.cell_state import CellKey
from kukeond.controller.common import as_output, required, validated
from kukeond.controller.containers import CellContainers, container_names
from kukeond.controller.runtime import Runtime
from kukeond.controller.stopping import STOP_GRACE
from kukeond.rpc.dispatch import Handler

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


def new_spec(request: ContainerDoc, name: str) -> ContainerSpec:
    """The spec CreateContainer adds: only :data:`CREATE_FIELDS` of the request."""
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
    return fresh


class ContainerHandlers:
    """The container methods over one :class:`CellContainers`."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.containers = CellContainers(runtime)

    async def create(self, args: w.CreateContainerArgs) -> w.CreateContainerReply:
        """Add the container to its cell (if new) and start it."""
        request = args.Doc
        docrules.normalize_request_doc(request)
        raw_name = (
            request.metadata.name if (request.metadata.name or "").strip() else request.spec.id
        )
        name = validated("container", raw_name)
        key, _ = identify(request, fallback_to_id=True)
        added = await self.containers.add(key, new_spec(request, name))
        result = r.CreateContainerResult(
            Container=result_doc(request, added.container, name, added.state or READY),
            CellMetadataExistsPre=True,
            CellMetadataExistsPost=True,
            ContainerExistsPre=added.existed,
            ContainerExistsPost=True,
            ContainerCreated=not added.existed,
            Started=True,
        )
        return w.CreateContainerReply(Result=result)

    async def get(self, args: w.GetContainerArgs) -> w.GetContainerReply:
        """The stored spec with its live state."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=False)
        cell, container = self.containers.lookup(key, name)
        try:
            state = await self.containers.state_of(cell, container)
        except cerrors.ContainerdError:
            state = UNKNOWN
        result = r.GetContainerResult(
            Container=result_doc(args.Doc, container, name, state),
            CellMetadataExists=True,
            ContainerExists=True,
        )
        return w.GetContainerReply(Result=result)

    async def list(self, args: w.ListContainersArgs) -> w.ListContainersReply:
        """Container specs of matching stored cells (root flagged)."""
        wanted = (
            args.RealmName.strip(),
            args.SpaceName.strip(),
            args.StackName.strip(),
            args.CellName.strip(),
        )
        return w.ListContainersReply(Containers=self.containers.specs(wanted))

    async def start(self, args: w.StartContainerArgs) -> w.StartContainerReply:
        """The root refused; the cell's root must run."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=True)
        container, state = await self.containers.start(key, name)
        result = r.StartContainerResult(
            Container=result_doc(args.Doc, container, name, state or READY), Started=True
        )
        return w.StartContainerReply(Result=result)

    async def stop(self, args: w.StopContainerArgs) -> w.StopContainerReply:
        """SIGTERM, grace, SIGKILL, then the containerd container is removed."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=True)
        container, state = await self.containers.halt(key, name, STOP_GRACE, "stop", False)
        doc = (
            result_doc(args.Doc, container, name, state)
            if container is not None
            else as_output(args.Doc, "Container")
        )
        return w.StopContainerReply(Result=r.StopContainerResult(Container=doc, Stopped=True))

    async def kill(self, args: w.KillContainerArgs) -> w.KillContainerReply:
        """SIGKILL now, then the containerd container is removed."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=True)
        container, state = await self.containers.halt(key, name, 0.0, "kill", True)
        return w.KillContainerReply(
            Result=r.KillContainerResult(
                Container=result_doc(args.Doc, container, name, state or STOPPED), Killed=True
            )
        )

    async def delete(self, args: w.DeleteContainerArgs) -> w.DeleteContainerReply:
        """Stop, remove from containerd and from the cell spec."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=False)
        container = await self.containers.delete(key, name)
        result = r.DeleteContainerResult(
            Container=result_doc(args.Doc, container, name, READY, echo_labels=True),
            CellMetadataExists=True,
            ContainerExists=True,
            Deleted=["container", "task"],
        )
        return w.DeleteContainerReply(Result=result)

    async def purge(self, args: w.PurgeContainerArgs) -> w.PurgeContainerReply:
        """Delete if present, then sweep by containerd ID; errors in ``Purged``."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=True)
        container, problems = await self.containers.purge(key, name)
        purged = [f"purge-error:{p}" for p in problems] or [
            "cni-resources",
            "ipam-allocation",
            "cache-entries",
        ]
        result = r.PurgeContainerResult(
            Container=result_doc(args.Doc, container, name, READY, echo_labels=True),
            CellMetadataExists=True,
            ContainerExists=container is not None,
            Deleted=["container", "task"] if container is not None else None,
            Purged=purged,
        )
        return w.PurgeContainerReply(Result=result)

    async def attach(self, args: w.AttachContainerArgs) -> w.AttachContainerReply:
        """The tty socket path of an attachable container."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=False)
        cell, container = self.containers.lookup(key, name)
        if not container.attachable:
            raise errors.AttachNotSupported()
        path = naming.tty_socket_path(self.rt.run_path, *container_names(cell, name))
        return w.AttachContainerReply(Result=r.AttachContainerResult(HostSocketPath=path))

    async def log(self, args: w.LogContainerArgs) -> w.LogContainerReply:
        """The capture file (attachable) or the shim log file."""
        docrules.normalize_request_doc(args.Doc)
        key, name = identify(args.Doc, fallback_to_id=False)
        cell, container = self.containers.lookup(key, name)
        names = container_names(cell, name)
        result = r.LogContainerResult()
        if container.attachable:
            result.HostCapturePath = naming.tty_capture_path(self.rt.run_path, *names)
        else:
            result.HostLogPath = naming.container_log_path(self.rt.run_path, *names)
        return w.LogContainerReply(Result=result)


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
