"""Refresh: re-derive every status from cgroups, CNI and containerd (``RefreshAll``).

Walks realms → spaces → stacks → cells and writes a document only when what
it derives differs from what is stored. Differences from the reference
(doc/reconcile.md):

* a cell's state comes from its live container statuses, by the reconcile
  loop's rules, not from its cgroup alone, so a stopped cell is not
  reported ``Ready``; ``Failed`` stays ``Failed`` (for every kind);
* a rewrite changes only the derived fields (state, readiness flags,
  cgroup path, container statuses); ``subtreeControllers``, the cell's
  ``network``, ``readyObserved`` and the rest are kept;
* a realm without ``spec.namespace`` is checked under ``R.<suffix>``;
* while containerd is unreachable, realms and cells are left alone and the
  failure is reported once in ``Errors``.
"""

from __future__ import annotations

from typing import Any

from kukeond.api import v1beta1 as v1
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.controller.cell_state import containerd_id_of
from kukeond.controller.common import realm_namespace
from kukeond.controller.failures import log_if_bug
from kukeond.controller.reconcile import LiveView, decide, namespace_view
from kukeond.controller.runtime import Runtime
from kukeond.logs import Logger

Key = tuple[str, ...]

_KINDS = {1: v1.RealmDoc, 2: v1.SpaceDoc, 3: v1.StackDoc, 4: v1.CellDoc}

log = Logger()


TALLIES = (
    "RealmsFound",
    "SpacesFound",
    "StacksFound",
    "CellsFound",
    "ContainersFound",
    "RealmsUpdated",
    "SpacesUpdated",
    "StacksUpdated",
    "CellsUpdated",
    "ContainersUpdated",
    "Errors",
)
"""What a walk reports, by name: the names found or rewritten at each level, and errors."""


class _Unavailable(Exception):
    """containerd could not be reached; already reported."""


