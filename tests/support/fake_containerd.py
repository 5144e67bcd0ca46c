"""``FakeContainerd``: an in-memory ``IContainerd`` for tests.

It reads image archives through the same ``archive`` module as the real
client (so it refuses the same bad inputs), keeps namespaces, images,
containers, snapshots and tasks in dicts, and answers with already-fired
Deferreds. Tasks never run: a test ends one with ``exit_task``; ``kill_task``
ends it with status 128+signal, as runc reports a signal death.
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO

from twisted.internet import defer
from zope.interface import implementer

from kukeond.containerd import errors, rootfs
from kukeond.containerd._pb.events import container_pb2, task_pb2
from kukeond.containerd.archive import open_archive
from kukeond.containerd.interface import IContainerd, ISubscription
from kukeond.containerd.model import (
    RUNC_V2,
    ContainerInfo,
    Event,
    ExitStatus,
    ImageInfo,
    ImageRuntimeConfig,
    Mount,
    SnapshotInfo,
    TaskInfo,
    Version,
)
from kukeond.containerd.reference import chain_ids


def _now() -> datetime:
    return datetime.now(UTC)


def _unavailable() -> errors.Unavailable:
    return errors.Unavailable("failed to connect to containerd: marked unavailable")


def _deferred(fn: Callable[..., Any]) -> Callable[..., defer.Deferred[Any]]:
    """Run ``fn`` now and wrap its result or error in a fired Deferred.

    While the fake is marked unavailable every call fails with ``Unavailable``,
    as every call to a containerd that went away does.
    """

    def method(self: FakeContainerd, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        if not self.available:
            return defer.fail(_unavailable())
        return defer.maybeDeferred(fn, self, *args, **kwargs)

    method.__name__ = fn.__name__
    method.__doc__ = fn.__doc__
    method.__wrapped__ = fn  # type: ignore[attr-defined]
    return method


class _Namespace:
    def __init__(self, labels: Mapping[str, str]) -> None:
        self.labels = dict(labels)
        self.images: dict[str, tuple[ImageInfo, list[str]]] = {}
        self.image_content: dict[str, tuple[dict[str, Any], list[tuple[str, bytes]]]] = {}
        self.containers: dict[str, ContainerInfo] = {}
        self.snapshots: dict[tuple[str, str], SnapshotInfo] = {}
        self.tasks: dict[str, dict[str, Any]] = {}


@implementer(IContainerd)
class FakeContainerd:
    """In-memory containerd (see the module docstring)."""

    snapshotter = "overlayfs"

    def __init__(self) -> None:
        self._namespaces: dict[str, _Namespace] = {}
        self._subscribers: list[_FakeSubscription] = []
        self._next_pid = 1000
        self.available = True

    def _ns(self, name: str, create: bool = True) -> _Namespace:
        """The namespace's state; like containerd, writing creates it, reading does not."""
        if not self.available:
            raise _unavailable()
        ns = self._namespaces.get(name)
        if ns is None:
            ns = _Namespace({})
            if create:
                self._namespaces[name] = ns
        return ns

    def _emit(self, namespace: str, topic: str, event: Any) -> None:
        envelope = Event(namespace, topic, _now(), event)
        for sub in list(self._subscribers):
            sub.deliver(envelope)

    @_deferred
    def version(self) -> Version:
        """A fixed version."""
        return Version("fake", "fake")

    @_deferred
    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """See ``IContainerd``."""
        if name in self._namespaces:
            raise errors.AlreadyExists(f"namespace {name}: already exists")
        self._namespaces[name] = _Namespace(labels or {})

    @_deferred
    def ensure_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> bool:
        """See ``IContainerd``."""
        if name in self._namespaces:
            return False
        self.create_namespace(name, labels)
        return True

    @_deferred
    def list_namespaces(self) -> list[str]:
        """See ``IContainerd``."""
        return sorted(self._namespaces)

    @_deferred
    def namespace_labels(self, name: str) -> dict[str, str]:
        """See ``IContainerd``."""
        if name not in self._namespaces:
            raise errors.NotFound(f"namespace {name}: not found")
        return dict(self._namespaces[name].labels)

    @_deferred
    def delete_namespace(self, name: str) -> None:
        """See ``IContainerd``."""
        ns = self._namespaces.get(name)
        if ns is None:
            raise errors.NotFound(f"namespace {name}: not found")
        if ns.images or ns.containers or ns.snapshots:
            raise errors.FailedPrecondition(f"namespace {name} must be empty")
        del self._namespaces[name]

    # images

    @_deferred
    def import_image(
        self,
        namespace: str,
        source: str | os.PathLike[str] | BinaryIO,
        name: str | None = None,
        unpack: bool = True,
        snapshotter: str | None = None,
    ) -> list[ImageInfo]:
        """See ``IContainerd``."""
        ns = self._ns(namespace)
        with open_archive(source, name) as archive:
            archive.verify()
            infos = {}
            for image in archive.images:
                previous = ns.images.get(image.name)
                created = previous[0].created_at if previous else _now()
                size = sum(b.descriptor.size for b in image.blobs)
                info = ImageInfo(
                    image.name,
                    image.target.digest,
                    image.target.media_type,
                    image.target.size,
                    size,
                    created,
                    _now(),
                    {},
                )
                ns.images[image.name] = (info, chain_ids(image.manifest.diff_ids))
                plan = image.manifest
                config = json.loads(b"".join(archive.chunks(plan.config)))
                layers = [(d.media_type, b"".join(archive.chunks(d))) for d in plan.layers]
                ns.image_content[image.name] = (config, layers)
                infos[image.name] = info
                if unpack:
                    self._unpack(ns, image.name, snapshotter)
        return list(infos.values())

    def _unpack(self, ns: _Namespace, ref: str, snapshotter: str | None) -> str:
        chains = ns.images[ref][1]
        snap = snapshotter or self.snapshotter
        parent = ""
        for chain in chains:
            ns.snapshots.setdefault((snap, chain), SnapshotInfo(chain, parent, "committed"))
            parent = chain
        return parent

    @_deferred
    def list_images(self, namespace: str) -> list[ImageInfo]:
        """See ``IContainerd``."""
        return [i for _, (i, _c) in sorted(self._ns(namespace, create=False).images.items())]

    @_deferred
    def get_image(self, namespace: str, ref: str) -> ImageInfo:
        """See ``IContainerd``."""
        entry = self._ns(namespace, create=False).images.get(ref)
        if entry is None:
            raise errors.NotFound(f"image {ref!r}: not found")
        return entry[0]

    @_deferred
    def image_runtime_config(
        self, namespace: str, ref: str, files: Sequence[str] = ()
    ) -> ImageRuntimeConfig:
        """See ``IContainerd``."""
        ns = self._ns(namespace, create=False)
        if ref not in ns.images:
            raise errors.NotFound(f"image {ref!r}: not found")
        config, layers = ns.image_content[ref]
        found = rootfs.read_files(((t, io.BytesIO(b)) for t, b in layers), files) if files else {}
        return ImageRuntimeConfig(ref, copy.deepcopy(config), found)

    @_deferred
    def delete_image(self, namespace: str, ref: str, sync: bool = True) -> None:
        """See ``IContainerd``; unreferenced committed snapshots go with it."""
        ns = self._ns(namespace)
        if ref not in ns.images:
            raise errors.NotFound(f"image {ref!r}: not found")
        del ns.images[ref]
        ns.image_content.pop(ref, None)
        kept = {c for _, chains in ns.images.values() for c in chains}
        kept |= {s.parent for s in ns.snapshots.values()}
        for key, snap in list(ns.snapshots.items()):
            if snap.kind == "committed" and snap.key not in kept:
                del ns.snapshots[key]

    # containers

    @_deferred
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
        """See ``IContainerd``."""
        ns = self._ns(namespace)
        if container_id in ns.containers:
            raise errors.AlreadyExists(f"container {container_id} already exists")
        if image not in ns.images:
            raise errors.NotFound(f"image {image!r}: not found")
        snap = snapshotter or self.snapshotter
        top = self._unpack(ns, image, snap)
        if (snap, container_id) in ns.snapshots:
            raise errors.AlreadyExists(f"snapshot {container_id} already exists")
        ns.snapshots[(snap, container_id)] = SnapshotInfo(container_id, top, "active")
        now = _now()
        info = ContainerInfo(
            container_id,
            image,
            dict(labels or {}),
            runtime,
            snap,
            container_id,
            dict(spec),
            now,
            now,
        )
        ns.containers[container_id] = info
        return info

    @_deferred
    def get_container(self, namespace: str, container_id: str) -> ContainerInfo:
        """See ``IContainerd``."""
        info = self._ns(namespace, create=False).containers.get(container_id)
        if info is None:
            raise errors.NotFound(f"container {container_id!r}: not found")
        return info

    @_deferred
    def list_containers(
        self, namespace: str, labels: Mapping[str, str] | None = None
    ) -> list[ContainerInfo]:
        """See ``IContainerd``."""
        want = dict(labels or {})
        return [
            c
            for _, c in sorted(self._ns(namespace, create=False).containers.items())
            if all(c.labels.get(k) == v for k, v in want.items())
        ]

    @_deferred
    def container_ids(self, namespace: str, ids: Sequence[str]) -> frozenset[str]:
        """See ``IContainerd``."""
        return frozenset(ids) & self._ns(namespace, create=False).containers.keys()

    @_deferred
    def update_container_labels(
        self, namespace: str, container_id: str, labels: Mapping[str, str | None]
    ) -> ContainerInfo:
        """See ``IContainerd``."""
        ns = self._ns(namespace)
        info = ns.containers.get(container_id)
        if info is None:
            raise errors.NotFound(f"container {container_id!r}: not found")
        merged = dict(info.labels)
        for key, value in labels.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        info = ContainerInfo(
            info.id,
            info.image,
            merged,
            info.runtime,
            info.snapshotter,
            info.snapshot_key,
            info.spec,
            info.created_at,
            _now(),
        )
        ns.containers[container_id] = info
        return info

    @_deferred
    def delete_container(
        self, namespace: str, container_id: str, delete_snapshot: bool = True
    ) -> None:
        """See ``IContainerd``."""
        ns = self._ns(namespace)
        info = ns.containers.pop(container_id, None)
        if info is None:
            raise errors.NotFound(f"container {container_id!r}: not found")
        if delete_snapshot:
            ns.snapshots.pop((info.snapshotter, info.snapshot_key), None)
        self._emit(namespace, "/containers/delete", container_pb2.ContainerDelete(id=container_id))

    # snapshots

    @staticmethod
    def _mounts(key: str) -> list[Mount]:
        return [Mount("bind", f"/fake/snapshots/{key}", ("rbind", "rw"))]

    @_deferred
    def snapshot_mounts(
        self, namespace: str, key: str, snapshotter: str | None = None
    ) -> list[Mount]:
        """See ``IContainerd``."""
        if (snapshotter or self.snapshotter, key) not in self._ns(namespace).snapshots:
            raise errors.NotFound(f"snapshot {key}: not found")
        return self._mounts(key)

    @_deferred
    def remove_snapshot(self, namespace: str, key: str, snapshotter: str | None = None) -> None:
        """See ``IContainerd``."""
        if self._ns(namespace).snapshots.pop((snapshotter or self.snapshotter, key), None) is None:
            raise errors.NotFound(f"snapshot {key}: not found")

    @_deferred
    def list_snapshots(self, namespace: str, snapshotter: str | None = None) -> list[SnapshotInfo]:
        """See ``IContainerd``."""
        snap = snapshotter or self.snapshotter
        snapshots = self._ns(namespace, create=False).snapshots.items()
        return sorted((s for (n, _), s in snapshots if n == snap), key=lambda s: s.key)

    # tasks

    def _task(self, namespace: str, container_id: str) -> dict[str, Any]:
        task = self._ns(namespace, create=False).tasks.get(container_id)
        if task is None:
            raise errors.NotFound(f"task {container_id}: not found")
        return task

    @_deferred
    def create_task(self, namespace: str, container_id: str, log_path: str | None = None) -> int:
        """See ``IContainerd``; the log file is created empty."""
        if log_path is not None and not os.path.isabs(log_path):
            raise errors.InvalidArgument(f"log path must be absolute: {log_path!r}")
        ns = self._ns(namespace)
        if container_id not in ns.containers:
            raise errors.NotFound(f"container {container_id!r}: not found")
        if container_id in ns.tasks:
            raise errors.AlreadyExists(f"task {container_id}: already exists")
        if log_path is not None:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            open(log_path, "ab").close()
        self._next_pid += 1
        ns.tasks[container_id] = {
            "pid": self._next_pid,
            "status": "created",
            "exit": 0,
            "exited_at": None,
            "waiters": [],
            "ignored": set(),
        }
        return self._next_pid

    @_deferred
    def start_task(self, namespace: str, container_id: str) -> int:
        """See ``IContainerd``."""
        task = self._task(namespace, container_id)
        if task["status"] != "created":
            raise errors.FailedPrecondition(f"task {container_id} is {task['status']}")
        task["status"] = "running"
        return task["pid"]

    def exit_task(self, namespace: str, container_id: str, exit_code: int = 0) -> None:
        """Test hook: end a running task as if its process exited with ``exit_code``."""
        task = self._task(namespace, container_id)
        if task["status"] == "stopped":
            return
        task.update(status="stopped", exit=exit_code, exited_at=_now())
        status = ExitStatus(exit_code, task["exited_at"])
        waiters, task["waiters"] = task["waiters"], []
        for waiter in waiters:
            waiter.callback(status)
        self._emit(
            namespace,
            "/tasks/exit",
            task_pb2.TaskExit(
                container_id=container_id, id=container_id, pid=task["pid"], exit_status=exit_code
            ),
        )

    def ignore_signal(self, namespace: str, container_id: str, signal: int) -> None:
        """Test hook: the task's process traps ``signal`` and goes on running."""
        self._task(namespace, container_id)["ignored"].add(signal)

    @_deferred
    def kill_task(
        self, namespace: str, container_id: str, signal: int = 15, all: bool = True
    ) -> None:
        """See ``IContainerd``: any signal but 0 (or an ignored one) ends the task."""
        task = self._task(namespace, container_id)
        if task["status"] == "stopped":
            raise errors.NotFound(f"process {container_id} already finished")
        if signal != 0 and signal not in task["ignored"]:
            self.exit_task(namespace, container_id, 128 + signal)

    def wait_task(
        self, namespace: str, container_id: str, timeout: float = 10.0
    ) -> defer.Deferred[ExitStatus]:
        """See ``IContainerd``; the deadline uses the global reactor."""
        try:
            task = self._task(namespace, container_id)
        except errors.ContainerdError:
            return defer.fail()
        if task["status"] == "stopped":
            return defer.succeed(ExitStatus(task["exit"], task["exited_at"]))
        from twisted.internet import reactor

        waiter: defer.Deferred[ExitStatus] = defer.Deferred()
        task["waiters"].append(waiter)

        def expired() -> None:
            if waiter in task["waiters"]:
                task["waiters"].remove(waiter)
                waiter.errback(
                    errors.DeadlineExceeded(
                        f"Tasks.Wait: {container_id} still running after {timeout}s"
                    )
                )

        call = reactor.callLater(timeout, expired)  # type: ignore[attr-defined]
        waiter.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
        return waiter

    def _info(self, container_id: str, task: dict[str, Any]) -> TaskInfo:
        return TaskInfo(container_id, task["pid"], task["status"], task["exit"], task["exited_at"])

    @_deferred
    def task_state(self, namespace: str, container_id: str) -> TaskInfo:
        """See ``IContainerd``."""
        return self._info(container_id, self._task(namespace, container_id))

    @_deferred
    def task_pids(self, namespace: str, container_id: str) -> list[int]:
        """See ``IContainerd``."""
        task = self._task(namespace, container_id)
        return [task["pid"]] if task["status"] != "stopped" else []

    @_deferred
    def delete_task(self, namespace: str, container_id: str) -> ExitStatus:
        """See ``IContainerd``."""
        task = self._task(namespace, container_id)
        if task["status"] == "running":
            raise errors.FailedPrecondition(f"task {container_id} must be stopped")
        del self._ns(namespace).tasks[container_id]
        self._emit(
            namespace,
            "/tasks/delete",
            task_pb2.TaskDelete(
                container_id=container_id,
                id=container_id,
                pid=task["pid"],
                exit_status=task["exit"],
            ),
        )
        return ExitStatus(task["exit"], task["exited_at"])

    @_deferred
    def list_tasks(self, namespace: str) -> list[TaskInfo]:
        """See ``IContainerd``."""
        tasks = self._ns(namespace, create=False).tasks.items()
        return [self._info(c, t) for c, t in sorted(tasks)]

    @_deferred
    def list_leases(self, namespace: str) -> list[str]:
        """See ``IContainerd``: the fake never leaves leases."""
        self._ns(namespace, create=False)
        return []

    def subscribe(
        self,
        callback: Callable[[Event], Any],
        namespace: str | None = None,
        topics: Sequence[str] | None = None,
        on_resubscribe: Callable[[], Any] | None = None,
    ) -> ISubscription:
        """See ``IContainerd``; events are delivered synchronously."""
        sub = _FakeSubscription(self, callback, namespace, list(topics or []))
        self._subscribers.append(sub)
        return sub


@implementer(ISubscription)
class _FakeSubscription:
    def __init__(
        self,
        owner: FakeContainerd,
        callback: Callable[[Event], Any],
        namespace: str | None,
        topics: list[str],
    ) -> None:
        self._owner = owner
        self._callback = callback
        self._namespace = namespace
        self._topics = topics

    def deliver(self, event: Event) -> None:
        if self._namespace is not None and event.namespace != self._namespace:
            return
        if self._topics and not any(event.topic.startswith(t) for t in self._topics):
            return
        self._callback(event)

    def stop(self) -> defer.Deferred[None]:
        """Stop delivering events."""
        if self in self._owner._subscribers:
            self._owner._subscribers.remove(self)
        return defer.succeed(None)
