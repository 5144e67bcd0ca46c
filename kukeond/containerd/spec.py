"""OCI runtime spec builder: a container's ``config.json`` as plain JSON-able data.

:func:`build_spec` starts from the same Linux default spec that containerd 1.6
generates (``ctr oci spec``, see :mod:`kukeond.containerd.defaultspec`) and
applies a :class:`SpecOptions` in a fixed order that mirrors the reference
daemon's option chain:

1. image config (env, entrypoint + cmd, working dir, user and supplementary groups);
2. the default ``PATH`` (replaces any ``PATH`` from the image);
3. hostname, process args, cwd, env overrides;
4. privileged mode (all capabilities, no masked/readonly paths, writable
   sysfs/cgroupfs, no seccomp, every device allowed);
5. namespaces (host ones removed, new or joined ones set);
6. extra mounts, ``linux.cgroupsPath``;
7. user, read-only root, capabilities add/drop, no-new-privileges, seccomp,
   rlimits, resources, annotations.

Nothing here touches the filesystem: user and group names are resolved from
the ``/etc/passwd`` and ``/etc/group`` texts the caller read from the rootfs,
and a seccomp profile arrives already parsed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kukeond.containerd.capabilities import ALL_CAPABILITIES, apply_capabilities
from kukeond.containerd.defaultspec import DEFAULT_PATH_ENV, NAMESPACE_TYPES, default_spec
from kukeond.containerd.keyorder import canonical
from kukeond.containerd.mounts import Mount
from kukeond.containerd.userdb import additional_gids, find_group, find_passwd, is_numeric_id


class SpecError(ValueError):
    """The options cannot be turned into a spec (bad user, unknown option, ...)."""


@dataclass(frozen=True)
class Namespace:
    """A Linux namespace: new when ``path`` is empty, else joined through ``path``."""

    type: str
    path: str = ""

    def __post_init__(self) -> None:
        if self.type not in NAMESPACE_TYPES:
            raise SpecError(f"unknown namespace type {self.type!r}")

    def to_json(self) -> dict[str, str]:
        """The namespace entry as the spec writes it."""
        out = {"type": self.type}
        if self.path:
            out["path"] = self.path
        return out


@dataclass(frozen=True)
class Rlimit:
    """A process resource limit such as ``RLIMIT_NOFILE``."""

    type: str
    hard: int
    soft: int

    def to_json(self) -> dict[str, Any]:
        """The rlimit entry as the spec writes it."""
        return {"type": self.type, "hard": self.hard, "soft": self.soft}


@dataclass(frozen=True)
class Device:
    """A device node to create in the container (``linux.devices``)."""

    path: str
    type: str
    major: int
    minor: int
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The device entry as the spec writes it."""
        out: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "major": self.major,
            "minor": self.minor,
        }
        for key, value in (("fileMode", self.file_mode), ("uid", self.uid), ("gid", self.gid)):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class Capabilities:
    """Capabilities to drop and then add; names are normalised (``net_admin`` → ``CAP_NET_ADMIN``).

    ``ALL`` in ``drop`` empties the set before the adds; ``ALL`` in ``add``
    grants every capability.
    """

    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resources:
    """cgroup limits; each one is applied only when positive."""

    memory_limit_bytes: int = 0
    cpu_shares: int = 0
    pids_limit: int = 0


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part (``config``) of an OCI/Docker image configuration."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""

    @classmethod
    def from_json(cls, blob: bytes | str | Mapping[str, Any]) -> ImageConfig:
        """Read the image config blob (the whole document, not only its ``config`` object)."""
        doc = json.loads(blob) if isinstance(blob, bytes | str) else blob
        config = doc.get("config") or {}
        return cls(
            env=tuple(config.get("Env") or ()),
            entrypoint=tuple(config.get("Entrypoint") or ()),
            cmd=tuple(config.get("Cmd") or ()),
            working_dir=config.get("WorkingDir") or "",
            user=config.get("User") or "",
        )


@dataclass(frozen=True)
class SecurityOpts:
    """Parsed docker-style ``securityOpts`` entries."""

    no_new_privileges: bool | None = None
    seccomp_unconfined: bool = False
    seccomp_profile_path: str = ""


