"""A minimal runnable OCI runtime spec for the containerd tests, and cgroup cleanup."""

from __future__ import annotations

import os
import uuid
from typing import Any

CGROUP_FS = "/sys/fs/cgroup"


def unique_cgroup_root() -> str:
    """A cgroup parent path private to one test, e.g. ``/kukeon-test-1a2b3c4d``."""
    return f"/kukeon-test-{uuid.uuid4().hex[:8]}"


def remove_cgroup_tree(root: str) -> None:
    """Remove ``root`` (absolute cgroup path) and its children in every hierarchy."""
    for hierarchy in os.listdir(CGROUP_FS):
        base = os.path.join(CGROUP_FS, hierarchy, root.lstrip("/"))
        if not os.path.isdir(base):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def minimal_spec(args: list[str], cgroups_path: str) -> dict[str, Any]:
    """An OCI spec running ``args`` as root in fresh namespaces."""
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "hostname": "test",
        "mounts": [
            {
                "destination": "/proc",
                "type": "proc",
                "source": "proc",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
        },
    }
