"""The reconcile pass: bring every cell document in line with what containerd runs.

A pass reads the cells from the store's in-memory index, asks containerd
once per realm namespace for its containers and tasks (two calls, whatever
the number of cells), then settles each cell under its own lock, so RPCs on
other cells never wait for a pass. Per-cell rules (spec §7.2):

* a ``Failed`` cell only gets its container statuses refreshed;
* otherwise the state is derived from the live statuses (non-root
  containers decide, the root only when there is nothing else), ``Unknown``
  when the cell cgroup is missing;
* ``readyObserved`` latches once the cell has been seen ``Ready``;
* a stopped ``autoDelete`` cell that was once ready is killed and deleted; a
  cell whose workloads all exited while its root still runs is wound down
  (killed, which persists ``Stopped``);
* the document is written only when state, latch or statuses changed.

Restart policies (:mod:`kukeond.controller.restart_policy`): in a ``Ready``
cell whose root runs, a workload whose task exited is started again when
its policy asks for it, after its backoff; until then it counts as alive, so
its exit neither winds the cell down nor deletes it. A container a user
stopped or killed has no containerd container left and is never restarted.

A steady cell costs little: it is read as the store's shared decoded
document (decoded once per stored version), judged without copying, and
copied only when it must be written or acted on. Cells settled straight from
the listing run on the reactor thread back to back, so the pass lets the
reactor run every :data:`CHUNK` cells: a pass over thousands of cells never
holds up RPCs for longer than one chunk.

Unlike the reference, a pass that cannot reach containerd leaves the
documents alone instead of rewriting every cell to ``Unknown``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, task

from kukeond.api import v1beta1 as v1
from kukeond.base import gojson
from kukeond.containerd import errors as cerrors
from kukeond.containerd.interface import IContainerd
from kukeond.controller.cell_runner import CellRunner
from kukeond.controller.cell_state import (
    containerd_id_of,
    derive_cell_state,
    gather,
    root_container,
    statuses_from,
    workloads,
)
from kukeond.controller.common import copy_doc, realm_namespace
from kukeond.controller.failures import log_if_bug, log_step_failure
from kukeond.controller.restart_policy import Backoff, RestartPolicy, parse_policy
from kukeond.controller.runtime import Runtime
from kukeond.host.cgroups import CgroupError
from kukeond.logs import Logger
from kukeond.store.errors import DocumentChanged
from kukeond.store.versions import Version

Key = tuple[str, ...]

_ALIVE = frozenset((v1.READY, v1.PENDING, v1.PAUSED, v1.PAUSING))

DELETED = "deleted"
UPDATED = "updated"
UNCHANGED = "unchanged"

DELETE = "delete"
WIND_DOWN = "wind-down"

CHUNK = 64
"""Cells a pass settles in a row before it lets the reactor serve others."""

_decode_cell = v1.CellDoc.from_wire


@dataclass(frozen=True)
class LiveView:
    """One listing of a namespace: its container IDs and the status of each task."""

    containers: frozenset[str]
    tasks: dict[str, str]
    exits: dict[str, int] = field(default_factory=dict)

    def statuses(self, doc: v1.CellDoc) -> list[v1.ContainerStatus]:
        """Fresh statuses of ``doc``'s containers as this listing shows them."""
        # statuses_from copies the IDs it is given: give it this cell's, not the namespace's.
        ids = (containerd_id_of(doc, c) for c in doc.spec.containers or [])
        return statuses_from(doc, [i for i in ids if i in self.containers], self.tasks)

    def removed(self, doc: v1.CellDoc) -> frozenset[str]:
        """Names of ``doc``'s workloads whose containerd container is gone.

        Only a request (stop, kill, delete) removes a container; a process
        that exits by itself leaves its container and stopped task behind.
        """
        return frozenset(
            c.id for c in workloads(doc) if containerd_id_of(doc, c) not in self.containers
        )


