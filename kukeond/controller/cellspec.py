"""The OCI runtime spec and containerd labels of a cell's containers.

:func:`build_container_spec` turns a v1beta1 ``ContainerSpec`` plus the
facts of its cell (:class:`CellContext`) into the spec containerd stores,
on top of :func:`kukeond.containerd.spec.build_spec`, in the reference's
order: image config, default ``PATH``, ``/etc/hosts`` + ``/etc/hostname``
binds, hostname (root only), args, cwd, ``KUKEON_*`` env merged under the
user's env, privileged, host network/PID, private cgroup namespace (plus a
cgroup mount for nested runtimes), volumes, ``linux.cgroupsPath`` =
``<cell cgroup>/<containerd ID>``, user, read-only root, capabilities,
security options, tmpfs, resource limits, attachable wrapping and the
``io.kukeon.cni.config`` annotation.

Workload containers join the root's net/ipc/uts namespaces through the
``/proc/<root pid>/ns/*`` paths passed as ``join``. Everything here is pure:
files (seccomp profiles, the image's passwd/group) arrive already read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kukeond.api.v1beta1 import VOLUME_BIND, VOLUME_TMPFS, ContainerSpec
from kukeond.base import naming
from kukeond.containerd import spec as oci
from kukeond.containerd.model import ImageRuntimeConfig
from kukeond.containerd.mounts import Mount

CNI_ANNOTATION = "io.kukeon.cni.config"
PROFILE_LABEL = "kukeon.io/profile"
PASSWD = "/etc/passwd"
GROUP = "/etc/group"
KUKETTY_IN_CONTAINER = "/.kukeon/bin/kuketty"
TTY_IN_CONTAINER = "/run/kukeon/tty"
KUKETTY_METADATA_IN_CONTAINER = "/.kukeon/kuketty/metadata.json"

NS_PATH_TYPES = (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))
"""OCI namespace type and ``/proc/<pid>/ns`` entry of each namespace workloads share."""


@dataclass(frozen=True)
class CellContext:
    """Facts about a cell that its containers' specs and labels depend on.

    ``etc_hosts`` is ``""`` when the root shares the host's network (the
    host's own ``/etc/hosts`` then applies).
    """

    realm: str
    space: str
    stack: str
    cell: str
    cell_id: str
    namespace: str
    cgroup_path: str
    conflist_path: str
    etc_hosts: str
    etc_hostname: str
    nested_cgroup: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Kuketty:
    """Host paths bound into an attachable container."""

    binary: str
    tty_dir: str
    metadata: str


class CellSpecError(ValueError):
    """A container's settings cannot be turned into a runtime spec."""


def namespace_paths(pid: int) -> dict[str, str]:
    """The ``/proc/<pid>/ns/*`` paths of the root task that workloads join."""
    return {oci_type: f"/proc/{pid}/ns/{entry}" for oci_type, entry in NS_PATH_TYPES}


def containerd_labels(ctx: CellContext, container: ContainerSpec, root: bool) -> dict[str, str]:
    """Labels of the containerd container (root: the cell's labels plus identity)."""
    if root:
        labels = dict(ctx.labels)
        labels["kukeon.io/cell"] = ctx.cell_id
        if ctx.cell:
            labels["kukeon.io/cell-name"] = ctx.cell
        labels.update(
            {
                "kukeon.io/space": ctx.space,
                "kukeon.io/realm": ctx.realm,
                "kukeon.io/stack": ctx.stack,
                "kukeon.io/container-type": "root",
            }
        )
        return labels
    return {
        "kukeon.io/container-type": "container",
        "kukeon.io/cell": container.cellId,
        "kukeon.io/space": container.spaceId,
        "kukeon.io/realm": container.realmId,
        "kukeon.io/stack": container.stackId,
    }


def rootfs_files_needed(container: ContainerSpec, image_config: Mapping[str, Any]) -> tuple:
    """Rootfs files to read before building the spec: passwd/group when a user name is used."""
    users = [container.user, (image_config.get("config") or {}).get("User") or ""]
    if any(u and not all(p.isdigit() for p in u.split(":")) for u in users):
        return (PASSWD, GROUP)
    return ()


def kukeon_env(ctx: CellContext, container: ContainerSpec) -> list[str]:
    """``KUKEON_*`` identity variables (empty ones left out), then the user's env winning."""
    identity = [
        ("KUKEON_CELL_PROFILE_NAME", ctx.labels.get(PROFILE_LABEL, "")),
        ("KUKEON_CELL_NAME", ctx.cell),
        ("KUKEON_CONTAINER_ID", container.id),
        ("KUKEON_REALM", ctx.realm),
        ("KUKEON_SPACE", ctx.space),
        ("KUKEON_STACK", ctx.stack),
        ("KUKEON_CGROUP_PATH", ctx.cgroup_path),
    ]
    user = list(container.env or [])
    user_keys = {entry.partition("=")[0] for entry in user}
    return [f"{k}={v}" for k, v in identity if v and k not in user_keys] + user


def process_args(container: ContainerSpec, root: bool) -> tuple[str, ...]:
    """``[command] + args``, else ``args``, else the image's (a bare root sleeps forever)."""
    if container.command:
        return (container.command, *(container.args or ()))
    if container.args:
        return tuple(container.args)
    if root:
        return ("sleep", "infinity")
    return ()


def volume_mounts(container: ContainerSpec) -> list[Mount]:
    """Bind and tmpfs volumes of ``spec.volumes`` (validated beforehand)."""
    mounts = []
    for volume in container.volumes or []:
        if volume.kind == VOLUME_TMPFS:
            mounts.append(
                Mount.tmpfs(volume.target, volume.sizeBytes, volume.mode or None, volume.readOnly)
            )
        elif volume.kind in ("", VOLUME_BIND) and volume.source and volume.target:
            mounts.append(Mount.bind(volume.source, volume.target, volume.readOnly))
    return mounts