class Refresh:
    """One RefreshAll walk and its result."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.runner = runtime.cells
        self.found: dict[str, list[str]] = {name: [] for name in TALLIES}
        self.namespaces: set[str] | None = None
        self.down = False

    async def run(self) -> dict[str, list[str]]:
        """Walk everything; return the :data:`TALLIES` (problems in ``Errors``, never raised)."""
        try:
            self.namespaces = set(await self.rt.containerd.list_namespaces())
        except cerrors.ContainerdError as exc:
            self._containerd_failed(exc)
        for realm in self.rt.store.children(()):
            await self._guard((realm,), self._realm)
            for space in self.rt.store.children((realm,)):
                await self._guard((realm, space), self._space)
                for stack in self.rt.store.children((realm, space)):
                    await self._guard((realm, space, stack), self._stack)
                    cells = self.rt.store.children((realm, space, stack))
                    if cells:
                        await self._cells(realm, space, stack, cells)
        return self.found

    def _containerd_failed(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            self.found["Errors"].append(f"containerd unavailable: {exc}")

    async def _guard(self, key: Key, step: Any, *extra: Any) -> None:
        try:
            await step(key, *extra)
        except _Unavailable:
            pass
        except Exception as exc:  # noqa: BLE001  (recorded; the walk goes on)
            kind = ("realm", "space", "stack", "cell")[len(key) - 1]
            log_if_bug(log, exc, "refresh of {kind} {key} failed", kind=kind, key="/".join(key))
            self.found["Errors"].append(f"refresh {kind} {'/'.join(key)}: {exc}")

    async def _rewrite(self, key: Key, derive: Any) -> bool:
        """Under the key's lock: decode, ``derive(doc, raw)`` in place, persist if changed."""
        async with self.rt.store.lock(key):
            raw = self.rt.store.get(key)
            if raw is None:
                return False
            doc = _KINDS[len(key)].from_wire(raw)
            before = doc.to_wire()
            await derive(doc, raw)
            if doc.to_wire() == before:
                return False
            await self.rt.store.put(key, doc.to_wire())
            return True

    def _group(self, stored: str, key: Key) -> tuple[str, bool]:
        path = stored or naming.cgroup_path(self.rt.cgroup_root, *key)
        return path, bool(self.rt.cgroups.exists(path))

    @staticmethod
    def _set_state(status: Any, ready: bool) -> None:
        if status.state != v1.FAILED:
            status.state = v1.READY if ready else v1.UNKNOWN

    async def _realm(self, key: Key) -> None:
        self.found["RealmsFound"].append(key[0])
        namespaces = self.namespaces
        if namespaces is None:
            raise _Unavailable
        namespace = realm_namespace(self.rt, key[0])

        async def derive(doc: v1.RealmDoc, raw: dict) -> None:
            status = doc.status
            status.cgroupPath, status.cgroupReady = self._group(status.cgroupPath, key)
            status.containerdNamespaceReady = namespace in namespaces
            self._set_state(status, status.cgroupReady and status.containerdNamespaceReady)

        if await self._rewrite(key, derive):
            self.found["RealmsUpdated"].append(key[0])

    async def _space(self, key: Key) -> None:
        self.found["SpacesFound"].append(key[1])
        network = bool(self.rt.network.space_network_exists(*key))

        async def derive(doc: v1.SpaceDoc, raw: dict) -> None:
            status = doc.status
            status.cgroupPath, status.cgroupReady = self._group(status.cgroupPath, key)
            self._set_state(status, status.cgroupReady and network)

        if await self._rewrite(key, derive):
            self.found["SpacesUpdated"].append(key[1])

    async def _stack(self, key: Key) -> None:
        self.found["StacksFound"].append(key[2])

        async def derive(doc: v1.StackDoc, raw: dict) -> None:
            status = doc.status
            status.cgroupPath, status.cgroupReady = self._group(status.cgroupPath, key)
            self._set_state(status, status.cgroupReady)

        if await self._rewrite(key, derive):
            self.found["StacksUpdated"].append(key[2])

    async def _cells(self, realm: str, space: str, stack: str, cells: list[str]) -> None:
        view = None
        if not self.down:
            try:
                view = await namespace_view(self.rt.containerd, realm_namespace(self.rt, realm))
            except Exception as exc:  # noqa: BLE001  (the cells are still counted)
                log_if_bug(log, exc, "refresh: listing realm {realm} failed", realm=realm)
                error = getattr(exc, "subFailure", None)
                self._containerd_failed(error.value if error is not None else exc)
        for cell in cells:
            await self._guard((realm, space, stack, cell), self._cell, view)

    async def _cell(self, key: Key, view: LiveView | None) -> None:
        self.found["CellsFound"].append(key[3])
        raw = self.rt.store.get(key) or {}
        names = [c.id for c in v1.CellDoc.from_wire(raw).spec.containers or []]
        paths = ["/".join((*key, name)) for name in names]
        self.found["ContainersFound"].extend(paths)
        if view is None:
            raise _Unavailable

        async def derive(doc: v1.CellDoc, now: dict) -> None:
            if now == raw:
                statuses = view.statuses(doc)
            else:  # changed since the namespace was listed
                statuses = await self.runner.live_statuses(doc, realm_namespace(self.rt, key[0]))
            for container in doc.spec.containers or []:
                if not container.containerdId:
                    container.containerdId = containerd_id_of(doc, container)
            path, cgroup_ok = self._group(doc.status.cgroupPath, key)
            decision = decide(doc, statuses, cgroup_ok)
            status = doc.status
            status.state = decision.doc.status.state
            status.readyObserved = decision.doc.status.readyObserved
            status.containers = decision.doc.status.containers
            status.cgroupPath, status.cgroupReady = path, cgroup_ok

        if await self._rewrite(key, derive):
            self.found["CellsUpdated"].append(key[3])
            self.found["ContainersUpdated"].extend(paths)