def parse_security_opts(entries: Sequence[str]) -> SecurityOpts:
    """Parse ``no-new-privileges[=bool]``, ``seccomp=unconfined``, ``seccomp=<file>``.

    ``key:value`` is accepted like ``key=value``. Any other key raises
    :class:`SpecError`, which must fail the container's creation. Reading
    the profile file named by ``seccomp=<file>`` is the caller's job.
    """
    nnp: bool | None = None
    unconfined = False
    profile = ""
    for raw in entries:
        entry = raw.strip()
        cut = min((i for i in (entry.find("="), entry.find(":")) if i >= 0), default=-1)
        if cut >= 0:
            key, value, has_value = entry[:cut].strip(), entry[cut + 1 :].strip(), True
        else:
            key, value, has_value = entry, "", False
        key = key.lower()
        if key == "no-new-privileges":
            nnp = _parse_go_bool(raw, value) if has_value else True
        elif key == "seccomp":
            if not value:
                raise SpecError(
                    f"securityOpt {raw!r}: seccomp requires a value (unconfined or profile path)"
                )
            if value.lower() == "unconfined":
                unconfined, profile = True, ""
            else:
                unconfined, profile = False, value
        else:
            raise SpecError(f"unsupported securityOpt {raw!r}")
    return SecurityOpts(nnp, unconfined, profile)


def _parse_go_bool(raw: str, value: str) -> bool:
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise SpecError(f"securityOpt {raw!r}: invalid bool {value!r}")


@dataclass(frozen=True)
class SpecOptions:
    """Everything :func:`build_spec` needs to know about one container.

    ``args``/``cwd``/``user`` left empty keep what the image config gave;
    ``env`` entries replace same-named ones, and a bare ``NAME`` unsets it.
    ``passwd``/``group`` are the texts of the rootfs's ``/etc/passwd`` and
    ``/etc/group`` (``None`` when the file does not exist).
    """

    container_id: str = ""
    namespace: str = "default"
    image_config: ImageConfig | None = None
    passwd: str | None = None
    group: str | None = None
    default_path_env: bool = True
    hostname: str = ""
    args: tuple[str, ...] = ()
    cwd: str = ""
    env: tuple[str, ...] = ()
    privileged: bool = False
    privileged_capabilities: tuple[str, ...] = ALL_CAPABILITIES
    host_namespaces: frozenset[str] = frozenset()
    namespaces: tuple[Namespace, ...] = ()
    mounts: tuple[Mount, ...] = ()
    devices: tuple[Device, ...] = ()
    cgroups_path: str = ""
    user: str = ""
    readonly_rootfs: bool = False
    capabilities: Capabilities | None = None
    no_new_privileges: bool | None = None
    seccomp_unconfined: bool = False
    seccomp_profile: Mapping[str, Any] | None = None
    rlimits: tuple[Rlimit, ...] = ()
    resources: Resources = field(default_factory=Resources)
    annotations: Mapping[str, str] = field(default_factory=dict)
    root_path: str = "rootfs"


def build_spec(options: SpecOptions) -> dict[str, Any]:
    """The OCI runtime spec for ``options``, as a dict ready for ``json.dumps``."""
    spec = default_spec(options.namespace, options.container_id)
    process = spec["process"]
    linux = spec["linux"]
    spec["root"]["path"] = options.root_path

    if options.image_config is not None:
        _apply_image_config(spec, options.image_config, options.passwd, options.group)
    if options.default_path_env:
        process["env"] = merge_env(process.get("env", []), [DEFAULT_PATH_ENV])
    if options.hostname:
        spec["hostname"] = options.hostname
    if options.args:
        process["args"] = list(options.args)
    if options.cwd:
        process["cwd"] = options.cwd
    if options.env:
        process["env"] = merge_env(process.get("env", []), options.env)

    if options.privileged:
        _apply_privileged(spec, options.privileged_capabilities)
    if options.devices:
        linux.setdefault("devices", []).extend(d.to_json() for d in options.devices)

    _apply_namespaces(linux, options.host_namespaces, options.namespaces)
    spec["mounts"].extend(m.to_json() for m in options.mounts)
    if options.cgroups_path:
        linux["cgroupsPath"] = options.cgroups_path

    if options.user:
        uid, gid = resolve_user(options.user, options.passwd, options.group)
        process["user"]["uid"], process["user"]["gid"] = uid, gid
    if options.readonly_rootfs:
        spec["root"]["readonly"] = True
    if options.capabilities is not None:
        apply_capabilities(process, options.capabilities.add, options.capabilities.drop)
    if options.no_new_privileges is not None:
        process["noNewPrivileges"] = options.no_new_privileges
    if options.seccomp_unconfined:
        linux.pop("seccomp", None)
    if options.seccomp_profile is not None:
        linux["seccomp"] = copy.deepcopy(dict(options.seccomp_profile))
    for rlimit in options.rlimits:
        _set_rlimit(process, rlimit)
    _apply_resources(linux, options.resources)
    if options.annotations:
        spec.setdefault("annotations", {}).update(options.annotations)

    if not process.get("noNewPrivileges"):
        process.pop("noNewPrivileges", None)
    return canonical(spec)