def tmpfs_mounts(container: ContainerSpec) -> list[Mount]:
    """``spec.tmpfs`` entries: ``nosuid,nodev``, ``size=`` when set, then the given options."""
    mounts = []
    for entry in container.tmpfs or []:
        path = entry.path.strip()
        if not path:
            continue
        options = ["nosuid", "nodev"]
        if entry.sizeBytes > 0:
            options.append(f"size={entry.sizeBytes}")
        options.extend(entry.options or [])
        mounts.append(Mount(path, "tmpfs", "tmpfs", tuple(options)))
    return mounts


def _resources(container: ContainerSpec) -> oci.Resources:
    res = container.resources
    if res is None:
        return oci.Resources()
    return oci.Resources(res.memoryLimitBytes or 0, res.cpuShares or 0, res.pidsLimit or 0)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def build_container_spec(
    ctx: CellContext,
    container: ContainerSpec,
    cid: str,
    root: bool,
    image: ImageRuntimeConfig,
    join: Mapping[str, str] | None = None,
    seccomp_profile: Mapping[str, Any] | None = None,
    kuketty: Kuketty | None = None,
    secret_env: Sequence[str] = (),
    secret_mounts: Sequence[Mount] = (),
) -> tuple[dict[str, Any], list[str]]:
    """Return ``(OCI spec, workload argv)`` for ``container`` (containerd ID ``cid``).

    ``join`` maps OCI namespace types to paths to enter (workloads: the
    root's). ``seccomp_profile`` is the parsed file named by a
    ``seccomp=<file>`` security option. ``secret_env`` (``NAME=value``) is
    appended to the environment and ``secret_mounts`` to the mounts, as the
    container's resolved secrets. The argv is the process the
    container runs (for an attachable container the terminal helper runs
    and is told this argv through its metadata file).
    Raises :class:`CellSpecError` for settings no spec can express.
    """
    try:
        security = oci.parse_security_opts(container.securityOpts or [])
    except oci.SpecError as exc:
        raise CellSpecError(str(exc)) from exc
    if security.seccomp_profile_path and seccomp_profile is None:
        raise CellSpecError(f"seccomp profile {security.seccomp_profile_path} was not loaded")

    mounts = []
    if ctx.etc_hosts:
        mounts.append(Mount.bind(ctx.etc_hosts, "/etc/hosts", readonly=True))
    mounts.append(Mount.bind(ctx.etc_hostname, "/etc/hostname", readonly=True))
    host_namespaces = set()
    if container.hostNetwork:
        host_namespaces.add("network")
    if container.hostPID:
        host_namespaces.add("pid")
    namespaces = []
    if not container.hostCgroup:
        namespaces.append(oci.Namespace("cgroup"))
        if ctx.nested_cgroup:
            mounts.append(Mount.cgroup())
    for ns_type, path in (join or {}).items():
        namespaces.append(oci.Namespace(ns_type, path))
    mounts.extend(volume_mounts(container))
    mounts.extend(tmpfs_mounts(container))
    mounts.extend(secret_mounts)
    if container.attachable and not root:
        if kuketty is None:
            raise CellSpecError(
                f"container {container.id!r} is attachable but no terminal helper is staged"
            )
        mounts.extend(
            [
                Mount.bind(kuketty.binary, KUKETTY_IN_CONTAINER, readonly=True),
                Mount.bind(kuketty.tty_dir, TTY_IN_CONTAINER),
                Mount.bind(kuketty.metadata, KUKETTY_METADATA_IN_CONTAINER, readonly=True),
            ]
        )
    caps = container.capabilities
    annotations = {CNI_ANNOTATION: ctx.conflist_path} if ctx.conflist_path else {}
    options = oci.SpecOptions(
        container_id=cid,
        namespace=ctx.namespace,
        image_config=oci.ImageConfig.from_json(image.config),
        passwd=_text(image.files.get(PASSWD)),
        group=_text(image.files.get(GROUP)),
        hostname=ctx.cell if root else "",
        args=process_args(container, root),
        cwd=container.workingDir,
        env=(*kukeon_env(ctx, container), *secret_env),
        privileged=container.privileged,
        host_namespaces=frozenset(host_namespaces),
        namespaces=tuple(namespaces),
        mounts=tuple(mounts),
        cgroups_path=naming.container_cgroup_path(ctx.cgroup_path, cid),
        user=container.user,
        readonly_rootfs=container.readOnlyRootFilesystem,
        capabilities=None
        if caps is None
        else oci.Capabilities(tuple(caps.add or ()), tuple(caps.drop or ())),
        no_new_privileges=security.no_new_privileges,
        seccomp_unconfined=security.seccomp_unconfined,
        seccomp_profile=seccomp_profile,
        resources=_resources(container),
        annotations=annotations,
    )
    try:
        spec = oci.build_spec(options)
    except oci.SpecError as exc:
        raise CellSpecError(str(exc)) from exc
    argv = list(spec["process"].get("args") or [])
    if not argv:
        raise CellSpecError(
            f"container {container.id!r}: no command given and the image {container.image} has none"
        )
    if container.attachable and not root:
        spec["process"]["args"] = [KUKETTY_IN_CONTAINER]
    return spec, argv


def seccomp_profile_path(container: ContainerSpec) -> str:
    """The host path of a ``seccomp=<file>`` option, or ``""``."""
    try:
        path = oci.parse_security_opts(container.securityOpts or []).seccomp_profile_path
    except oci.SpecError:
        return ""
    return os.path.abspath(path) if path else ""
