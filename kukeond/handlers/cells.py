"""CreateCell, GetCell, ListCells, StartCell, StopCell, KillCell, DeleteCell, PurgeCell."""

from __future__ import annotations

from kukeond import errors
from kukeond.api import docrules
from kukeond.api import kukeonv1 as w
from kukeond.api import wire_results as r
from kukeond.base import gojson
from kukeond.controller import cells
from kukeond.controller.cells import identify, not_found, output
from kukeond.controller.common import required, validated
from kukeond.controller.runtime import Runtime
from kukeond.rpc.dispatch import Handler

_LIST_HEAD, _LIST_TAIL = (
    gojson.dumps(w.ListCellsReply(Cells=[gojson.RawJSON(b"0")]).to_wire()).encode().split(b"[0]")
)
"""ListCellsReply's text before and after the ``Cells`` array."""


def _get_reply_parts(cgroup: bool, root: bool) -> tuple[bytes, bytes]:
    result = r.GetCellResult(Cell=gojson.RawJSON(b"0"), MetadataExists=True)
    result.CgroupExists, result.RootContainerExists = cgroup, root
    before, after = gojson.dumps(w.GetCellReply(Result=result).to_wire()).split('"Cell":0')
    return (before + '"Cell":').encode(), after.encode()


_GET_REPLY = {(c, o): _get_reply_parts(c, o) for c in (False, True) for o in (False, True)}
"""A found cell's GetCellReply text around the cell, by (CgroupExists, RootContainerExists)."""


class CellHandlers:
    """The cell methods over the cell operations of :mod:`kukeond.controller.cells`."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def create(self, args: w.CreateCellArgs) -> w.CreateCellReply:
        """Provision the cell (or re-ensure the stored one) and start it."""
        doc = args.Doc
        docrules.normalize_request_doc(doc)
        doc.metadata.name = validated("cell", doc.metadata.name)
        doc.spec.realmId = required(doc.spec.realmId, errors.RealmNameRequired)
        doc.spec.spaceId = required(doc.spec.spaceId, errors.SpaceNameRequired)
        doc.spec.stackId = required(doc.spec.stackId, errors.StackNameRequired)
        for container in doc.spec.containers or []:
            container.id = validated("container", container.id)
        docrules.default_cell(doc)
        done = await cells.create_or_start_cell(self.rt, doc)
        result = r.CreateCellResult(
            Cell=done.cell,
            MetadataExistsPre=done.MetadataExistsPre,
            MetadataExistsPost=True,
            CgroupExistsPre=done.CgroupExistsPre,
            CgroupExistsPost=done.CgroupExistsPost,
            CgroupCreated=done.CgroupCreated,
            RootContainerExistsPre=done.RootContainerExistsPre,
            RootContainerExistsPost=done.RootContainerExistsPost,
            RootContainerCreated=not done.RootContainerExistsPre,
            StartedPost=True,
            Started=True,
            Created=done.Created,
        )
        if done.containers:
            result.Containers = [
                r.ContainerCreationOutcome(
                    Name=name, ExistsPre=pre, ExistsPost=post, Created=post and not pre
                )
                for name, pre, post in done.containers
            ]
        return w.CreateCellReply(Result=result)

    async def get(self, args: w.GetCellArgs) -> w.GetCellReply | gojson.RawJSON:
        """The stored document with the container states containerd gives now.

        A found cell's reply is spliced around its kept text.
        """
        docrules.normalize_request_doc(args.Doc)
        live = await cells.read_live(self.rt, identify(args.Doc))
        if live is None:
            return w.GetCellReply(Result=r.GetCellResult(Cell=output(args.Doc)))
        head, tail = _GET_REPLY[(live.cgroup_exists, live.root_exists)]
        return gojson.RawJSON(head + live.text.data + tail)

    async def list(self, args: w.ListCellsArgs) -> gojson.RawJSON:
        """Stored documents (no live queries); empty filters match all."""
        wanted = (args.RealmName.strip(), args.SpaceName.strip(), args.StackName.strip())
        return gojson.RawJSON(_LIST_HEAD + cells.list_cells(self.rt, wanted) + _LIST_TAIL)

    async def start(self, args: w.StartCellArgs) -> w.StartCellReply:
        """Refuses a running cell, else (re)starts every container."""
        docrules.normalize_request_doc(args.Doc)
        cell = await cells.start_stopped_cell(self.rt, identify(args.Doc))
        return w.StartCellReply(Result=r.StartCellResult(Cell=output(cell), Started=True))

    async def stop(self, args: w.StopCellArgs) -> w.StopCellReply:
        """SIGTERM, grace, SIGKILL; containers removed."""
        docrules.normalize_request_doc(args.Doc)
        cell = await cells.stop_cell(self.rt, identify(args.Doc))
        return w.StopCellReply(Result=r.StopCellResult(Cell=output(cell), Stopped=True))

    async def kill(self, args: w.KillCellArgs) -> w.KillCellReply:
        """SIGKILL; containers removed."""
        docrules.normalize_request_doc(args.Doc)
        cell = await cells.kill_cell(self.rt, identify(args.Doc))
        return w.KillCellReply(Result=r.KillCellResult(Cell=output(cell), Killed=True))

    async def delete(self, args: w.DeleteCellArgs) -> w.DeleteCellReply:
        """Stop and remove the cell's containers, cgroup and metadata."""
        docrules.normalize_request_doc(args.Doc)
        key = identify(args.Doc)
        cell = await cells.delete_cell(self.rt, key)
        if cell is None:
            raise not_found(key)
        result = r.DeleteCellResult(
            Cell=output(cell),
            ContainersDeleted=bool(cell.spec.containers),
            CgroupDeleted=True,
            MetadataDeleted=True,
        )
        return w.DeleteCellReply(Result=result)

    async def purge(self, args: w.PurgeCellArgs) -> w.PurgeCellReply:
        """Failures are reported in ``Purged`` (``purge-error:``), not as errors."""
        docrules.normalize_request_doc(args.Doc)
        cell, problems = await cells.purge_stored_cell(self.rt, identify(args.Doc))
        deleted = (["containers"] if cell.spec.containers else []) + ["cgroup", "metadata"]
        purged = [f"purge-error:{p}" for p in problems] or [
            "cni-resources",
            "orphaned-containers",
            "all-metadata",
        ]
        result = r.PurgeCellResult(
            Cell=output(cell),
            ContainersDeleted=bool(cell.spec.containers),
            CgroupDeleted=True,
            MetadataDeleted=True,
            PurgeSucceeded=not problems,
            Force=args.Force,
            Cascade=args.Cascade,
            Deleted=deleted,
            Purged=purged,
        )
        return w.PurgeCellReply(Result=result)


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """The cell methods of the KukeonV1 service."""
    h = CellHandlers(runtime)
    return {
        "CreateCell": h.create,
        "GetCell": h.get,
        "ListCells": h.list,
        "StartCell": h.start,
        "StopCell": h.stop,
        "KillCell": h.kill,
        "DeleteCell": h.delete,
        "PurgeCell": h.purge,
    }
