"""Cgroups of realms, spaces, stacks, cells and container payloads, on v2 and v1 hosts.

A *group* is an absolute cgroup path such as ``/kukeon/default/default``
(what ``status.cgroupPath`` holds); each implementation maps it onto its
mount(s). :func:`detect_cgroups` picks the implementation for the host:

* :class:`CgroupV2` on a pure cgroup2 host, behaving as the reference does
  (controllers ``cpu memory io pids`` delegated through
  ``cgroup.subtree_control``).
* :class:`CgroupV1` on v1 and hybrid hosts, which the reference does not
  support. runc places a task's ``linux.cgroupsPath`` in every mounted
  hierarchy (and in the hybrid ``unified`` cgroup2 mount), so a group is a
  directory in each of them too, and deleting it removes all of them.

All methods are synchronous. They are a handful of syscalls on an in-kernel
pseudo file system that never waits for a disk, so callers may run them on
the reactor thread.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from zope.interface import Attribute, Interface, implementer

from kukeond.base.naming import PAYLOAD_CGROUP

DELEGATED_CONTROLLERS = ("cpu", "memory", "io", "pids")
"""Controllers the reference enables for its groups when the host offers them."""

GROUP_DIR_MODE = 0o755
PAYLOAD_DIR_MODE = 0o750


class CgroupError(Exception):
    """A cgroup operation failed; the message names the group and the cause."""


class ICgroups(Interface):
    """Create, inspect and remove the daemon's cgroups."""

    version = Attribute("1 or 2: the cgroup version of the host layout in use.")

    def available_controllers() -> list[str]:
        """Controllers the host offers for delegation (empty on v1)."""

    def exists(group: str) -> bool:
        """Whether ``group`` exists (in every hierarchy, on v1)."""

    def create(group: str, all_controllers: bool = False) -> list[str]:
        """Create ``group`` and its missing ancestors; idempotent.

        Returns the controllers delegated to its children (for
        ``status.subtreeControllers``). ``all_controllers`` delegates every
        controller the host offers (cells with ``nestedCgroupRuntime``).
        """

    def delete(group: str) -> bool:
        """Remove ``group`` and its child groups, children first.

        Returns ``False`` if it did not exist. Raises :class:`CgroupError`
        when a group still holds processes.
        """

    def children(group: str) -> list[str]:
        """Names of the direct child groups of ``group``, sorted."""

    def procs(group: str) -> list[int]:
        """PIDs directly in ``group``."""

    def move_to_payload(group: str) -> list[int]:
        """Create ``group/_payload`` and move every PID of ``group`` into it; return them."""


