"""The groundwork of running cells: lookups, paths, live states, etc files, cgroup, images.

:class:`CellBasics` is the part of :class:`~kukeond.controller.cell_runner.CellRunner`
that starts and stops nothing: the runner builds on it.
"""

from __future__ import annotations

from twisted.internet import defer

from kukeond.api.v1beta1 import (
    STOPPED,
    UNKNOWN,
    CellDoc,
    ContainerStatus,
    RealmDoc,
)
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.controller.cell_files import (
    FileWork,
    render_etc_hostname,
    render_etc_hosts,
    write_in_place,
)
from kukeond.controller.cell_state import (
    CellKey,
    InFlight,
    LiveStates,
    carry_restarts,
    cell_key,
    container_state,
    containerd_id_of,
    expects_running,
    flatten_message,
    gather,
    query_states,
    root_container,
)
from kukeond.controller.cellspec import CellContext
from kukeond.controller.common import realm_namespace
from kukeond.controller.runtime import Runtime
from kukeond.errors import ImageNotFound, KukeonError
from kukeond.host.cgroups import CgroupError
from kukeond.logs import Logger


class CellBasics:
    """What every cell operation needs: lookups, paths, live states, files, cgroup, images."""

    log = Logger()

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.files = FileWork(runtime.reactor)
        self.in_flight = InFlight()

    # --- lookups -----------------------------------------------------------------

    def load(self, key: CellKey) -> CellDoc | None:
        """The stored cell, or None."""
        raw = self.rt.store.get(key)
        return None if raw is None else CellDoc.from_wire(raw)

    async def save(self, doc: CellDoc) -> CellDoc:
        """Persist ``doc`` (the store stamps its times) and return what was stored."""
        stored = await self.rt.store.put(cell_key(doc), doc.to_wire())
        return CellDoc.from_wire(stored)

    def namespace(self, realm: str) -> str:
        """The realm's containerd namespace (stored ``spec.namespace``, else ``R.<suffix>``)."""
        return realm_namespace(self.rt, realm)

    def conflist_path(self, realm: str, space: str) -> str:
        """The space conflist: its ``spec.cniConfigPath``, else the canonical path."""
        raw = self.rt.store.get((realm, space)) or {}
        explicit = (raw.get("spec") or {}).get("cniConfigPath") or ""
        return explicit or naming.network_conflist_path(self.rt.run_path, realm, space)

    def cgroup_path(self, doc: CellDoc) -> str:
        """The cell's cgroup (stored, else the computed default)."""
        return doc.status.cgroupPath or naming.cgroup_path(self.rt.cgroup_root, *cell_key(doc))

    def host_network(self, doc: CellDoc) -> bool:
        """Whether the cell's root shares the host's network."""
        root = root_container(doc)
        return bool(root and root.hostNetwork)

    def context(self, doc: CellDoc, namespace: str) -> CellContext:
        """The facts every container spec of ``doc`` is built from."""
        realm, space, stack, cell = cell_key(doc)
        run = self.rt.run_path
        return CellContext(
            realm=realm,
            space=space,
            stack=stack,
            cell=cell,
            cell_id=doc.spec.id or cell,
            namespace=namespace,
            cgroup_path=self.cgroup_path(doc),
            conflist_path=self.conflist_path(realm, space),
            etc_hosts=""
            if self.host_network(doc)
            else naming.etc_hosts_path(run, realm, space, stack, cell),
            etc_hostname=naming.etc_hostname_path(run, realm, space, stack, cell),
            nested_cgroup=doc.spec.nestedCgroupRuntime,
            labels=dict(doc.metadata.labels or {}),
        )

    # --- status ------------------------------------------------------------------

    async def container_state_live(self, namespace: str, cid: str) -> str:
        """One container's live state (see :func:`container_state`).

        An unreachable containerd raises ``Unavailable`` instead of answering
        Unknown, so that no caller persists a state it could not observe.
        """
        try:
            task = await self.rt.containerd.task_state(namespace, cid)
            return container_state(task.status, True)
        except cerrors.NotFound:
            pass
        except cerrors.Unavailable:
            raise
        except cerrors.ContainerdError:
            return UNKNOWN
        try:
            await self.rt.containerd.get_container(namespace, cid)
        except cerrors.NotFound:
            return STOPPED
        except cerrors.Unavailable:
            raise
        except cerrors.ContainerdError:
            return UNKNOWN
        return UNKNOWN

    async def live_statuses(
        self, doc: CellDoc, namespace: str | None = None
    ) -> list[ContainerStatus]:
        """Statuses of every spec container, queried from containerd now."""
        ns = namespace or self.namespace(doc.spec.realmId)
        containers = doc.spec.containers or []
        cids = [containerd_id_of(doc, c) for c in containers]
        live = await query_states(
            self.rt.containerd, ns, tuple(dict.fromkeys(cids)), expects_running(doc)
        )
        return carry_restarts(
            doc,
            [
                ContainerStatus(name=c.id, id=c.id, state=live.states[cid])
                for c, cid in zip(containers, cids, strict=True)
            ],
        )

    def shared_states(
        self, namespace: str, cids: tuple[str, ...], running_first: bool
    ) -> defer.Deferred[LiveStates]:
        """:func:`query_states`, coalesced: a call made while the same query runs shares it.

        For reads only: a caller that acts on the answer asks on its own.
        """
        return self.in_flight.run(
            (namespace, cids),
            lambda: query_states(self.rt.containerd, namespace, cids, running_first),
        )

    async def root_exists(self, doc: CellDoc, namespace: str) -> bool:
        """Whether the root's containerd container exists."""
        realm, space, stack, cell = cell_key(doc)
        try:
            await self.rt.containerd.get_container(
                namespace, naming.root_containerd_id(space, stack, cell)
            )
        except cerrors.NotFound:
            return False
        return True

    # --- provisioning --------------------------------------------------------------

    async def render_etc_files(self, doc: CellDoc, ipv4: str | None = None) -> None:
        """Write ``etc-hostname`` and (unless host network) ``etc-hosts``."""
        realm, space, stack, cell = cell_key(doc)
        run = self.rt.run_path

        def write() -> None:
            write_in_place(
                naming.etc_hostname_path(run, realm, space, stack, cell), render_etc_hostname(cell)
            )
            if not self.host_network(doc):
                write_in_place(
                    naming.etc_hosts_path(run, realm, space, stack, cell),
                    render_etc_hosts(cell, ipv4),
                )

        await self.files.run(write)

    def ensure_cgroup(self, doc: CellDoc) -> bool:
        """Create the cell cgroup unless present; fill the status fields. True if created."""
        group = self.cgroup_path(doc)
        existed = self.rt.cgroups.exists(group)
        try:
            controllers = self.rt.cgroups.create(
                group, all_controllers=doc.spec.nestedCgroupRuntime
            )
        except CgroupError as exc:
            raise KukeonError(f"failed to create cell cgroup: {exc}") from exc
        doc.status.cgroupPath = group
        doc.status.subtreeControllers = controllers or None
        doc.status.network.bridgeName = naming.bridge_name(doc.spec.realmId, doc.spec.spaceId)
        return not existed

    async def check_images(self, doc: CellDoc, namespace: str) -> None:
        """Pull the cell's images its realm lacks; fail clearly when one cannot be had."""
        images = dict.fromkeys(c.image for c in doc.spec.containers or [])
        await gather(self.ensure_image(image, doc.spec.realmId, namespace) for image in images)

    async def ensure_image(self, image: str, realm: str, namespace: str) -> None:
        """Make sure ``image`` is in ``namespace``, pulling it with the realm's credentials."""
        try:
            await self.rt.containerd.get_image(namespace, image)
            return
        except cerrors.NotFound:
            if self.rt.config.pull_policy == "never":
                raise self.missing_image(image, realm, namespace) from None
        raw = self.rt.store.get((realm,))
        credentials = (RealmDoc.from_wire(raw).spec.registryCredentials or []) if raw else []
        try:
            await self.rt.pulls.ensure(namespace, image, credentials)
        except cerrors.Unavailable:
            raise
        except (cerrors.ContainerdError, defer.TimeoutError, ValueError) as exc:
            raise self.missing_image(image, realm, namespace, exc) from None

    @staticmethod
    def missing_image(
        image: str, realm: str, namespace: str, pull_error: BaseException | None = None
    ) -> KukeonError:
        """The error for an image absent from the realm (and, if tried, why the pull failed)."""
        why = f" and pulling it failed: {flatten_message(str(pull_error))}" if pull_error else ""
        return ImageNotFound(
            f"{image} is not in containerd namespace {namespace}{why}; load it with "
            f"'kuke image load --realm {realm} <image.tar>'"
        )

    async def all_running(self, doc: CellDoc, namespace: str) -> bool:
        """Whether the root and every workload task reports ``running``."""
        containers = doc.spec.containers or []
        running = await gather(
            self.task_running(namespace, containerd_id_of(doc, c)) for c in containers
        )
        return bool(running) and all(running)

    async def task_running(self, namespace: str, cid: str) -> bool:
        """Whether ``cid`` has a task in state ``running`` (one call; Unavailable raises)."""
        try:
            task = await self.rt.containerd.task_state(namespace, cid)
        except cerrors.Unavailable:
            raise
        except cerrors.ContainerdError:
            return False
        return task.status == "running"
