"""The cell lifecycle on containerd, cgroups and CNI: provision, start, stop, kill, delete.

A :class:`CellRunner` works on ``CellDoc`` objects whose store lock the
caller already holds (RPC handlers in :mod:`kukeond.controller.cells` and
:mod:`kukeond.controller.containers` take it; so must the reconciler).
Every method persists what it changed.

How a cell runs (see the reference behaviour in the module docstring of
:mod:`kukeond.controller.cells`): the root container (``S_K_C_root``) starts
first with no stdio; its ``/proc/<pid>/ns/{net,ipc,uts}`` are joined by every
workload container (``S_K_C_X``), whose stdout/stderr the shim appends to
``DATA/R/S/K/C/X/log``. A non-host-network root gets one CNI interface
(``eth0``) on the space bridge, and its address goes into the cell's
``etc-hosts``. Start is destructive (containers are recreated from the
stored spec) unless everything already runs; stop and kill remove the
containers, so a stopped cell holds no containerd objects.

Two deliberate differences from the reference: the synthesized busybox root
(``sleep infinity`` as PID 1, which ignores SIGTERM) is stopped with SIGKILL
right away instead of waiting out a grace period, and a workload whose task
had already exited is removed on stop instead of being left behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, NamedTuple

from twisted.internet import defer
from twisted.python.failure import Failure

from kukeond.api import docrules
from kukeond.api.v1beta1 import (
    FAILED,
    PAUSED,
    PAUSING,
    PENDING,
    READY,
    STOPPED,
    UNKNOWN,
    CellDoc,
    ContainerSpec,
    ContainerStatus,
    RealmDoc,
)
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.containerd.model import ImageRuntimeConfig
from kukeond.controller import cellspec, secrets, stopping
from kukeond.controller.cell_files import (
    DIR_MODE,
    FileWork,
    read_json_file,
    remove_tree,
    render_etc_hostname,
    render_etc_hosts,
    write_in_place,
)
from kukeond.controller.cellspec import CellContext, CellSpecError, Kuketty
from kukeond.controller.common import realm_namespace
from kukeond.controller.failures import EXPECTED_FAILURES, log_step_failure
from kukeond.controller.kuketty import (
    KukettyNotFound,
    hand_over,
    prepare_tty_dir,
    render_terminal_doc,
    write_metadata,
)
from kukeond.controller.kuketty import stage as stage_kuketty
from kukeond.controller.runtime import Runtime
from kukeond.controller.stopping import DELETE_GRACE, STOP_GRACE
from kukeond.errors import ImageNotFound, KukeonError
from kukeond.host.cgroups import CgroupError
from kukeond.host.cni import CNIError
from kukeond.logs import Logger

CellKey = tuple[str, str, str, str]


REASON_CREATE = "CreateCellFailed"
REASON_START = "StartCellFailed"
REASON_START_CONTAINER = "StartContainerFailed"
MAX_MESSAGE_BYTES = 256

_TASK_STATES = {
    "running": READY,
    "stopped": STOPPED,
    "created": PENDING,
    "paused": PAUSED,
    "pausing": PAUSING,
}
_LIVE = (READY, PENDING, PAUSED, PAUSING)


def cell_key(doc: CellDoc) -> CellKey:
    """Store key of a cell: ``(realm, space, stack, cell)``."""
    spec = doc.spec
    return (spec.realmId, spec.spaceId, spec.stackId, doc.metadata.name)


def root_container(doc: CellDoc) -> ContainerSpec | None:
    """The cell's root container spec, if the cell has one yet."""
    containers = doc.spec.containers or []
    for container in containers:
        if container.root or (
            doc.spec.rootContainerId and container.id == doc.spec.rootContainerId
        ):
            return container
    return None


def workloads(doc: CellDoc) -> list[ContainerSpec]:
    """The non-root containers, in spec order."""
    root = root_container(doc)
    return [c for c in doc.spec.containers or [] if c is not root]


