"""One behaviour suite for every IContainerd: the fake always, the real client with containerd."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from kukeond.containerd import errors
from kukeond.containerd.grpc import GrpcContainerd
from kukeond.containerd.interface import IContainerd
from tests.containerd.ocispec import minimal_spec, remove_cgroup_tree, unique_cgroup_root
from tests.support.containerd import get_containerd_socket, unique_namespace
from tests.support.fake_containerd import FakeContainerd
from tests.support.image import busybox_image


def _rewrite_layout(testcase: unittest.TestCase, edit) -> str:
    """Copy the OCI layout dir and apply ``edit(dir, manifest_dict)``; returns the dir."""
    image = busybox_image()
    out = testcase.mktemp()
    shutil.copytree(image.oci_dir, out)
    edit(out, image)
    return out


def _corrupt_layer(out: str, image) -> None:
    path = os.path.join(out, "blobs", "sha256", image.layer_digest[7:])
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))


def _unknown_layer_type(out: str, image) -> None:
    with open(os.path.join(out, "blobs", "sha256", image.manifest_digest[7:]), "rb") as f:
        manifest = json.load(f)
    manifest["layers"][0]["mediaType"] = "application/x-unknown"
    raw = json.dumps(manifest).encode()
    digest = hashlib.sha256(raw).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(raw)
    with open(os.path.join(out, "index.json")) as f:
        index = json.load(f)
    index["manifests"][0].update(digest="sha256:" + digest, size=len(raw))
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)


def make_icontainerd_tests(make_client):
    """A TestCase class running the IContainerd contract on ``make_client(testcase)``."""

    class Tests(unittest.TestCase):
        timeout = 120

        def setUp(self):
            self.client = make_client(self)
            self.ns = unique_namespace()
            self.cgroup = unique_cgroup_root()
            self.addCleanup(remove_cgroup_tree, self.cgroup)
            self.addCleanup(self._purge)

        async def _purge(self):
            c = self.client
            if self.ns not in await c.list_namespaces():
                return
            for task in await c.list_tasks(self.ns):
                if task.status == "running":
                    await c.kill_task(self.ns, task.container_id, signal.SIGKILL)
                    await c.wait_task(self.ns, task.container_id, 20)
                await c.delete_task(self.ns, task.container_id)
            for container in await c.list_containers(self.ns):
                await c.delete_container(self.ns, container.id)
            for image in await c.list_images(self.ns):
                await c.delete_image(self.ns, image.name)
            await c.delete_namespace(self.ns)

        async def _import(self):
            return await self.client.import_image(self.ns, busybox_image().oci_tar)

        async def assertFails(self, d, exc_type):
            try:
                await d
            except exc_type as exc:
                return exc
            self.fail(f"did not raise {exc_type.__name__}")

        async def assertNothingLeft(self):
            self.assertEqual(await self.client.list_images(self.ns), [])
            self.assertEqual(await self.client.list_snapshots(self.ns), [])
            self.assertEqual(await self.client.list_leases(self.ns), [])

        def test_provides_interface(self):
            self.assertTrue(verifyObject(IContainerd, self.client))

        async def test_namespaces(self):
            await self.client.create_namespace(self.ns, {"kukeon.io/realm": "r"})
            await self.assertFails(self.client.create_namespace(self.ns), errors.AlreadyExists)
            self.assertFalse(await self.client.ensure_namespace(self.ns))
            self.assertIn(self.ns, await self.client.list_namespaces())
            self.assertEqual(await self.client.namespace_labels(self.ns), {"kukeon.io/realm": "r"})
            await self.client.delete_namespace(self.ns)
            self.assertNotIn(self.ns, await self.client.list_namespaces())
            await self.assertFails(self.client.namespace_labels(self.ns), errors.NotFound)
            await self.assertFails(self.client.delete_namespace(self.ns), errors.NotFound)

        async def test_import_every_form(self):
            image = busybox_image()
            await self.client.ensure_namespace(self.ns)
            for source, media_type in [
                (image.oci_tar, "application/vnd.oci.image.manifest.v1+json"),
                (image.docker_tar, "application/vnd.docker.distribution.manifest.v2+json"),
                (image.oci_dir, "application/vnd.oci.image.manifest.v1+json"),
            ]:
                [info] = await self.client.import_image(self.ns, source)
                self.assertEqual((info.name, info.media_type), (image.ref, media_type))
            with open(image.oci_tar, "rb") as f:
                [info] = await self.client.import_image(self.ns, f)
            self.assertEqual(info.target_digest, image.manifest_digest)
            got = await self.client.get_image(self.ns, image.ref)
            self.assertEqual(got.target_digest, image.manifest_digest)
            self.assertGreater(got.content_size, got.size)
            self.assertEqual([i.name for i in await self.client.list_images(self.ns)], [image.ref])
            self.assertEqual(await self.client.list_leases(self.ns), [])

        async def test_missing_image(self):
            await self.client.ensure_namespace(self.ns)
            await self.assertFails(
                self.client.get_image(self.ns, "docker.io/library/nope:1"), errors.NotFound
            )
            await self.assertFails(
                self.client.delete_image(self.ns, "docker.io/x/y:1"), errors.NotFound
            )
            await self.assertFails(
                self.client.create_container(self.ns, "c", "docker.io/x/y:1", {}), errors.NotFound
            )

        async def test_image_runtime_config(self):
            image = busybox_image()
            await self.client.ensure_namespace(self.ns)
            await self.client.import_image(self.ns, image.docker_tar, unpack=False)
            bare = await self.client.image_runtime_config(self.ns, image.ref)
            self.assertEqual(bare.config["config"]["Cmd"], ["sh"])
            self.assertEqual(bare.files, {})
            got = await self.client.image_runtime_config(
                self.ns, image.ref, ["/etc/passwd", "etc/group", "/etc/shadow"]
            )
            self.assertEqual(
                got.files,
                {
                    "/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
                    "etc/group": b"root:x:0:\n",
                    "/etc/shadow": None,
                },
            )
            await self.assertFails(
                self.client.image_runtime_config(self.ns, "docker.io/x/y:1"), errors.NotFound
            )

        async def test_truncated_tarball(self):
            await self.client.ensure_namespace(self.ns)
            path = self.mktemp()
            with open(busybox_image().oci_tar, "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            exc = await self.assertFails(
                self.client.import_image(self.ns, path), errors.ImageFormatError
            )
            self.assertTrue(exc.message)
            await self.assertNothingLeft()

        async def test_not_an_archive(self):
            await self.client.ensure_namespace(self.ns)
            path = self.mktemp()
            with open(path, "wb") as f:
                f.write(b"\x1f\x8bnot really gzip")
            await self.assertFails(self.client.import_image(self.ns, path), errors.ImageFormatError)
            await self.assertNothingLeft()

        async def test_digest_mismatch(self):
            await self.client.ensure_namespace(self.ns)
            source = _rewrite_layout(self, _corrupt_layer)
            exc = await self.assertFails(
                self.client.import_image(self.ns, source), errors.DigestMismatch
            )
            self.assertIn(busybox_image().layer_digest, exc.message)
            await self.assertNothingLeft()

        async def test_unknown_media_type(self):
            await self.client.ensure_namespace(self.ns)
            source = _rewrite_layout(self, _unknown_layer_type)
            exc = await self.assertFails(
                self.client.import_image(self.ns, source), errors.ImageFormatError
            )
            self.assertIn("application/x-unknown", exc.message)
            await self.assertNothingLeft()

        async def test_containers(self):
            await self._import()
            ref = busybox_image().ref
            spec = minimal_spec(["true"], f"{self.cgroup}/c1")
            info = await self.client.create_container(
                self.ns, "c1", ref, spec, labels={"kukeon.io/cell": "a"}
            )
            self.assertEqual((info.id, info.image, info.spec), ("c1", ref, spec))
            await self.client.create_container(
                self.ns, "c2", ref, spec, labels={"kukeon.io/cell": "b"}
            )
            await self.assertFails(
                self.client.create_container(self.ns, "c1", ref, spec), errors.AlreadyExists
            )
            found = await self.client.list_containers(self.ns, {"kukeon.io/cell": "a"})
            self.assertEqual([c.id for c in found], ["c1"])
            self.assertEqual(
                await self.client.container_ids(self.ns, ["c2", "c1", "c3", "c1.x"]),
                frozenset({"c1", "c2"}),
            )
            self.assertEqual(await self.client.container_ids(self.ns, []), frozenset())
            self.assertEqual(
                await self.client.container_ids(unique_namespace(), ["c1"]), frozenset()
            )
            updated = await self.client.update_container_labels(
                self.ns, "c1", {"kukeon.io/cell": None, "x.y/z": "1"}
            )
            self.assertEqual(updated.labels, {"x.y/z": "1"})
            self.assertEqual(
                (await self.client.get_container(self.ns, "c1")).labels, {"x.y/z": "1"}
            )
            keys = [s.key for s in await self.client.list_snapshots(self.ns)]
            self.assertIn("c1", keys)
            await self.client.delete_container(self.ns, "c1")
            await self.assertFails(self.client.get_container(self.ns, "c1"), errors.NotFound)
            keys = [s.key for s in await self.client.list_snapshots(self.ns)]
            self.assertNotIn("c1", keys)
            await self.assertFails(self.client.delete_container(self.ns, "c1"), errors.NotFound)

        async def test_task_lifecycle_and_events(self):
            await self._import()
            spec = minimal_spec(["sleep", "300"], f"{self.cgroup}/c1")
            await self.client.create_container(self.ns, "c1", busybox_image().ref, spec)
            seen = []
            exited = defer.Deferred()

            def on_event(event):
                seen.append(event)
                if event.topic == "/tasks/exit" and not exited.called:
                    exited.callback(event)

            sub = self.client.subscribe(on_event, namespace=self.ns, topics=["/tasks/"])
            self.addCleanup(sub.stop)
            log = os.path.abspath(os.path.join(self.mktemp(), "c1.log"))
            pid = await self.client.create_task(self.ns, "c1", log)
            self.assertEqual((await self.client.task_state(self.ns, "c1")).status, "created")
            self.assertEqual(await self.client.start_task(self.ns, "c1"), pid)
            self.assertEqual((await self.client.task_state(self.ns, "c1")).status, "running")
            self.assertIn(pid, await self.client.task_pids(self.ns, "c1"))
            self.assertEqual(
                [t.container_id for t in await self.client.list_tasks(self.ns)], ["c1"]
            )
            await self.assertFails(
                self.client.delete_task(self.ns, "c1"), errors.FailedPrecondition
            )
            await self.client.kill_task(self.ns, "c1", signal.SIGKILL)
            status = await self.client.wait_task(self.ns, "c1", 20)
            self.assertEqual(status.exit_code, 128 + signal.SIGKILL)
            event = await exited
            self.assertEqual((event.namespace, event.event.container_id), (self.ns, "c1"))
            self.assertEqual((await self.client.delete_task(self.ns, "c1")).exit_code, 137)
            await self.assertFails(self.client.task_state(self.ns, "c1"), errors.NotFound)
            self.assertTrue(os.path.exists(log))

    return Tests


class FakeContainerdTests(make_icontainerd_tests(lambda tc: FakeContainerd())):
    """The contract on the in-memory fake."""


def _real_client(testcase):
    client = GrpcContainerd(get_containerd_socket())
    client.start()
    testcase.addCleanup(client.stop)
    return client


class GrpcContainerdTests(make_icontainerd_tests(_real_client)):
    """The contract on containerd itself."""


class FakeOnlyTests(unittest.TestCase):
    """Test hooks of the fake."""

    async def test_exit_task_fires_waiters(self):
        fake = FakeContainerd()
        await fake.import_image("ns", busybox_image().oci_tar)
        await fake.create_container("ns", "c", busybox_image().ref, {})
        await fake.create_task("ns", "c")
        await fake.start_task("ns", "c")
        waiting = fake.wait_task("ns", "c", 5)
        fake.exit_task("ns", "c", 3)
        self.assertEqual((await waiting).exit_code, 3)
