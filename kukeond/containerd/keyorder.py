"""Key order of an OCI runtime spec as Go writes it, so ``json.dumps`` reads like containerd's.

Go marshals struct fields in declaration order; a dict built here gets its
keys in whatever order the options were applied. :func:`canonical`
re-orders the objects the spec builder touches; unknown keys keep their
place after the known ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Key order of the Go runtime-spec structs, so json.dumps output reads like containerd's.
_KEY_ORDER: dict[str, tuple[str, ...]] = {
    "spec": (
        "ociVersion",
        "process",
        "root",
        "hostname",
        "mounts",
        "hooks",
        "annotations",
        "linux",
    ),
    "process": (
        "terminal",
        "consoleSize",
        "user",
        "args",
        "commandLine",
        "env",
        "cwd",
        "capabilities",
        "rlimits",
        "noNewPrivileges",
        "apparmorProfile",
        "oomScoreAdj",
        "selinuxLabel",
    ),
    "user": ("uid", "gid", "umask", "additionalGids", "username"),
    "capabilities": ("bounding", "effective", "inheritable", "permitted", "ambient"),
    "root": ("path", "readonly"),
    "linux": (
        "uidMappings",
        "gidMappings",
        "sysctl",
        "resources",
        "cgroupsPath",
        "namespaces",
        "devices",
        "seccomp",
        "rootfsPropagation",
        "maskedPaths",
        "readonlyPaths",
        "mountLabel",
        "intelRdt",
        "personality",
    ),
    "resources": (
        "devices",
        "memory",
        "cpu",
        "pids",
        "blockIO",
        "hugepageLimits",
        "network",
        "rdma",
        "unified",
    ),
}


def _ordered(obj: dict[str, Any], order: Sequence[str]) -> dict[str, Any]:
    out = {k: obj[k] for k in order if k in obj}
    out.update((k, v) for k, v in obj.items() if k not in out)
    return out


def canonical(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with keys in the Go structs' field order; nested objects are replaced in place."""
    process = spec["process"]
    process["user"] = _ordered(process["user"], _KEY_ORDER["user"])
    if "capabilities" in process:
        process["capabilities"] = _ordered(process["capabilities"], _KEY_ORDER["capabilities"])
    spec["process"] = _ordered(process, _KEY_ORDER["process"])
    spec["root"] = _ordered(spec["root"], _KEY_ORDER["root"])
    linux = spec["linux"]
    if "resources" in linux:
        linux["resources"] = _ordered(linux["resources"], _KEY_ORDER["resources"])
    spec["linux"] = _ordered(linux, _KEY_ORDER["linux"])
    return _ordered(spec, _KEY_ORDER["spec"])
