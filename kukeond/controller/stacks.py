"""Stack RPCs: CreateStack, GetStack, ListStacks, DeleteStack, PurgeStack.

A stack is ``RUN/data/R/S/K/metadata.json`` and a cgroup ``CGROOT/R/S/K``.
Behaviour follows the reference (wire specification §2.6), except that
CreateStack requires the parent space to exist also for a new stack (the
reference creates a stack under a missing space).
"""

from __future__ import annotations

from typing import Any

from kukeond import errors
from kukeond.api import docrules, kukeonv1
from kukeond.api import v1beta1 as v1
from kukeond.base import naming
from kukeond.controller import cells, common
from kukeond.controller.common import q
from kukeond.controller.failures import EXPECTED_FAILURES, log_step_failure
from kukeond.controller.runtime import Runtime
from kukeond.host.cgroups import CgroupError
from kukeond.logs import Logger
from kukeond.store.metadata import Key

KIND = v1.KIND_STACK

log = Logger()


class Stacks:
    """The stack controller over one :class:`Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def not_found(self, key: Key) -> errors.KukeonError:
        """The reference's plain (Kind ``Unknown``) error for a missing stack."""
        realm, space, name = key
        return errors.KukeonError(
            f"stack {q(name)} not found in realm {q(realm)}, space {q(space)}"
        )

    # --- create ---------------------------------------------------------------

    async def create(self, args: Any) -> Any:
        """``CreateStack``: provision a new stack, or re-ensure an existing one."""
        rt = self.runtime
        doc = args.Doc
        docrules.normalize_request_doc(doc)
        name = common.validated("stack", doc.metadata.name)
        realm = common.required(doc.spec.realmId, errors.RealmNameRequired)
        space = common.required(doc.spec.spaceId, errors.SpaceNameRequired)
        doc.metadata.name, doc.spec.realmId, doc.spec.spaceId = name, realm, space
        docrules.default_stack(doc)
        if not common.safe(realm, space) or not rt.store.exists((realm, space)):
            raise errors.CreateStack.around(
                errors.SpaceNotFound.after(
                    f"space {q(space)} not found at run-path {q(rt.run_path)}"
                )
            )
        key = (realm, space, name)
        async with rt.store.lock(key):
            stored = common.read_doc(rt, key, v1.StackDoc, KIND)
            try:
                if stored is None:
                    result = await self._provision(key, doc)
                else:
                    result = await self._ensure(key, stored)
            except EXPECTED_FAILURES as exc:
                raise errors.CreateStack.around(exc) from None
        return kukeonv1.CreateStackReply(Result=result)

    def _cgroup(self, group: str) -> list[str]:
        try:
            return list(self.runtime.cgroups.create(group))
        except (CgroupError, OSError, ValueError) as exc:
            raise errors.KukeonError(f"failed to create stack cgroup: {exc}") from None

    async def _provision(self, key: Key, doc: v1.StackDoc) -> Any:
        rt = self.runtime
        common.as_output(doc, KIND)
        doc.status = v1.StackStatus(state=v1.PENDING)
        await rt.store.put(key, doc.to_wire())
        group = naming.cgroup_path(rt.cgroup_root, *key)
        try:
            controllers = self._cgroup(group)
        except Exception as exc:
            # Any failure, a bug included, leaves Failed, which the next CreateStack repairs.
            doc.status.state = v1.FAILED
            doc.status.reason = "CreateStackFailed"
            doc.status.message = str(exc)
            try:
                await rt.store.put(key, doc.to_wire())
            except Exception as write_error:  # noqa: BLE001 - report the first error
                log_step_failure(log, write_error, "cannot mark stack failed")
            raise
        doc.status.cgroupPath = group
        doc.status.subtreeControllers = controllers or None
        doc.status.state = v1.READY
        await rt.store.put(key, doc.to_wire())
        return kukeonv1.CreateStackResult(
            Stack=doc,
            MetadataExistsPost=True,
            CgroupExistsPost=True,
            CgroupCreated=True,
            Created=True,
        )

    async def _ensure(self, key: Key, stored: v1.StackDoc) -> Any:
        rt = self.runtime
        group = common.cgroup_of(rt, stored.status.cgroupPath, *key)
        cgroup_pre = rt.cgroups.exists(group)
        controllers = self._cgroup(group) or None
        before = stored.to_wire()
        stored.status.cgroupPath = group
        stored.status.subtreeControllers = controllers
        common.mark_ready(stored.status)
        stored = await common.save_if_changed(rt, key, stored, before, v1.StackDoc, KIND)
        return kukeonv1.CreateStackResult(
            Stack=stored,
            MetadataExistsPre=True,
            MetadataExistsPost=True,
            CgroupExistsPre=cgroup_pre,
            CgroupExistsPost=True,
            CgroupCreated=not cgroup_pre,
        )

    # --- read -----------------------------------------------------------------

    def _identify(self, doc: v1.StackDoc) -> Key:
        name = common.required(doc.metadata.name, errors.StackNameRequired)
        realm = common.required(doc.spec.realmId, errors.RealmNameRequired)
        space = common.required(doc.spec.spaceId, errors.SpaceNameRequired)
        return realm, space, name

    async def get(self, args: Any) -> Any:
        """``GetStack``: a missing stack is ``MetadataExists: false``, not an error."""
        rt = self.runtime
        key = self._identify(args.Doc)
        result = kukeonv1.GetStackResult(Stack=common.empty_doc(v1.StackDoc, KIND))
        stored = common.read_doc(rt, key, v1.StackDoc, KIND)
        if stored is not None:
            result.Stack = stored
            result.MetadataExists = True
            result.CgroupExists = rt.cgroups.exists(
                common.cgroup_of(rt, stored.status.cgroupPath, *key)
            )
        return kukeonv1.GetStackReply(Result=result)

    async def list(self, args: Any) -> Any:
        """``ListStacks``: filtered by ``RealmName``/``SpaceName`` (empty = any)."""
        rt = self.runtime
        realm, space = args.RealmName.strip(), args.SpaceName.strip()
        found = []
        for realm_name in [realm] if realm else rt.store.children(()):
            if not common.safe(realm_name):
                continue
            for space_name in [space] if space else rt.store.children((realm_name,)):
                found += common.list_wire(rt, (realm_name, space_name), v1.StackDoc, KIND)
        return kukeonv1.ListStacksReply(Stacks=found)

    # --- delete ---------------------------------------------------------------

    async def delete(self, args: Any) -> Any:
        """``DeleteStack``: remove the stack (and with ``Cascade`` its cells first)."""
        rt = self.runtime
        key = self._identify(args.Doc)
        if not common.safe(*key):
            raise self.not_found(key)
        async with rt.store.lock(key):
            stored = common.read_doc(rt, key, v1.StackDoc, KIND)
            if stored is None:
                raise self.not_found(key)
            deleted = [f"cell:{c}" for c in rt.store.children(key)] if args.Cascade else []
            try:
                await self.delete_cascade(key, args.Force, args.Cascade)
            except EXPECTED_FAILURES as exc:
                raise errors.wrap(exc, "failed to delete stack") from None
        realm, space, name = key
        return kukeonv1.DeleteStackReply(
            Result=kukeonv1.DeleteStackResult(
                Stack=stored,
                StackName=name,
                RealmName=realm,
                SpaceName=space,
                MetadataDeleted=True,
                CgroupDeleted=True,
                Deleted=[*deleted, "metadata", "cgroup"],
            )
        )

    async def delete_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Delete the stack ``key`` inside a space cascade (takes the stack's lock)."""
        async with self.runtime.store.lock(key):
            await self.delete_cascade(key, force, cascade)

    async def delete_cascade(self, key: Key, force: bool, cascade: bool) -> None:
        """Delete the cells (``cascade``) or refuse if there are some, then the stack."""
        rt = self.runtime
        children = rt.store.children(key)
        if cascade:
            for cell in children:
                try:
                    await cells.delete_cell(rt, (*key, cell))
                except EXPECTED_FAILURES as exc:
                    raise errors.wrap(exc, f"failed to delete cell {q(cell)}") from None
        elif not force and children:
            raise errors.ResourceHasDependencies(
                f"stack {q(key[2])} has {len(children)} cell(s). "
                "Use --cascade to delete them or --force to skip validation"
            )
        await self._remove(key)

    async def _remove(self, key: Key) -> None:
        rt = self.runtime
        raw = rt.store.get(key) if rt.store.exists(key) else {}
        stored_group = ((raw or {}).get("status") or {}).get("cgroupPath") or ""
        common.remove_cgroup(rt, common.cgroup_of(rt, stored_group, *key), fatal=False)
        await rt.store.delete(key)
        await rt.store.purge(key)

    # --- purge ----------------------------------------------------------------

    async def purge(self, args: Any) -> Any:
        """``PurgeStack``: delete plus sweeping; failures land in ``Purged``, not ``Err``."""
        rt = self.runtime
        key = self._identify(args.Doc)
        if not common.safe(*key):
            raise self.not_found(key)
        async with rt.store.lock(key):
            stored = common.read_doc(rt, key, v1.StackDoc, KIND)
            if stored is None:
                raise self.not_found(key)
            result = kukeonv1.PurgeStackResult(Stack=stored, Deleted=[], Purged=[])
            if args.Cascade:
                result.Deleted += [f"cell:{c}" for c in rt.store.children(key)]
            try:
                await self.purge_cascade(key, args.Force, args.Cascade)
            except EXPECTED_FAILURES as exc:  # reported in the result, as the reference
                log.warn("purge of stack {key} failed: {error}", key=key, error=str(exc))
                result.Purged.append(f"purge-error:{exc}")
                return kukeonv1.PurgeStackReply(Result=result)
        result.Deleted += ["metadata", "cgroup"]
        result.Purged += ["cni-resources", "orphaned-containers", "all-metadata"]
        return kukeonv1.PurgeStackReply(Result=result)

    async def purge_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Purge the stack ``key`` inside a space cascade (takes the stack's lock)."""
        async with self.runtime.store.lock(key):
            await self.purge_cascade(key, force, cascade)

    async def purge_cascade(self, key: Key, force: bool, cascade: bool) -> None:
        """Purge the cells (``cascade``) or refuse if there are some, then the stack."""
        rt = self.runtime
        children = rt.store.children(key)
        if cascade:
            for cell in children:
                try:
                    problems = await cells.purge_cell(rt, (*key, cell))
                    if problems:
                        raise errors.KukeonError("; ".join(problems))
                except EXPECTED_FAILURES as exc:
                    raise errors.wrap(exc, f"failed to purge cell {q(cell)}") from None
        elif not force and children:
            raise errors.ResourceHasDependencies(
                f"stack {q(key[2])} has {len(children)} cell(s). "
                "Use --cascade to purge them or --force to skip validation"
            )
        try:
            await self.delete_cascade(key, force, cascade)
        except EXPECTED_FAILURES as exc:
            raise errors.wrap(exc, "failed to delete stack") from None
        await self._purge_runtime(key)

    async def _purge_runtime(self, key: Key) -> None:
        """Sweep what a delete leaves: labelled containers, cgroup, directory."""
        rt = self.runtime
        realm, space, stack = key
        await common.drain_containers(
            rt,
            common.realm_namespace(rt, realm),
            {"kukeon.io/realm": realm, "kukeon.io/space": space, "kukeon.io/stack": stack},
        )
        common.remove_cgroup(rt, naming.cgroup_path(rt.cgroup_root, *key), fatal=False)
        await rt.store.purge(key)


def handlers(runtime: Runtime) -> dict[str, Any]:
    """The stack methods, by bare name."""
    stacks = Stacks(runtime)
    return {
        "CreateStack": stacks.create,
        "GetStack": stacks.get,
        "ListStacks": stacks.list,
        "DeleteStack": stacks.delete,
        "PurgeStack": stacks.purge,
    }
