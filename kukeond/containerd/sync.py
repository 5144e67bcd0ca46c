"""Blocking containerd operations over one gRPC channel.

``SyncContainerd`` has the same operations as ``IContainerd`` but returns
plain values and raises the typed errors directly. It is meant to run on the
``GrpcContainerd`` thread pool, never in the reactor thread. Every call has a
deadline; the channel is created on first use and reconnects by itself
(with a short back-off) when containerd restarts.

The calls themselves are made by :class:`~kukeond.containerd.channel.ContainerdChannel`
and the image operations live in :class:`~kukeond.containerd.images.ContainerdImages`,
its base classes; this module has namespaces, containers, snapshots and tasks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import any_pb2, empty_pb2, field_mask_pb2

from kukeond.containerd import errors
from kukeond.containerd._pb.services.containers.v1 import containers_pb2 as c_pb
from kukeond.containerd._pb.services.leases.v1 import leases_pb2
from kukeond.containerd._pb.services.namespaces.v1 import namespace_pb2 as ns_pb
from kukeond.containerd._pb.services.snapshots.v1 import snapshots_pb2 as s_pb
from kukeond.containerd._pb.services.tasks.v1 import tasks_pb2 as t_pb
from kukeond.containerd._pb.types import mount_pb2
from kukeond.containerd.images import ContainerdImages
from kukeond.containerd.messages import id_filters, label_filter, task_info, time_of
from kukeond.containerd.model import (
    RUNC_V2,
    SPEC_TYPE_URL,
    ContainerInfo,
    ExitStatus,
    Mount,
    SnapshotInfo,
    TaskInfo,
    Version,
)

_KIND = {v: k.lower() for k, v in s_pb.Kind.items()}


class SyncContainerd(ContainerdImages):
    """Blocking containerd client (see the module docstring)."""

    # version and namespaces

    def version(self) -> Version:
        """containerd's version."""
        reply = self.call("Version.Version", empty_pb2.Empty())
        return Version(reply.version, reply.revision)

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Create a namespace."""
        self.call(
            "Namespaces.Create",
            ns_pb.CreateNamespaceRequest(
                namespace=ns_pb.Namespace(name=name, labels=dict(labels or {}))
            ),
            name,
        )

    def ensure_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> bool:
        """Create a namespace unless present; True if created."""
        try:
            self.create_namespace(name, labels)
        except errors.AlreadyExists:
            return False
        return True

    def list_namespaces(self) -> list[str]:
        """Namespace names."""
        reply = self.call("Namespaces.List", ns_pb.ListNamespacesRequest())
        return sorted(n.name for n in reply.namespaces)

    def namespace_labels(self, name: str) -> dict[str, str]:
        """A namespace's labels."""
        # containerd 1.6 answers Get for a missing namespace with empty labels.
        if name not in self.list_namespaces():
            raise errors.NotFound(f"namespace {name}: not found")
        reply = self.call("Namespaces.Get", ns_pb.GetNamespaceRequest(name=name))
        return dict(reply.namespace.labels)

    def delete_namespace(self, name: str) -> None:
        """Delete an empty namespace."""
        self.call("Namespaces.Delete", ns_pb.DeleteNamespaceRequest(name=name), name)

    # containers

    def _container_info(self, c: Any) -> ContainerInfo:
        spec = None
        if c.HasField("spec") and c.spec.value:
            try:
                spec = json.loads(c.spec.value)
            except ValueError:
                spec = None
        return ContainerInfo(
            id=c.id,
            image=c.image,
            labels=dict(c.labels),
            runtime=c.runtime.name,
            snapshotter=c.snapshotter,
            snapshot_key=c.snapshot_key,
            spec=spec,
            created_at=time_of(c.created_at),
            updated_at=time_of(c.updated_at),
        )

    def create_container(
        self,
        namespace: str,
        container_id: str,
        image: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        snapshotter: str | None = None,
        runtime: str = RUNC_V2,
    ) -> ContainerInfo:
        """Create a container with a fresh snapshot of the image.

        The record goes in first: it names its snapshot, which makes the
        snapshot a garbage-collection root as soon as it is prepared, so no
        lease is needed, and an existing container fails the create before
        anything is touched. A record whose snapshot cannot be prepared is
        deleted again.
        """
        snap = snapshotter or self.default_snapshotter()
        top, cached = self._unpacked_top(namespace, image, snap)
        record = c_pb.Container(
            id=container_id,
            image=image,
            labels=dict(labels or {}),
            runtime=c_pb.Container.Runtime(name=runtime),
            spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(dict(spec)).encode()),
            snapshotter=snap,
            snapshot_key=container_id,
        )
        created = self.call(
            "Containers.Create", c_pb.CreateContainerRequest(container=record), namespace
        ).container
        try:
            try:
                self._prepare_rootfs(namespace, container_id, top, snap)
            except (errors.NotFound, errors.FailedPrecondition):
                if not cached:
                    raise
                # The cached chain is gone (image deleted or re-tagged elsewhere): redo it once.
                self._images.forget(namespace)
                top, _ = self._unpacked_top(namespace, image, snap)
                self._prepare_rootfs(namespace, container_id, top, snap)
        except BaseException:
            try:
                self.call(
                    "Containers.Delete", c_pb.DeleteContainerRequest(id=container_id), namespace
                )
            except errors.ContainerdError:
                pass  # the caller's error matters more; the record is visible to clean up
            raise
        return self._container_info(created)

    def _prepare_rootfs(self, namespace: str, key: str, parent: str, snapshotter: str) -> None:
        self.call(
            "Snapshots.Prepare",
            s_pb.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent),
            namespace,
        )

    def get_container(self, namespace: str, container_id: str) -> ContainerInfo:
        """One container record."""
        reply = self.call("Containers.Get", c_pb.GetContainerRequest(id=container_id), namespace)
        return self._container_info(reply.container)

    def list_containers(
        self, namespace: str, labels: Mapping[str, str] | None = None
    ) -> list[ContainerInfo]:
        """Containers whose labels include ``labels``."""
        filters = [label_filter(labels)] if labels else []
        reply = self.call("Containers.List", c_pb.ListContainersRequest(filters=filters), namespace)
        return sorted((self._container_info(c) for c in reply.containers), key=lambda c: c.id)

    def container_ids(self, namespace: str, ids: Sequence[str]) -> frozenset[str]:
        """Which of ``ids`` name a container: one ``Containers.List`` whose filters are ORed."""
        if not ids:
            return frozenset()
        request = c_pb.ListContainersRequest(filters=id_filters(ids))
        reply = self.call("Containers.List", request, namespace)
        return frozenset(c.id for c in reply.containers)

    def update_container_labels(
        self, namespace: str, container_id: str, labels: Mapping[str, str | None]
    ) -> ContainerInfo:
        """Set or (value None) remove labels."""
        record = c_pb.Container(
            id=container_id, labels={k: v for k, v in labels.items() if v is not None}
        )
        reply = self.call(
            "Containers.Update",
            c_pb.UpdateContainerRequest(
                container=record,
                update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels]),
            ),
            namespace,
        )
        return self._container_info(reply.container)

    def delete_container(
        self, namespace: str, container_id: str, delete_snapshot: bool = True
    ) -> None:
        """Delete a container record and its snapshot."""
        info = self.get_container(namespace, container_id)
        self.call("Containers.Delete", c_pb.DeleteContainerRequest(id=container_id), namespace)
        if delete_snapshot and info.snapshot_key:
            try:
                self.remove_snapshot(namespace, info.snapshot_key, info.snapshotter)
            except errors.NotFound:
                pass

    # snapshots

    @staticmethod
    def _mounts(mounts: Any) -> list[Mount]:
        return [Mount(m.type, m.source, tuple(m.options)) for m in mounts]

    def snapshot_mounts(
        self, namespace: str, key: str, snapshotter: str | None = None
    ) -> list[Mount]:
        """Mounts of an active snapshot."""
        reply = self.call(
            "Snapshots.Mounts",
            s_pb.MountsRequest(snapshotter=snapshotter or self.default_snapshotter(), key=key),
            namespace,
        )
        return self._mounts(reply.mounts)

    def remove_snapshot(self, namespace: str, key: str, snapshotter: str | None = None) -> None:
        """Remove a snapshot."""
        self.call(
            "Snapshots.Remove",
            s_pb.RemoveSnapshotRequest(
                snapshotter=snapshotter or self.default_snapshotter(), key=key
            ),
            namespace,
        )

    def list_snapshots(self, namespace: str, snapshotter: str | None = None) -> list[SnapshotInfo]:
        """Snapshots of a namespace."""
        infos: list[SnapshotInfo] = []
        for reply in self.stream(
            "Snapshots.List",
            s_pb.ListSnapshotsRequest(snapshotter=snapshotter or self.default_snapshotter()),
            namespace,
        ):
            infos.extend(
                SnapshotInfo(i.name, i.parent, _KIND.get(i.kind, "unknown"), dict(i.labels))
                for i in reply.info
            )
        return sorted(infos, key=lambda s: s.key)

    # tasks

    def create_task(self, namespace: str, container_id: str, log_path: str | None = None) -> int:
        """Create a task with stdio appended to ``log_path`` or discarded."""
        if log_path is not None and not os.path.isabs(log_path):
            raise errors.InvalidArgument(f"log path must be absolute: {log_path!r}")
        info = self.get_container(namespace, container_id)
        rootfs = []
        if info.snapshot_key:
            rootfs = [
                mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options))
                for m in self.snapshot_mounts(namespace, info.snapshot_key, info.snapshotter)
            ]
        uri = ""
        if log_path is not None:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            uri = "file://" + log_path
        reply = self.call(
            "Tasks.Create",
            t_pb.CreateTaskRequest(
                container_id=container_id, rootfs=rootfs, stdout=uri, stderr=uri
            ),
            namespace,
            timeout=self.long_timeout,
        )
        return reply.pid

    def start_task(self, namespace: str, container_id: str) -> int:
        """Start a created task."""
        return self.call("Tasks.Start", t_pb.StartRequest(container_id=container_id), namespace).pid

    def kill_task(
        self, namespace: str, container_id: str, signal: int = 15, all: bool = True
    ) -> None:
        """Signal a task."""
        self.call(
            "Tasks.Kill",
            t_pb.KillRequest(container_id=container_id, signal=signal, all=all),
            namespace,
        )

    def wait_task(self, namespace: str, container_id: str, timeout: float = 10.0) -> ExitStatus:
        """Wait for a task to exit, up to ``timeout`` seconds."""
        reply = self.call(
            "Tasks.Wait", t_pb.WaitRequest(container_id=container_id), namespace, timeout=timeout
        )
        return ExitStatus(reply.exit_status, time_of(reply.exited_at))

    def task_state(self, namespace: str, container_id: str) -> TaskInfo:
        """A task's state."""
        reply = self.call("Tasks.Get", t_pb.GetRequest(container_id=container_id), namespace)
        return task_info(reply.process)

    def task_pids(self, namespace: str, container_id: str) -> list[int]:
        """Pids in a task."""
        reply = self.call(
            "Tasks.ListPids", t_pb.ListPidsRequest(container_id=container_id), namespace
        )
        return sorted(p.pid for p in reply.processes)

    def delete_task(self, namespace: str, container_id: str) -> ExitStatus:
        """Delete a task."""
        try:
            reply = self.call(
                "Tasks.Delete",
                t_pb.DeleteTaskRequest(container_id=container_id),
                namespace,
                timeout=self.long_timeout,
            )
        except errors.ContainerdError as exc:
            # containerd reports this case with code UNKNOWN; give it its real meaning.
            if type(exc) is errors.ContainerdError and "running" in exc.message:
                raise errors.FailedPrecondition(exc.message) from None
            raise
        return ExitStatus(reply.exit_status, time_of(reply.exited_at))

    def list_tasks(self, namespace: str) -> list[TaskInfo]:
        """Tasks of a namespace."""
        reply = self.call("Tasks.List", t_pb.ListTasksRequest(), namespace)
        return sorted((task_info(p) for p in reply.tasks), key=lambda t: t.container_id)

    def list_leases(self, namespace: str) -> list[str]:
        """Lease IDs of a namespace."""
        reply = self.call("Leases.List", leases_pb2.ListRequest(), namespace)
        return sorted(lease.id for lease in reply.leases)
