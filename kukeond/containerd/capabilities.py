"""Linux capabilities in a spec: the kernel's list, name normalisation, add and drop.

Capability names are those of the kernel (``CAP_NET_ADMIN``); users may
write them in any case and without the ``CAP_`` prefix. ``ALL`` stands
for every capability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Every capability the kernel defines, indexed by its number (CAP_LAST_CAP = 40).
ALL_CAPABILITIES: tuple[str, ...] = tuple(
    "CAP_" + name
    for name in (
        "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
        "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK "
        "IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN "
        "SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE "
        "AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND "
        "AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE"
    ).split()
)


def normalize_capability(name: str) -> str:
    """Upper-case a capability name and give it the ``CAP_`` prefix (``ALL`` stays ``ALL``)."""
    upper = name.strip().upper()
    if upper in ("ALL", "CAP_ALL"):
        return "ALL"
    return upper if upper.startswith("CAP_") else "CAP_" + upper


def capabilities_up_to(last_cap: int) -> tuple[str, ...]:
    """The capabilities numbered 0..``last_cap`` (``/proc/sys/kernel/cap_last_cap``)."""
    return ALL_CAPABILITIES[: last_cap + 1]


def apply_capabilities(process: dict[str, Any], add: Sequence[str], drop: Sequence[str]) -> None:
    """Drop, then add, capabilities in the bounding, effective and permitted sets of ``process``.

    Names are normalised; ``ALL`` in ``drop`` empties the sets before the
    adds, ``ALL`` in ``add`` grants every capability. A set left empty is
    removed from the process.
    """
    dropped = [normalize_capability(c) for c in drop if c.strip()]
    added = [normalize_capability(c) for c in add if c.strip()]
    sets = process.setdefault("capabilities", {})
    keys = ("bounding", "effective", "permitted")
    if "ALL" in dropped:
        for key in keys:
            sets.pop(key, None)
    elif dropped:
        for key in keys:
            sets[key] = [c for c in sets.get(key, []) if c not in dropped]
    if "ALL" in added:
        added = [c for c in added if c != "ALL"] + list(ALL_CAPABILITIES)
    for key in keys:
        current = sets.get(key, [])
        for cap in added:
            if cap not in current:
                current.append(cap)
        if current:
            sets[key] = current
        else:
            sets.pop(key, None)
