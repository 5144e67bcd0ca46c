"""Mount entries of an OCI runtime spec, and the kinds of mount the daemon builds.

A :class:`Mount` is one element of the spec's ``mounts`` list. Its class
methods give the usual kinds with the options containerd uses: binds,
tmpfs volumes, and the kernel filesystems every container gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Mount:
    """One entry of the spec's ``mounts`` list; the constructors cover the usual kinds."""

    destination: str
    type: str
    source: str
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The mount as the spec writes it (``options`` omitted when empty)."""
        out: dict[str, Any] = {
            "destination": self.destination,
            "type": self.type,
            "source": self.source,
        }
        if self.options:
            out["options"] = list(self.options)
        return out

    @classmethod
    def bind(cls, source: str, destination: str, readonly: bool = False) -> Mount:
        """A recursive bind mount, ``ro`` or ``rw``."""
        return cls(destination, "bind", source, ("rbind", "ro" if readonly else "rw"))

    @classmethod
    def tmpfs(
        cls,
        destination: str,
        size_bytes: int = 0,
        mode: int | None = None,
        readonly: bool = False,
        options: Sequence[str] = (),
    ) -> Mount:
        """A tmpfs volume: ``size=<bytes>``, ``mode=<4 octal digits>``, then ``ro``/``rw``.

        ``options`` come first, so a caller can put ``nosuid``/``nodev`` ahead.
        """
        opts = list(options)
        if size_bytes > 0:
            opts.append(f"size={size_bytes}")
        if mode is not None:
            opts.append(f"mode={mode:04o}")
        opts.append("ro" if readonly else "rw")
        return cls(destination, "tmpfs", "tmpfs", tuple(opts))

    @classmethod
    def cgroup(cls, destination: str = "/sys/fs/cgroup", readonly: bool = False) -> Mount:
        """The cgroup filesystem (what a nested runtime needs under a private cgroup ns)."""
        mode = "ro" if readonly else "rw"
        return cls(destination, "cgroup", "cgroup", (mode, "nosuid", "noexec", "nodev"))

    @classmethod
    def proc(cls, destination: str = "/proc") -> Mount:
        """procfs as containerd mounts it."""
        return cls(destination, "proc", "proc", ("nosuid", "noexec", "nodev"))

    @classmethod
    def sysfs(cls, destination: str = "/sys", readonly: bool = True) -> Mount:
        """sysfs as containerd mounts it (read-only unless privileged)."""
        return cls(
            destination, "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro" if readonly else "rw")
        )

    @classmethod
    def dev(cls, destination: str = "/dev") -> Mount:
        """The small tmpfs that holds the container's device nodes."""
        return cls(
            destination, "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")
        )

    @classmethod
    def devpts(cls, destination: str = "/dev/pts") -> Mount:
        """A private devpts instance."""
        return cls(
            destination,
            "devpts",
            "devpts",
            ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
        )

    @classmethod
    def shm(cls, destination: str = "/dev/shm", size_kb: int = 65536) -> Mount:
        """POSIX shared memory tmpfs."""
        return cls(
            destination,
            "tmpfs",
            "shm",
            ("nosuid", "noexec", "nodev", "mode=1777", f"size={size_kb}k"),
        )

    @classmethod
    def mqueue(cls, destination: str = "/dev/mqueue") -> Mount:
        """POSIX message queues."""
        return cls(destination, "mqueue", "mqueue", ("nosuid", "noexec", "nodev"))

    @classmethod
    def run(cls, destination: str = "/run") -> Mount:
        """The tmpfs containerd puts on ``/run``."""
        return cls(
            destination, "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")
        )