def containerd_id_of(doc: CellDoc, container: ContainerSpec) -> str:
    """containerd ID of a container of ``doc``: ``S_K_C_root`` for the root, else ``S_K_C_X``."""
    realm, space, stack, cell = cell_key(doc)
    if container is root_container(doc):
        return naming.root_containerd_id(space, stack, cell)
    return container.containerdId or naming.containerd_id(space, stack, cell, container.id)


def flatten_message(text: str) -> str:
    """One line, whitespace collapsed, at most 256 bytes (253 + ``...``) of UTF-8."""
    line = re.sub(r"\s+", " ", text.replace("\r", " ").replace("\n", " ").replace("\t", " "))
    line = line.strip()
    raw = line.encode("utf-8")
    if len(raw) <= MAX_MESSAGE_BYTES:
        return line
    return raw[: MAX_MESSAGE_BYTES - 3].decode("utf-8", "ignore") + "..."


def container_state(task_status: str | None, container_exists: bool) -> str:
    """Live container state: no container → Stopped; no task → Unknown; else by task status."""
    if not container_exists:
        return STOPPED
    if task_status is None:
        return UNKNOWN
    return _TASK_STATES.get(task_status, UNKNOWN)


def statuses_from(
    doc: CellDoc, containers: Iterable[str], tasks: dict[str, str]
) -> list[ContainerStatus]:
    """Container statuses of ``doc`` from a namespace's container IDs and task states.

    ``tasks`` maps containerd IDs to task status (``running``, ``stopped`` ...);
    what :meth:`CellRunner.live_statuses` computes with per-container calls,
    for callers that already listed the namespace.
    """
    present = set(containers)
    out = []
    for container in doc.spec.containers or []:
        cid = containerd_id_of(doc, container)
        state = container_state(tasks.get(cid), cid in present)
        out.append(ContainerStatus(name=container.id, id=container.id, state=state))
    return carry_restarts(doc, out)


def carry_restarts(doc: CellDoc, statuses: list[ContainerStatus]) -> list[ContainerStatus]:
    """Give fresh ``statuses`` the restart count and time ``doc`` recorded for each container.

    Live queries know nothing of restarts; without this a status refresh
    would forget them. Returns ``statuses`` (changed in place).
    """
    restarted = {s.id: s for s in doc.status.containers or () if s.restartCount}
    if restarted:
        for status in statuses:
            old = restarted.get(status.id)
            if old is not None:
                status.restartCount = old.restartCount
                status.restartTime = old.restartTime
    return statuses


def derive_cell_state(doc: CellDoc, statuses: list[ContainerStatus], cgroup_ok: bool) -> str:
    """The cell state the reconciler derives from live container statuses."""
    if not cgroup_ok:
        return UNKNOWN
    by_id = {s.id: s.state for s in statuses}
    root = root_container(doc)
    others = workloads(doc)
    if not others:
        if root is None:
            return READY
        state = by_id.get(root.id, UNKNOWN)
        if state in _LIVE:
            return READY
        return STOPPED if state in (STOPPED, FAILED) else UNKNOWN
    if any(c.id not in by_id for c in others):
        return UNKNOWN
    states = [by_id[c.id] for c in others]
    if any(s in _LIVE for s in states):
        return READY
    return UNKNOWN if UNKNOWN in states else STOPPED


async def gather(work: Iterable[Coroutine[Any, Any, Any] | defer.Deferred[Any]]) -> list[Any]:
    """Run coroutines/Deferreds concurrently; all finish, then the first failure is raised."""
    deferreds = [d if isinstance(d, defer.Deferred) else defer.ensureDeferred(d) for d in work]
    results = await defer.DeferredList(deferreds, consumeErrors=True)
    for ok, value in results:
        if not ok:
            value.raiseException()
    return [value for _, value in results]


