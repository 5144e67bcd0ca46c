"""CreateStack, GetStack, ListStacks, DeleteStack, PurgeStack."""

from __future__ import annotations

from kukeond.api import kukeonv1 as w
from kukeond.api import wire_results as r
from kukeond.controller.runtime import Runtime
from kukeond.controller.stacks import StackLevel
from kukeond.rpc.dispatch import Handler


class StackHandlers:
    """The stack methods over one :class:`StackLevel`."""

    def __init__(self, runtime: Runtime) -> None:
        self.level = StackLevel(runtime)

    async def create(self, args: w.CreateStackArgs) -> w.CreateStackReply:
        """Provision a new stack, or re-ensure a stored one."""
        out = await self.level.create(args.Doc)
        return w.CreateStackReply(
            Result=r.CreateStackResult(
                Stack=out.doc,
                MetadataExistsPre=not out.created,
                MetadataExistsPost=True,
                CgroupExistsPre=out.cgroup_existed,
                CgroupExistsPost=True,
                CgroupCreated=not out.cgroup_existed,
                Created=out.created,
            )
        )

    async def get(self, args: w.GetStackArgs) -> w.GetStackReply:
        """A missing stack is ``MetadataExists: false``, not an error."""
        level = self.level
        key = level.identify(args.Doc)
        result = r.GetStackResult(Stack=level.empty())
        stored = level.read(key)
        if stored is not None:
            result.Stack = stored
            result.MetadataExists = True
            result.CgroupExists = level.cgroup_exists(key, stored)
        return w.GetStackReply(Result=result)

    async def list(self, args: w.ListStacksArgs) -> w.ListStacksReply:
        """Stacks filtered by ``RealmName``/``SpaceName`` (empty = any)."""
        wanted = (args.RealmName.strip(), args.SpaceName.strip())
        return w.ListStacksReply(Stacks=self.level.list_stored(wanted))

    async def delete(self, args: w.DeleteStackArgs) -> w.DeleteStackReply:
        """Remove the stack (and with ``Cascade`` its cells first)."""
        key = self.level.identify(args.Doc)
        stack, removed = await self.level.delete(key, args.Force, args.Cascade)
        realm, space, name = key
        return w.DeleteStackReply(
            Result=r.DeleteStackResult(
                Stack=stack,
                StackName=name,
                RealmName=realm,
                SpaceName=space,
                MetadataDeleted=True,
                CgroupDeleted=True,
                Deleted=[*removed, "metadata", "cgroup"],
            )
        )

    async def purge(self, args: w.PurgeStackArgs) -> w.PurgeStackReply:
        """Delete plus sweeping; a failure lands in ``Purged``, not ``Err``."""
        key = self.level.identify(args.Doc)
        stack, removed, failure = await self.level.purge(key, args.Force, args.Cascade)
        result = r.PurgeStackResult(Stack=stack, Deleted=removed, Purged=[])
        if failure:
            result.Purged = [f"purge-error:{failure}"]
        else:
            result.Deleted = [*removed, "metadata", "cgroup"]
            result.Purged = ["cni-resources", "orphaned-containers", "all-metadata"]
        return w.PurgeStackReply(Result=result)


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """The stack methods, by bare name."""
    h = StackHandlers(runtime)
    return {
        "CreateStack": h.create,
        "GetStack": h.get,
        "ListStacks": h.list,
        "DeleteStack": h.delete,
        "PurgeStack": h.purge,
    }
