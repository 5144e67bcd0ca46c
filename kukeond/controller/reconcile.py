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

Unlike the reference, a pass that cannot reach containerd leaves the
documents alone instead of rewriting every cell to ``Unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from kukeond.api import v1beta1 as v1
from kukeond.containerd import errors as cerrors
from kukeond.controller.runtime import Runtime
from kukeond.host import naming

Key = tuple[str, ...]

TASK_STATES = {
    "running": v1.READY,
    "stopped": v1.STOPPED,
    "created": v1.PENDING,
    "paused": v1.PAUSED,
    "pausing": v1.PAUSING,
}
"""containerd task status → container state; anything else is ``Unknown``."""

_ALIVE = frozenset((v1.READY, v1.PENDING, v1.PAUSED, v1.PAUSING))

DELETED = "deleted"
UPDATED = "updated"
UNCHANGED = "unchanged"


class CellActions(Protocol):
    """The cell operations a pass may trigger; each takes the cell lock itself."""

    async def kill(self, key: Key) -> None:
        """Kill every task of the cell and persist it ``Stopped``."""

    async def delete(self, key: Key) -> None:
        """Delete the cell (containers, cgroup, metadata)."""


# live view of containerd


@dataclass(frozen=True)
class LiveView:
    """What containerd holds: container IDs, and the status of each task."""

    containers: frozenset[str]
    tasks: dict[str, str]

    def container_state(self, cid: str) -> str:
        """The state of container ``cid`` by the reference's rules."""
        if cid not in self.containers:
            return v1.STOPPED
        status = self.tasks.get(cid)
        if status is None:
            return v1.UNKNOWN
        return TASK_STATES.get(status, v1.UNKNOWN)


async def namespace_view(containerd: Any, namespace: str) -> LiveView:
    """Every container and task of ``namespace`` with two calls."""
    containers, tasks = await defer.gatherResults(
        [containerd.list_containers(namespace), containerd.list_tasks(namespace)],
        consumeErrors=True,
    )
    return LiveView(
        frozenset(c.id for c in containers), {t.container_id: t.status for t in tasks}
    )


async def cell_view(containerd: Any, namespace: str, cids: Iterable[str]) -> LiveView:
    """The containers ``cids`` only, two calls per container (for one cell at a time).

    A task that cannot be read counts as no task (``Unknown``), as in the reference.
    """
    present, tasks = set(), {}
    for cid in cids:
        try:
            await containerd.get_container(namespace, cid)
        except cerrors.NotFound:
            continue
        present.add(cid)
        try:
            info = await containerd.task_state(namespace, cid)
        except cerrors.Unavailable:
            raise
        except cerrors.ContainerdError:
            continue
        tasks[cid] = info.status
    return LiveView(frozenset(present), tasks)


def _unwrap(failure_or_exc: Any) -> BaseException:
    """The exception inside a ``FirstError``/``Failure`` from ``gatherResults``."""
    exc = getattr(failure_or_exc, "subFailure", None)
    if exc is not None:
        return exc.value
    return failure_or_exc


# per-cell decision (pure)


def cell_containerd_ids(doc: v1.CellDoc) -> list[tuple[v1.ContainerSpec, str]]:
    """Each spec container with the containerd ID it runs under."""
    spec = doc.spec
    cell_id = spec.id or doc.metadata.name
    root_id = spec.rootContainerId
    out = []
    for container in spec.containers or []:
        cid = container.containerdId
        if not cid:
            if container.root or (root_id and container.id == root_id):
                cid = naming.root_containerd_id(spec.spaceId, spec.stackId, cell_id)
            else:
                cid = naming.containerd_id(spec.spaceId, spec.stackId, cell_id, container.id)
        out.append((container, cid))
    return out


def is_root(doc: v1.CellDoc, container: v1.ContainerSpec) -> bool:
    """Whether ``container`` is the cell's root container."""
    return container.root or (
        bool(doc.spec.rootContainerId) and container.id == doc.spec.rootContainerId
    )


