"""The real client prepares an image once, notices changes, and keeps rootfs snapshots safe."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

from twisted.trial import unittest

from kukeond.containerd import errors
from kukeond.containerd._pb.services.leases.v1 import leases_pb2
from kukeond.containerd.imagecache import ImageCache, ResolvedImage
from kukeond.containerd.reference import chain_ids
from kukeond.containerd.sync import SyncContainerd
from tests.support.containerd import get_containerd_socket, unique_namespace
from tests.support.image import busybox_image


def _blob(out: str, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def variant_layout(testcase: unittest.TestCase, env: str) -> str:
    """The busybox OCI layout with one more Env entry: same layer, other config and target."""
    image = busybox_image()
    out = testcase.mktemp()
    shutil.copytree(image.oci_dir, out)
    blobs = os.path.join(out, "blobs", "sha256")
    with open(os.path.join(blobs, image.config_digest[7:])) as f:
        config = json.load(f)
    config["config"]["Env"].append(env)
    with open(os.path.join(blobs, image.manifest_digest[7:])) as f:
        manifest = json.load(f)
    manifest["config"]["digest"], manifest["config"]["size"] = _blob(
        out, json.dumps(config).encode()
    )
    with open(os.path.join(out, "index.json")) as f:
        index = json.load(f)
    digest, size = _blob(out, json.dumps(manifest).encode())
    index["manifests"][0].update(digest=digest, size=size)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    return out


class CountingSync(SyncContainerd):
    """A ``SyncContainerd`` recording the name of every unary call and stream it opens."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.names: list[str] = []

    def call(self, name, *args, **kwargs):
        """Record, then call."""
        self.names.append(name)
        return super().call(name, *args, **kwargs)

    def stream(self, name, *args, **kwargs):
        """Record, then stream."""
        self.names.append(name)
        return super().stream(name, *args, **kwargs)


class ImageCacheTests(unittest.SynchronousTestCase):
    """The memory itself: per namespace, dropped as a whole."""

    def test_forget_drops_only_that_namespace(self):
        cache = ImageCache()
        resolved = ResolvedImage((), None, (), {"a": [1]})
        for ns in ("a", "b"):
            cache.remember_resolved(ns, "sha256:x", resolved)
            cache.remember_unpacked(ns, "sha256:x", "overlayfs", "sha256:top")
            cache.remember_content_size(ns, "sha256:x", 7)
        cache.forget("a")
        self.assertIsNone(cache.resolved("a", "sha256:x"))
        self.assertIsNone(cache.unpacked("a", "sha256:x", "overlayfs"))
        self.assertIsNone(cache.content_size("a", "sha256:x"))
        self.assertIs(cache.resolved("b", "sha256:x"), resolved)
        self.assertEqual(cache.unpacked("b", "sha256:x", "overlayfs"), "sha256:top")
        self.assertEqual(cache.content_size("b", "sha256:x"), 7)

    def test_config_copy_is_independent(self):
        resolved = ResolvedImage((), None, (), {"config": {"Env": ["A=1"]}})
        resolved.config_copy()["config"]["Env"].append("B=2")
        self.assertEqual(resolved.config_doc, {"config": {"Env": ["A=1"]}})