class LiveStates(NamedTuple):
    """What containerd says now about some containers of one namespace.

    ``states``: containerd ID to container state (see :func:`container_state`);
    ``present``: the IDs that name a container, ``None`` when the listing failed
    (the states then come from the task queries alone). Shared by the callers of
    a coalesced query: read, never modify.
    """

    present: frozenset[str] | None
    states: dict[str, str]


async def _task_status(client: Any, namespace: str, cid: str) -> str | None:
    """The task's status; ``None`` when there is no task (or container); Unavailable raises."""
    try:
        return (await client.task_state(namespace, cid)).status
    except cerrors.NotFound:
        return None
    except cerrors.Unavailable:
        raise
    except cerrors.ContainerdError:
        return "unknown"


async def _present(client: Any, namespace: str, cids: tuple[str, ...]) -> frozenset[str] | None:
    try:
        return await client.container_ids(namespace, cids)
    except cerrors.Unavailable:
        raise
    except cerrors.ContainerdError:
        return None


async def query_states(
    client: Any, namespace: str, cids: tuple[str, ...], running_first: bool
) -> LiveStates:
    """The live state of each of ``cids`` in ``namespace``; an unreachable containerd raises.

    One listing says which containers exist; a task is asked for only where a
    container is. ``running_first`` (the cell is expected to run) sends the
    task queries along with the listing instead of after it: fewer round trips
    when containers exist, more calls when they do not. Either way the answer
    is the same.
    """
    if running_first:
        present, *statuses = await gather(
            [_present(client, namespace, cids), *(_task_status(client, namespace, c) for c in cids)]
        )
        tasks = dict(zip(cids, statuses, strict=True))
    else:
        present = await _present(client, namespace, cids)
        asked = cids if present is None else tuple(c for c in cids if c in present)
        tasks = {}
        if asked:  # none for a stopped cell
            statuses = await gather(_task_status(client, namespace, c) for c in asked)
            tasks = dict(zip(asked, statuses, strict=True))
    states = {
        cid: STOPPED
        if present is not None and cid not in present
        else container_state(tasks.get(cid), True)
        for cid in cids
    }
    return LiveStates(present, states)


def expects_running(doc: CellDoc) -> bool:
    """Whether the stored cell may have containers (only a hint for :func:`query_states`).

    A cell stopped or failed had its containers removed by whoever wrote that state.
    """
    return doc.status.state not in (STOPPED, FAILED)


class InFlight:
    """Coalesces identical queries while they run.

    ``run(key, query)`` starts ``query()`` unless a query of the same ``key``
    is still running, in which case the caller waits for that one and gets its
    result (or failure). Nothing is kept once a query has answered: the next
    call asks again.
    """

    def __init__(self) -> None:
        self._waiting: dict[Any, list[defer.Deferred[Any]]] = {}

    def run(self, key: Any, query: Callable[[], Any]) -> defer.Deferred[Any]:
        """The result of ``query()``, or of the identical query already in flight."""
        mine: defer.Deferred[Any] = defer.Deferred()
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(mine)
            return mine
        self._waiting[key] = [mine]

        def answer(result: Any) -> None:
            for waiter in self._waiting.pop(key):
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

        defer.ensureDeferred(query()).addBoth(answer)
        return mine

    def __len__(self) -> int:
        return len(self._waiting)


def as_kukeon_error(exc: BaseException) -> KukeonError:
    """Give containerd, CNI, cgroup and spec failures the daemon's error type."""
    if isinstance(exc, KukeonError):
        return exc
    return KukeonError(str(exc))


