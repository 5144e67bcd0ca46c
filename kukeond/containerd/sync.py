"""Blocking containerd operations over one gRPC channel.

``SyncContainerd`` has the same operations as ``IContainerd`` but returns
plain values and raises the typed errors directly. It is meant to run on the
``GrpcContainerd`` thread pool, never in the reactor thread. Every call has a
deadline; the channel is created on first use and reconnects by itself
(with a short back-off) when containerd restarts.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, TypeVar

import grpc
from google.protobuf import any_pb2, empty_pb2, field_mask_pb2

from kukeond.containerd import archive as arc
from kukeond.containerd import errors, rootfs
from kukeond.containerd._pb.services.containers.v1 import containers_pb2 as c_pb
from kukeond.containerd._pb.services.content.v1 import content_pb2 as ct_pb
from kukeond.containerd._pb.services.diff.v1 import diff_pb2
from kukeond.containerd._pb.services.images.v1 import images_pb2 as i_pb
from kukeond.containerd._pb.services.introspection.v1 import introspection_pb2
from kukeond.containerd._pb.services.leases.v1 import leases_pb2
from kukeond.containerd._pb.services.namespaces.v1 import namespace_pb2 as ns_pb
from kukeond.containerd._pb.services.snapshots.v1 import snapshots_pb2 as s_pb
from kukeond.containerd._pb.services.tasks.v1 import tasks_pb2 as t_pb
from kukeond.containerd._pb.types import descriptor_pb2, mount_pb2
from kukeond.containerd._pb.types.task import task_pb2 as task_types
from kukeond.containerd.imagecache import ImageCache, ResolvedImage
from kukeond.containerd.model import (
    RUNC_V2,
    SPEC_TYPE_URL,
    ContainerInfo,
    ExitStatus,
    ImageInfo,
    ImageRuntimeConfig,
    Mount,
    SnapshotInfo,
    TaskInfo,
    Version,
)
from kukeond.containerd.reference import chain_ids, host_platform
from kukeond.containerd.stubs import Stubs

T = TypeVar("T")
NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
GC_EXPIRE = "containerd.io/gc.expire"
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 << 20),
]
_STATUS = {v: k.lower() for k, v in task_types.Status.items()}
_KIND = {v: k.lower() for k, v in s_pb.Kind.items()}


def time_of(ts: Any) -> datetime | None:
    """A protobuf Timestamp as an aware datetime, or None when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=UTC)


def task_info(p: Any) -> TaskInfo:
    """A ``TaskInfo`` from a task's ``Process`` message."""
    return TaskInfo(
        p.container_id or p.id,
        p.pid,
        _STATUS.get(p.status, "unknown"),
        p.exit_status,
        time_of(p.exited_at),
    )


def id_filters(ids: Sequence[str]) -> list[str]:
    """``Containers.List`` filters matching any of ``ids`` (containerd ORs the filters)."""
    return [f"id=={json.dumps(i)}" for i in ids]


def label_filter(labels: Mapping[str, str]) -> str:
    """A containerd filter matching every label key with its value."""
    return ",".join(f"labels.{json.dumps(k)}=={json.dumps(v)}" for k, v in sorted(labels.items()))


