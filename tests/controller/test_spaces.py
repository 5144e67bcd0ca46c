"""Space RPCs on the fake runtime: network files, flags, errors, cascade and purge."""

from __future__ import annotations

import json
import os

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from kukeond.api import wire_results
from kukeond.base import naming
from tests.controller.resource_calls import ZERO, Caller, err, make_cell, space_doc, with_flags
from tests.support.runtime import fake_runtime

SPACE_ZERO = wire_results.GetSpaceResult().to_wire()["Space"]


class SpaceTestCase(TestCase):
    async def asyncSetUp(self):
        self.rt = fake_runtime(self)
        self.call = Caller(self.rt)
        await self.call.create_realm("r")

    def setUp(self):
        return defer.Deferred.fromCoroutine(self.asyncSetUp())

    def space_path(self, *parts):
        return os.path.join(self.rt.run_path, "data", "r", "s", *parts)


class CreateSpaceTests(SpaceTestCase):
    async def test_new_space(self):
        result = await self.call.create_space("r", "s")
        space = result.pop("Space")
        self.assertEqual(
            result,
            {
                "MetadataExistsPre": False,
                "MetadataExistsPost": True,
                "CgroupExistsPre": False,
                "CgroupExistsPost": True,
                "CgroupCreated": True,
                "CNINetworkExistsPre": False,
                "CNINetworkExistsPost": True,
                "CNINetworkCreated": True,
                "Created": True,
            },
        )
        conflist = self.space_path("network.conflist")
        self.assertEqual(
            space["metadata"]["labels"], {"realm.kukeon.io": "r", "space.kukeon.io": "s"}
        )
        self.assertEqual(space["spec"], {"realmId": "r", "cniConfigPath": conflist})
        self.assertEqual(space["status"]["state"], "Ready")
        self.assertEqual(space["status"]["cgroupPath"], f"{self.rt.cgroup_root}/r/s")
        self.assertEqual(space["status"]["createdAt"], ZERO)
        with open(conflist) as fh:
            conf = json.load(fh)
        self.assertEqual(conf["name"], "r-s")
        self.assertEqual(conf["plugins"][0]["bridge"], naming.bridge_name("r", "s"))
        with open(self.space_path("network.json")) as fh:
            self.assertEqual(json.load(fh)["version"], "v1")
        self.assertEqual(self.rt.store.get(("r", "s"))["spec"]["cniConfigPath"], conflist)

    async def test_existing_space_recreates_network(self):
        await self.call.create_space("r", "s")
        os.unlink(self.space_path("network.conflist"))
        result = await self.call.create_space("r", "s")
        self.assertTrue(result["MetadataExistsPre"])
        self.assertFalse(result["Created"])
        self.assertFalse(result["CNINetworkExistsPre"])
        self.assertTrue(result["CNINetworkCreated"])
        self.assertFalse(result["CgroupCreated"])
        self.assertTrue(os.path.exists(self.space_path("network.conflist")))

    async def test_egress_policy(self):
        egress = {"default": "deny", "allow": [{"cidr": "10.0.0.0/8", "ports": [443]}]}
        result = await self.call.create_space("r", "s", network={"egress": egress})
        self.assertEqual(result["Space"]["spec"]["network"], {"egress": egress})
        self.assertEqual(self.rt.network.policies[("r", "s")].default, "deny")

    async def test_egress_policies_are_reasserted_at_start(self):
        from kukeond.controller.spaces import reassert_egress

        egress = {"default": "deny", "allow": [{"cidr": "10.0.0.0/8", "ports": [443]}]}
        await self.call.create_space("r", "s", network={"egress": egress})
        await self.call.create_space("r", "open")
        self.rt.network.policies.clear()  # as after a reboot or a firewall reload
        self.assertEqual(await reassert_egress(self.rt), 1)
        self.assertEqual(list(self.rt.network.policies), [("r", "s")])

    async def test_bad_egress_writes_nothing(self):
        egress = {"default": "deny", "allow": [{"host": "a.example", "cidr": "10.0.0.0/8"}]}
        reply = await self.call("CreateSpace", space_doc("r", "s", network={"egress": egress}))
        kind, message = err(reply)
        self.assertEqual(kind, "CreateSpace")
        self.assertTrue(
            message.startswith(
                "failed to create space: failed to apply egress policy: egress allow rule 0: "
            ),
            message,
        )
        self.assertFalse(os.path.exists(self.space_path()))

    async def test_errors(self):
        cases = [
            (space_doc("r", ""), ("SpaceNameRequired", "space name is required")),
            (space_doc("", "s"), ("RealmNameRequired", "realm name is required")),
            (
                space_doc("r", "a_b"),
                (
                    "Unknown",
                    'name is invalid: space name "a_b" contains disallowed character '
                    "(must not contain '_' or '/')",
                ),
            ),
            (space_doc("nope", "s"), ("RealmNotFound", "failed to create space: realm not found")),
            (space_doc("..", "s"), ("RealmNotFound", "failed to create space: realm not found")),
        ]
        for params, expected in cases:
            reply = await self.call("CreateSpace", params)
            self.assertEqual(err(reply), expected)
            self.assertEqual(reply["Result"]["Space"], SPACE_ZERO)
        self.assertEqual(self.rt.store.keys(2), [])
        self.assertEqual(os.listdir(os.path.join(self.rt.run_path, "data")), ["r"])


