"""The realm level: a metadata document, a containerd namespace and a cgroup.

A realm is ``RUN/data/R/metadata.json``, the containerd namespace
``spec.namespace`` (default ``R.<suffix>``) and the cgroup ``CGROOT/R``.
Its purge also works without metadata, sweeping whatever a realm of that
name left in containerd, CNI and the run path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kukeond import errors
from kukeond.api import docrules
from kukeond.api import v1beta1 as v1
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.controller import common, spaces
from kukeond.controller.common import q
from kukeond.controller.failures import EXPECTED_FAILURES
from kukeond.controller.hierarchy import Level
from kukeond.logs import Logger
from kukeond.store.documents import Key

log = Logger()


@dataclass
class PurgedRealm:
    """What a realm purge did: the realm (as stored, or as named) and what it removed."""

    realm: v1.RealmDoc
    existed: bool
    deleted: list[str] = field(default_factory=list)


class RealmLevel(Level[v1.RealmDoc]):
    """Realms: the top of the hierarchy; their children are spaces.

    A realm is purged with :meth:`purge_realm`, which also works without
    metadata; the generic purge is the levels below
    (:class:`~kukeond.controller.hierarchy.ChildLevel`).
    """

    kind = "realm"
    child_word = "space"
    doc_type = v1.RealmDoc
    status_type = v1.RealmStatus
    name_required = errors.RealmNameRequired
    create_step = errors.CreateRealm
    first_state = v1.CREATING

    def apply_defaults(self, doc: v1.RealmDoc, key: Key) -> None:
        """Default the namespace (``R.<suffix>``) and the labels."""
        docrules.default_realm(doc, self.rt.suffix)

    def not_found(self, key: Key) -> errors.KukeonError:
        """``realm "R" not found``."""
        return errors.KukeonError(f"realm {q(key[0])} not found")

    def repairs(self, state: str) -> bool:
        """Only a realm left half-made (or unknown) is set Ready again."""
        return state in (v1.CREATING, v1.FAILED, v1.UNKNOWN)

    def namespace_of(self, doc: v1.RealmDoc) -> str:
        """The realm's containerd namespace: the requested one, else the default."""
        name = doc.metadata.name
        return doc.spec.namespace.strip() or naming.realm_namespace(name, self.rt.suffix)

    async def make_extra(self, key: Key, doc: v1.RealmDoc, new: bool) -> bool:
        """Create the containerd namespace unless it exists; say whether it did."""
        namespace = self.namespace_of(doc)
        if not naming.is_containerd_identifier(namespace):
            raise errors.KukeonError(
                f"failed to create realm namespace: invalid namespace name {q(namespace)}"
            )
        try:
            created = await self.rt.containerd.ensure_namespace(namespace)
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(f"failed to create realm namespace: {exc}") from None
        if created:
            log.info("created containerd namespace {namespace}", namespace=namespace)
        return not created

    async def namespace_exists(self, namespace: str) -> bool:
        """Whether containerd has ``namespace`` (``False`` when containerd is down)."""
        try:
            return namespace in await self.rt.containerd.list_namespaces()
        except cerrors.Unavailable:
            return False
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(f"failed to check if namespace exists: {exc}") from None

    async def remove(self, key: Key) -> None:
        """Containers, images, cgroup, the spaces' networks, the namespace, the document."""
        rt = self.rt
        namespace = common.realm_namespace(rt, key[0])
        await common.drain_containers(rt, namespace)
        await common.drain_namespace(rt, namespace)
        common.remove_cgroup(rt, self.stored_cgroup(key), fatal=True)
        for space in self.children(key):
            await rt.network.remove_space_network(key[0], space)
        await common.delete_namespace(rt, namespace)
        await rt.store.delete(key)

    async def delete_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Delete one space of the realm."""
        await spaces.SpaceLevel(self.rt).delete_locked(key, force, cascade)

    async def purge_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Purge one space of the realm."""
        await spaces.SpaceLevel(self.rt).purge_locked(key, force, cascade)

    async def purge_realm(self, named: v1.RealmDoc, force: bool, cascade: bool) -> PurgedRealm:
        """Delete the realm ``named`` names, if stored, then sweep what is left.

        Without metadata the realm is reported in state ``Unknown``; a name
        that cannot be a path is purged from containerd only.
        """
        name = common.required(named.metadata.name, self.name_required)
        namespace = self.namespace_of(named)
        if not common.safe(name):
            return await self._purge(name, namespace, named, force, cascade)
        async with self.rt.store.lock((name,)):
            return await self._purge(name, namespace, named, force, cascade)

    async def _purge(
        self, name: str, namespace: str, named: v1.RealmDoc, force: bool, cascade: bool
    ) -> PurgedRealm:
        key = (name,)
        stored = self.read(key) if common.safe(name) else None
        outcome = PurgedRealm(self._reported(stored, name, namespace, named), stored is not None)
        if stored is not None:
            if cascade:
                outcome.deleted = self._child_entries(key)
            await self._each_child(key, force, cascade, "purge", self.purge_child)
        delete_error = None
        if stored is not None:
            try:
                await self.delete_cascade(key, force, cascade)
            except EXPECTED_FAILURES as exc:  # the sweep below goes further
                delete_error = errors.wrap(exc, "failed to delete realm")
                log.warn("realm delete failed, purging anyway: {error}", error=str(delete_error))
        try:
            await self._sweep(name, outcome.realm.spec.namespace)
        except EXPECTED_FAILURES as exc:
            if delete_error is not None:
                raise errors.KukeonError(
                    f"{delete_error}; runner purge also failed: {exc}",
                    kinds=delete_error.kinds | errors.kinds_of(exc),
                ) from None
            raise
        return outcome

    def _reported(
        self, stored: v1.RealmDoc | None, name: str, namespace: str, named: v1.RealmDoc
    ) -> v1.RealmDoc:
        if stored is None:
            shown = common.as_output(v1.RealmDoc(), v1.KIND_REALM)
            shown.metadata.name = name
            shown.metadata.labels = named.metadata.labels
            shown.spec.namespace = namespace
            shown.status.state = v1.UNKNOWN
            return shown
        if not stored.spec.namespace:
            stored.spec.namespace = namespace
        return stored

    async def _sweep(self, name: str, namespace: str) -> None:
        """Remove whatever is left of the realm, with or without its metadata."""
        rt = self.rt
        await common.drain_containers(rt, namespace)
        if common.safe(name):
            for space in await common.run_blocking(rt, spaces.space_dirs, rt.run_path, name):
                await rt.network.remove_space_network(name, space)
        await common.drain_namespace(rt, namespace)
        await common.delete_namespace(rt, namespace)
        if common.safe(name):
            await rt.store.purge((name,))
            common.remove_cgroup(rt, naming.cgroup_path(rt.cgroup_root, name), fatal=False)
