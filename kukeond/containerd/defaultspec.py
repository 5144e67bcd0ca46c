"""containerd 1.6's default Linux spec (``ctr oci spec``), the start of every container's.

The tables here are containerd's defaults: capabilities, masked and
read-only paths, namespaces, mounts, the open-files limit and ``PATH``.
:func:`default_spec` assembles them for one container ID in one namespace.
"""

from __future__ import annotations

from typing import Any

from kukeond.containerd.mounts import Mount

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# Namespaces a default container gets, in containerd's order.
DEFAULT_NAMESPACES: tuple[str, ...] = ("pid", "ipc", "uts", "mount", "network")
NAMESPACE_TYPES = frozenset(DEFAULT_NAMESPACES) | {"cgroup", "user", "time"}

DEFAULT_NOFILE = 1024


DEFAULT_MOUNTS: tuple[Mount, ...] = (
    Mount.proc(),
    Mount.dev(),
    Mount.devpts(),
    Mount.shm(),
    Mount.mqueue(),
    Mount.sysfs(),
    Mount.run(),
)


def default_spec(namespace: str = "default", container_id: str = "") -> dict[str, Any]:
    """containerd 1.6's default Linux spec for ``container_id`` in ``namespace``."""
    caps = list(DEFAULT_CAPABILITIES)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "user": {"uid": 0, "gid": 0},
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": DEFAULT_NOFILE, "soft": DEFAULT_NOFILE}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "mounts": [m.to_json() for m in DEFAULT_MOUNTS],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "cgroupsPath": _join_path("/", namespace, container_id),
            "namespaces": [{"type": t} for t in DEFAULT_NAMESPACES],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }


def _join_path(*parts: str) -> str:
    segments = [s for p in parts for s in p.split("/") if s and s != "."]
    return "/" + "/".join(segments)
