"""CreateRealm, GetRealm, ListRealms, DeleteRealm, PurgeRealm."""

from __future__ import annotations

from kukeond.api import kukeonv1 as w
from kukeond.api import wire_results as r
from kukeond.controller.realms import RealmLevel
from kukeond.controller.runtime import Runtime
from kukeond.rpc.dispatch import Handler


class RealmHandlers:
    """The realm methods over one :class:`RealmLevel`."""

    def __init__(self, runtime: Runtime) -> None:
        self.level = RealmLevel(runtime)

    async def create(self, args: w.CreateRealmArgs) -> w.CreateRealmReply:
        """Provision a new realm, or re-ensure a stored one."""
        out = await self.level.create(args.Doc)
        return w.CreateRealmReply(
            Result=r.CreateRealmResult(
                Realm=out.doc,
                MetadataExistsPre=not out.created,
                MetadataExistsPost=True,
                CgroupExistsPre=out.cgroup_existed,
                CgroupExistsPost=True,
                CgroupCreated=not out.cgroup_existed,
                ContainerdNamespaceExistsPre=out.extra_existed,
                ContainerdNamespaceExistsPost=True,
                ContainerdNamespaceCreated=not out.extra_existed,
                Created=out.created,
            )
        )

    async def get(self, args: w.GetRealmArgs) -> w.GetRealmReply:
        """A missing realm is ``MetadataExists: false``, not an error."""
        level = self.level
        key = level.identify(args.Doc)
        result = r.GetRealmResult(Realm=level.empty())
        stored = level.read(key)
        if stored is not None:
            result.Realm = stored
            result.MetadataExists = True
            result.CgroupExists = level.cgroup_exists(key, stored)
        namespace = level.namespace_of(args.Doc)
        result.ContainerdNamespaceExists = await level.namespace_exists(namespace)
        return w.GetRealmReply(Result=result)

    async def list(self, args: w.ListRealmsArgs) -> w.ListRealmsReply:
        """Every readable realm, by name (``[]`` when none)."""
        return w.ListRealmsReply(Realms=self.level.list_stored(()))

    async def delete(self, args: w.DeleteRealmArgs) -> w.DeleteRealmReply:
        """Remove the realm (and with ``Cascade`` its spaces first)."""
        key = self.level.identify(args.Doc)
        realm, removed = await self.level.delete(key, args.Force, args.Cascade)
        return w.DeleteRealmReply(
            Result=r.DeleteRealmResult(
                Realm=realm,
                Deleted=[*removed, "metadata", "cgroup", "namespace"],
                MetadataDeleted=True,
                CgroupDeleted=True,
                ContainerdNamespaceDeleted=True,
            )
        )

    async def purge(self, args: w.PurgeRealmArgs) -> w.PurgeRealmReply:
        """Delete plus best-effort removal of everything the realm left.

        Works without metadata (the realm is then reported in state
        ``Unknown`` and ``RealmDeleted`` is false).
        """
        out = await self.level.purge_realm(args.Doc, args.Force, args.Cascade)
        deleted = out.deleted + (["metadata", "cgroup", "namespace"] if out.existed else [])
        return w.PurgeRealmReply(
            Result=r.PurgeRealmResult(
                Realm=out.realm,
                RealmDeleted=out.existed,
                PurgeSucceeded=True,
                Force=args.Force,
                Cascade=args.Cascade,
                Deleted=deleted,
                Purged=["orphaned-containers", "cni-resources", "all-metadata"],
            )
        )


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """The realm methods, by bare name."""
    h = RealmHandlers(runtime)
    return {
        "CreateRealm": h.create,
        "GetRealm": h.get,
        "ListRealms": h.list,
        "DeleteRealm": h.delete,
        "PurgeRealm": h.purge,
    }
