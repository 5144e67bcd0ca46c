"""Realm/space/stack/image RPCs through a real socket, byte for byte against the spec.

The daemon's own handler table serves a listener on a temporary socket; a
plain blocking socket (in a thread) sends the request lines of wire-api §5
and compares the response lines. The runtime is the fake one, configured as
the reference's defaults (suffix ``kukeon.io``, cgroup root ``/kukeon``), so
even host-dependent values match. Reference-written metadata files
(``tests/api/fixtures/metadata``) are read back unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import socket

from twisted.internet import reactor, threads
from twisted.trial.unittest import TestCase

from kukeond.base import gojson
from kukeond.daemon import build_handlers
from kukeond.listener import ListenerService
from kukeond.rpc.dispatch import Dispatcher
from kukeond.rpc.protocol import KukeonFactory
from tests.controller.resource_calls import Caller
from tests.support.runtime import fake_runtime, short_tmpdir

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "api", "fixtures")


def examples() -> dict[str, dict]:
    with open(os.path.join(FIXTURES, "wire_examples.json")) as fh:
        entries = json.load(fh)
    return {e["section"]: e for e in entries if e["section"] not in ("5.9", "5.10")}


def exchange(path: str, line: str) -> str:
    """Send one request line on a fresh connection; return the response line."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(line.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode()


class WireExampleTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.rt.config.namespace_suffix = "kukeon.io"
        self.rt.config.cgroup_root = "/kukeon"
        self.call = Caller(self.rt)
        sock_dir = short_tmpdir(self, "kw-")
        self.sock = os.path.join(sock_dir, "kukeond.sock")
        factory = KukeonFactory(Dispatcher(build_handlers(self.rt)))
        svc = ListenerService(reactor, factory, self.sock, os.path.join(sock_dir, "pid"))
        svc.privilegedStartService()
        svc.startService()
        self.addCleanup(svc.stopService)
        self.examples = examples()

    async def check(self, section: str) -> None:
        example = self.examples[section]
        got = await threads.deferToThread(exchange, self.sock, example["request"])
        self.assertEqual(got, example["response"] + "\n")

    def install_reference_file(self, kind: str, *key: str) -> None:
        target = os.path.join(self.rt.run_path, "data", *key, "metadata.json")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(FIXTURES, "metadata", f"{kind}.json"), target)

    async def test_create_realm_5_2(self):
        await self.check("5.2")

    async def test_list_realms_5_3(self):
        self.install_reference_file("realm", "default")
        expected = json.loads(self.examples["5.3"]["response"])["result"]["Realms"][1]
        path = os.path.join(self.rt.run_path, "data", "kuke-system", "metadata.json")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as fh:
            fh.write(gojson.dumps_indent(expected) + "\n")
        self.rt.store.load()
        await self.check("5.3")

    async def test_errors_5_5_to_5_8(self):
        await self.call.create_realm("default")
        await self.call.create_realm("demo")
        await self.call.create_space("demo", "s1")
        for section in ("5.5", "5.6", "5.7", "5.8"):
            await self.check(section)

    async def test_reference_tree_is_read_unchanged(self):
        for kind, key in (
            ("realm", ("default",)),
            ("space", ("default", "default")),
            ("stack", ("default", "default", "default")),
        ):
            self.install_reference_file(kind, *key)
        self.rt.store.load()
        for kind, method, params, field in (
            ("realm", "GetRealm", {"Doc": {"metadata": {"name": "default"}}}, "Realm"),
            (
                "space",
                "GetSpace",
                {"Doc": {"metadata": {"name": "default"}, "spec": {"realmId": "default"}}},
                "Space",
            ),
            (
                "stack",
                "GetStack",
                {
                    "Doc": {
                        "metadata": {"name": "default"},
                        "spec": {"realmId": "default", "spaceId": "default"},
                    }
                },
                "Stack",
            ),
        ):
            with open(os.path.join(FIXTURES, "metadata", f"{kind}.json")) as fh:
                original = json.load(fh)
            reply = await self.call.ok(method, params)
            self.assertTrue(reply["Result"]["MetadataExists"])
            self.assertEqual(reply["Result"][field], original)
        spaces = (await self.call.ok("ListSpaces", {"RealmName": ""}))["Spaces"]
        stacks = (
            await self.call.ok("ListStacks", {"RealmName": "default", "SpaceName": "default"})
        )["Stacks"]
        self.assertEqual([s["metadata"]["name"] for s in spaces + stacks], ["default", "default"])
