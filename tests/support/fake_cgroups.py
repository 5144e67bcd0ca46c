"""``FakeCgroups``: the ``ICgroups`` of tests, in memory."""

from __future__ import annotations

from collections.abc import Iterable

from zope.interface import implementer

from kukeond.base.naming import PAYLOAD_CGROUP
from kukeond.host.cgroups import (
    DELEGATED_CONTROLLERS,
    CgroupError,
    ICgroups,
    _group_parts,
)


@implementer(ICgroups)
class FakeCgroups:
    """In-memory :class:`ICgroups` for tests of callers; behaves like :class:`CgroupV2`.

    ``pids`` maps a group to its processes; tests put PIDs there to
    simulate a running task (and a populated group refuses deletion).
    """

    version = 2

    def __init__(self, controllers: Iterable[str] = ("cpuset", "cpu", "io", "memory", "pids")):
        self.controllers = list(controllers)
        self.groups: set[str] = set()
        self.pids: dict[str, list[int]] = {}

    @staticmethod
    def _norm(group: str) -> str:
        return "/" + "/".join(_group_parts(group))

    def available_controllers(self) -> list[str]:
        """The controllers given at construction."""
        return list(self.controllers)

    def exists(self, group: str) -> bool:
        """Whether ``group`` was created and not deleted."""
        return self._norm(group) in self.groups

    def create(self, group: str, all_controllers: bool = False) -> list[str]:
        """Record ``group`` and its ancestors; returns the delegated controllers."""
        parts = _group_parts(group)
        for depth in range(1, len(parts) + 1):
            self.groups.add("/" + "/".join(parts[:depth]))
        if all_controllers:
            return sorted(self.controllers)
        return sorted(c for c in DELEGATED_CONTROLLERS if c in self.controllers)

    def delete(self, group: str) -> bool:
        """Forget ``group`` and its descendants; refuses if any holds PIDs."""
        top = self._norm(group)
        doomed = sorted(
            (g for g in self.groups if g == top or g.startswith(top + "/")), reverse=True
        )
        for g in doomed:
            if self.pids.get(g):
                raise CgroupError(f"delete cgroup {group} ({g}): Device or resource busy")
        for g in doomed:
            self.groups.discard(g)
            self.pids.pop(g, None)
        return bool(doomed)

    def children(self, group: str) -> list[str]:
        """Direct child groups of ``group``."""
        prefix = self._norm(group) + "/"
        return sorted(
            rest
            for rest in (g[len(prefix) :] for g in self.groups if g.startswith(prefix))
            if "/" not in rest
        )

    def procs(self, group: str) -> list[int]:
        """PIDs recorded for ``group``."""
        return list(self.pids.get(self._norm(group), []))

    def move_to_payload(self, group: str) -> list[int]:
        """Move the recorded PIDs of ``group`` into ``group/_payload``."""
        top = self._norm(group)
        if top not in self.groups:
            raise CgroupError(f"move {group} into {PAYLOAD_CGROUP}: No such file or directory")
        payload = f"{top}/{PAYLOAD_CGROUP}"
        self.groups.add(payload)
        moved = self.pids.pop(top, [])
        self.pids.setdefault(payload, []).extend(moved)
        return sorted(moved)