async def namespace_view(containerd: IContainerd, namespace: str) -> LiveView:
    """Every container and task of ``namespace``, with two calls."""
    containers, tasks = await defer.gatherResults(
        [containerd.list_containers(namespace), containerd.list_tasks(namespace)],
        consumeErrors=True,
    )
    return LiveView(
        frozenset(c.id for c in containers),
        {t.container_id: t.status for t in tasks},
        {t.container_id: t.exit_status for t in tasks if t.status == "stopped"},
    )


async def cell_view(containerd: Any, namespace: str, cids: Iterable[str]) -> LiveView:
    """The part of :class:`LiveView` about ``cids`` alone, with per-container calls.

    A task containerd cannot describe (any error but NotFound and
    Unavailable) counts as present in an unknown state.
    """

    async def one(cid: str) -> tuple[str, str | None, int | None]:
        try:
            info = await containerd.task_state(namespace, cid)
        except cerrors.NotFound:
            pass
        except cerrors.Unavailable:
            raise
        except cerrors.ContainerdError:
            return cid, "unknown", None
        else:
            return cid, info.status, info.exit_status
        try:
            await containerd.get_container(namespace, cid)
        except cerrors.NotFound:
            return cid, None, None
        except cerrors.Unavailable:
            raise
        except cerrors.ContainerdError:
            return cid, "unknown", None
        return cid, "", None

    found = await gather(one(cid) for cid in dict.fromkeys(cids))
    present = frozenset(cid for cid, status, _ in found if status is not None)
    tasks = {cid: status for cid, status, _ in found if status}
    exits = {cid: code for cid, status, code in found if status == "stopped" and code is not None}
    return LiveView(present, tasks, exits)


def _unwrap(exc: BaseException) -> BaseException:
    """The exception inside a ``FirstError`` from ``gatherResults``, else ``exc``."""
    sub = getattr(exc, "subFailure", None)
    return sub.value if sub is not None else exc


# per-cell decision (pure)


def _status_key(statuses: Iterable[v1.ContainerStatus] | None) -> list[tuple[str, str]]:
    return [(s.id, s.state) for s in statuses or []]


@dataclass(frozen=True)
class Verdict:
    """The per-cell rules' outcome: the cell's new state and latch, and what to do."""

    state: str
    observed: bool
    write: bool
    action: str | None = None


@dataclass
class Decision:
    """What to do with one cell: the document to write (if any) and an action."""

    doc: v1.CellDoc
    write: bool
    action: str | None = None


def judge(
    doc: v1.CellDoc,
    statuses: list[v1.ContainerStatus],
    cgroup_ok: bool,
    restarting: frozenset[str] = frozenset(),
    removed: frozenset[str] = frozenset(),
) -> Verdict:
    """Apply the per-cell rules to ``doc`` given its live statuses, copying nothing.

    Containers in ``restarting`` exited but wait for a restart: they count
    as alive when the cell's state is derived. Workloads in ``removed`` were
    stopped, killed or deleted on request: while the root runs, a cell whose
    workloads all ended that way is neither wound down nor auto-deleted;
    only an exit nobody asked for ends the cell.
    """
    statuses_changed = _status_key(statuses) != _status_key(doc.status.containers)
    if doc.status.state == v1.FAILED:
        return Verdict(doc.status.state, doc.status.readyObserved, statuses_changed)
    state = derive_cell_state(doc, _as_alive(statuses, restarting), cgroup_ok)
    observed = doc.status.readyObserved or state == v1.READY or doc.status.state == v1.READY
    if state == v1.STOPPED and observed:
        root = root_container(doc)
        by_id = {s.id: s.state for s in statuses}
        live_root = root is not None and by_id.get(root.id) in _ALIVE
        exited = [c for c in workloads(doc) if c.id not in removed]
        if live_root and workloads(doc):
            if exited:
                return Verdict(state, observed, False, DELETE if doc.spec.autoDelete else WIND_DOWN)
        elif doc.spec.autoDelete:
            return Verdict(state, observed, False, DELETE)
    changed = statuses_changed or state != doc.status.state or observed != doc.status.readyObserved
    return Verdict(state, observed, changed)


