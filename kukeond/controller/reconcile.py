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

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field

from twisted.internet import defer, task

from kukeond.api import v1beta1 as v1
from kukeond.containerd import errors as cerrors
from kukeond.controller.cell_runner import (
    CellRunner,
    containerd_id_of,
    derive_cell_state,
    root_container,
    runner_for,
    statuses_from,
    workloads,
)
from kukeond.controller.common import copy_doc, realm_namespace
from kukeond.controller.runtime import Runtime
from kukeond.logs import Logger

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

    def statuses(self, doc: v1.CellDoc) -> list[v1.ContainerStatus]:
        """Fresh statuses of ``doc``'s containers as this listing shows them."""
        # statuses_from copies the IDs it is given: give it this cell's, not the namespace's.
        ids = (containerd_id_of(doc, c) for c in doc.spec.containers or [])
        return statuses_from(doc, [i for i in ids if i in self.containers], self.tasks)


async def namespace_view(containerd: object, namespace: str) -> LiveView:
    """Every container and task of ``namespace``, with two calls."""
    containers, tasks = await defer.gatherResults(
        [containerd.list_containers(namespace), containerd.list_tasks(namespace)],
        consumeErrors=True,
    )
    return LiveView(
        frozenset(c.id for c in containers), {t.container_id: t.status for t in tasks}
    )


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


def judge(doc: v1.CellDoc, statuses: list[v1.ContainerStatus], cgroup_ok: bool) -> Verdict:
    """Apply the per-cell rules to ``doc`` given its live statuses, copying nothing."""
    statuses_changed = _status_key(statuses) != _status_key(doc.status.containers)
    if doc.status.state == v1.FAILED:
        return Verdict(doc.status.state, doc.status.readyObserved, statuses_changed)
    state = derive_cell_state(doc, statuses, cgroup_ok)
    observed = doc.status.readyObserved or state == v1.READY or doc.status.state == v1.READY
    if state == v1.STOPPED and observed:
        if doc.spec.autoDelete:
            return Verdict(state, observed, False, DELETE)
        root = root_container(doc)
        by_id = {s.id: s.state for s in statuses}
        if workloads(doc) and root is not None and by_id.get(root.id) in _ALIVE:
            return Verdict(state, observed, False, WIND_DOWN)
    changed = (
        statuses_changed or state != doc.status.state or observed != doc.status.readyObserved
    )
    return Verdict(state, observed, changed)


def decide(doc: v1.CellDoc, statuses: list[v1.ContainerStatus], cgroup_ok: bool) -> Decision:
    """The :func:`judge` verdict with the updated document (a copy; ``doc`` is untouched)."""
    return _decision(doc, statuses, judge(doc, statuses, cgroup_ok))


def _decision(
    doc: v1.CellDoc, statuses: list[v1.ContainerStatus], verdict: Verdict
) -> Decision:
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


class Reconciler:
    """Runs passes and single-cell reconciles over one runtime."""

    log = Logger()

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.runner: CellRunner = runner_for(runtime)

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
                return UNCHANGED
            if view is not None and doc is seen:
                statuses = view.statuses(doc)
            else:
                # Rewritten since the namespace was listed (or nothing listed): ask again.
                statuses = await self.runner.live_statuses(doc, namespace)
            verdict = judge(doc, statuses, self._cgroup_exists(doc))
            if not verdict.write and verdict.action is None:
                return UNCHANGED
            decision = _decision(doc, statuses, verdict)
            if decision.write:
                await store.put(key, decision.doc.to_wire())
                return UPDATED
            return await self._act(key, decision)

    def _cgroup_exists(self, doc: v1.CellDoc) -> bool:
        try:
            return bool(self.runtime.cgroups.exists(self.runner.cgroup_path(doc)))
        except Exception:  # noqa: BLE001  (a failed check derives Unknown, as in the reference)
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