class RealImagePreparationTests(unittest.SynchronousTestCase):
    """On the private containerd."""

    def setUp(self):
        self.client = CountingSync(get_containerd_socket())
        self.addCleanup(self.client.close)
        self.ns = unique_namespace()
        self.addCleanup(self._purge)
        self.image = busybox_image()
        self.client.import_image(self.ns, self.image.oci_tar)

    def _purge(self):
        c = SyncContainerd(get_containerd_socket())
        try:
            for container in c.list_containers(self.ns):
                c.delete_container(self.ns, container.id)
            for image in c.list_images(self.ns):
                c.delete_image(self.ns, image.name)
            # A synchronous lease deletion runs a GC pass, collecting the unreferenced chain.
            c.call("Leases.Create", leases_pb2.CreateRequest(id="purge"), self.ns)
            c.call("Leases.Delete", leases_pb2.DeleteRequest(id="purge", sync=True), self.ns)
            c.delete_namespace(self.ns)
        finally:
            c.close()

    def create(self, cid: str):
        return self.client.create_container(self.ns, cid, self.image.ref, {"ociVersion": "1"})

    def test_later_containers_skip_the_image_checks(self):
        self.create("first")
        self.client.names.clear()
        self.create("second")
        self.assertEqual(
            self.client.names, ["Images.Get", "Containers.Create", "Snapshots.Prepare"]
        )
        self.client.names.clear()
        self.client.get_image(self.ns, self.image.ref)
        self.client.image_runtime_config(self.ns, self.image.ref)
        self.assertEqual(self.client.names, ["Images.Get", "Images.Get"])

    def test_existing_container_fails_before_touching_anything(self):
        self.create("same")
        mounts = self.client.snapshot_mounts(self.ns, "same")
        self.assertRaises(errors.AlreadyExists, self.create, "same")
        self.assertEqual(self.client.snapshot_mounts(self.ns, "same"), mounts)
        self.assertEqual([c.id for c in self.client.list_containers(self.ns)], ["same"])

    def test_rootfs_survives_garbage_collection_without_a_lease(self):
        self.create("first")
        self.create("kept")
        self.client.delete_image(self.ns, self.image.ref, sync=True)  # runs a GC pass
        self.assertTrue(self.client.snapshot_mounts(self.ns, "kept"))
        self.assertEqual(self.client.list_leases(self.ns), [])

    def test_snapshots_removed_elsewhere_are_unpacked_again(self):
        self.create("first")
        self.client.delete_container(self.ns, "first")
        other = SyncContainerd(get_containerd_socket())
        self.addCleanup(other.close)
        for chain in reversed(chain_ids([self.image.diff_id])):
            # containerd may still be dropping the unpack's own temporary child
            # (seen under load): wait for it rather than fail on "with child".
            deadline = time.monotonic() + 10
            while True:
                try:
                    other.remove_snapshot(self.ns, chain)
                    break
                except errors.FailedPrecondition:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        self.create("second")
        self.assertIn("Diff.Apply", self.client.names)
        self.assertTrue(self.client.snapshot_mounts(self.ns, "second"))

    def test_deleted_image_is_not_found_and_leaves_no_container(self):
        self.create("first")
        self.client.delete_image(self.ns, self.image.ref, sync=True)
        self.assertRaises(errors.NotFound, self.create, "second")
        self.assertEqual([c.id for c in self.client.list_containers(self.ns)], ["first"])
        self.client.import_image(self.ns, self.image.oci_tar)
        self.create("third")
        self.assertTrue(self.client.snapshot_mounts(self.ns, "third"))

    def test_a_name_moved_elsewhere_is_read_afresh(self):
        before = self.client.image_runtime_config(self.ns, self.image.ref)
        other = SyncContainerd(get_containerd_socket())
        self.addCleanup(other.close)
        other.import_image(self.ns, variant_layout(self, "MOVED=1"), name=self.image.ref)
        after = self.client.image_runtime_config(self.ns, self.image.ref)
        self.assertNotIn("MOVED=1", before.config["config"]["Env"])
        self.assertIn("MOVED=1", after.config["config"]["Env"])
        info = self.client.get_image(self.ns, self.image.ref)
        self.assertEqual(info.target_digest, other.get_image(self.ns, self.image.ref).target_digest)

    def test_own_import_of_a_new_target_is_seen(self):
        self.create("first")
        self.client.import_image(self.ns, variant_layout(self, "NEW=1"), name=self.image.ref)
        self.client.names.clear()
        self.create("second")
        self.assertIn("Leases.Create", self.client.names)  # the full path, once
        self.assertIn(
            "NEW=1",
            self.client.image_runtime_config(self.ns, self.image.ref).config["config"]["Env"],
        )
