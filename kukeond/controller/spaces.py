"""Space RPCs: CreateSpace, GetSpace, ListSpaces, DeleteSpace, PurgeSpace.

A space is ``RUN/data/R/S/metadata.json``, a CNI network (``network.conflist``
and ``network.json`` next to it, bridge ``k-<fnv>``, optional egress policy)
and a cgroup ``CGROOT/R/S``. Behaviour follows the reference (wire
specification §2.5), except that CreateSpace checks its realm before writing
anything (the reference fails half-way, after writing files).
"""

from __future__ import annotations

import os
from typing import Any

from kukeond import errors
from kukeond.api import docrules, kukeonv1
from kukeond.api import v1beta1 as v1
from kukeond.api.structs import DecodeError
from kukeond.base import naming
from kukeond.controller import common, stacks
from kukeond.controller.common import q
from kukeond.controller.failures import EXPECTED_FAILURES, log_step_failure
from kukeond.controller.runtime import Runtime
from kukeond.host import netpolicy
from kukeond.host.cgroups import CgroupError
from kukeond.host.cni import CNIError
from kukeond.host.subnets import SubnetError
from kukeond.logs import Logger
from kukeond.store.metadata import Key, MetadataCorrupt

KIND = v1.KIND_SPACE

log = Logger()


def space_dirs(run_path: str, realm: str) -> list[str]:
    """Names of the directories under ``RUN/data/R`` (spaces, with or without metadata)."""
    try:
        entries = os.scandir(naming.resource_dir(run_path, realm))
    except (FileNotFoundError, NotADirectoryError):
        return []
    with entries:
        return sorted(
            e.name
            for e in entries
            if e.is_dir(follow_symlinks=False) and naming.is_safe_path_component(e.name)
        )


def _egress(doc: v1.SpaceDoc) -> Any:
    network = doc.spec.network
    return network.egress if network is not None else None