def live_statuses(doc: v1.CellDoc, view: LiveView) -> list[v1.ContainerStatus]:
    """A fresh status per spec container (name = id = container id, the rest zero)."""
    return [
        v1.ContainerStatus(name=c.id, id=c.id, state=view.container_state(cid))
        for c, cid in cell_containerd_ids(doc)
    ]


def derive_state(
    doc: v1.CellDoc, statuses: Sequence[v1.ContainerStatus], cgroup_ok: bool
) -> str:
    """The cell state implied by its live container statuses (spec §7.2 step 4)."""
    if not cgroup_ok:
        return v1.UNKNOWN
    by_id = {s.id: s.state for s in statuses}
    containers = doc.spec.containers or []
    workloads = [c for c in containers if not is_root(doc, c)]
    if not workloads:
        roots = [c for c in containers if is_root(doc, c)]
        if not roots:
            return v1.READY
        state = by_id.get(roots[0].id, v1.UNKNOWN)
        if state in _ALIVE:
            return v1.READY
        if state in (v1.STOPPED, v1.FAILED):
            return v1.STOPPED
        return v1.UNKNOWN
    states = [by_id.get(c.id) for c in workloads]
    if any(s is None for s in states):
        return v1.UNKNOWN
    if any(s in _ALIVE for s in states):
        return v1.READY
    if any(s == v1.UNKNOWN for s in states):
        return v1.UNKNOWN
    return v1.STOPPED


def _status_key(statuses: Sequence[v1.ContainerStatus] | None) -> list[tuple[str, str]]:
    return [(s.id, s.state) for s in statuses or []]


@dataclass
class Decision:
    """What to do with one cell: the document to write (if any) and an action."""

    doc: v1.CellDoc
    write: bool
    action: str | None = None  # "delete" or "wind-down"


def decide(doc: v1.CellDoc, view: LiveView, cgroup_ok: bool) -> Decision:
    """Apply the per-cell rules to ``doc`` (a copy is returned, ``doc`` is untouched)."""
    new = doc.clone()
    statuses = live_statuses(doc, view)
    statuses_changed = _status_key(statuses) != _status_key(doc.status.containers)
    new.status.containers = statuses
    if doc.status.state == v1.FAILED:
        return Decision(new, statuses_changed)
    state = derive_state(doc, statuses, cgroup_ok)
    observed = doc.status.readyObserved or state == v1.READY or doc.status.state == v1.READY
    new.status.state = state
    new.status.readyObserved = observed
    if state == v1.STOPPED and observed:
        if doc.spec.autoDelete:
            return Decision(new, False, "delete")
        root_alive = any(
            s.state in _ALIVE
            for c, s in zip(doc.spec.containers or [], statuses, strict=True)
            if is_root(doc, c)
        )
        has_workloads = any(not is_root(doc, c) for c in doc.spec.containers or [])
        if has_workloads and root_alive:
            return Decision(new, False, "wind-down")
    changed = (
        statuses_changed or state != doc.status.state or observed != doc.status.readyObserved
    )
    return Decision(new, changed)


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
    containerd_calls: int = 0


def realm_namespace(runtime: Runtime, realm: str) -> str:
    """The containerd namespace of ``realm`` (its ``spec.namespace``, else ``R.<suffix>``)."""
    explicit = None
    try:
        raw = runtime.store.get((realm,))
    except Exception:  # noqa: BLE001  (an unreadable realm document: use the default)
        raw = None
    if raw:
        explicit = (raw.get("spec") or {}).get("namespace") or None
    return naming.realm_namespace(realm, runtime.suffix, explicit)


def cell_cgroup(runtime: Runtime, key: Key, doc: v1.CellDoc) -> str:
    """The cell's cgroup: the recorded path, else the default one."""
    return doc.status.cgroupPath or naming.cgroup_path(runtime.cgroup_root, *key)


