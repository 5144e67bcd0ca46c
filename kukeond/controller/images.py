"""Image RPCs: LoadImage, ListImages, GetImage, DeleteImage.

All four act on the containerd namespace ``<realm>.<suffix>`` derived from
the realm *name* (a realm's custom ``spec.namespace`` is ignored, as in the
reference), after checking that the realm's metadata exists. LoadImage
imports the tarball carried in the request (OCI layout or docker-save) and
unpacks its layers so the first container start does not pay for it.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from kukeond import errors
from kukeond.api import kukeonv1, wire_results
from kukeond.base import gojson, naming
from kukeond.containerd import errors as cerrors
from kukeond.containerd.model import ImageInfo
from kukeond.controller import common
from kukeond.controller.runtime import Runtime


def go_time(value: datetime | None) -> str:
    """A containerd timestamp as Go time text (zero time when unknown)."""
    if value is None:
        return gojson.ZERO_TIME
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    epoch_ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    return gojson.format_epoch_ns(epoch_ns)


def image_info(info: ImageInfo) -> wire_results.ImageInfo:
    """The wire ``ImageInfo`` of an image record (``Size`` -1 when not computable)."""
    return wire_results.ImageInfo(
        Name=info.name,
        Size=info.content_size if info.content_size >= 0 else -1,
        CreatedAt=go_time(info.created_at),
        Digest=info.target_digest,
        MediaType=info.media_type,
        Labels=dict(info.labels) or None,
    )


class Images:
    """The image controller over one :class:`Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _namespace(self, realm: str | None) -> tuple[str, str]:
        """Check the realm and return ``(realm, namespace)``."""
        name = common.required(realm, errors.RealmNameRequired)
        if not common.safe(name) or not self.runtime.store.exists((name,)):
            raise errors.RealmNotFound(name)
        return name, naming.realm_namespace(name, self.runtime.suffix)

    async def load(self, args: Any) -> Any:
        """``LoadImage``: import the request's tarball into the realm's namespace."""
        if not args.Tarball:
            raise errors.KukeonError("image tarball is required")
        realm, namespace = self._namespace(args.Realm)
        try:
            infos = await self.runtime.containerd.import_image(
                namespace, io.BytesIO(args.Tarball), unpack=True
            )
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(
                f"failed to load image: failed to import image tarball: {exc}"
            ) from None
        return kukeonv1.LoadImageReply(
            Result=wire_results.LoadImageResult(
                Realm=realm, Namespace=namespace, Images=[i.name for i in infos]
            )
        )

    async def list(self, args: Any) -> Any:
        """``ListImages``: every image of the realm's namespace (``[]`` when none)."""
        realm, namespace = self._namespace(args.Realm)
        try:
            infos = await self.runtime.containerd.list_images(namespace)
        except cerrors.NotFound:
            infos = []
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(f"failed to list images: {exc}") from None
        return kukeonv1.ListImagesReply(
            Result=wire_results.ListImagesResult(
                Realm=realm, Namespace=namespace, Images=[image_info(i) for i in infos]
            )
        )

    async def _image(self, namespace: str, ref: str, verb: str) -> ImageInfo:
        if not ref:
            raise errors.ImageNotFound()
        try:
            return await self.runtime.containerd.get_image(namespace, ref)
        except cerrors.NotFound:
            raise errors.ImageNotFound(ref) from None
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(f"failed to {verb} image: {exc}") from None

    async def get(self, args: Any) -> Any:
        """``GetImage``: one image by exact reference (``ImageNotFound`` otherwise)."""
        realm, namespace = self._namespace(args.Realm)
        info = await self._image(namespace, args.Ref.strip(), "get")
        return kukeonv1.GetImageReply(
            Result=wire_results.GetImageResult(
                Realm=realm, Namespace=namespace, Image=image_info(info)
            )
        )

    async def delete(self, args: Any) -> Any:
        """``DeleteImage``: remove the image record (its content goes with the next GC)."""
        realm, namespace = self._namespace(args.Realm)
        ref = args.Ref.strip()
        await self._image(namespace, ref, "delete")
        try:
            await self.runtime.containerd.delete_image(namespace, ref, sync=False)
        except cerrors.NotFound:
            raise errors.ImageNotFound(ref) from None
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(f"failed to delete image: {exc}") from None
        return kukeonv1.DeleteImageReply(
            Result=wire_results.DeleteImageResult(Realm=realm, Namespace=namespace, Ref=ref)
        )


def handlers(runtime: Runtime) -> dict[str, Any]:
    """The image methods, by bare name."""
    images = Images(runtime)
    return {
        "LoadImage": images.load,
        "ListImages": images.list,
        "GetImage": images.get,
        "DeleteImage": images.delete,
    }
