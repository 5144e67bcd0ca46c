"""Image RPCs: realm checks, error kinds and shapes (fake), real imports (private containerd)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from twisted.trial.unittest import SynchronousTestCase, TestCase

from kukeond.api import kukeonv1
from kukeond.handlers.images import go_time
from tests.controller.resource_calls import Caller, err
from tests.support.image import REF, busybox_image
from tests.support.runtime import fake_runtime, real_runtime


def tarball(kind: str = "oci") -> bytes:
    image = busybox_image()
    with open(image.oci_tar if kind == "oci" else image.docker_tar, "rb") as fh:
        return fh.read()


class GoTimeTests(SynchronousTestCase):
    def test_formats(self):
        self.assertEqual(go_time(None), "0001-01-01T00:00:00Z")
        self.assertEqual(
            go_time(datetime(2025, 6, 1, 10, 0, 0, 500000, tzinfo=UTC)), "2025-06-01T10:00:00.5Z"
        )
        self.assertEqual(go_time(datetime(2025, 6, 1, 10, 0, 0)), "2025-06-01T10:00:00Z")


class ImageRPCTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.call = Caller(self.rt)

    async def test_checks_in_reference_order(self):
        empty = kukeonv1.LoadImageReply().to_wire()["Result"]
        reply = await self.call("LoadImage", {"Realm": "", "Tarball": None})
        self.assertEqual(err(reply), ("Unknown", "image tarball is required"))
        self.assertEqual(reply["Result"], empty)
        reply = await self.call("LoadImage", {"Realm": " ", "Tarball": "AAAA"})
        self.assertEqual(err(reply), ("RealmNameRequired", "realm name is required"))
        for realm in ("nope", "../x"):
            for method, extra in (
                ("LoadImage", {"Tarball": "AAAA"}),
                ("ListImages", {}),
                ("GetImage", {"Ref": REF}),
                ("DeleteImage", {"Ref": REF}),
            ):
                reply = await self.call(method, {"Realm": realm, **extra})
                self.assertEqual(err(reply), ("RealmNotFound", f"realm not found: {realm}"))

    async def test_image_not_found(self):
        await self.call.create_realm("default")
        reply = await self.call(
            "GetImage", {"Realm": "default", "Ref": "docker.io/library/nope:latest"}
        )
        self.assertEqual(
            reply,
            {
                "Result": {
                    "Realm": "",
                    "Namespace": "",
                    "Image": {
                        "Name": "",
                        "Size": 0,
                        "CreatedAt": "0001-01-01T00:00:00Z",
                        "Digest": "",
                        "MediaType": "",
                        "Labels": None,
                    },
                },
                "Err": {
                    "Kind": "ImageNotFound",
                    "Message": "image not found: docker.io/library/nope:latest",
                },
            },
        )
        for method in ("GetImage", "DeleteImage"):
            reply = await self.call(method, {"Realm": "default", "Ref": ""})
            self.assertEqual(err(reply), ("ImageNotFound", "image not found"))

    async def test_bad_tarball(self):
        await self.call.create_realm("default")
        reply = await self.call("LoadImage", {"Realm": "default", "Tarball": "bm90IGEgdGFy"})
        kind, message = err(reply)
        self.assertEqual(kind, "Unknown")
        self.assertTrue(
            message.startswith("failed to load image: failed to import image tarball: "), message
        )

    async def test_round_trip(self):
        await self.call.create_realm("default", namespace="elsewhere")
        ns = f"default.{self.rt.suffix}"
        await check_round_trip(self, self.call, ns, "oci")


async def check_round_trip(test, call, ns: str, kind: str) -> None:
    """Load, list, get and delete the busybox image through the RPCs."""
    reply = await call.ok("ListImages", {"Realm": "default"})
    test.assertEqual(reply["Result"], {"Realm": "default", "Namespace": ns, "Images": []})
    reply = await call.ok(
        "LoadImage", {"Realm": "default", "Tarball": base64.b64encode(tarball(kind)).decode()}
    )
    test.assertEqual(reply["Result"], {"Realm": "default", "Namespace": ns, "Images": [REF]})
    listed = (await call.ok("ListImages", {"Realm": "default"}))["Result"]["Images"]
    test.assertEqual([i["Name"] for i in listed], [REF])
    info = listed[0]
    test.assertEqual(list(info), ["Name", "Size", "CreatedAt", "Digest", "MediaType", "Labels"])
    test.assertTrue(info["Digest"].startswith("sha256:"))
    test.assertGreater(info["Size"], 0)
    test.assertNotEqual(info["CreatedAt"], "0001-01-01T00:00:00Z")
    got = (await call.ok("GetImage", {"Realm": "default", "Ref": REF}))["Result"]
    test.assertEqual(got, {"Realm": "default", "Namespace": ns, "Image": info})
    deleted = (await call.ok("DeleteImage", {"Realm": "default", "Ref": REF}))["Result"]
    test.assertEqual(deleted, {"Realm": "default", "Namespace": ns, "Ref": REF})
    reply = await call("GetImage", {"Realm": "default", "Ref": REF})
    test.assertEqual(err(reply), ("ImageNotFound", f"image not found: {REF}"))


class RealImageTests(TestCase):
    timeout = 120

    async def check(self, kind):
        rt = real_runtime(self)
        call = Caller(rt)
        await call.create_realm("default")
        await check_round_trip(self, call, f"default.{rt.suffix}", kind)

    async def test_oci_tarball(self):
        await self.check("oci")

    async def test_docker_tarball(self):
        await self.check("docker")