class Spaces:
    """The space controller over one :class:`Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def not_found(self, key: Key) -> errors.KukeonError:
        """The reference's plain (Kind ``Unknown``) error for a missing space."""
        return errors.KukeonError(f"space {q(key[1])} not found in realm {q(key[0])}")

    # --- create ---------------------------------------------------------------

    async def create(self, args: Any) -> Any:
        """``CreateSpace``: provision a new space, or re-ensure an existing one."""
        rt = self.runtime
        doc = args.Doc
        docrules.normalize_request_doc(doc)
        name = common.validated("space", doc.metadata.name)
        realm = common.required(doc.spec.realmId, errors.RealmNameRequired)
        doc.metadata.name, doc.spec.realmId = name, realm
        docrules.default_space(doc)
        if not common.safe(realm) or not rt.store.exists((realm,)):
            # The reference's words: "failed to create space: realm not found".
            raise errors.CreateSpace.around(errors.RealmNotFound())
        key = (realm, name)
        async with rt.store.lock(key):
            stored = common.read_doc(rt, key, v1.SpaceDoc, KIND)
            try:
                if stored is None:
                    result = await self._provision(key, doc)
                else:
                    result = await self._ensure(key, stored)
            except EXPECTED_FAILURES as exc:
                raise errors.CreateSpace.around(exc) from None
        return kukeonv1.CreateSpaceReply(Result=result)

    def _check_egress(self, key: Key, doc: v1.SpaceDoc) -> None:
        try:
            netpolicy.policy_from_spec(*key, naming.bridge_name(*key), _egress(doc))
        except netpolicy.EgressError as exc:
            raise errors.KukeonError(f"failed to apply egress policy: {exc}") from None

    async def _network(self, key: Key, exclusive: bool) -> Any:
        try:
            return await common.run_blocking(
                self.runtime, self.runtime.network.ensure_space_network, *key, exclusive
            )
        except (CNIError, SubnetError, OSError) as exc:
            raise errors.KukeonError(f"failed to create network: {exc}") from None

    async def _apply_egress(self, key: Key, doc: v1.SpaceDoc) -> None:
        try:
            await self.runtime.network.apply_egress(*key, _egress(doc))
        except EXPECTED_FAILURES as exc:
            raise errors.KukeonError(f"failed to apply egress policy: {exc}") from None

    def _cgroup(self, group: str) -> list[str]:
        try:
            return list(self.runtime.cgroups.create(group))
        except (CgroupError, OSError, ValueError) as exc:
            raise errors.KukeonError(f"failed to create space cgroup: {exc}") from None

    async def _provision(self, key: Key, doc: v1.SpaceDoc) -> Any:
        rt = self.runtime
        self._check_egress(key, doc)
        common.as_output(doc, KIND)
        doc.status = v1.SpaceStatus(state=v1.READY)
        await rt.store.put(key, doc.to_wire())
        try:
            network = await self._network(key, exclusive=True)
            group = naming.cgroup_path(rt.cgroup_root, *key)
            controllers = self._cgroup(group)
            doc.spec.cniConfigPath = network.conflist_path
            doc.status.cgroupPath = group
            doc.status.subtreeControllers = controllers or None
            await self._apply_egress(key, doc)
        except Exception as exc:
            # Any failure, a bug included, leaves Failed, which the next CreateSpace repairs.
            doc.status.state = v1.FAILED
            doc.status.reason = "CreateSpaceFailed"
            doc.status.message = str(exc)
            try:
                await rt.store.put(key, doc.to_wire())
            except Exception as write_error:  # noqa: BLE001 - report the first error
                log_step_failure(log, write_error, "cannot mark space failed")
            raise
        await rt.store.put(key, doc.to_wire())
        return kukeonv1.CreateSpaceResult(
            Space=doc,
            MetadataExistsPost=True,
            CgroupExistsPost=True,
            CgroupCreated=True,
            CNINetworkExistsPost=True,
            CNINetworkCreated=True,
            Created=True,
        )

    async def _ensure(self, key: Key, stored: v1.SpaceDoc) -> Any:
        rt = self.runtime
        self._check_egress(key, stored)
        network_pre = rt.network.space_network_exists(*key)
        network = await self._network(key, exclusive=False)
        group = common.cgroup_of(rt, stored.status.cgroupPath, *key)
        cgroup_pre = rt.cgroups.exists(group)
        controllers = self._cgroup(group) or None
        await self._apply_egress(key, stored)
        before = stored.to_wire()
        stored.spec.cniConfigPath = network.conflist_path
        stored.status.cgroupPath = group
        stored.status.subtreeControllers = controllers
        common.mark_ready(stored.status)
        stored = await common.save_if_changed(rt, key, stored, before, v1.SpaceDoc, KIND)
        return kukeonv1.CreateSpaceResult(
            Space=stored,
            MetadataExistsPre=True,
            MetadataExistsPost=True,
            CgroupExistsPre=cgroup_pre,
            CgroupExistsPost=True,
            CgroupCreated=not cgroup_pre,
            CNINetworkExistsPre=network_pre,
            CNINetworkExistsPost=True,
            CNINetworkCreated=not network_pre,
        )

    # --- read -----------------------------------------------------------------

    def _identify(self, doc: v1.SpaceDoc) -> Key:
        name = common.required(doc.metadata.name, errors.SpaceNameRequired)
        realm = common.required(doc.spec.realmId, errors.RealmNameRequired)
        return realm, name

    async def get(self, args: Any) -> Any:
        """``GetSpace``: a missing space is ``MetadataExists: false``, not an error."""
        rt = self.runtime
        key = self._identify(args.Doc)
        result = kukeonv1.GetSpaceResult(Space=common.empty_doc(v1.SpaceDoc, KIND))
        stored = common.read_doc(rt, key, v1.SpaceDoc, KIND)
        if stored is not None:
            result.Space = stored
            result.MetadataExists = True
            result.CgroupExists = rt.cgroups.exists(
                common.cgroup_of(rt, stored.status.cgroupPath, *key)
            )
        if common.safe(*key):
            result.CNINetworkExists = rt.network.space_network_exists(*key)
        return kukeonv1.GetSpaceReply(Result=result)

    async def list(self, args: Any) -> Any:
        """``ListSpaces``: spaces of one realm, or of every realm when ``RealmName`` is empty."""
        rt = self.runtime
        realm = args.RealmName.strip()
        realms = [realm] if realm else rt.store.children(())
        found = []
        for name in realms:
            found += common.list_wire(rt, (name,), v1.SpaceDoc, KIND)
        return kukeonv1.ListSpacesReply(Spaces=found)

    # --- delete ---------------------------------------------------------------

    async def delete(self, args: Any) -> Any:
        """``DeleteSpace``: remove the space (and with ``Cascade`` its stacks first)."""
        rt = self.runtime
        key = self._identify(args.Doc)
        if not common.safe(*key):
            raise self.not_found(key)
        async with rt.store.lock(key):
            stored = common.read_doc(rt, key, v1.SpaceDoc, KIND)
            if stored is None:
                raise self.not_found(key)
            deleted = [f"stack:{s}" for s in rt.store.children(key)] if args.Cascade else []
            try:
                await self.delete_cascade(key, args.Force, args.Cascade)
            except EXPECTED_FAILURES as exc:
                raise errors.wrap(exc, "failed to delete space") from None
        return kukeonv1.DeleteSpaceReply(
            Result=kukeonv1.DeleteSpaceResult(
                Space=stored,
                SpaceName=key[1],
                RealmName=key[0],
                MetadataDeleted=True,
                CgroupDeleted=True,
                CNINetworkDeleted=True,
                Deleted=[*deleted, "metadata", "cgroup", "network"],
            )
        )

    async def delete_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Delete the space ``key`` inside a realm cascade (takes the space's lock)."""
        async with self.runtime.store.lock(key):
            await self.delete_cascade(key, force, cascade)

    async def delete_cascade(self, key: Key, force: bool, cascade: bool) -> None:
        """Delete the stacks (``cascade``) or refuse if there are some, then the space."""
        rt = self.runtime
        children = rt.store.children(key)
        if cascade:
            stack_ctl = stacks.Stacks(rt)
            for stack in children:
                try:
                    await stack_ctl.delete_child((*key, stack), force, cascade)
                except EXPECTED_FAILURES as exc:
                    raise errors.wrap(exc, f"failed to delete stack {q(stack)}") from None
        elif not force and children:
            raise errors.ResourceHasDependencies(
                f"space {q(key[1])} has {len(children)} stack(s). "
                "Use --cascade to delete them or --force to skip validation"
            )
        await self._remove(key)

    async def _remove(self, key: Key) -> None:
        rt = self.runtime
        raw = rt.store.get(key) if rt.store.exists(key) else {}
        try:
            await rt.network.remove_space_network(*key)
        except EXPECTED_FAILURES as exc:
            raise errors.KukeonError(f"failed to delete space network: {exc}") from None
        stored_group = ((raw or {}).get("status") or {}).get("cgroupPath") or ""
        common.remove_cgroup(rt, common.cgroup_of(rt, stored_group, *key), fatal=False)
        await rt.store.delete(key)
        await rt.store.purge(key)

    # --- purge ----------------------------------------------------------------

    async def purge(self, args: Any) -> Any:
        """``PurgeSpace``: delete plus sweeping; failures land in ``Purged``, not ``Err``."""
        rt = self.runtime
        key = self._identify(args.Doc)
        if not common.safe(*key):
            raise self.not_found(key)
        async with rt.store.lock(key):
            stored = common.read_doc(rt, key, v1.SpaceDoc, KIND)
            if stored is None:
                raise self.not_found(key)
            force, cascade = args.Force, args.Cascade
            result = kukeonv1.PurgeSpaceResult(
                Space=stored, Force=force, Cascade=cascade, Deleted=[], Purged=[]
            )
            if cascade:
                result.Deleted += [f"stack:{s}" for s in rt.store.children(key)]
            try:
                await self.purge_cascade(key, force, cascade)
            except EXPECTED_FAILURES as exc:  # reported in the result, as the reference
                log.warn("purge of space {key} failed: {error}", key=key, error=str(exc))
                result.Purged.append(f"purge-error:{exc}")
                return kukeonv1.PurgeSpaceReply(Result=result)
        result.MetadataDeleted = result.CgroupDeleted = result.CNINetworkDeleted = True
        result.Deleted += ["metadata", "cgroup", "network"]
        result.Purged += ["cni-network", "cni-cache", "orphaned-containers", "all-metadata"]
        result.PurgeSucceeded = True
        return kukeonv1.PurgeSpaceReply(Result=result)

    async def purge_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Purge the space ``key`` inside a realm cascade (takes the space's lock)."""
        async with self.runtime.store.lock(key):
            await self.purge_cascade(key, force, cascade)

    async def purge_cascade(self, key: Key, force: bool, cascade: bool) -> None:
        """Purge the stacks (``cascade``) or refuse if there are some, then the space."""
        rt = self.runtime
        children = rt.store.children(key)
        if cascade:
            stack_ctl = stacks.Stacks(rt)
            for stack in children:
                try:
                    await stack_ctl.purge_child((*key, stack), force, cascade)
                except EXPECTED_FAILURES as exc:
                    raise errors.wrap(exc, f"failed to purge stack {q(stack)}") from None
        elif not force and children:
            raise errors.ResourceHasDependencies(
                f"space {q(key[1])} has {len(children)} stack(s). "
                "Use --cascade to purge them or --force to skip validation"
            )
        try:
            await self.delete_cascade(key, force, cascade)
        except EXPECTED_FAILURES as exc:
            raise errors.wrap(exc, "failed to delete space") from None
        await self._purge_runtime(key)

    async def _purge_runtime(self, key: Key) -> None:
        """Sweep what a delete leaves: network files, labelled containers, cgroup, directory."""
        rt = self.runtime
        realm, space = key
        await rt.network.remove_space_network(realm, space)
        namespace = common.realm_namespace(rt, realm)
        await common.drain_containers(
            rt, namespace, {"kukeon.io/realm": realm, "kukeon.io/space": space}
        )
        common.remove_cgroup(rt, naming.cgroup_path(rt.cgroup_root, *key), fatal=False)
        await rt.store.purge(key)


def handlers(runtime: Runtime) -> dict[str, Any]:
    """The space methods, by bare name."""
    spaces = Spaces(runtime)
    return {
        "CreateSpace": spaces.create,
        "GetSpace": spaces.get,
        "ListSpaces": spaces.list,
        "DeleteSpace": spaces.delete,
        "PurgeSpace": spaces.purge,
    }


async def reassert_egress(runtime: Runtime) -> int:
    """Apply every stored space's egress policy again; return how many were applied.

    iptables rules do not survive a host reboot or a firewall reload, while
    the policy lives on in the space's metadata: the daemon re-asserts them at
    start (the operation is idempotent). A failure is logged per space and does
    not stop the others.
    """
    applied = 0
    for realm, space in runtime.store.keys(2):
        try:
            doc = common.peek_doc(runtime, (realm, space), v1.SpaceDoc, KIND)
        except (MetadataCorrupt, DecodeError):  # a corrupt document is reported by Get
            continue
        if doc is None or _egress(doc) is None:
            continue
        try:
            await runtime.network.apply_egress(realm, space, _egress(doc))
        except Exception as exc:  # noqa: BLE001 - one space never stops the others
            log_step_failure(
                log,
                exc,
                "cannot re-assert the egress policy of space {realm}/{space}",
                realm=realm,
                space=space,
            )
            continue
        applied += 1
    return applied