def _as_alive(
    statuses: list[v1.ContainerStatus], restarting: frozenset[str]
) -> list[v1.ContainerStatus]:
    if not restarting:
        return statuses
    return [
        v1.ContainerStatus(name=s.name, id=s.id, state=v1.PENDING) if s.id in restarting else s
        for s in statuses
    ]


def decide(
    doc: v1.CellDoc,
    statuses: list[v1.ContainerStatus],
    cgroup_ok: bool,
    removed: frozenset[str] = frozenset(),
) -> Decision:
    """The :func:`judge` verdict with the updated document (a copy; ``doc`` is untouched)."""
    return _decision(doc, statuses, judge(doc, statuses, cgroup_ok, removed=removed))


def _decision(doc: v1.CellDoc, statuses: list[v1.ContainerStatus], verdict: Verdict) -> Decision:
    new = copy_doc(doc)
    new.status.containers = statuses
    new.status.state = verdict.state
    new.status.readyObserved = verdict.observed
    return Decision(new, verdict.write, verdict.action)


# the pass


@dataclass
class PassReport:
    """Counters and errors of one pass (logged as one line)."""

    cells_scanned: int = 0
    cells_updated: int = 0
    cells_deleted: int = 0
    cells_errored: int = 0
    errors: list[str] = field(default_factory=list)
    containerd_down: bool = False


@dataclass
class RestartPlan:
    """Exited workloads of one cell to restart now, and those still backing off."""

    now: list[v1.ContainerSpec] = field(default_factory=list)
    waiting: frozenset[str] = frozenset()
    wake_in: float | None = None


_NO_RESTARTS = RestartPlan()