class CellRunner:
    """Runs cells for one daemon (see the module docstring): the runtime's ``cells``."""

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

    async def provision(self, doc: CellDoc) -> bool:
        """Make a new cell's cgroup and files and persist it. True if the cgroup was created.

        ``doc`` has its root container and containerd IDs already. Failures
        after the first write mark the cell Failed (``CreateCellFailed``).
        """
        doc.status.state = PENDING
        doc.status.network.bridgeName = naming.bridge_name(doc.spec.realmId, doc.spec.spaceId)
        doc.status.cgroupPath = self.cgroup_path(doc)
        stored = await self.save(doc)
        doc.status = stored.status
        try:
            created = self.ensure_cgroup(doc)
            await self.render_etc_files(doc)
            await self.check_images(doc, self.namespace(doc.spec.realmId))
        except Exception as exc:
            await self.mark_failed(doc, REASON_CREATE, exc)
            if not isinstance(exc, EXPECTED_FAILURES):
                raise  # a bug: the dispatcher logs it; the Failed cell is repaired by a create
            raise as_kukeon_error(exc) from exc
        return created

    # --- start ---------------------------------------------------------------------

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

    async def start(self, doc: CellDoc) -> CellDoc:
        """Run the cell: a no-op when all tasks run, else recreate every container."""
        ns = self.namespace(doc.spec.realmId)
        if root_container(doc) is None:
            docrules.ensure_root_container(doc)
        if await self.all_running(doc, ns):
            self.log.info(
                "cell tasks already running, StartCell is a no-op", cell=doc.metadata.name
            )
            return await self.mark_ready(doc, ns)
        try:
            self.ensure_cgroup(doc)
            await self.recreate(doc, ns)
        except Exception as exc:
            await self.mark_failed(doc, REASON_START, exc)
            if not isinstance(exc, EXPECTED_FAILURES):
                raise  # a bug: the dispatcher logs it; the Failed cell is repaired by a start
            raise as_kukeon_error(exc) from exc
        # A fresh start counts restarts (and on-failure:N limits) from zero.
        doc.status.containers = []
        return await self.mark_ready(doc, ns)

    async def mark_ready(self, doc: CellDoc, namespace: str) -> CellDoc:
        """State Ready, ``readyObserved``, fresh statuses; persist."""
        doc.status.state = READY
        doc.status.readyObserved = True
        doc.status.reason = ""
        doc.status.message = ""
        doc.status.containers = await self.live_statuses(doc, namespace)
        return await self.save(doc)

    async def image_configs(
        self, namespace: str, containers: list[ContainerSpec], realm: str
    ) -> dict[str, ImageRuntimeConfig]:
        """Image config (and passwd/group when a user name needs them) per container id."""
        client = self.rt.containerd
        bases: dict[str, ImageRuntimeConfig] = {}
        for image in dict.fromkeys(c.image for c in containers):
            try:
                bases[image] = await client.image_runtime_config(namespace, image)
            except cerrors.NotFound:
                # Deleted since the cell was created: pull it again if it can be had.
                await self.ensure_image(image, realm, namespace)
                bases[image] = await client.image_runtime_config(namespace, image)
        out = {}
        for container in containers:
            base = bases[container.image]
            wanted = cellspec.rootfs_files_needed(container, base.config)
            out[container.id] = (
                (await client.image_runtime_config(namespace, container.image, wanted))
                if wanted
                else base
            )
        return out

    async def recreate(self, doc: CellDoc, namespace: str) -> None:
        """Remove whatever runs, then create and start root and workloads from the spec."""
        ctx = self.context(doc, namespace)
        containers = list(doc.spec.containers or [])
        # Reading image configs does not depend on the old containers being gone.
        _, images = await gather(
            [
                self.teardown(doc, namespace, graceful=False),
                self.image_configs(namespace, containers, ctx.realm),
            ]
        )
        root = root_container(doc)
        assert root is not None
        await self.render_etc_files(doc)
        root_cid = containerd_id_of(doc, root)
        pid = await self.create_container_and_task(ctx, root, root_cid, images[root.id], None)
        if not pid:
            raise KukeonError(f"task of {root_cid} created with pid 0")
        join = cellspec.namespace_paths(pid)
        others = [(c, containerd_id_of(doc, c)) for c in workloads(doc)]
        # A created task already owns its namespaces, under the pid it keeps once
        # started. So the root's start, its CNI attach and the creation (not the
        # start) of the workload tasks overlap; no workload process runs before
        # eth0 and etc-hosts exist.
        await gather(
            [
                self.start_created(ctx, root_cid),
                self.attach_root(ctx, doc, root_cid, pid),
                *(
                    self.create_container_and_task(ctx, c, cid, images[c.id], join)
                    for c, cid in others
                ),
            ]
        )
        await gather(self.start_created(ctx, cid) for _, cid in others)

    async def attach_root(self, ctx: CellContext, doc: CellDoc, root_cid: str, pid: int) -> None:
        """CNI ADD of ``eth0`` into the root's network namespace, then its etc-hosts line."""
        if self.host_network(doc):
            self.log.info("skipping CNI attach for host-network root container", cell=ctx.cell)
            return
        try:
            result = await self.rt.network.attach(
                root_cid, f"/proc/{pid}/ns/net", ctx.conflist_path, "eth0"
            )
        except CNIError as exc:
            raise KukeonError(str(exc)) from exc
        try:
            await self.render_etc_files(doc, result.ipv4)
        except OSError as exc:
            self.log.warn("could not write etc-hosts: {error}", error=exc)

    async def create_and_start(
        self,
        ctx: CellContext,
        doc: CellDoc,
        container: ContainerSpec,
        cid: str,
        image: ImageRuntimeConfig,
        join: dict[str, str] | None,
    ) -> int:
        """Create one containerd container and start its task; return the task pid."""
        await self.create_container_and_task(ctx, container, cid, image, join)
        return await self.start_created(ctx, cid)

    async def create_container_and_task(
        self,
        ctx: CellContext,
        container: ContainerSpec,
        cid: str,
        image: ImageRuntimeConfig,
        join: dict[str, str] | None,
    ) -> int:
        """Create one containerd container and its task, not started yet; return its pid.

        ``join`` None means the root container.
        """
        root = join is None
        names = (ctx.realm, ctx.space, ctx.stack, ctx.cell, container.id)
        profile = None
        path = cellspec.seccomp_profile_path(container)
        if path:
            profile = await self.files.run(read_json_file, path)
        kuketty = None
        if container.attachable and not root:
            kuketty = await self.files.run(self.prepare_tty, names)
        staged = None
        if container.secrets:
            staged = await self.files.run(
                secrets.resolve, container, cid, self.rt.config.secrets_dir, os.environ
            )
        try:
            spec, argv = cellspec.build_container_spec(
                ctx,
                container,
                cid,
                root,
                image,
                join,
                profile,
                kuketty,
                secret_env=staged.env if staged else (),
                secret_mounts=staged.mounts if staged else (),
            )
            if staged is not None:
                user = spec["process"].get("user") or {}
                await self.files.run(
                    secrets.give_to, staged, user.get("uid", 0), user.get("gid", 0)
                )
        except CellSpecError as exc:
            await self.forget_secrets(cid)
            raise KukeonError(f"container {container.id}: {exc}") from exc
        except BaseException:
            await self.forget_secrets(cid)
            raise
        group = self.rt.config.socket_gid
        if kuketty is not None:
            document = render_terminal_doc(container, argv, names, group)
            await self.files.run(write_metadata, kuketty.metadata, document)
        client = self.rt.containerd
        labels = cellspec.containerd_labels(ctx, container, root)
        try:
            await client.create_container(ctx.namespace, cid, container.image, spec, labels)
        except cerrors.AlreadyExists as exc:
            raise KukeonError(f"container already exists: {cid}") from exc
        except cerrors.NotFound:
            raise self.missing_image(container.image, ctx.realm, ctx.namespace) from None
        if kuketty is not None:
            # The helper runs as the container's user: it reads the metadata
            # file and creates its socket and capture file in the tty dir.
            uid = (spec["process"].get("user") or {}).get("uid", 0)
            await self.files.run(hand_over, kuketty.tty_dir, kuketty.metadata, uid, group)
        return await client.create_task(
            ctx.namespace, cid, await self.log_path(ctx, container, root)
        )

    async def log_path(self, ctx: CellContext, container: ContainerSpec, root: bool) -> str | None:
        """Where a workload's stdout/stderr go (its directory made); None for the root
        and attachable containers, whose output is not logged to a file."""
        if root or container.attachable:
            return None
        path = naming.container_log_path(
            self.rt.run_path, ctx.realm, ctx.space, ctx.stack, ctx.cell, container.id
        )
        await self.files.run(os.makedirs, os.path.dirname(path), DIR_MODE, True)
        return path

    async def restart_workload(self, doc: CellDoc, container: ContainerSpec) -> int:
        """Run an exited workload again, joined to the running root; return the new pid.

        The caller holds the cell's lock. The container is kept (its writable
        layer survives, as with ``docker restart``) and gets a new task,
        unless it is gone or joins the namespaces of an older root, in which
        case it is recreated from the spec as StartContainer does.
        """
        ns = self.namespace(doc.spec.realmId)
        ctx = self.context(doc, ns)
        client = self.rt.containerd
        root = root_container(doc)
        root_task = None
        if root is not None:
            try:
                root_task = await client.task_state(ns, containerd_id_of(doc, root))
            except cerrors.NotFound:
                pass
        if root_task is None or root_task.status != "running" or not root_task.pid:
            raise KukeonError(f"root container of cell {ctx.cell} is not running")
        join = cellspec.namespace_paths(root_task.pid)
        cid = containerd_id_of(doc, container)
        try:
            info = await client.get_container(ns, cid)
        except cerrors.NotFound:
            info = None
        if info is not None and _joins(info.spec, join):
            try:
                await client.delete_task(ns, cid)
            except cerrors.NotFound:
                pass
            await client.create_task(ns, cid, await self.log_path(ctx, container, False))
        else:
            await self.remove_container(ns, cid, 0.0)
            images = await self.image_configs(ns, [container], ctx.realm)
            await self.create_container_and_task(ctx, container, cid, images[container.id], join)
        return await self.start_created(ctx, cid)

    async def start_created(self, ctx: CellContext, cid: str) -> int:
        """Start the created task of ``cid``; return its pid."""
        pid = await self.rt.containerd.start_task(ctx.namespace, cid)
        if not pid:
            raise KukeonError(f"task of {cid} started with pid 0")
        self.move_to_payload(ctx, cid)
        return pid

    def prepare_tty(self, names: tuple[str, ...]) -> Kuketty:
        """Stage the terminal helper and create an attachable container's tty dir (blocking).

        Fails, naming every place looked at, when no helper binary is found.
        """
        run = self.rt.run_path
        try:
            binary = stage_kuketty(run, self.rt.config.kuketty_binary)
        except (KukettyNotFound, OSError) as exc:
            raise KukeonError(f"attachable container {names[-1]}: {exc}") from exc
        tty = naming.tty_dir(run, *names)
        prepare_tty_dir(tty, self.rt.config.socket_gid)
        return Kuketty(binary, tty, naming.kuketty_metadata_path(run, *names))

    def move_to_payload(self, ctx: CellContext, cid: str) -> None:
        """cgroup v2: move the task's PIDs into ``<cell>/<cid>/_payload`` (WARN on failure)."""
        if self.rt.cgroups.version != 2:
            return
        group = naming.container_cgroup_path(ctx.cgroup_path, cid)
        try:
            self.rt.cgroups.move_to_payload(group)
        except CgroupError as exc:
            self.log.warn(
                "could not move {cid} into its payload cgroup: {error}", cid=cid, error=exc
            )

    # --- stop / kill / delete --------------------------------------------------------

    async def remove_container(self, namespace: str, cid: str, grace: float) -> bool:
        """Stop ``cid``'s task, delete task, container, snapshot and staged secrets.

        False if there was no such container.
        """
        removed = await stopping.remove_container(
            self.rt.containerd, self.rt.reactor, namespace, cid, grace
        )
        await self.forget_secrets(cid)
        return removed

    async def forget_secrets(self, cid: str) -> None:
        """Remove the secret files staged for ``cid``, if any."""
        staged = secrets.staging_dir(self.rt.config.secrets_dir, cid)
        # A stat on the reactor: most containers have nothing staged.
        if os.path.lexists(staged):
            await self.files.run(secrets.remove_staged, self.rt.config.secrets_dir, cid)

    async def detach_root(self, doc: CellDoc, namespace: str) -> None:
        """CNI DEL for the root while its task still runs (failures only logged)."""
        if self.host_network(doc):
            return
        realm, space, stack, cell = cell_key(doc)
        cid = naming.root_containerd_id(space, stack, cell)
        try:
            task = await self.rt.containerd.task_state(namespace, cid)
        except cerrors.ContainerdError:
            return
        if task.status != "running" or not task.pid:
            return
        try:
            await self.rt.network.detach(
                cid, f"/proc/{task.pid}/ns/net", self.conflist_path(realm, space), "eth0"
            )
        except (CNIError, OSError) as exc:
            self.log.warn("CNI detach of {cid} failed: {error}", cid=cid, error=exc)

    async def scrub_network(self, doc: CellDoc, cids: Iterable[str]) -> None:
        """Forget IPAM leases and cached results of ``cids`` (failures only logged)."""
        network = naming.network_name(doc.spec.realmId, doc.spec.spaceId)

        async def scrub(cid: str) -> None:
            try:
                await self.rt.network.scrub(cid, network)
            except (CNIError, OSError) as exc:
                self.log.warn("CNI scrub of {cid} failed: {error}", cid=cid, error=exc)

        await gather(scrub(cid) for cid in dict.fromkeys(cids))

    async def teardown(
        self, doc: CellDoc, namespace: str, graceful: bool, grace: float = STOP_GRACE
    ) -> None:
        """Remove every container of the cell; detach and scrub the root's address.

        The workloads' tasks end first. Then, with no workload process left,
        their deletion overlaps the root's CNI detach and removal; the root's
        address is scrubbed once detached; strays with the cell's ID prefix
        go last. One listing of the namespace tells which containers exist,
        so absent ones cost no calls.
        """
        realm, space, stack, cell = cell_key(doc)
        wait = grace if graceful else 0.0
        present = {c.id for c in await self.rt.containerd.list_containers(namespace)}
        work = [cid for cid in (containerd_id_of(doc, c) for c in workloads(doc)) if cid in present]
        client, clock = self.rt.containerd, self.rt.reactor
        had_tasks = await gather(
            stopping.stop_if_running(client, clock, namespace, cid, wait) for cid in work
        )
        root = root_container(doc)
        root_cid = naming.root_containerd_id(space, stack, cell)
        explicit_root = root is not None and root.image != docrules.IMPLICIT_ROOT_IMAGE

        async def root_side() -> None:
            if root_cid in present:
                await self.detach_root(doc, namespace)
                await gather(
                    [
                        self.remove_container(namespace, root_cid, wait if explicit_root else 0.0),
                        self.scrub_network(doc, [root_cid]),
                    ]
                )
            else:
                await self.scrub_network(doc, [root_cid])

        await gather(
            [
                *(
                    stopping.delete_stopped(client, namespace, cid, had)
                    for cid, had in zip(work, had_tasks, strict=True)
                ),
                root_side(),
            ]
        )
        prefix = f"{space}_{stack}_{cell}_"
        known = {root_cid, *work}
        strays = sorted(cid for cid in present if cid.startswith(prefix) and cid not in known)
        await gather(self.remove_container(namespace, cid, 0.0) for cid in strays)
        await gather(
            self.forget_secrets(containerd_id_of(doc, c))
            for c in doc.spec.containers or []
            if c.secrets
        )

    async def stop(self, doc: CellDoc, kill: bool = False) -> CellDoc:
        """Stop (SIGTERM, grace, SIGKILL) or kill every container and remove them; persist."""
        ns = self.namespace(doc.spec.realmId)
        try:
            await self.teardown(doc, ns, graceful=not kill)
        except cerrors.ContainerdError as exc:
            raise as_kukeon_error(exc) from exc
        doc.status.state = STOPPED
        # A teardown that returned has removed every container of the cell.
        doc.status.containers = statuses_from(doc, (), {})
        return await self.save(doc)

    async def mark_failed(self, doc: CellDoc, reason: str, exc: BaseException) -> CellDoc:
        """Best-effort kill, then state Failed with ``reason`` and the one-line message."""
        ns = self.namespace(doc.spec.realmId)
        try:
            await self.teardown(doc, ns, graceful=False)
        except Exception as cleanup:  # noqa: BLE001  (best effort; the cause is reported)
            log_step_failure(self.log, cleanup, "cleanup after a failed cell start failed")
        doc.status.state = FAILED
        doc.status.reason = reason
        doc.status.message = flatten_message(str(as_kukeon_error(exc)))
        try:
            doc.status.containers = await self.live_statuses(doc, ns)
        except Exception as error:  # noqa: BLE001  (statuses are informative only)
            if not isinstance(error, EXPECTED_FAILURES):
                self.log.failure("cannot read the statuses of a failed cell")
            doc.status.containers = []
        return await self.save(doc)

    async def delete(self, doc: CellDoc) -> bool:
        """Remove containers, cgroup, metadata and files; True if the cell had containers.

        A container that cannot be removed fails the delete and keeps the
        cgroup and metadata (``failed to delete cell: …``).
        """
        ns = self.namespace(doc.spec.realmId)
        realm, space, stack, cell = cell_key(doc)
        cids = [containerd_id_of(doc, c) for c in doc.spec.containers or []]
        try:
            await self.teardown(doc, ns, graceful=True, grace=DELETE_GRACE)
            await self.scrub_network(doc, cids)
        except EXPECTED_FAILURES as exc:
            raise KukeonError(f"failed to delete cell: {as_kukeon_error(exc)}") from exc
        await self.remove_leftovers(doc)
        await self.rt.store.delete(cell_key(doc))
        return bool(doc.spec.containers)

    async def remove_leftovers(self, doc: CellDoc) -> None:
        """rmdir the cell cgroup (WARN only) and ``rm -rf`` the cell directory."""
        for group in dict.fromkeys(
            [self.cgroup_path(doc), naming.cgroup_path(self.rt.cgroup_root, *cell_key(doc))]
        ):
            try:
                self.rt.cgroups.delete(group)
            except CgroupError as exc:
                self.log.warn(
                    "could not remove cell cgroup {group}: {error}", group=group, error=exc
                )
        await self.files.run(remove_tree, naming.resource_dir(self.rt.run_path, *cell_key(doc)))

    async def purge(self, doc: CellDoc) -> list[str]:
        """Delete, tolerating failures; then scrub and remove everything. Returns errors."""
        problems = []
        try:
            await self.delete(doc)
        except KukeonError as exc:
            problems.append(str(exc))
            try:
                ns = self.namespace(doc.spec.realmId)
                await self.teardown(doc, ns, graceful=False)
            except Exception as again:  # noqa: BLE001  (purge goes on regardless)
                log_step_failure(self.log, again, "purge: second teardown failed")
        cids = [containerd_id_of(doc, c) for c in doc.spec.containers or []]
        await self.scrub_network(doc, cids)
        await self.remove_leftovers(doc)
        await self.rt.store.purge(cell_key(doc))
        return problems


def _joins(spec: dict[str, Any] | None, join: dict[str, str]) -> bool:
    """Whether an OCI runtime spec joins exactly the namespace paths of ``join``."""
    namespaces = ((spec or {}).get("linux") or {}).get("namespaces") or []
    paths = {ns.get("type"): ns.get("path") for ns in namespaces}
    return all(paths.get(kind) == path for kind, path in join.items())
