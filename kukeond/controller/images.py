"""The images of a realm: import, list, look up and delete in its namespace.

Every operation acts on the containerd namespace ``<realm>.<suffix>``
derived from the realm *name* (a realm's custom ``spec.namespace`` is
ignored, as in the reference), after checking that the realm's metadata
exists. An import unpacks the layers too, so the first container start does
not pay for it.
"""

from __future__ import annotations

import io

from kukeond import errors
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.containerd.model import ImageInfo
from kukeond.controller import common
from kukeond.controller.runtime import Runtime


class RealmImages:
    """Images by realm over one :class:`Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def namespace(self, realm: str | None) -> tuple[str, str]:
        """Check that the realm is stored; return ``(realm, namespace)``."""
        name = common.required(realm, errors.RealmNameRequired)
        if not common.safe(name) or not self.rt.store.exists((name,)):
            raise errors.RealmNotFound(name)
        return name, naming.realm_namespace(name, self.rt.suffix)

    async def load(self, namespace: str, tarball: bytes) -> list[str]:
        """Import an OCI layout or docker-save tarball; return the image names."""
        try:
            infos = await self.rt.containerd.import_image(
                namespace, io.BytesIO(tarball), unpack=True
            )
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(
                f"failed to load image: failed to import image tarball: {exc}"
            ) from None
        return [info.name for info in infos]

    async def list(self, namespace: str) -> list[ImageInfo]:
        """Every image of ``namespace`` (none when the namespace does not exist)."""
        try:
            return await self.rt.containerd.list_images(namespace)
        except cerrors.NotFound:
            return []
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(f"failed to list images: {exc}") from None

    async def get(self, namespace: str, ref: str, verb: str = "get") -> ImageInfo:
        """One image by exact reference (``ImageNotFound`` otherwise)."""
        if not ref:
            raise errors.ImageNotFound()
        try:
            return await self.rt.containerd.get_image(namespace, ref)
        except cerrors.NotFound:
            raise errors.ImageNotFound(ref) from None
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(f"failed to {verb} image: {exc}") from None

    async def delete(self, namespace: str, ref: str) -> None:
        """Remove the image record (its content goes with the next garbage collection)."""
        await self.get(namespace, ref, "delete")
        try:
            await self.rt.containerd.delete_image(namespace, ref, sync=False)
        except cerrors.NotFound:
            raise errors.ImageNotFound(ref) from None
        except cerrors.ContainerdError as exc:
            raise errors.KukeonError(f"failed to delete image: {exc}") from None
