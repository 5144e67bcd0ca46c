"""Plain values returned by ``IContainerd`` providers (no protobuf types leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RUNC_V2 = "io.containerd.runc.v2"
"""The runtime every kukeond container uses."""

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
"""Type URL under which containerd stores an OCI runtime spec (JSON bytes)."""


@dataclass(frozen=True)
class Version:
    """containerd's version and git revision."""

    version: str
    revision: str


@dataclass(frozen=True)
class ImageInfo:
    """An image record.

    ``size`` is the target descriptor's size; ``content_size`` the bytes of
    the index/manifest, config and layers for this host's platform, or -1 when
    some of that content is not present locally.
    """

    name: str
    target_digest: str
    media_type: str
    size: int
    content_size: int
    created_at: datetime | None
    updated_at: datetime | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageRuntimeConfig:
    """What a container needs from its image before it exists.

    ``config`` is the whole image configuration document (``config.Env``,
    ``config.Entrypoint`` ...); ``files`` maps each requested rootfs path to
    its content, or ``None`` when the image does not have it.
    """

    ref: str
    config: dict[str, Any]
    files: dict[str, bytes | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerInfo:
    """A container record; ``spec`` is the decoded OCI runtime spec."""

    id: str
    image: str
    labels: dict[str, str]
    runtime: str
    snapshotter: str
    snapshot_key: str
    spec: dict[str, Any] | None
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class ExitStatus:
    """How a task's init process ended; ``exit_code`` is 128+N for signal N."""

    exit_code: int
    exited_at: datetime | None


@dataclass(frozen=True)
class TaskInfo:
    """A task's state: ``status`` is one of created, running, stopped, paused, pausing, unknown."""

    container_id: str
    pid: int
    status: str
    exit_status: int
    exited_at: datetime | None


@dataclass(frozen=True)
class Mount:
    """One mount of a snapshot (what runc needs to assemble a rootfs)."""

    type: str
    source: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot: ``kind`` is view, active or committed."""

    key: str
    parent: str
    kind: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One containerd event.

    ``topic`` is e.g. ``/tasks/exit``; ``event`` the decoded protobuf message
    (``kukeond.containerd._pb.events.task_pb2.TaskExit`` and friends) or
    ``None`` when its type is not one we know.
    """

    namespace: str
    topic: str
    timestamp: datetime | None
    event: Any
