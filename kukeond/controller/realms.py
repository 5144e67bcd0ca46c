"""Realm RPCs: CreateRealm, GetRealm, ListRealms, DeleteRealm, PurgeRealm.

A realm is a metadata document ``RUN/data/R/metadata.json``, a containerd
namespace (``spec.namespace``, default ``R.<suffix>``) and a cgroup
``CGROOT/R``. Behaviour, result flags and error texts follow the reference
daemon (see the wire specification §2.4); where it differs here it is said
in the method's docstring.
"""

from __future__ import annotations

from typing import Any

from kukeond import errors
from kukeond.api import docrules, kukeonv1
from kukeond.api import v1beta1 as v1
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.controller import common, spaces
from kukeond.controller.common import q
from kukeond.controller.failures import EXPECTED_FAILURES, log_step_failure
from kukeond.controller.runtime import Runtime
from kukeond.host.cgroups import CgroupError
from kukeond.logs import Logger

KIND = v1.KIND_REALM

log = Logger()


class Realms:
    """The realm controller over one :class:`Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # --- create ---------------------------------------------------------------

    async def create(self, args: Any) -> Any:
        """``CreateRealm``: provision a new realm, or re-ensure an existing one."""
        doc = args.Doc
        docrules.normalize_request_doc(doc)
        name = common.validated("realm", doc.metadata.name)
        doc.metadata.name = name
        docrules.default_realm(doc, self.runtime.suffix)
        key = (name,)
        async with self.runtime.store.lock(key):
            stored = common.read_doc(self.runtime, key, v1.RealmDoc, KIND)
            try:
                if stored is None:
                    result = await self._provision(doc)
                else:
                    result = await self._ensure(stored)
            except EXPECTED_FAILURES as exc:
                raise errors.CreateRealm.around(exc) from None
        return kukeonv1.CreateRealmReply(Result=result)

    async def _provision(self, doc: v1.RealmDoc) -> Any:
        rt = self.runtime
        name = doc.metadata.name
        key = (name,)
        common.as_output(doc, KIND)
        doc.status = v1.RealmStatus(state=v1.CREATING)
        await rt.store.put(key, doc.to_wire())
        group = naming.cgroup_path(rt.cgroup_root, name)
        try:
            await self._ensure_namespace(doc.spec.namespace)
            controllers = self._ensure_cgroup(group)
        except Exception:
            # Any failure, a bug included, leaves Failed, which the next CreateRealm repairs.
            doc.status.state = v1.FAILED
            try:
                await rt.store.put(key, doc.to_wire())
            except Exception as write_error:  # noqa: BLE001 - the first error is the one to report
                log_step_failure(log, write_error, "cannot mark realm failed")
            raise
        doc.status.cgroupPath = group
        doc.status.subtreeControllers = controllers or None
        doc.status.state = v1.READY
        await rt.store.put(key, doc.to_wire())
        return kukeonv1.CreateRealmResult(
            Realm=doc,
            MetadataExistsPost=True,
            CgroupExistsPost=True,
            CgroupCreated=True,
            ContainerdNamespaceExistsPost=True,
            ContainerdNamespaceCreated=True,
            Created=True,
        )

    async def _ensure(self, stored: v1.RealmDoc) -> Any:
        rt = self.runtime
        name = stored.metadata.name
        namespace = stored.spec.namespace or naming.realm_namespace(name, rt.suffix)
        ns_created = await self._ensure_namespace(namespace)
        group = common.cgroup_of(rt, stored.status.cgroupPath, name)
        cgroup_pre = rt.cgroups.exists(group)
        controllers = self._ensure_cgroup(group) or None
        before = stored.to_wire()
        stored.status.cgroupPath = group
        stored.status.subtreeControllers = controllers
        if stored.status.state in (v1.CREATING, v1.FAILED, v1.UNKNOWN):
            stored.status.state = v1.READY
        stored = await common.save_if_changed(rt, (name,), stored, before, v1.RealmDoc, KIND)
        return kukeonv1.CreateRealmResult(
            Realm=stored,
            MetadataExistsPre=True,
            MetadataExistsPost=True,
            CgroupExistsPre=cgroup_pre,
            CgroupExistsPost=True,
            CgroupCreated=not cgroup_pre,
            ContainerdNamespaceExistsPre=not ns_created,
            ContainerdNamespaceExistsPost=True,
            ContainerdNamespaceCreated=ns_created,
        )

    async def _ensure_namespace(self, namespace: str) -> bool:
        if not naming.is_containerd_identifier(namespace):
            raise errors.KukeonError(
                f"failed to create realm namespace: invalid namespace name {q(namespace)}"
            )
        try:
            created = await self.runtime.containerd.ensure_namespace(namespace)
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(f"failed to create realm namespace: {exc}") from None
        if created:
            log.info("created containerd namespace {namespace}", namespace=namespace)
        return bool(created)

    def _ensure_cgroup(self, group: str) -> list[str]:
        try:
            return list(self.runtime.cgroups.create(group))
        except (CgroupError, OSError, ValueError) as exc:
            raise errors.KukeonError(f"failed to create realm cgroup: {exc}") from None

    # --- read -----------------------------------------------------------------

    async def get(self, args: Any) -> Any:
        """``GetRealm``: a missing realm is ``MetadataExists: false``, not an error."""
        rt = self.runtime
        name = common.required(args.Doc.metadata.name, errors.RealmNameRequired)
        namespace = args.Doc.spec.namespace.strip() or naming.realm_namespace(name, rt.suffix)
        result = kukeonv1.GetRealmResult(Realm=common.empty_doc(v1.RealmDoc, KIND))
        stored = common.read_doc(rt, (name,), v1.RealmDoc, KIND)
        if stored is not None:
            result.Realm = stored
            result.MetadataExists = True
            result.CgroupExists = rt.cgroups.exists(
                common.cgroup_of(rt, stored.status.cgroupPath, name)
            )
        result.ContainerdNamespaceExists = await self._namespace_exists(namespace)
        return kukeonv1.GetRealmReply(Result=result)

    async def _namespace_exists(self, namespace: str) -> bool:
        try:
            return namespace in await self.runtime.containerd.list_namespaces()
        except cerrors.Unavailable:
            return False
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(f"failed to check if namespace exists: {exc}") from None

    async def list(self, args: Any) -> Any:
        """``ListRealms``: every readable realm, by name (``[]`` when none)."""
        # Each realm's wire text is built once per stored version and spliced.
        realms = common.list_wire(self.runtime, (), v1.RealmDoc, KIND)
        return kukeonv1.ListRealmsReply(Realms=realms)

    # --- delete / purge ---------------------------------------------------------

    async def delete(self, args: Any) -> Any:
        """``DeleteRealm``: remove the realm (and with ``Cascade`` its spaces first)."""
        rt = self.runtime
        name = common.required(args.Doc.metadata.name, errors.RealmNameRequired)
        if not common.safe(name):
            raise errors.KukeonError(f"realm {q(name)} not found")
        async with rt.store.lock((name,)):
            stored = common.read_doc(rt, (name,), v1.RealmDoc, KIND)
            if stored is None:
                raise errors.KukeonError(f"realm {q(name)} not found")
            deleted = [f"space:{s}" for s in rt.store.children((name,))] if args.Cascade else []
            try:
                await self.delete_cascade(stored, args.Force, args.Cascade)
            except EXPECTED_FAILURES as exc:
                raise errors.wrap(exc, "failed to delete realm") from None
        return kukeonv1.DeleteRealmReply(
            Result=kukeonv1.DeleteRealmResult(
                Realm=stored,
                Deleted=[*deleted, "metadata", "cgroup", "namespace"],
                MetadataDeleted=True,
                CgroupDeleted=True,
                ContainerdNamespaceDeleted=True,
            )
        )

    async def delete_cascade(self, realm: v1.RealmDoc, force: bool, cascade: bool) -> None:
        """Delete ``realm``'s spaces (``cascade``) or refuse if it has some, then the realm."""
        rt = self.runtime
        name = realm.metadata.name
        children = rt.store.children((name,))
        if cascade:
            space_ctl = spaces.Spaces(rt)
            for space in children:
                try:
                    await space_ctl.delete_child((name, space), force, cascade)
                except EXPECTED_FAILURES as exc:
                    raise errors.wrap(exc, f"failed to delete space {q(space)}") from None
        elif not force and children:
            raise errors.ResourceHasDependencies(
                f"realm {q(name)} has {len(children)} space(s). "
                "Use --cascade to delete them or --force to skip validation"
            )
        await self._remove(realm)

    async def _remove(self, realm: v1.RealmDoc) -> None:
        """The realm's own teardown: containers, images, cgroup, networks, namespace, file."""
        rt = self.runtime
        name = realm.metadata.name
        namespace = realm.spec.namespace or naming.realm_namespace(name, rt.suffix)
        await common.drain_containers(rt, namespace)
        await common.drain_namespace(rt, namespace)
        common.remove_cgroup(rt, common.cgroup_of(rt, realm.status.cgroupPath, name), fatal=True)
        for space in rt.store.children((name,)):
            await rt.network.remove_space_network(name, space)
        await common.delete_namespace(rt, namespace)
        await rt.store.delete((name,))

    async def purge(self, args: Any) -> Any:
        """``PurgeRealm``: delete plus best-effort removal of everything the realm left.

        Works without metadata (the realm is then reported in state
        ``Unknown`` and ``RealmDeleted`` is false). A name that cannot be a
        path is purged from containerd only.
        """
        rt = self.runtime
        doc = args.Doc
        name = common.required(doc.metadata.name, errors.RealmNameRequired)
        namespace = doc.spec.namespace.strip() or naming.realm_namespace(name, rt.suffix)
        if not common.safe(name):
            return await self._purge(name, namespace, doc, args)
        async with rt.store.lock((name,)):
            return await self._purge(name, namespace, doc, args)

    async def _purge(self, name: str, namespace: str, doc: v1.RealmDoc, args: Any) -> Any:
        rt = self.runtime
        stored = common.read_doc(rt, (name,), v1.RealmDoc, KIND)
        exists = stored is not None
        if stored is None:
            stored = common.as_output(v1.RealmDoc(), KIND)
            stored.metadata.name = name
            stored.metadata.labels = doc.metadata.labels
            stored.spec.namespace = namespace
            stored.status.state = v1.UNKNOWN
        elif not stored.spec.namespace:
            stored.spec.namespace = namespace
        force, cascade = args.Force, args.Cascade
        result = kukeonv1.PurgeRealmResult(
            Realm=stored, Force=force, Cascade=cascade, Deleted=[], Purged=[]
        )
        children = rt.store.children((name,)) if exists else []
        if cascade and exists:
            result.Deleted += [f"space:{s}" for s in children]
            space_ctl = spaces.Spaces(rt)
            for space in children:
                try:
                    await space_ctl.purge_child((name, space), force, cascade)
                except EXPECTED_FAILURES as exc:
                    raise errors.wrap(exc, f"failed to purge space {q(space)}") from None
        elif not force and children:
            raise errors.ResourceHasDependencies(
                f"realm {q(name)} has {len(children)} space(s). "
                "Use --cascade to purge them or --force to skip validation"
            )
        delete_error = None
        if exists:
            try:
                await self.delete_cascade(stored, force, cascade)
            except EXPECTED_FAILURES as exc:  # the purge below goes further
                delete_error = errors.wrap(exc, "failed to delete realm")
                log.warn("realm delete failed, purging anyway: {error}", error=str(delete_error))
        try:
            await self._purge_runtime(name, stored.spec.namespace)
        except EXPECTED_FAILURES as exc:
            if delete_error is not None:
                raise errors.KukeonError(
                    f"{delete_error}; runner purge also failed: {exc}",
                    kinds=delete_error.kinds | errors.kinds_of(exc),
                ) from None
            raise
        if exists:
            result.RealmDeleted = True
            result.Deleted += ["metadata", "cgroup", "namespace"]
        result.Purged = ["orphaned-containers", "cni-resources", "all-metadata"]
        result.PurgeSucceeded = True
        return kukeonv1.PurgeRealmReply(Result=result)

    async def _purge_runtime(self, name: str, namespace: str) -> None:
        """Remove whatever is left of the realm, with or without its metadata."""
        rt = self.runtime
        await common.drain_containers(rt, namespace)
        if common.safe(name):
            for space in await common.run_blocking(rt, spaces.space_dirs, rt.run_path, name):
                await rt.network.remove_space_network(name, space)
        await common.drain_namespace(rt, namespace)
        await common.delete_namespace(rt, namespace)
        if common.safe(name):
            await rt.store.purge((name,))
            common.remove_cgroup(rt, naming.cgroup_path(rt.cgroup_root, name), fatal=False)


def handlers(runtime: Runtime) -> dict[str, Any]:
    """The realm methods, by bare name."""
    realms = Realms(runtime)
    return {
        "CreateRealm": realms.create,
        "GetRealm": realms.get,
        "ListRealms": realms.list,
        "DeleteRealm": realms.delete,
        "PurgeRealm": realms.purge,
    }