class Reconciler:
    """Runs passes and single-cell reconciles over one runtime."""

    log = Logger()

    def __init__(self, runtime: Runtime, actions: CellActions) -> None:
        self.runtime = runtime
        self.actions = actions

    async def run_pass(self) -> PassReport:
        """Reconcile every cell once; never raises (errors go into the report)."""
        report = PassReport()
        by_realm: dict[str, list[Key]] = {}
        for key in self.runtime.store.keys(4):
            by_realm.setdefault(key[0], []).append(key)
        for realm, keys in sorted(by_realm.items()):
            namespace = realm_namespace(self.runtime, realm)
            if report.containerd_down:
                report.cells_scanned += len(keys)
                report.cells_errored += len(keys)
                continue
            before = {key: self.runtime.store.get(key) for key in keys}
            try:
                report.containerd_calls += 2
                view = await namespace_view(self.runtime.containerd, namespace)
            except Exception as exc:  # noqa: BLE001  (recorded; the subtree is skipped)
                error = _unwrap(exc)
                report.cells_scanned += len(keys)
                report.cells_errored += len(keys)
                if isinstance(error, cerrors.Unavailable):
                    report.containerd_down = True
                    report.errors.append(f"containerd unavailable: {error}")
                else:
                    report.errors.append(f"list containers in namespace {namespace!r}: {error}")
                continue
            for key in keys:
                report.cells_scanned += 1
                try:
                    outcome = await self._settle(key, namespace, view, before[key], report)
                except Exception as exc:  # noqa: BLE001  (one cell never stops the pass)
                    error = _unwrap(exc)
                    report.cells_errored += 1
                    report.errors.append(f"reconcile cell {'/'.join(key)}: {error}")
                    if isinstance(error, cerrors.Unavailable):
                        report.containerd_down = True
                    continue
                if outcome == DELETED:
                    report.cells_deleted += 1
                elif outcome == UPDATED:
                    report.cells_updated += 1
        return report

    async def reconcile_cell(self, key: Key) -> str:
        """Reconcile one cell with fresh per-container queries; returns the outcome."""
        key = tuple(key)
        namespace = realm_namespace(self.runtime, key[0])
        return await self._settle(key, namespace, None, None, PassReport())

    async def _settle(
        self,
        key: Key,
        namespace: str,
        view: LiveView | None,
        seen: dict | None,
        report: PassReport,
    ) -> str:
        store = self.runtime.store
        async with store.lock(key):
            raw = store.get(key)
            if raw is None:
                return UNCHANGED
            doc = v1.CellDoc.from_wire(raw)
            if view is None or raw != seen:
                # Changed since the namespace was listed (or no listing): ask again.
                ids = [cid for _, cid in cell_containerd_ids(doc)]
                report.containerd_calls += 2 * len(ids)
                view = await cell_view(self.runtime.containerd, namespace, ids)
            cgroup_ok = self._cgroup_exists(cell_cgroup(self.runtime, key, doc))
            decision = decide(doc, view, cgroup_ok)
            if decision.write:
                await store.put(key, decision.doc.to_wire())
                return UPDATED
            if decision.action is None:
                return UNCHANGED
        return await self._act(key, decision)

    def _cgroup_exists(self, path: str) -> bool:
        try:
            return bool(self.runtime.cgroups.exists(path))
        except Exception:  # noqa: BLE001  (a failed check derives Unknown, as in the reference)
            return False

    async def _act(self, key: Key, decision: Decision) -> str:
        cell = "/".join(key)
        if decision.action == "delete":
            self.log.info(
                "reconcile: auto-deleting cell {cell} state={state}",
                cell=cell,
                state=decision.doc.status.state,
            )
            await self.actions.kill(key)
            await self.actions.delete(key)
            return DELETED
        self.log.info(
            "reconcile: winding down cell {cell} after non-root workloads exited", cell=cell
        )
        await self.actions.kill(key)
        return UPDATED