class GetListSpaceTests(SpaceTestCase):
    async def test_get(self):
        missing = (await self.call.ok("GetSpace", space_doc("r", "s")))["Result"]
        self.assertEqual(
            missing,
            {
                "Space": dict(SPACE_ZERO, apiVersion="v1beta1", kind="Space"),
                "MetadataExists": False,
                "CgroupExists": False,
                "CNINetworkExists": False,
            },
        )
        await self.call.create_space("r", "s")
        found = (await self.call.ok("GetSpace", space_doc("r", "s")))["Result"]
        self.assertTrue(found["MetadataExists"])
        self.assertTrue(found["CgroupExists"])
        self.assertTrue(found["CNINetworkExists"])
        self.assertNotEqual(found["Space"]["status"]["createdAt"], ZERO)
        unsafe = (await self.call.ok("GetSpace", space_doc("r", "..")))["Result"]
        self.assertFalse(unsafe["MetadataExists"])

    async def test_get_requires_names(self):
        reply = await self.call("GetSpace", space_doc("", "s"))
        self.assertEqual(err(reply), ("RealmNameRequired", "realm name is required"))

    async def test_list(self):
        await self.call.create_realm("q")
        await self.call.create_space("r", "b")
        await self.call.create_space("r", "a")
        await self.call.create_space("q", "c")

        async def names(realm):
            reply = await self.call.ok("ListSpaces", {"RealmName": realm})
            return [(s["spec"]["realmId"], s["metadata"]["name"]) for s in reply["Spaces"]]

        self.assertEqual(await names("r"), [("r", "a"), ("r", "b")])
        self.assertEqual(await names(""), [("q", "c"), ("r", "a"), ("r", "b")])
        self.assertEqual(await names("nope"), [])
        self.assertEqual(await names("../.."), [])
        reply = await self.call.ok("ListSpaces", {"RealmName": "nope"})
        self.assertEqual(reply, {"Spaces": [], "Err": None})


class DeletePurgeSpaceTests(SpaceTestCase):
    async def test_not_found(self):
        for method in ("DeleteSpace", "PurgeSpace"):
            reply = await self.call(method, with_flags(space_doc("r", "nope")))
            self.assertEqual(err(reply), ("Unknown", 'space "nope" not found in realm "r"'))

    async def test_delete(self):
        await self.call.create_space("r", "s")
        reply = await self.call.ok("DeleteSpace", with_flags(space_doc("r", "s")))
        result = reply["Result"]
        self.assertEqual(result["Deleted"], ["metadata", "cgroup", "network"])
        self.assertEqual((result["SpaceName"], result["RealmName"]), ("s", "r"))
        self.assertTrue(
            result["MetadataDeleted"] and result["CgroupDeleted"] and result["CNINetworkDeleted"]
        )
        self.assertFalse(os.path.exists(self.space_path()))
        self.assertFalse(self.rt.cgroups.exists(f"{self.rt.cgroup_root}/r/s"))

    async def test_delete_dependencies(self):
        await self.call.create_space("r", "s")
        await self.call.create_stack("r", "s", "k")
        reply = await self.call("DeleteSpace", with_flags(space_doc("r", "s")))
        self.assertEqual(
            err(reply),
            (
                "ResourceHasDependencies",
                'failed to delete space: resource has child resources: space "s" has 1 '
                "stack(s). Use --cascade to delete them or --force to skip validation",
            ),
        )
        self.assertTrue(os.path.exists(self.space_path("network.conflist")))

    async def test_delete_cascade(self):
        await self.call.create_space("r", "s")
        await self.call.create_stack("r", "s", "k")
        await make_cell(self.rt, "r", "s", "k", "c")
        reply = await self.call.ok("DeleteSpace", with_flags(space_doc("r", "s"), cascade=True))
        self.assertEqual(reply["Result"]["Deleted"], ["stack:k", "metadata", "cgroup", "network"])
        self.assertEqual(self.rt.store.keys(3) + self.rt.store.keys(4), [])
        ns = f"r.{self.rt.suffix}"
        self.assertEqual(await self.rt.containerd.list_containers(ns), [])
        self.assertFalse(os.path.exists(self.space_path()))

    async def test_purge_dependencies_are_reported_not_raised(self):
        await self.call.create_space("r", "s")
        await self.call.create_stack("r", "s", "k")
        reply = await self.call.ok("PurgeSpace", with_flags(space_doc("r", "s")))
        result = reply["Result"]
        self.assertFalse(result["PurgeSucceeded"])
        self.assertEqual(result["Deleted"], [])
        self.assertEqual(
            result["Purged"],
            [
                'purge-error:resource has child resources: space "s" has 1 stack(s). '
                "Use --cascade to purge them or --force to skip validation"
            ],
        )
        self.assertTrue(self.rt.store.exists(("r", "s")))

    async def test_purge_cascade(self):
        await self.call.create_space("r", "s")
        await self.call.create_stack("r", "s", "k")
        await make_cell(self.rt, "r", "s", "k", "c")
        reply = await self.call.ok("PurgeSpace", with_flags(space_doc("r", "s"), cascade=True))
        result = reply["Result"]
        self.assertTrue(result["PurgeSucceeded"])
        self.assertTrue(result["Cascade"])
        self.assertEqual(result["Deleted"], ["stack:k", "metadata", "cgroup", "network"])
        self.assertEqual(
            result["Purged"], ["cni-network", "cni-cache", "orphaned-containers", "all-metadata"]
        )
        self.assertFalse(os.path.exists(self.space_path()))
        self.assertEqual(self.rt.store.keys(4), [])