def _group_parts(group: str) -> list[str]:
    parts = [p for p in group.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise CgroupError(f"invalid cgroup path {group!r}")
    return parts


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _read_pids(path: str) -> list[int]:
    try:
        return [int(line) for line in _read(path).split()]
    except FileNotFoundError:
        return []


def _child_dirs(path: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


class _Hierarchy:
    """One mounted cgroup tree; subclasses choose the kernel-facing primitives."""

    def __init__(self, mount: str) -> None:
        self.mount = mount

    def dir(self, group: str) -> str:
        return os.path.join(self.mount, *_group_parts(group))

    def make_dir(self, path: str, mode: int = GROUP_DIR_MODE) -> None:
        os.mkdir(path, mode)

    def remove_dir(self, path: str) -> None:
        os.rmdir(path)

    def ensure(self, group: str, prepare: Callable[[str], None] | None = None) -> None:
        """Create the directories of ``group`` top-down, calling ``prepare`` on each new one."""
        path = self.mount
        for part in _group_parts(group):
            path = os.path.join(path, part)
            try:
                self.make_dir(path)
            except FileExistsError:
                continue
            if prepare is not None:
                prepare(path)

    def remove_tree(self, group: str) -> bool:
        top = self.dir(group)
        if not os.path.isdir(top):
            return False
        self._remove_bottom_up(top, group)
        return True

    def _remove_bottom_up(self, path: str, group: str) -> None:
        for name in _child_dirs(path):
            self._remove_bottom_up(os.path.join(path, name), group)
        try:
            self.remove_dir(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CgroupError(f"delete cgroup {group} ({path}): {exc.strerror}") from exc

    def move_to_payload(self, group: str) -> list[int]:
        source = self.dir(group)
        payload = os.path.join(source, PAYLOAD_CGROUP)
        try:
            self.make_dir(payload, PAYLOAD_DIR_MODE)
        except FileExistsError:
            pass
        self.prepare_payload(payload)
        moved = []
        for pid in _read_pids(os.path.join(source, "cgroup.procs")):
            try:
                _write(os.path.join(payload, "cgroup.procs"), str(pid))
            except ProcessLookupError:
                continue
            moved.append(pid)
        return moved

    def prepare_payload(self, path: str) -> None:
        """Make a fresh leaf able to take processes (v1 cpuset needs cpus/mems)."""


@implementer(ICgroups)
class CgroupV2:
    """A unified (cgroup2) hierarchy mounted at ``mount``, as the reference drives it.

    ``self_cgroup`` is the ``/proc/self/cgroup`` to consult for the
    defensive drain of a populated namespace root (see :meth:`create`).
    """

    version = 2

    def __init__(self, mount: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup"):
        self.mount = mount
        self._tree = self._hierarchy(mount)
        self._self_cgroup = self_cgroup

    def _hierarchy(self, mount: str) -> _Hierarchy:
        return _Hierarchy(mount)

    def available_controllers(self) -> list[str]:
        """Controllers listed in the mount's ``cgroup.controllers``."""
        try:
            return _read(os.path.join(self.mount, "cgroup.controllers")).split()
        except FileNotFoundError:
            return []

    def exists(self, group: str) -> bool:
        """Directory present and a real cgroup (has ``cgroup.controllers``)."""
        return os.path.isfile(os.path.join(self._tree.dir(group), "cgroup.controllers"))

    def create(self, group: str, all_controllers: bool = False) -> list[str]:
        """Create ``group`` then enable the controllers on every level down to it.

        Returns the controllers enabled in ``group``'s own
        ``cgroup.subtree_control``, sorted; a controller the kernel refuses
        at some level is left out rather than failing the whole group.
        """
        try:
            self._tree.ensure(group)
        except OSError as exc:
            raise CgroupError(f"create cgroup {group}: {exc.strerror}") from exc
        offered = self.available_controllers()
        wanted = offered if all_controllers else [c for c in DELEGATED_CONTROLLERS if c in offered]
        if not wanted:
            return []
        self._drain_namespace_root()
        enabled = set(wanted)
        path = self.mount
        levels = [path]
        for part in _group_parts(group):
            path = os.path.join(path, part)
            levels.append(path)
        for level in levels:
            for controller in sorted(enabled):
                try:
                    _write(os.path.join(level, "cgroup.subtree_control"), f"+{controller}")
                except OSError:
                    enabled.discard(controller)
        return sorted(enabled)

    def _drain_namespace_root(self) -> None:
        # A populated root of a cgroup namespace cannot enable controllers for
        # its children; park its processes in a leaf first, as the reference does.
        try:
            at_root = _read(self._self_cgroup).strip() == "0::/"
            populated = "populated 1" in _read(os.path.join(self.mount, "cgroup.events"))
        except OSError:
            return
        if not (at_root and populated):
            return
        leaf = os.path.join(self.mount, "__bootstrap")
        try:
            self._tree.make_dir(leaf)
        except FileExistsError:
            pass
        for pid in _read_pids(os.path.join(self.mount, "cgroup.procs")):
            try:
                _write(os.path.join(leaf, "cgroup.procs"), str(pid))
            except OSError:
                continue

    def delete(self, group: str) -> bool:
        """``rmdir`` ``group`` and its descendants, deepest first."""
        return self._tree.remove_tree(group)

    def children(self, group: str) -> list[str]:
        """Child directories of ``group``."""
        return _child_dirs(self._tree.dir(group))

    def procs(self, group: str) -> list[int]:
        """Contents of ``group``'s ``cgroup.procs``."""
        return _read_pids(os.path.join(self._tree.dir(group), "cgroup.procs"))

    def move_to_payload(self, group: str) -> list[int]:
        """Move ``group``'s processes into its ``_payload`` leaf (one write per PID)."""
        try:
            return self._tree.move_to_payload(group)
        except OSError as exc:
            raise CgroupError(f"move {group} into {PAYLOAD_CGROUP}: {exc.strerror}") from exc


class _CpusetHierarchy(_Hierarchy):
    """v1 cpuset: a new group starts with no CPUs/memory nodes and cannot take tasks."""

    def ensure(self, group: str, prepare: Callable[[str], None] | None = None) -> None:
        super().ensure(group, prepare=self._inherit)

    def prepare_payload(self, path: str) -> None:
        self._inherit(path)

    @staticmethod
    def _inherit(path: str) -> None:
        parent = os.path.dirname(path)
        for name in ("cpuset.cpus", "cpuset.mems"):
            mine = os.path.join(path, name)
            try:
                if not _read(mine).strip():
                    _write(mine, _read(os.path.join(parent, name)).strip())
            except FileNotFoundError:
                return


@dataclass(frozen=True)
class Mount:
    """One cgroup mount from ``mountinfo``."""

    point: str
    fstype: str
    options: tuple[str, ...]

    @property
    def is_cpuset(self) -> bool:
        """Whether this v1 hierarchy carries the cpuset controller."""
        return self.fstype == "cgroup" and "cpuset" in self.options


@implementer(ICgroups)
class CgroupV1:
    """A v1 (or hybrid) host: one directory per group in every mounted hierarchy.

    ``status.subtreeControllers``: v1 has no ``cgroup.subtree_control``;
    each hierarchy's controllers apply to every group in it automatically,
    so nothing is delegated and :meth:`create` returns ``[]`` (the field is
    then omitted, as for a v2 host without delegable controllers).
    ``status.cgroupPath`` is the same group path as on v2: it is valid
    relative to every hierarchy's mount point.
    """

    version = 1

    def __init__(self, mounts: Iterable[Mount]):
        self.mounts = list(mounts)
        if not self.mounts:
            raise CgroupError("no cgroup hierarchy is mounted")
        self._trees = [self._hierarchy(m) for m in self.mounts]

    def _hierarchy(self, mount: Mount) -> _Hierarchy:
        return _CpusetHierarchy(mount.point) if mount.is_cpuset else _Hierarchy(mount.point)

    def available_controllers(self) -> list[str]:
        """Always empty: v1 controllers are not delegated."""
        return []

    def exists(self, group: str) -> bool:
        """Present in every hierarchy (a partial group is recreated by :meth:`create`)."""
        return all(os.path.isdir(tree.dir(group)) for tree in self._trees)

    def create(self, group: str, all_controllers: bool = False) -> list[str]:
        """Create ``group`` in every hierarchy; returns ``[]`` (see the class docstring)."""
        for tree in self._trees:
            try:
                tree.ensure(group)
            except OSError as exc:
                raise CgroupError(
                    f"create cgroup {group} under {tree.mount}: {exc.strerror}"
                ) from exc
        return []

    def delete(self, group: str) -> bool:
        """Remove ``group`` (deepest first) from every hierarchy; all are attempted."""
        existed = False
        first_error: CgroupError | None = None
        for tree in self._trees:
            try:
                existed = tree.remove_tree(group) or existed
            except CgroupError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return existed

    def children(self, group: str) -> list[str]:
        """Child groups present in any hierarchy."""
        names: set[str] = set()
        for tree in self._trees:
            names.update(_child_dirs(tree.dir(group)))
        return sorted(names)

    def procs(self, group: str) -> list[int]:
        """PIDs of ``group`` in the first hierarchy that lists any."""
        for tree in self._trees:
            pids = _read_pids(os.path.join(tree.dir(group), "cgroup.procs"))
            if pids:
                return pids
        return []

    def move_to_payload(self, group: str) -> list[int]:
        """Move ``group``'s processes into ``_payload`` in every hierarchy holding it."""
        moved: set[int] = set()
        for tree in self._trees:
            if not os.path.isdir(tree.dir(group)):
                continue
            try:
                moved.update(tree.move_to_payload(group))
            except OSError as exc:
                raise CgroupError(
                    f"move {group} into {PAYLOAD_CGROUP} under {tree.mount}: {exc.strerror}"
                ) from exc
        return sorted(moved)


def read_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    """Cgroup mounts (``cgroup`` and ``cgroup2``) listed in ``mountinfo``, in order."""
    mounts = []
    for line in _read(mountinfo).splitlines():
        before, sep, after = line.partition(" - ")
        if not sep:
            continue
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        point = fields[4].replace("\\040", " ")
        mounts.append(Mount(point, tail[0], tuple(tail[2].split(","))))
    return mounts


def detect_cgroups(mountinfo: str = "/proc/self/mountinfo") -> ICgroups:
    """Choose the implementation for this host from its cgroup mounts.

    Any v1 hierarchy → :class:`CgroupV1` over all of them plus a hybrid
    ``cgroup2`` mount (runc uses both). Only ``cgroup2`` → :class:`CgroupV2`
    on its first mount. Nothing found → :class:`CgroupV2` on ``/sys/fs/cgroup``.
    """
    mounts = read_mounts(mountinfo)
    if any(m.fstype == "cgroup" for m in mounts):
        return CgroupV1(mounts)
    for mount in mounts:
        if mount.fstype == "cgroup2":
            return CgroupV2(mount.point)
    return CgroupV2()


def is_busy(error: BaseException) -> bool:
    """Whether ``error`` comes from removing a group that still has processes."""
    cause = error.__cause__
    return isinstance(cause, OSError) and cause.errno == errno.EBUSY
