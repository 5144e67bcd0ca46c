"""A cell's state from what containerd says: keys, container IDs, statuses and live queries.

Pure helpers (the cell's key, its root and workloads, containerd IDs, the
state of a container from its task, the cell's state from its containers)
and the live queries that feed them: one listing of the cell's containers,
a task asked for where one exists, and :class:`InFlight`, which lets
concurrent identical queries share one answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, NamedTuple

from twisted.internet import defer
from twisted.python.failure import Failure

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
)
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.errors import KukeonError

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
