"""LoadImage, ListImages, GetImage, DeleteImage."""

from __future__ import annotations

from datetime import UTC, datetime

from kukeond import errors
from kukeond.api import kukeonv1 as w
from kukeond.api import wire_results as r
from kukeond.base import gojson
from kukeond.containerd.model import ImageInfo
from kukeond.controller.images import RealmImages
from kukeond.controller.runtime import Runtime
from kukeond.rpc.dispatch import Handler


def go_time(value: datetime | None) -> str:
    """A containerd timestamp as Go time text (zero time when unknown)."""
    if value is None:
        return gojson.ZERO_TIME
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    epoch_ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    return gojson.format_epoch_ns(epoch_ns)


def image_info(info: ImageInfo) -> r.ImageInfo:
    """The wire ``ImageInfo`` of an image record (``Size`` -1 when not computable)."""
    return r.ImageInfo(
        Name=info.name,
        Size=info.content_size if info.content_size >= 0 else -1,
        CreatedAt=go_time(info.created_at),
        Digest=info.target_digest,
        MediaType=info.media_type,
        Labels=dict(info.labels) or None,
    )


class ImageHandlers:
    """The image methods over one :class:`RealmImages`."""

    def __init__(self, runtime: Runtime) -> None:
        self.images = RealmImages(runtime)

    async def load(self, args: w.LoadImageArgs) -> w.LoadImageReply:
        """Import the request's tarball into the realm's namespace."""
        if not args.Tarball:  # checked before the realm, as the reference does
            raise errors.KukeonError("image tarball is required")
        realm, namespace = self.images.namespace(args.Realm)
        names = await self.images.load(namespace, args.Tarball)
        return w.LoadImageReply(
            Result=r.LoadImageResult(Realm=realm, Namespace=namespace, Images=names)
        )

    async def list(self, args: w.ListImagesArgs) -> w.ListImagesReply:
        """Every image of the realm's namespace (``[]`` when none)."""
        realm, namespace = self.images.namespace(args.Realm)
        infos = await self.images.list(namespace)
        return w.ListImagesReply(
            Result=r.ListImagesResult(
                Realm=realm, Namespace=namespace, Images=[image_info(i) for i in infos]
            )
        )

    async def get(self, args: w.GetImageArgs) -> w.GetImageReply:
        """One image by exact reference (``ImageNotFound`` otherwise)."""
        realm, namespace = self.images.namespace(args.Realm)
        info = await self.images.get(namespace, args.Ref.strip())
        return w.GetImageReply(
            Result=r.GetImageResult(Realm=realm, Namespace=namespace, Image=image_info(info))
        )

    async def delete(self, args: w.DeleteImageArgs) -> w.DeleteImageReply:
        """Remove the image record."""
        realm, namespace = self.images.namespace(args.Realm)
        ref = args.Ref.strip()
        await self.images.delete(namespace, ref)
        return w.DeleteImageReply(
            Result=r.DeleteImageResult(Realm=realm, Namespace=namespace, Ref=ref)
        )


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """The image methods, by bare name."""
    h = ImageHandlers(runtime)
    return {
        "LoadImage": h.load,
        "ListImages": h.list,
        "GetImage": h.get,
        "DeleteImage": h.delete,
    }
