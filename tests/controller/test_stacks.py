"""Stack RPCs on the fake runtime: flags, errors, labels, cascade into cells and purge."""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from kukeond.api import wire_results
from tests.controller.resource_calls import (
    ZERO,
    Caller,
    err,
    make_cell,
    stack_doc,
    with_flags,
)
from tests.support.runtime import fake_runtime

STACK_ZERO = wire_results.GetStackResult().to_wire()["Stack"]


class StackTestCase(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.call = Caller(self.rt)
        return defer.Deferred.fromCoroutine(self.make_parents())

    async def make_parents(self):
        await self.call.create_realm("r")
        await self.call.create_space("r", "s")

    def stack_path(self, *parts):
        return os.path.join(self.rt.run_path, "data", "r", "s", "k", *parts)


class CreateStackTests(StackTestCase):
    async def test_new_stack(self):
        result = await self.call.create_stack("r", "s", "k")
        stack = result.pop("Stack")
        self.assertEqual(
            result,
            {
                "MetadataExistsPre": False,
                "MetadataExistsPost": True,
                "CgroupExistsPre": False,
                "CgroupExistsPost": True,
                "CgroupCreated": True,
                "Created": True,
            },
        )
        self.assertEqual(
            stack["metadata"]["labels"],
            {"realm.kukeon.io": "r", "space.kukeon.io": "s", "stack.kukeon.io": "k"},
        )
        self.assertEqual(stack["spec"], {"id": "k", "realmId": "r", "spaceId": "s"})
        self.assertEqual(stack["status"]["state"], "Ready")
        self.assertEqual(stack["status"]["cgroupPath"], f"{self.rt.cgroup_root}/r/s/k")
        self.assertEqual(stack["status"]["createdAt"], ZERO)
        stored = self.rt.store.get(("r", "s", "k"))
        self.assertEqual(stored["status"]["state"], "Ready")
        self.assertNotEqual(stored["status"]["readyAt"], ZERO)

    async def test_existing_stack(self):
        await self.call.create_stack("r", "s", "k")
        self.rt.cgroups.delete(f"{self.rt.cgroup_root}/r/s/k")
        result = await self.call.create_stack("r", "s", "k")
        self.assertTrue(result["MetadataExistsPre"])
        self.assertFalse(result["CgroupExistsPre"])
        self.assertTrue(result["CgroupCreated"])
        self.assertFalse(result["Created"])
        self.assertTrue(self.rt.cgroups.exists(f"{self.rt.cgroup_root}/r/s/k"))

    async def test_errors(self):
        run = self.rt.run_path
        cases = [
            (stack_doc("r", "s", ""), ("StackNameRequired", "stack name is required")),
            (stack_doc("", "s", "k"), ("RealmNameRequired", "realm name is required")),
            (stack_doc("r", "", "k"), ("SpaceNameRequired", "space name is required")),
            (
                stack_doc("r", "s", "k/x"),
                (
                    "Unknown",
                    'name is invalid: stack name "k/x" contains disallowed character '
                    "(must not contain '_' or '/')",
                ),
            ),
            (
                stack_doc("r", "nope", "k"),
                (
                    "SpaceNotFound",
                    f'failed to create stack: space "nope" not found at run-path "{run}": '
                    "space not found",
                ),
            ),
        ]
        for params, expected in cases:
            reply = await self.call("CreateStack", params)
            self.assertEqual(err(reply), expected)
            self.assertEqual(reply["Result"]["Stack"], STACK_ZERO)
        self.assertEqual(self.rt.store.keys(3), [])


class GetListStackTests(StackTestCase):
    async def test_get(self):
        missing = (await self.call.ok("GetStack", stack_doc("r", "s", "k")))["Result"]
        self.assertEqual(
            missing,
            {
                "Stack": dict(STACK_ZERO, apiVersion="v1beta1", kind="Stack"),
                "MetadataExists": False,
                "CgroupExists": False,
            },
        )
        await self.call.create_stack("r", "s", "k")
        found = (await self.call.ok("GetStack", stack_doc("r", "s", "k")))["Result"]
        self.assertTrue(found["MetadataExists"])
        self.assertTrue(found["CgroupExists"])
        self.assertEqual(found["Stack"]["spec"]["id"], "k")

    async def test_list_filters(self):
        await self.call.create_space("r", "t")
        await self.call.create_stack("r", "s", "k2")
        await self.call.create_stack("r", "s", "k1")
        await self.call.create_stack("r", "t", "k3")

        async def names(realm, space):
            reply = await self.call.ok("ListStacks", {"RealmName": realm, "SpaceName": space})
            return [s["metadata"]["name"] for s in reply["Stacks"]]

        self.assertEqual(await names("r", "s"), ["k1", "k2"])
        self.assertEqual(await names("r", ""), ["k1", "k2", "k3"])
        self.assertEqual(await names("", "t"), ["k3"])
        self.assertEqual(await names("", ""), ["k1", "k2", "k3"])
        self.assertEqual(await names("r", "nope"), [])
        self.assertEqual(await names("..", ".."), [])


class DeletePurgeStackTests(StackTestCase):
    async def test_not_found(self):
        for method in ("DeleteStack", "PurgeStack"):
            reply = await self.call(method, with_flags(stack_doc("r", "s", "nope")))
            self.assertEqual(
                err(reply), ("Unknown", 'stack "nope" not found in realm "r", space "s"')
            )

    async def test_delete(self):
        await self.call.create_stack("r", "s", "k")
        reply = await self.call.ok("DeleteStack", with_flags(stack_doc("r", "s", "k")))
        result = reply["Result"]
        self.assertEqual(result["Deleted"], ["metadata", "cgroup"])
        self.assertEqual(
            (result["StackName"], result["RealmName"], result["SpaceName"]), ("k", "r", "s")
        )
        self.assertTrue(result["MetadataDeleted"] and result["CgroupDeleted"])
        self.assertFalse(os.path.exists(self.stack_path()))

    async def test_dependencies_then_force(self):
        await self.call.create_stack("r", "s", "k")
        await make_cell(self.rt, "r", "s", "k", "c")
        reply = await self.call("DeleteStack", with_flags(stack_doc("r", "s", "k")))
        self.assertEqual(
            err(reply),
            (
                "ResourceHasDependencies",
                'failed to delete stack: resource has child resources: stack "k" has 1 '
                "cell(s). Use --cascade to delete them or --force to skip validation",
            ),
        )
        reply = await self.call.ok("DeleteStack", with_flags(stack_doc("r", "s", "k"), force=True))
        self.assertEqual(reply["Result"]["Deleted"], ["metadata", "cgroup"])
        self.assertFalse(self.rt.store.exists(("r", "s", "k")))

    async def test_delete_cascade_removes_cells_and_containers(self):
        await self.call.create_stack("r", "s", "k")
        await make_cell(self.rt, "r", "s", "k", "c1")
        await make_cell(self.rt, "r", "s", "k", "c2")
        reply = await self.call.ok(
            "DeleteStack", with_flags(stack_doc("r", "s", "k"), cascade=True)
        )
        self.assertEqual(reply["Result"]["Deleted"], ["cell:c1", "cell:c2", "metadata", "cgroup"])
        self.assertEqual(self.rt.store.keys(4), [])
        ns = f"r.{self.rt.suffix}"
        self.assertEqual(await self.rt.containerd.list_containers(ns), [])
        self.assertEqual(await self.rt.containerd.list_tasks(ns), [])
        self.assertFalse(os.path.exists(self.stack_path()))

    async def test_purge(self):
        await self.call.create_stack("r", "s", "k")
        await make_cell(self.rt, "r", "s", "k", "c")
        reply = await self.call.ok("PurgeStack", with_flags(stack_doc("r", "s", "k")))
        self.assertEqual(
            reply["Result"]["Purged"],
            [
                'purge-error:resource has child resources: stack "k" has 1 cell(s). '
                "Use --cascade to purge them or --force to skip validation"
            ],
        )
        reply = await self.call.ok("PurgeStack", with_flags(stack_doc("r", "s", "k"), cascade=True))
        result = reply["Result"]
        self.assertEqual(result["Deleted"], ["cell:c", "metadata", "cgroup"])
        self.assertEqual(result["Purged"], ["cni-resources", "orphaned-containers", "all-metadata"])
        self.assertEqual(sorted(result), ["Deleted", "Purged", "Stack"])
        self.assertFalse(os.path.exists(self.stack_path()))
        ns = f"r.{self.rt.suffix}"
        self.assertEqual(await self.rt.containerd.list_containers(ns), [])
