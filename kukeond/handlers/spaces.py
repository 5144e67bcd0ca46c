"""CreateSpace, GetSpace, ListSpaces, DeleteSpace, PurgeSpace."""

from __future__ import annotations

from kukeond.api import kukeonv1 as w
from kukeond.api import wire_results as r
from kukeond.controller.runtime import Runtime
from kukeond.controller.spaces import SpaceLevel
from kukeond.rpc.dispatch import Handler


class SpaceHandlers:
    """The space methods over one :class:`SpaceLevel`."""

    def __init__(self, runtime: Runtime) -> None:
        self.level = SpaceLevel(runtime)

    async def create(self, args: w.CreateSpaceArgs) -> w.CreateSpaceReply:
        """Provision a new space, or re-ensure a stored one."""
        out = await self.level.create(args.Doc)
        return w.CreateSpaceReply(
            Result=r.CreateSpaceResult(
                Space=out.doc,
                MetadataExistsPre=not out.created,
                MetadataExistsPost=True,
                CgroupExistsPre=out.cgroup_existed,
                CgroupExistsPost=True,
                CgroupCreated=not out.cgroup_existed,
                CNINetworkExistsPre=out.extra_existed,
                CNINetworkExistsPost=True,
                CNINetworkCreated=not out.extra_existed,
                Created=out.created,
            )
        )

    async def get(self, args: w.GetSpaceArgs) -> w.GetSpaceReply:
        """A missing space is ``MetadataExists: false``, not an error."""
        level = self.level
        key = level.identify(args.Doc)
        result = r.GetSpaceResult(Space=level.empty())
        stored = level.read(key)
        if stored is not None:
            result.Space = stored
            result.MetadataExists = True
            result.CgroupExists = level.cgroup_exists(key, stored)
        result.CNINetworkExists = level.network_exists(key)
        return w.GetSpaceReply(Result=result)

    async def list(self, args: w.ListSpacesArgs) -> w.ListSpacesReply:
        """The spaces of one realm, or of every realm when ``RealmName`` is empty."""
        return w.ListSpacesReply(Spaces=self.level.list_stored((args.RealmName.strip(),)))

    async def delete(self, args: w.DeleteSpaceArgs) -> w.DeleteSpaceReply:
        """Remove the space (and with ``Cascade`` its stacks first)."""
        key = self.level.identify(args.Doc)
        space, removed = await self.level.delete(key, args.Force, args.Cascade)
        return w.DeleteSpaceReply(
            Result=r.DeleteSpaceResult(
                Space=space,
                SpaceName=key[1],
                RealmName=key[0],
                MetadataDeleted=True,
                CgroupDeleted=True,
                CNINetworkDeleted=True,
                Deleted=[*removed, "metadata", "cgroup", "network"],
            )
        )

    async def purge(self, args: w.PurgeSpaceArgs) -> w.PurgeSpaceReply:
        """Delete plus sweeping; a failure lands in ``Purged``, not ``Err``."""
        key = self.level.identify(args.Doc)
        space, removed, failure = await self.level.purge(key, args.Force, args.Cascade)
        result = r.PurgeSpaceResult(
            Space=space, Force=args.Force, Cascade=args.Cascade, Deleted=removed, Purged=[]
        )
        if failure:
            result.Purged = [f"purge-error:{failure}"]
        else:
            result.MetadataDeleted = result.CgroupDeleted = result.CNINetworkDeleted = True
            result.Deleted = [*removed, "metadata", "cgroup", "network"]
            result.Purged = ["cni-network", "cni-cache", "orphaned-containers", "all-metadata"]
            result.PurgeSucceeded = True
        return w.PurgeSpaceReply(Result=result)


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """The space methods, by bare name."""
    h = SpaceHandlers(runtime)
    return {
        "CreateSpace": h.create,
        "GetSpace": h.get,
        "ListSpaces": h.list,
        "DeleteSpace": h.delete,
        "PurgeSpace": h.purge,
    }
