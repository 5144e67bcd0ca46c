"""A cell whose image its realm lacks pulls it: from a docker-registry on 127.0.0.1 only."""

from __future__ import annotations

import os
import socket
import subprocess
import time

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kukeond import errors
from kukeond.api.v1beta1 import READY, RegistryCredentials
from kukeond.controller.image_pull import credentials_for
from tests.containerd.test_pull import Registry, _require
from tests.controller.cellsupport import Calls, cell_doc, make_parents, workload
from tests.support.image import busybox_image
from tests.support.runtime import real_runtime, short_tmpdir

USER, PASSWORD = "kukeon", "pw-7c1d0e"
LOOP = "trap 'exit 0' TERM; while :; do sleep 0.2; done"


def cell(name, image):
    """A cell whose root and workload both run ``image`` (no implicit Docker Hub root)."""
    return cell_doc(
        name, [workload("w", LOOP, image=image), workload("root", LOOP, image=image, root=True)]
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CredentialChoiceTests(SynchronousTestCase):
    def test_exact_host_then_the_entry_without_address(self):
        entries = [
            RegistryCredentials(username="any", password="a"),
            RegistryCredentials(username="mine", password="m", serverAddress="127.0.0.1:5000"),
        ]
        self.assertEqual(credentials_for("127.0.0.1:5000/x/y:1", entries).username, "mine")
        self.assertEqual(credentials_for("docker.io/library/busybox", entries).username, "any")
        self.assertIsNone(credentials_for("busybox", entries[1:]))


class PullTests(TestCase):
    timeout = 180

    async def setUp(self):
        self.rt = real_runtime(self)
        self.rt.config.pull_policy = "missing"
        self.call = Calls(self.rt)
        self.addCleanup(self.rt.network.remove_space_network, "r1", "s1")
        self.ns = await make_parents(self.rt, image=False)
        pull = self.rt.pulls._pull

        def loopback_only(namespace, image, credentials):
            # A test never pulls from a registry it did not start on 127.0.0.1.
            self.assertTrue(image.startswith("127.0.0.1:"), image)
            return pull(namespace, image, credentials)

        self.rt.pulls._pull = loopback_only
        self.addCleanup(self.rt.pulls.close)

    async def registry(self, auth=None, creds=None):
        registry = Registry(self, auth)
        await registry.push(
            f"oci-archive:{busybox_image().oci_tar}", "library/busybox:latest", creds
        )
        return registry

    def ready(self, name):
        return self.rt.store.get(("r1", "s1", "k1", name))["status"]["state"] == READY

    async def test_cells_pull_a_missing_image_once(self):
        registry = await self.registry()
        image = f"{registry.host}/library/busybox:latest"
        cells = [cell(f"c{i}", image) for i in range(3)]
        await defer.gatherResults(
            [defer.ensureDeferred(self.call("CreateCell", Doc=doc)) for doc in cells]
        )
        self.assertEqual(self.rt.pulls.started, 1)
        self.assertTrue(all(self.ready(f"c{i}") for i in range(3)))
        await self.rt.containerd.get_image(self.ns, image)

    async def test_credentials_of_the_realm_are_used_and_never_shown(self):
        _require("htpasswd")
        htpasswd = os.path.join(short_tmpdir(self), "htpasswd")
        subprocess.run(
            ["htpasswd", "-Bbc", htpasswd, USER, PASSWORD],
            check=True,
            capture_output=True,
            timeout=30,
        )
        registry = await self.registry(
            {"htpasswd": {"realm": "t", "path": htpasswd}}, f"{USER}:{PASSWORD}"
        )
        image = f"{registry.host}/library/busybox:latest"
        realm = self.rt.store.get(("r1",))
        realm["spec"]["registryCredentials"] = [
            {"username": USER, "password": "wrong-" + PASSWORD, "serverAddress": registry.host}
        ]
        await self.rt.store.put(("r1",), realm)
        with self.assertRaises(errors.KukeonError) as caught:
            await self.call("CreateCell", Doc=cell("bad", image))
        self.assertEqual(caught.exception.kind, "ImageNotFound")
        self.assertNotIn(PASSWORD, str(caught.exception))
        self.assertNotIn(PASSWORD, str(self.rt.store.get(("r1", "s1", "k1", "bad"))["status"]))
        realm["spec"]["registryCredentials"][0]["password"] = PASSWORD
        await self.rt.store.put(("r1",), realm)
        await self.call("CreateCell", Doc=cell("good", image))
        self.assertTrue(self.ready("good"))

    async def test_unknown_tag_and_unreachable_registry_fail_clearly_and_leave_nothing(self):
        registry = await self.registry()
        for image in (
            f"{registry.host}/library/busybox:nope",
            f"127.0.0.1:{closed_port()}/library/busybox:latest",
        ):
            started = time.monotonic()
            with self.assertRaises(errors.KukeonError) as caught:
                await self.call("CreateCell", Doc=cell("c1", image))
            self.assertLess(time.monotonic() - started, 30)
            message = str(caught.exception)
            self.assertEqual(caught.exception.kind, "ImageNotFound")
            self.assertIn(
                f"{image} is not in containerd namespace {self.ns} and pulling it failed: ", message
            )
            self.assertIn("kuke image load --realm r1", message)
            self.assertEqual(await self.rt.containerd.list_containers(self.ns), [])
            self.assertEqual([i.name for i in await self.rt.containerd.list_images(self.ns)], [])
            await self.call("DeleteCell", Doc=cell_doc("c1"))
