"""The run path is shared truth: the reference's in-process writers change it under our daemon.

``kuke delete -f FILE`` and ``kuke --no-daemon ...`` run the reference
controller in-process on the run path, never through a daemon. While our
daemon serves that run path (reconciling every second), what they delete
stays deleted on disk and in every reply. Runs on containerd 2.2: the
reference controller does not work on 1.6.
"""

from __future__ import annotations

import json
import os

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.support.containerd import get_containerd2_socket
from tests.support.daemon import start_our_kukeond
from tests.support.image import busybox_image
from tests.support.reference import reference_bin

REALM, SPACE, STACK = "ow", "s", "k"
IMAGE = "docker.io/library/busybox:latest"
LOOP = "trap 'exit 0' TERM; while :; do sleep 0.2; done"


def document(kind: str, name: str, **spec) -> str:
    """One YAML document (JSON is YAML) for ``kuke delete -f``."""
    return json.dumps(
        {"apiVersion": "v1beta1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )


async def passes(seconds: float = 2.5) -> None:
    """Time for at least two reconcile passes at a 1 s interval."""
    await task.deferLater(reactor, seconds, lambda: None)


class OtherWritersTests(TestCase):
    timeout = 240

    async def setUp(self):
        reference_bin("kuke")
        self.daemon = start_our_kukeond(
            self, get_containerd2_socket(), reconcile_interval="1s", spaces=((REALM, SPACE),)
        )
        for args in (
            ("create", "realm", REALM),
            ("create", "space", SPACE, "--realm", REALM),
            ("create", "stack", STACK, "--realm", REALM, "--space", SPACE),
            ("image", "load", busybox_image().oci_tar, "--realm", REALM),
        ):
            self.ok(await self.daemon.kuke_async(*args))

    def ok(self, result):
        self.assertEqual(result.code, 0, f"stdout {result.stdout!r} stderr {result.stderr!r}")
        return result

    def file(self, *names):
        return os.path.join(self.daemon.run_path, "data", *names, "metadata.json")

    async def make_cell(self, name, containers=("a", "b")):
        doc = {
            "apiVersion": "v1beta1", "kind": "Cell", "metadata": {"name": name},
            "spec": {
                "id": name, "realmId": REALM, "spaceId": SPACE, "stackId": STACK,
                "containers": [
                    {"id": c, "image": IMAGE, "command": "sh",
                     "args": ["-c", LOOP]} for c in containers
                ],
            },
        }  # fmt: skip
        self.ok(await self.daemon.kuke_async("apply", "-f", "-", input=json.dumps(doc)))

    async def delete_in_process(self, doc, *flags):
        return self.ok(await self.daemon.in_process("delete", "-f", "-", *flags, input=doc))

    async def get(self, *args):
        return await self.daemon.kuke_async("get", *args, "-o", "json")

    async def test_a_container_deleted_from_its_cell_stays_deleted(self):
        await self.make_cell("c1")
        await self.delete_in_process(
            document(
                "Container",
                "b",
                id="b",
                realmId=REALM,
                spaceId=SPACE,
                stackId=STACK,
                cellId="c1",
                image=IMAGE,
            )
        )
        await passes()
        with open(self.file(REALM, SPACE, STACK, "c1")) as f:
            names = [c["id"] for c in json.load(f)["spec"]["containers"]]
        self.assertNotIn("b", names)
        cell = json.loads(
            self.ok(
                await self.get("cell", "c1", "--realm", REALM, "--space", SPACE, "--stack", STACK)
            ).stdout
        )
        self.assertNotIn("b", [c["id"] for c in cell["spec"]["containers"]])
        gone = await self.get(
            "container", "b", "--realm", REALM, "--space", SPACE, "--stack", STACK, "--cell", "c1"
        )
        self.assertNotEqual(gone.code, 0, gone.stdout)

    async def test_a_cell_deleted_stays_deleted(self):
        await self.make_cell("c2", ("a",))
        await self.delete_in_process(
            document(
                "Cell",
                "c2",
                id="c2",
                realmId=REALM,
                spaceId=SPACE,
                stackId=STACK,
                containers=[{"id": "a", "image": IMAGE}],
            )
        )
        await passes()
        self.assertFalse(os.path.exists(self.file(REALM, SPACE, STACK, "c2")))
        listed = self.ok(
            await self.get("cell", "--realm", REALM, "--space", SPACE, "--stack", STACK)
        ).stdout
        self.assertNotIn('"c2"', listed)
        gone = await self.get("cell", "c2", "--realm", REALM, "--space", SPACE, "--stack", STACK)
        self.assertNotEqual(gone.code, 0, gone.stdout)

    async def test_a_stack_and_a_realm_deleted_stay_deleted(self):
        await self.make_cell("c3", ("a",))
        await self.delete_in_process(
            document("Stack", STACK, id=STACK, realmId=REALM, spaceId=SPACE), "--cascade"
        )
        await passes()
        self.assertFalse(os.path.exists(self.file(REALM, SPACE, STACK)))
        self.assertFalse(os.path.exists(self.file(REALM, SPACE, STACK, "c3")))
        stacks = self.ok(await self.get("stack", "--realm", REALM, "--space", SPACE)).stdout
        self.assertNotIn(f'"{STACK}"', stacks)
        self.assertNotEqual(
            (
                await self.get("cell", "--realm", REALM, "--space", SPACE, "--stack", STACK)
            ).stdout.count('"c3"'),
            1,
        )

        await self.delete_in_process(document("Realm", REALM), "--cascade")
        await passes()
        self.assertFalse(os.path.exists(self.file(REALM)))
        realms = self.ok(await self.get("realm")).stdout
        self.assertNotIn(f'"{REALM}"', realms)
        gone = await self.get("realm", REALM)
        self.assertNotEqual(gone.code, 0, gone.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.daemon.run_path, "data", REALM)))