class SyncContainerd:
    """Blocking containerd client (see the module docstring)."""

    def __init__(
        self,
        address: str,
        call_timeout: float = 30.0,
        long_timeout: float = 600.0,
        snapshotter: str | None = None,
    ) -> None:
        self.address = (
            address if "://" in address or address.startswith("unix:") else ("unix://" + address)
        )
        self.call_timeout = call_timeout
        self.long_timeout = long_timeout
        self.snapshotter = snapshotter
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stubs: Stubs | None = None
        self._closed = False
        self._images = ImageCache()

    # plumbing

    def stubs(self) -> Stubs:
        """The method callables, creating the channel on first use."""
        with self._lock:
            if self._closed:
                raise errors.Unavailable("containerd client is stopped")
            if self._stubs is None:
                self._channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
                self._stubs = Stubs(self._channel)
            return self._stubs

    def _translate(self, exc: grpc.RpcError, name: str) -> errors.ContainerdError:
        """A typed error; an unreachable containerd is named as such, with its socket."""
        error = errors.from_rpc_error(exc, name)
        if isinstance(error, errors.Unavailable):
            details = exc.details() or ""
            # gRPC's connect failure text repeats the address twice; keep its cause.
            if "connect failed" in details and "error: " in details:
                error = errors.Unavailable(
                    f"{name}: {details.rsplit('error: ', 1)[1].strip()}", error.code
                )
            return errors.Unavailable(
                f"failed to connect to containerd at {self.address}: {error}", error.code
            )
        return error

    def _worth_waiting(self, exc: grpc.RpcError) -> bool:
        """Whether a failed connect should be retried, waiting for the channel to be ready.

        After containerd restarts, the channel stays in reconnect back-off for
        up to a second and fails calls at once meanwhile. A call that never
        left (``failed to connect``) is safe to send again; it is worth
        waiting for the reconnect only when something accepts connections on
        the socket now, so a containerd that is really down still fails fast.
        """
        if exc.code() != grpc.StatusCode.UNAVAILABLE or "failed to connect" not in (
            exc.details() or ""
        ):
            return False
        if not self.address.startswith("unix:"):
            return True
        path = self.address.removeprefix("unix:").removeprefix("//")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError:
                return False
        return True

    def close(self) -> None:
        """Close the channel: in-flight calls end with ``Cancelled``; later calls fail."""
        with self._lock:
            self._closed = True
            channel, self._channel, self._stubs = self._channel, None, None
        if channel is not None:
            channel.close()

    def call(
        self,
        name: str,
        request: Any,
        namespace: str | None = None,
        lease: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call a unary method with the namespace/lease headers and a deadline."""
        metadata = []
        if namespace is not None:
            metadata.append((NAMESPACE_HEADER, namespace))
        if lease is not None:
            metadata.append((LEASE_HEADER, lease))
        try:
            method = self.stubs()(name)
            try:
                return method(request, timeout=timeout or self.call_timeout, metadata=metadata)
            except grpc.RpcError as exc:
                if not self._worth_waiting(exc):
                    raise
            return method(
                request,
                timeout=timeout or self.call_timeout,
                metadata=metadata,
                wait_for_ready=True,
            )
        except grpc.RpcError as exc:
            raise self._translate(exc, name) from None
        except ValueError as exc:  # grpc raises this on a channel closed under us
            raise errors.Unavailable(f"{name}: {exc}") from None

    def stream(
        self,
        name: str,
        request: Any,
        namespace: str | None = None,
        lease: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Any]:
        """Iterate a server-streaming (or bidi, given an iterator) method's responses."""
        metadata = [(NAMESPACE_HEADER, namespace)] if namespace is not None else []
        if lease is not None:
            metadata.append((LEASE_HEADER, lease))
        method = self.stubs()(name)
        # A request iterator is consumed by the first attempt, so only a
        # single request message can be sent again.
        replayable = not isinstance(request, Iterator)
        wait = False
        while True:
            answered = False
            try:
                for reply in method(
                    request,
                    timeout=timeout or self.call_timeout,
                    metadata=metadata,
                    wait_for_ready=wait,
                ):
                    answered = True
                    yield reply
                return
            except grpc.RpcError as exc:
                if wait or answered or not replayable or not self._worth_waiting(exc):
                    raise self._translate(exc, name) from None
                wait = True

    def _with_lease(self, namespace: str, work: Callable[[str], T]) -> T:
        """Run ``work(lease_id)`` under a fresh expiring lease, deleted afterwards.

        On failure the lease is deleted synchronously so that the garbage
        collector removes whatever the work created.
        """
        lease_id = f"kukeond-{uuid.uuid4().hex}"
        expire = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.call(
            "Leases.Create",
            leases_pb2.CreateRequest(id=lease_id, labels={GC_EXPIRE: expire}),
            namespace,
        )
        try:
            result = work(lease_id)
        except BaseException:
            try:
                self.call(
                    "Leases.Delete",
                    leases_pb2.DeleteRequest(id=lease_id, sync=True),
                    namespace,
                    timeout=self.long_timeout,
                )
            except errors.ContainerdError:
                pass  # the gc.expire label reclaims it later
            raise
        self.call("Leases.Delete", leases_pb2.DeleteRequest(id=lease_id), namespace)
        return result

    def default_snapshotter(self) -> str:
        """overlayfs when containerd's overlayfs plugin loaded, else native."""
        if self.snapshotter is None:
            reply = self.call(
                "Introspection.Plugins",
                introspection_pb2.PluginsRequest(filters=['type=="io.containerd.snapshotter.v1"']),
            )
            usable = {p.id for p in reply.plugins if not p.HasField("init_err")}
            self.snapshotter = "overlayfs" if "overlayfs" in usable else "native"
        return self.snapshotter

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

    # content

    def _ingest(
        self, namespace: str, lease: str, archive: arc.ImageArchive, blob: arc.BlobPlan
    ) -> None:
        desc = blob.descriptor
        if self._hold_existing(namespace, lease, desc.digest, blob.labels):
            return
        ref = f"kukeond-{desc.digest}-{uuid.uuid4().hex[:8]}"
        failure: list[BaseException] = []

        def requests() -> Iterator[ct_pb.WriteContentRequest]:
            offset = 0
            try:
                for chunk in archive.chunks(desc):
                    yield ct_pb.WriteContentRequest(
                        action=ct_pb.WRITE,
                        ref=ref,
                        total=desc.size,
                        expected=desc.digest,
                        offset=offset,
                        data=chunk,
                    )
                    offset += len(chunk)
            except BaseException as exc:  # noqa: BLE001 - raised again by the writer below
                failure.append(exc)
                return
            yield ct_pb.WriteContentRequest(
                action=ct_pb.COMMIT,
                ref=ref,
                total=desc.size,
                expected=desc.digest,
                offset=offset,
                labels=blob.labels,
            )

        try:
            for _ in self.stream(
                "Content.Write", requests(), namespace, lease, timeout=self.long_timeout
            ):
                pass
        except errors.AlreadyExists:
            pass
        except errors.ContainerdError:
            if not failure:
                self._abort(namespace, ref)
                raise
        if failure:
            self._abort(namespace, ref)
            raise failure[0]

    def _hold_existing(
        self, namespace: str, lease: str, digest: str, labels: Mapping[str, str]
    ) -> bool:
        """Keep a blob already in the store for this import; False when it must be written.

        An unreferenced blob (left by an image deleted a moment ago) can be
        collected by a GC pass at any time: it is put under the import's lease
        before it is relied on, and one that vanished before that is written.
        """
        try:
            self.call("Content.Info", ct_pb.InfoRequest(digest=digest), namespace, lease)
            self.call(
                "Leases.AddResource",
                leases_pb2.AddResourceRequest(
                    id=lease, resource=leases_pb2.Resource(id=digest, type="content")
                ),
                namespace,
            )
            if labels:
                self._label_content(namespace, lease, digest, labels)
        except errors.NotFound:
            return False
        return True

    def _abort(self, namespace: str, ref: str) -> None:
        try:
            self.call("Content.Abort", ct_pb.AbortRequest(ref=ref), namespace)
        except errors.ContainerdError:
            pass

    def _label_content(
        self, namespace: str, lease: str | None, digest: str, labels: Mapping[str, str]
    ) -> None:
        self.call(
            "Content.Update",
            ct_pb.UpdateRequest(
                info=ct_pb.Info(digest=digest, labels=dict(labels)),
                update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels]),
            ),
            namespace,
            lease,
        )

    def _read_blob(self, namespace: str, digest: str) -> bytes:
        parts = [
            r.data
            for r in self.stream("Content.Read", ct_pb.ReadContentRequest(digest=digest), namespace)
        ]
        return b"".join(parts)

    def _read_json(self, namespace: str, digest: str) -> Any:
        try:
            return json.loads(self._read_blob(namespace, digest))
        except ValueError as exc:
            raise errors.ImageFormatError(f"content {digest} is not JSON: {exc}") from exc

    def _resolve(self, namespace: str, target: arc.Descriptor) -> ResolvedImage:
        """The host platform's manifest under ``target``, read once per target digest."""
        resolved = self._images.resolved(namespace, target.digest)
        if resolved is None:
            resolved = self._resolve_from_content(namespace, target)
            self._images.remember_resolved(namespace, target.digest, resolved)
        return resolved

    def _resolve_from_content(self, namespace: str, target: arc.Descriptor) -> ResolvedImage:
        """Walk ``target`` in the content store: descriptors walked, config, diff IDs."""
        walked = [target]
        desc = target
        doc = self._read_json(namespace, desc.digest)
        while desc.media_type in arc.INDEX_TYPES:
            want_os, want_arch = host_platform()
            entries = doc.get("manifests") or []
            chosen = next(
                (
                    m
                    for m in entries
                    if not m.get("platform")
                    or (
                        m["platform"].get("os") == want_os
                        and m["platform"].get("architecture") == want_arch
                    )
                ),
                None,
            )
            if chosen is None:
                raise errors.NotFound(f"no manifest for {want_os}/{want_arch} in {desc.digest}")
            desc = arc.Descriptor(
                chosen.get("mediaType", ""), chosen["digest"], int(chosen["size"])
            )
            walked.append(desc)
            doc = self._read_json(namespace, desc.digest)
        config = arc.Descriptor(
            doc["config"].get("mediaType", ""), doc["config"]["digest"], int(doc["config"]["size"])
        )
        layers = [
            arc.Descriptor(x.get("mediaType", ""), x["digest"], int(x["size"]))
            for x in doc.get("layers") or []
        ]
        config_doc = self._read_json(namespace, config.digest)
        if not isinstance(config_doc, dict):
            raise errors.ImageFormatError(f"image config {config.digest} is not an object")
        diff_ids = (config_doc.get("rootfs") or {}).get("diff_ids") or []
        return ResolvedImage(tuple(walked + [config] + layers), config, tuple(diff_ids), config_doc)

    def _target_of(self, namespace: str, ref: str) -> arc.Descriptor:
        """The target descriptor of image ``ref`` (one ``Images.Get``)."""
        image = self.call("Images.Get", i_pb.GetImageRequest(name=ref), namespace).image
        return arc.Descriptor(image.target.media_type, image.target.digest, image.target.size)

    # images

    def import_image(
        self,
        namespace: str,
        source: str | os.PathLike[str] | BinaryIO,
        name: str | None = None,
        unpack: bool = True,
        snapshotter: str | None = None,
    ) -> list[ImageInfo]:
        """Import an image archive (see ``IContainerd.import_image``)."""
        try:
            names = self._import(namespace, source, name, snapshotter, unpack)
        finally:
            self._images.forget(namespace)  # a name may now point at another target
        return [self.get_image(namespace, n) for n in dict.fromkeys(names)]

    def _import(
        self,
        namespace: str,
        source: str | os.PathLike[str] | BinaryIO,
        name: str | None,
        snapshotter: str | None,
        unpack: bool,
    ) -> list[str]:
        with arc.open_archive(source, name) as archive:
            snap = snapshotter or self.default_snapshotter() if unpack else None

            def work(lease: str) -> list[str]:
                for blob in archive.blobs():
                    self._ingest(namespace, lease, archive, blob)
                if snap is not None:
                    done = set()
                    for image in archive.images:
                        plan = image.manifest
                        if plan.descriptor.digest not in done:
                            self._unpack(
                                namespace, lease, plan.layers, plan.config, plan.diff_ids, snap
                            )
                            done.add(plan.descriptor.digest)
                for image in archive.images:
                    self._put_image(namespace, lease, image.name, image.target)
                return [image.name for image in archive.images]

            return self._with_lease(namespace, work)

    def _unpack(
        self,
        namespace: str,
        lease: str,
        layers: list[arc.Descriptor],
        config: arc.Descriptor,
        diff_ids: list[str],
        snapshotter: str,
    ) -> str:
        chains = chain_ids(diff_ids)
        parent = ""
        for layer, diff_id, chain in zip(layers, diff_ids, chains, strict=True):
            try:
                self.call(
                    "Snapshots.Stat",
                    s_pb.StatSnapshotRequest(snapshotter=snapshotter, key=chain),
                    namespace,
                    lease,
                )
            except errors.NotFound:
                self._apply_layer(namespace, lease, layer, diff_id, parent, chain, snapshotter)
            parent = chain
        top = chains[-1] if chains else ""
        if top:
            self._label_content(
                namespace,
                lease,
                config.digest,
                {f"containerd.io/gc.ref.snapshot.{snapshotter}": top},
            )
        return top

    def _apply_layer(
        self,
        namespace: str,
        lease: str,
        layer: arc.Descriptor,
        diff_id: str,
        parent: str,
        chain: str,
        snapshotter: str,
    ) -> None:
        key = f"extract-{uuid.uuid4().hex} {chain}"
        reply = self.call(
            "Snapshots.Prepare",
            s_pb.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent),
            namespace,
            lease,
        )
        try:
            applied = self.call(
                "Diff.Apply",
                diff_pb2.ApplyRequest(
                    diff=descriptor_pb2.Descriptor(
                        media_type=layer.media_type, digest=layer.digest, size=layer.size
                    ),
                    mounts=reply.mounts,
                ),
                namespace,
                lease,
                timeout=self.long_timeout,
            ).applied
            if applied.digest != diff_id:
                raise errors.DigestMismatch(
                    f"layer {layer.digest} unpacks to {applied.digest}, config says {diff_id}"
                )
            try:
                self.call(
                    "Snapshots.Commit",
                    s_pb.CommitSnapshotRequest(snapshotter=snapshotter, name=chain, key=key),
                    namespace,
                    lease,
                )
            except errors.AlreadyExists:
                self._remove_snapshot_quietly(namespace, key, snapshotter)
        except BaseException:
            self._remove_snapshot_quietly(namespace, key, snapshotter)
            raise

    def _remove_snapshot_quietly(self, namespace: str, key: str, snapshotter: str) -> None:
        try:
            self.remove_snapshot(namespace, key, snapshotter)
        except errors.ContainerdError:
            pass

    def _put_image(self, namespace: str, lease: str, name: str, target: arc.Descriptor) -> None:
        image = i_pb.Image(
            name=name,
            target=descriptor_pb2.Descriptor(
                media_type=target.media_type, digest=target.digest, size=target.size
            ),
        )
        try:
            self.call("Images.Create", i_pb.CreateImageRequest(image=image), namespace, lease)
        except errors.AlreadyExists:
            self.call(
                "Images.Update",
                i_pb.UpdateImageRequest(
                    image=image, update_mask=field_mask_pb2.FieldMask(paths=["target"])
                ),
                namespace,
                lease,
            )

    def _unpacked_top(self, namespace: str, ref: str, snapshotter: str) -> tuple[str, bool]:
        """``(top chain ID, whether it came from the cache)``, unpacking the image if needed.

        The cached answer skips the manifest walk, the per-layer snapshot
        checks and the lease; the image record is still read, so a name that
        now points at another target is noticed.
        """
        target = self._target_of(namespace, ref)
        top = self._images.unpacked(namespace, target.digest, snapshotter)
        if top is not None:
            return top, True

        def work(lease: str) -> str:
            resolved = self._resolve(namespace, target)
            return self._unpack(
                namespace,
                lease,
                list(resolved.layers),
                resolved.config,
                list(resolved.diff_ids),
                snapshotter,
            )

        top = self._with_lease(namespace, work)
        self._images.remember_unpacked(namespace, target.digest, snapshotter, top)
        return top, False

    def _content_size(self, namespace: str, target: arc.Descriptor) -> int:
        """Total size of the blobs under ``target``, -1 unless all are present; checked once."""
        size = self._images.content_size(namespace, target.digest)
        if size is not None:
            return size
        try:
            walked = self._resolve(namespace, target).walked
            for desc in walked[1:]:
                self.call("Content.Info", ct_pb.InfoRequest(digest=desc.digest), namespace)
        except (errors.NotFound, errors.ImageFormatError, KeyError, TypeError, ValueError):
            return -1
        size = sum(d.size for d in walked)
        self._images.remember_content_size(namespace, target.digest, size)
        return size

    def _image_info(self, namespace: str, image: Any) -> ImageInfo:
        target = arc.Descriptor(image.target.media_type, image.target.digest, image.target.size)
        content_size = self._content_size(namespace, target)
        return ImageInfo(
            name=image.name,
            target_digest=image.target.digest,
            media_type=image.target.media_type,
            size=image.target.size,
            content_size=content_size,
            created_at=time_of(image.created_at),
            updated_at=time_of(image.updated_at),
            labels=dict(image.labels),
        )

    def list_images(self, namespace: str) -> list[ImageInfo]:
        """Image records of a namespace."""
        reply = self.call("Images.List", i_pb.ListImagesRequest(), namespace)
        return sorted((self._image_info(namespace, i) for i in reply.images), key=lambda i: i.name)

    def get_image(self, namespace: str, ref: str) -> ImageInfo:
        """One image record."""
        if not ref:
            raise errors.NotFound("image not found: empty reference")
        image = self.call("Images.Get", i_pb.GetImageRequest(name=ref), namespace).image
        return self._image_info(namespace, image)

    def image_runtime_config(
        self, namespace: str, ref: str, files: Sequence[str] = ()
    ) -> ImageRuntimeConfig:
        """The image's config document and the requested rootfs files."""
        target = self._target_of(namespace, ref)
        resolved = self._resolve(namespace, target)
        found: dict[str, bytes | None] = {}
        if files:
            streams = (
                (
                    layer.media_type,
                    rootfs.ChunkReader(
                        r.data
                        for r in self.stream(
                            "Content.Read",
                            ct_pb.ReadContentRequest(digest=layer.digest),
                            namespace,
                            timeout=self.long_timeout,
                        )
                    ),
                )
                for layer in resolved.layers
            )
            try:
                found = rootfs.read_files(streams, files)
            except errors.NotFound:
                self._images.forget(namespace)
                raise
        return ImageRuntimeConfig(ref, resolved.config_copy(), found)

    def delete_image(self, namespace: str, ref: str, sync: bool = True) -> None:
        """Delete an image record."""
        try:
            self.call(
                "Images.Delete",
                i_pb.DeleteImageRequest(name=ref, sync=sync),
                namespace,
                timeout=self.long_timeout,
            )
        finally:
            self._images.forget(namespace)

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