class Reconciler:
    """Runs passes and single-cell reconciles over one runtime.

    ``wake``, when set (the reconcile service sets it), is called with a cell
    key and a delay in seconds to have that cell reconciled again once a
    container's restart backoff has run out.
    """

    log = Logger()

    def __init__(self, runtime: Runtime, clock: Any = None) -> None:
        self.runtime = runtime
        self.runner: CellRunner = runtime.cells
        self.clock = clock if clock is not None else runtime.reactor
        self.backoff = Backoff()
        self.wake: Callable[[Key, float], None] | None = None
        self._warned: set[tuple[Key, str, str]] = set()

    async def run_pass(self) -> PassReport:
        """Reconcile every cell once; never raises (errors go into the report)."""
        report = PassReport()
        by_realm: dict[str, list[Key]] = {}
        for key in self.runtime.store.keys(4):
            by_realm.setdefault(key[0], []).append(key)
        settled = 0
        for realm, keys in sorted(by_realm.items()):
            report.cells_scanned += len(keys)
            if report.containerd_down:
                report.cells_errored += len(keys)
                continue
            namespace = realm_namespace(self.runtime, realm)
            seen = {key: self._snapshot(key) for key in keys}
            try:
                view = await namespace_view(self.runtime.containerd, namespace)
            except Exception as exc:  # noqa: BLE001  (recorded; the realm's cells are skipped)
                log_if_bug(
                    self.log, exc, "reconcile: listing {namespace} failed", namespace=namespace
                )
                self._listing_failed(report, namespace, _unwrap(exc), len(keys))
                continue
            for key in keys:
                await self._count(report, key, self._settle(key, namespace, view, seen[key]))
                settled += 1
                if settled % CHUNK == 0:
                    await task.deferLater(self.runtime.reactor, 0, lambda: None)
        return report

    def _snapshot(self, key: Key) -> v1.CellDoc | None:
        """The cell's stored version as the namespace is listed (the store's shared object)."""
        try:
            return self.runtime.store.decoded(key, _decode_cell)
        except Exception:  # noqa: BLE001  (_settle reads it again and reports the error)
            return None

    def _listing_failed(
        self, report: PassReport, namespace: str, error: BaseException, cells: int
    ) -> None:
        report.cells_errored += cells
        if isinstance(error, cerrors.Unavailable):
            report.containerd_down = True
            report.errors.append(f"containerd unavailable: {error}")
        else:
            report.errors.append(f"list containers in namespace {namespace!r}: {error}")

    async def _count(self, report: PassReport, key: Key, work: Awaitable[str]) -> None:
        try:
            outcome = await work
        except Exception as exc:  # noqa: BLE001  (one cell never stops the pass)
            log_if_bug(self.log, exc, "reconcile of cell {cell} failed", cell="/".join(key))
            error = _unwrap(exc)
            report.cells_errored += 1
            report.errors.append(f"reconcile cell {'/'.join(key)}: {error}")
            if isinstance(error, cerrors.Unavailable):
                report.containerd_down = True
            return
        if outcome == DELETED:
            report.cells_deleted += 1
        elif outcome == UPDATED:
            report.cells_updated += 1

    async def reconcile_cell(self, key: Key) -> str:
        """Reconcile one cell with per-container queries; returns the outcome."""
        key = tuple(key)
        return await self._settle(key, realm_namespace(self.runtime, key[0]), None, None)

    async def _settle(
        self, key: Key, namespace: str, view: LiveView | None, seen: v1.CellDoc | None
    ) -> str:
        store = self.runtime.store
        async with store.lock(key):
            # Shared with other readers: judged as is, copied before anything changes.
            doc = store.decoded(key, _decode_cell)
            if doc is None:
                self.backoff.forget(key)
                return UNCHANGED
            try:
                return await self._settle_document(key, namespace, view, seen, doc)
            except DocumentChanged as exc:
                # Another writer got there first; the next pass judges its version.
                self.log.info("reconcile: {error}", error=exc)
                return UNCHANGED

    async def _settle_document(
        self,
        key: Key,
        namespace: str,
        view: LiveView | None,
        seen: v1.CellDoc | None,
        doc: v1.CellDoc,
    ) -> str:
        store = self.runtime.store
        read = store.version(key)
        if view is None or doc is not seen:
            # Rewritten since the namespace was listed (or nothing listed): ask again.
            cids = [containerd_id_of(doc, c) for c in doc.spec.containers or []]
            view = await cell_view(self.runtime.containerd, namespace, cids)
        statuses = view.statuses(doc)
        plan = self._plan_restarts(key, doc, statuses, view)
        if plan.now:
            return await self._restart(key, doc, statuses, plan.now, read)
        verdict = judge(doc, statuses, self._cgroup_exists(doc), plan.waiting, view.removed(doc))
        if not verdict.write and verdict.action is None:
            return UNCHANGED
        decision = _decision(doc, statuses, verdict)
        if decision.write:
            await store.put(key, decision.doc.to_wire(), expect=read)
            return UPDATED
        return await self._act(key, decision)

    # restart policies

    def _policy(self, key: Key, container: v1.ContainerSpec) -> RestartPolicy | None:
        """The container's policy; an unknown value is logged once and means ``no``."""
        text = container.restartPolicy or ""
        policy = parse_policy(text)
        if policy is None:
            seen = (key, container.id, text)
            if seen not in self._warned:
                self._warned.add(seen)
                self.log.warn(
                    "container {cell}/{container}: unknown restartPolicy {policy!r}, "
                    "treated as 'no'",
                    cell="/".join(key),
                    container=container.id,
                    policy=text,
                )
        return policy

    def _plan_restarts(
        self, key: Key, doc: v1.CellDoc, statuses: list[v1.ContainerStatus], view: LiveView
    ) -> RestartPlan:
        """Which exited workloads of ``doc`` restart now and which wait (asks ``wake``)."""
        if doc.status.state != v1.READY:
            self.backoff.forget(key)
            return _NO_RESTARTS
        candidates = [c for c in workloads(doc) if c.restartPolicy]
        if not candidates:
            return _NO_RESTARTS
        root = root_container(doc)
        by_id = {s.id: s for s in statuses}
        if root is None or getattr(by_id.get(root.id), "state", None) != v1.READY:
            return _NO_RESTARTS
        counts = {s.id: s.restartCount for s in doc.status.containers or ()}
        now = self.clock.seconds()
        plan = RestartPlan()
        waiting = set()
        for container in candidates:
            status = by_id.get(container.id)
            if status is None or status.state != v1.STOPPED:
                continue
            policy = self._policy(key, container)
            if policy is None or not policy.restarts:
                continue
            code = view.exits.get(containerd_id_of(doc, container))
            if code is None or not policy.wants_restart(code, counts.get(container.id, 0)):
                continue
            wait = self.backoff.wait(key, container.id, now)
            if wait <= 0:
                plan.now.append(container)
            else:
                waiting.add(container.id)
                plan.wake_in = wait if plan.wake_in is None else min(plan.wake_in, wait)
        plan.waiting = frozenset(waiting)
        if plan.wake_in is not None:
            self._wake(key, plan.wake_in)
        return plan

    def _wake(self, key: Key, delay: float) -> None:
        if self.wake is not None:
            self.wake(key, delay)

    async def _restart(
        self,
        key: Key,
        doc: v1.CellDoc,
        statuses: list[v1.ContainerStatus],
        due: list[v1.ContainerSpec],
        read: Version | None,
    ) -> str:
        """Restart the ``due`` workloads of ``doc``, record counts and times; persist."""
        cell = "/".join(key)
        new = copy_doc(doc)
        new.status.containers = statuses
        by_id = {s.id: s for s in statuses}
        retry: float | None = None
        for container in due:
            now = self.clock.seconds()
            try:
                await self.runner.restart_workload(new, container)
            except Exception as exc:  # noqa: BLE001  (retried after the next backoff)
                wait = self.backoff.failed(key, container.id, now)
                retry = wait if retry is None else min(retry, wait)
                log_step_failure(
                    self.log,
                    exc,
                    "reconcile: restarting container {cell}/{container} failed",
                    cell=cell,
                    container=container.id,
                )
                continue
            self.backoff.restarted(key, container.id, now)
            status = by_id[container.id]
            status.state = v1.READY
            status.restartCount += 1
            status.restartTime = gojson.now()
            self.log.info(
                "reconcile: restarted container {cell}/{container} "
                "(restartPolicy {policy!r}, restart {count})",
                cell=cell,
                container=container.id,
                policy=container.restartPolicy,
                count=status.restartCount,
            )
        await self.runtime.store.put(key, new.to_wire(), expect=read)
        if retry is not None:
            self._wake(key, retry)
        return UPDATED

    def _cgroup_exists(self, doc: v1.CellDoc) -> bool:
        try:
            return bool(self.runtime.cgroups.exists(self.runner.cgroup_path(doc)))
        except (CgroupError, OSError):  # a failed check derives Unknown, as in the reference
            return False

    async def _act(self, key: Key, decision: Decision) -> str:
        # Runs under the cell lock, so no request can slip in between decision and action.
        cell = "/".join(key)
        if decision.action == DELETE:
            self.log.info(
                "reconcile: auto-deleting cell {cell} state={state}",
                cell=cell,
                state=decision.doc.status.state,
            )
            stopped = await self.runner.stop(decision.doc, kill=True)
            await self.runner.delete(stopped)
            return DELETED
        self.log.info(
            "reconcile: winding down cell {cell} after non-root workloads exited", cell=cell
        )
        await self.runner.stop(decision.doc, kill=True)
        return UPDATED