def merge_env(base: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """Replace same-named entries of ``base``, append new ones; a bare ``NAME`` unsets it."""
    result: list[str | None] = list(base)
    index = {entry.split("=", 1)[0]: i for i, entry in enumerate(base)}
    for entry in overrides:
        name, sep, _ = entry.partition("=")
        if not sep:
            if name in index:
                result[index[name]] = None
            continue
        if name in index:
            result[index[name]] = entry
        else:
            index[name] = len(result)
            result.append(entry)
    return [entry for entry in result if entry]


def resolve_user(user: str, passwd: str | None, group: str | None) -> tuple[int, int]:
    """Resolve ``user``, ``uid``, ``user:group``, ``uid:gid``... to numbers, as containerd does.

    A lone numeric uid takes its gid from ``passwd`` (0 when absent there);
    names must be found in ``passwd``/``group``, else :class:`SpecError`.
    """
    parts = user.split(":")
    if len(parts) == 1:
        if is_numeric_id(parts[0]):
            number = int(parts[0])
            entry = find_passwd(passwd, lambda e: e[2] == number)
            return (number, 0) if entry is None else (entry[2], entry[3])
        entry = find_passwd(passwd, lambda e: e[0] == parts[0])
        if entry is None:
            raise SpecError(f"no such user {parts[0]!r} in the image's /etc/passwd")
        return entry[2], entry[3]
    if len(parts) != 2:
        raise SpecError(f"invalid USER value {user}")
    name, grp = parts
    uid = int(name) if is_numeric_id(name) else None
    gid = int(grp) if is_numeric_id(grp) else None
    if uid is None:
        entry = find_passwd(passwd, lambda e: e[0] == name)
        if entry is None:
            raise SpecError(f"no such user {name!r} in the image's /etc/passwd")
        uid = entry[2]
    if gid is None:
        found = find_group(group, lambda g: g[0] == grp)
        if found is None:
            raise SpecError(f"no such group {grp!r} in the image's /etc/group")
        gid = found[2]
    return uid, gid


def _apply_image_config(
    spec: dict[str, Any], config: ImageConfig, passwd: str | None, group: str | None
) -> None:
    process = spec["process"]
    base = config.env or (DEFAULT_PATH_ENV,)
    process["env"] = merge_env(base, process.get("env", []))
    args = list(config.entrypoint) + list(config.cmd)
    if args:
        process["args"] = args
    else:
        process.pop("args", None)
    process["cwd"] = config.working_dir or "/"
    if config.user:
        uid, gid = resolve_user(config.user, passwd, group)
        process["user"]["uid"], process["user"]["gid"] = uid, gid
        extra = additional_gids(str(uid), passwd, group)
    else:
        extra = additional_gids("root", passwd, group)
    if extra:
        process["user"]["additionalGids"] = extra


def _apply_privileged(spec: dict[str, Any], capabilities: Sequence[str]) -> None:
    process = spec["process"]
    linux = spec["linux"]
    caps = list(capabilities)
    process["capabilities"] = {
        "bounding": caps,
        "effective": list(caps),
        "permitted": list(caps),
    }
    linux.pop("maskedPaths", None)
    linux.pop("readonlyPaths", None)
    for mount in spec["mounts"]:
        if mount["type"] in ("sysfs", "cgroup") and "options" in mount:
            mount["options"] = ["rw" if o == "ro" else o for o in mount["options"]]
    process.pop("selinuxLabel", None)
    process.pop("apparmorProfile", None)
    linux.pop("seccomp", None)
    linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]


def _apply_namespaces(
    linux: dict[str, Any], host: frozenset[str], wanted: Sequence[Namespace]
) -> None:
    namespaces = [ns for ns in linux["namespaces"] if ns["type"] not in host]
    for ns in wanted:
        for i, existing in enumerate(namespaces):
            if existing["type"] == ns.type:
                namespaces[i] = ns.to_json()
                break
        else:
            namespaces.append(ns.to_json())
    linux["namespaces"] = namespaces


def _set_rlimit(process: dict[str, Any], rlimit: Rlimit) -> None:
    limits = process.setdefault("rlimits", [])
    for i, existing in enumerate(limits):
        if existing["type"] == rlimit.type:
            limits[i] = rlimit.to_json()
            return
    limits.append(rlimit.to_json())


def _apply_resources(linux: dict[str, Any], resources: Resources) -> None:
    res = linux.setdefault("resources", {})
    if resources.memory_limit_bytes > 0:
        res.setdefault("memory", {})["limit"] = resources.memory_limit_bytes
    if resources.cpu_shares > 0:
        res.setdefault("cpu", {})["shares"] = resources.cpu_shares
    if resources.pids_limit > 0:
        res["pids"] = {"limit": resources.pids_limit}
