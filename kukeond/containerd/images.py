"""Images in containerd: content, import, unpacking into snapshots, image records.

:class:`ContainerdImages` is the part of
:class:`~kukeond.containerd.sync.SyncContainerd` that writes an image
archive's blobs into the content store under a lease, unpacks the host
platform's layers into committed snapshots, creates or moves the image
records, and reads them back: image records with their content size, and an
image's config document and files of its root file system. What it learns
of an image target (its manifest walk, unpacked top snapshot, content size)
is kept in an :class:`~kukeond.containerd.imagecache.ImageCache`, dropped
for a namespace whenever an image there may have changed.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from google.protobuf import field_mask_pb2

from kukeond.containerd import archive as arc
from kukeond.containerd import errors, rootfs
from kukeond.containerd._pb.services.content.v1 import content_pb2 as ct_pb
from kukeond.containerd._pb.services.diff.v1 import diff_pb2
from kukeond.containerd._pb.services.images.v1 import images_pb2 as i_pb
from kukeond.containerd._pb.services.leases.v1 import leases_pb2
from kukeond.containerd._pb.services.snapshots.v1 import snapshots_pb2 as s_pb
from kukeond.containerd._pb.types import descriptor_pb2
from kukeond.containerd.channel import ContainerdChannel
from kukeond.containerd.imagecache import ImageCache, ResolvedImage
from kukeond.containerd.messages import time_of
from kukeond.containerd.model import ImageInfo, ImageRuntimeConfig
from kukeond.containerd.reference import chain_ids, host_platform


class ContainerdImages(ContainerdChannel):
    """The image operations of the blocking client (see the module docstring)."""

    def __init__(
        self,
        address: str,
        call_timeout: float = 30.0,
        long_timeout: float = 600.0,
        snapshotter: str | None = None,
    ) -> None:
        super().__init__(address, call_timeout, long_timeout, snapshotter)
        self._images = ImageCache()

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
            self.call(
                "Snapshots.Remove",
                s_pb.RemoveSnapshotRequest(
                    snapshotter=snapshotter or self.default_snapshotter(), key=key
                ),
                namespace,
            )
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
