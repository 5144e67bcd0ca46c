"""The space level: a metadata document, a CNI network and a cgroup.

A space is ``RUN/data/R/S/metadata.json``, a CNI network (``network.conflist``
and ``network.json`` next to it, bridge ``k-<fnv>``, optional egress policy)
and a cgroup ``CGROOT/R/S``. Creating one checks its realm before writing
anything (the reference fails half-way, after writing files).
"""

from __future__ import annotations

import os
from typing import Any

from kukeond import errors
from kukeond.api import docrules
from kukeond.api import v1beta1 as v1
from kukeond.api.gotypes import DecodeError
from kukeond.base import naming
from kukeond.controller import common, stacks
from kukeond.controller.common import q
from kukeond.controller.failures import EXPECTED_FAILURES, log_step_failure
from kukeond.controller.hierarchy import ChildLevel
from kukeond.controller.runtime import Runtime
from kukeond.host import netpolicy
from kukeond.host.cni import CNIError
from kukeond.host.subnets import SubnetError
from kukeond.logs import Logger
from kukeond.store.documents import Key
from kukeond.store.errors import MetadataCorrupt

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


class SpaceLevel(ChildLevel[v1.SpaceDoc]):
    """Spaces: children of a realm; their children are stacks."""

    kind = "space"
    child_word = "stack"
    doc_type = v1.SpaceDoc
    status_type = v1.SpaceStatus
    name_required = errors.SpaceNameRequired
    create_step = errors.CreateSpace
    first_state = v1.READY

    def parents(self, doc: v1.SpaceDoc) -> tuple[str, ...]:
        """The realm, required."""
        return (common.required(doc.spec.realmId, errors.RealmNameRequired),)

    def apply_defaults(self, doc: v1.SpaceDoc, key: Key) -> None:
        """Write the realm back and default the labels."""
        doc.spec.realmId = key[0]
        docrules.default_space(doc)

    def check_parent(self, key: Key) -> None:
        """The realm must be stored (the reference's words: ``realm not found``)."""
        if not common.safe(key[0]) or not self.rt.store.exists(key[:1]):
            raise errors.CreateSpace.around(errors.RealmNotFound())

    def not_found(self, key: Key) -> errors.KukeonError:
        """``space "S" not found in realm "R"``."""
        return errors.KukeonError(f"space {q(key[1])} not found in realm {q(key[0])}")

    def check(self, key: Key, doc: v1.SpaceDoc) -> None:
        """The egress policy must be valid."""
        realm, space = key
        try:
            netpolicy.policy_from_spec(realm, space, naming.bridge_name(realm, space), _egress(doc))
        except netpolicy.EgressError as exc:
            raise errors.KukeonError(f"failed to apply egress policy: {exc}") from None

    async def make_extra(self, key: Key, doc: v1.SpaceDoc, new: bool) -> bool:
        """Create (a new space: claim) the CNI network; say whether it existed."""
        rt, (realm, space) = self.rt, key
        existed = not new and rt.network.space_network_exists(realm, space)
        try:
            ensure = rt.network.ensure_space_network
            network = await common.run_blocking(rt, ensure, realm, space, new)
        except (CNIError, SubnetError, OSError) as exc:
            raise errors.KukeonError(f"failed to create network: {exc}") from None
        doc.spec.cniConfigPath = network.conflist_path
        return existed

    async def after_cgroup(self, key: Key, doc: v1.SpaceDoc) -> None:
        """Apply the egress policy."""
        realm, space = key
        try:
            await self.rt.network.apply_egress(realm, space, _egress(doc))
        except EXPECTED_FAILURES as exc:
            raise errors.KukeonError(f"failed to apply egress policy: {exc}") from None

    def network_exists(self, key: Key) -> bool:
        """Whether the space's CNI network files exist."""
        realm, space = key
        return common.safe(realm, space) and self.rt.network.space_network_exists(realm, space)

    async def remove(self, key: Key) -> None:
        """The network, the cgroup (best effort), the document and its directory."""
        rt, (realm, space) = self.rt, key
        group = self.stored_cgroup(key)
        try:
            await rt.network.remove_space_network(realm, space)
        except EXPECTED_FAILURES as exc:
            raise errors.KukeonError(f"failed to delete space network: {exc}") from None
        common.remove_cgroup(rt, group, fatal=False)
        await rt.store.delete(key)
        await rt.store.purge(key)

    async def delete_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Delete one stack of the space."""
        await stacks.StackLevel(self.rt).delete_locked(key, force, cascade)

    async def purge_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Purge one stack of the space."""
        await stacks.StackLevel(self.rt).purge_locked(key, force, cascade)

    async def purge_leftovers(self, key: Key) -> None:
        """Network files, labelled containers, the default cgroup, the directory."""
        rt = self.rt
        realm, space = key
        await rt.network.remove_space_network(realm, space)
        namespace = common.realm_namespace(rt, realm)
        await common.drain_containers(
            rt, namespace, {"kukeon.io/realm": realm, "kukeon.io/space": space}
        )
        common.remove_cgroup(rt, naming.cgroup_path(rt.cgroup_root, *key), fatal=False)
        await rt.store.purge(key)


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
