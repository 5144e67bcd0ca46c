"""Realm RPCs on the fake runtime: result flags, errors, labels, cascade and purge."""

from __future__ import annotations

import json
import os

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from kukeond.api import wire_results
from kukeond.containerd import errors as cerrors
from tests.controller.resource_calls import (
    ZERO,
    Caller,
    err,
    make_cell,
    realm_doc,
    with_flags,
)
from tests.support.runtime import fake_runtime, load_busybox, real_runtime

REALM_ZERO = wire_results.GetRealmResult().to_wire()["Realm"]


class CreateRealmTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.call = Caller(self.rt)

    async def test_new_realm(self):
        result = await self.call.create_realm("demo")
        ns = f"demo.{self.rt.suffix}"
        realm = result.pop("Realm")
        self.assertEqual(
            result,
            {
                "MetadataExistsPre": False,
                "MetadataExistsPost": True,
                "CgroupExistsPre": False,
                "CgroupExistsPost": True,
                "CgroupCreated": True,
                "ContainerdNamespaceExistsPre": False,
                "ContainerdNamespaceExistsPost": True,
                "ContainerdNamespaceCreated": True,
                "Created": True,
            },
        )
        group = f"{self.rt.cgroup_root}/demo"
        self.assertEqual(realm["apiVersion"], "v1beta1")
        self.assertEqual(realm["kind"], "Realm")
        self.assertEqual(realm["metadata"], {"name": "demo", "labels": {"realm.kukeon.io": ns}})
        self.assertEqual(realm["spec"], {"namespace": ns})
        self.assertEqual(realm["status"]["state"], "Ready")
        self.assertEqual(realm["status"]["cgroupPath"], group)
        self.assertEqual(realm["status"]["subtreeControllers"], ["cpu", "io", "memory", "pids"])
        self.assertEqual(realm["status"]["createdAt"], ZERO)
        self.assertIn(ns, await self.rt.containerd.list_namespaces())
        self.assertTrue(self.rt.cgroups.exists(group))
        stored = self.rt.store.get(("demo",))
        self.assertEqual(stored["status"]["state"], "Ready")
        self.assertNotEqual(stored["status"]["createdAt"], ZERO)
        self.assertNotEqual(stored["status"]["readyAt"], ZERO)

    async def test_existing_realm_is_ensured_not_updated(self):
        await self.call.create_realm("demo")
        ns = f"demo.{self.rt.suffix}"
        await self.rt.containerd.delete_namespace(ns)
        reply = await self.call.ok(
            "CreateRealm",
            {
                "Doc": {
                    "metadata": {"name": " demo ", "labels": {"team": "x"}},
                    "spec": {"namespace": "other"},
                }
            },
        )
        result = reply["Result"]
        self.assertTrue(result["MetadataExistsPre"])
        self.assertTrue(result["CgroupExistsPre"])
        self.assertFalse(result["CgroupCreated"])
        self.assertFalse(result["ContainerdNamespaceExistsPre"])
        self.assertTrue(result["ContainerdNamespaceCreated"])
        self.assertFalse(result["Created"])
        self.assertEqual(result["Realm"]["spec"]["namespace"], ns)
        self.assertNotIn("team", result["Realm"]["metadata"]["labels"])
        self.assertNotEqual(result["Realm"]["status"]["createdAt"], ZERO)
        self.assertIn(ns, await self.rt.containerd.list_namespaces())

    async def test_user_labels_win(self):
        reply = await self.call.ok(
            "CreateRealm",
            {
                "Doc": {
                    "metadata": {"name": "demo", "labels": {"realm.kukeon.io": "mine", "a": "b"}}
                }
            },
        )
        self.assertEqual(
            reply["Result"]["Realm"]["metadata"]["labels"], {"a": "b", "realm.kukeon.io": "mine"}
        )

    async def test_explicit_namespace(self):
        result = await self.call.create_realm("demo", namespace="custom-ns")
        self.assertEqual(result["Realm"]["spec"]["namespace"], "custom-ns")
        self.assertIn("custom-ns", await self.rt.containerd.list_namespaces())

    async def test_name_required(self):
        reply = await self.call("CreateRealm", realm_doc("  "))
        self.assertEqual(err(reply), ("RealmNameRequired", "realm name is required"))
        self.assertEqual(reply["Result"]["Realm"], REALM_ZERO)
        self.assertFalse(reply["Result"]["Created"])

    async def test_invalid_name(self):
        reply = await self.call("CreateRealm", realm_doc("bad_name"))
        self.assertEqual(
            err(reply),
            (
                "Unknown",
                'realm name is invalid: "bad_name" contains disallowed character '
                "(must not contain '_' or '/')",
            ),
        )
        self.assertEqual(self.rt.store.children(()), [])
        self.assertEqual(await self.rt.containerd.list_namespaces(), [])

    async def test_path_names_refused(self):
        for name in ("..", ".", "a/b", "metadata.json"):
            kind, _ = err(await self.call("CreateRealm", realm_doc(name)))
            self.assertEqual(kind, "Unknown")
        self.assertEqual(os.listdir(self.rt.run_path), [])

    async def test_bad_api_version(self):
        reply = await self.call(
            "CreateRealm", {"Doc": {"apiVersion": "v2", "metadata": {"name": "x"}}}
        )
        self.assertEqual(
            err(reply),
            ("ConversionFailed", "conversion failed: unsupported apiVersion for Realm: v2"),
        )

    async def test_containerd_down(self):
        def unavailable(name, labels=None):
            return defer.fail(cerrors.Unavailable("containerd is unavailable"))

        patched = self.patch(self.rt.containerd, "ensure_namespace", unavailable)
        kind, message = err(await self.call("CreateRealm", realm_doc("demo")))
        self.assertEqual(kind, "CreateRealm")
        self.assertTrue(
            message.startswith("failed to create realm: failed to create realm namespace: "),
            message,
        )
        self.assertEqual(self.rt.store.get(("demo",))["status"]["state"], "Failed")
        patched.restore()
        result = await self.call.create_realm("demo")
        self.assertEqual(result["Realm"]["status"]["state"], "Ready")
        self.assertTrue(result["ContainerdNamespaceCreated"])


class GetListRealmTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.call = Caller(self.rt)

    async def test_get_missing(self):
        reply = await self.call.ok("GetRealm", realm_doc("nope"))
        realm = dict(REALM_ZERO, apiVersion="v1beta1", kind="Realm")
        self.assertEqual(
            reply["Result"],
            {
                "Realm": realm,
                "MetadataExists": False,
                "CgroupExists": False,
                "ContainerdNamespaceExists": False,
            },
        )

    async def test_get_existing(self):
        await self.call.create_realm("demo")
        result = (await self.call.ok("GetRealm", realm_doc("demo")))["Result"]
        self.assertTrue(result["MetadataExists"])
        self.assertTrue(result["CgroupExists"])
        self.assertTrue(result["ContainerdNamespaceExists"])
        self.assertEqual(result["Realm"]["metadata"]["name"], "demo")
        self.assertNotEqual(result["Realm"]["status"]["createdAt"], ZERO)

    async def test_get_unsafe_name_is_missing(self):
        for name in ("..", "a/../b", "/etc"):
            result = (await self.call.ok("GetRealm", realm_doc(name)))["Result"]
            self.assertFalse(result["MetadataExists"])

    async def test_get_name_required(self):
        reply = await self.call("GetRealm", realm_doc(""))
        self.assertEqual(err(reply), ("RealmNameRequired", "realm name is required"))

    async def test_list(self):
        reply = await self.call.ok("ListRealms", {})
        self.assertEqual(reply, {"Realms": [], "Err": None})
        for name in ("zeta", "alpha", "mid"):
            await self.call.create_realm(name)
        reply = await self.call.ok("ListRealms", {})
        self.assertEqual([r["metadata"]["name"] for r in reply["Realms"]], ["alpha", "mid", "zeta"])

    async def test_corrupt_metadata(self):
        await self.call.create_realm("good")
        path = os.path.join(self.rt.run_path, "data", "bad", "metadata.json")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as fh:
            fh.write("{not json")
        self.rt.store.load()
        reply = await self.call.ok("ListRealms", {})
        self.assertEqual([r["metadata"]["name"] for r in reply["Realms"]], ["good"])
        kind, message = err(await self.call("GetRealm", realm_doc("bad")))
        self.assertEqual(kind, "ConversionFailed")
        self.assertTrue(message.startswith("failed to get realm: conversion failed: "), message)
        kind, _ = err(await self.call("CreateRealm", realm_doc("bad")))
        self.assertEqual(kind, "ConversionFailed")
        with open(path) as fh:
            self.assertEqual(fh.read(), "{not json")

    async def test_bad_state_in_stored_doc(self):
        await self.call.create_realm("demo")
        doc = self.rt.store.get(("demo",))
        doc["status"]["state"] = "Sideways"
        await self.rt.store.put(("demo",), doc)
        self.assertEqual((await self.call.ok("ListRealms", {}))["Realms"], [])
        kind, message = err(await self.call("GetRealm", realm_doc("demo")))
        self.assertEqual(kind, "ConversionFailed")
        self.assertIn("realm state: unknown label", message)


class DeleteRealmTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.call = Caller(self.rt)

    async def test_not_found(self):
        for name in ("nope", ".."):
            reply = await self.call("DeleteRealm", with_flags(realm_doc(name)))
            self.assertEqual(err(reply), ("Unknown", f'realm "{name}" not found'))

    async def test_delete_empty_realm(self):
        await self.call.create_realm("demo")
        reply = await self.call.ok("DeleteRealm", with_flags(realm_doc("demo")))
        result = reply["Result"]
        self.assertEqual(result["Deleted"], ["metadata", "cgroup", "namespace"])
        self.assertTrue(
            result["MetadataDeleted"]
            and result["CgroupDeleted"]
            and result["ContainerdNamespaceDeleted"]
        )
        self.assertEqual(result["Realm"]["metadata"]["name"], "demo")
        self.assertFalse(self.rt.store.exists(("demo",)))
        self.assertFalse(self.rt.cgroups.exists(f"{self.rt.cgroup_root}/demo"))
        self.assertEqual(await self.rt.containerd.list_namespaces(), [])

    async def test_dependencies(self):
        await self.call.create_realm("demo")
        await self.call.create_space("demo", "s1")
        reply = await self.call("DeleteRealm", with_flags(realm_doc("demo")))
        self.assertEqual(
            err(reply),
            (
                "ResourceHasDependencies",
                'failed to delete realm: resource has child resources: realm "demo" has 1 '
                "space(s). Use --cascade to delete them or --force to skip validation",
            ),
        )
        self.assertEqual(reply["Result"]["Realm"], REALM_ZERO)
        self.assertIsNone(reply["Result"]["Deleted"])
        self.assertTrue(self.rt.store.exists(("demo",)))

    async def test_force_leaves_children(self):
        await self.call.create_realm("demo")
        await self.call.create_space("demo", "s1")
        reply = await self.call.ok("DeleteRealm", with_flags(realm_doc("demo"), force=True))
        self.assertEqual(reply["Result"]["Deleted"], ["metadata", "cgroup", "namespace"])
        self.assertFalse(self.rt.store.exists(("demo",)))
        self.assertTrue(self.rt.store.exists(("demo", "s1")))

    async def test_cascade_removes_everything(self):
        await self.call.create_realm("demo")
        await self.call.create_space("demo", "s1")
        await self.call.create_space("demo", "s2")
        await self.call.create_stack("demo", "s1", "k1")
        await make_cell(self.rt, "demo", "s1", "k1", "c1")
        reply = await self.call.ok("DeleteRealm", with_flags(realm_doc("demo"), cascade=True))
        self.assertEqual(
            reply["Result"]["Deleted"], ["space:s1", "space:s2", "metadata", "cgroup", "namespace"]
        )
        self.assertEqual(self.rt.store.keys(1) + self.rt.store.keys(2), [])
        self.assertEqual(await self.rt.containerd.list_namespaces(), [])
        self.assertFalse(os.path.exists(os.path.join(self.rt.run_path, "data", "demo", "s1")))
        self.assertFalse(self.rt.cgroups.exists(f"{self.rt.cgroup_root}/demo"))


class PurgeRealmTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.call = Caller(self.rt)

    async def test_purge_without_metadata(self):
        ns = f"ghost.{self.rt.suffix}"
        await load_busybox(self.rt, "ghost")
        reply = await self.call.ok("PurgeRealm", with_flags(realm_doc("ghost"), force=True))
        result = reply["Result"]
        self.assertEqual(result["Realm"]["status"]["state"], "Unknown")
        self.assertEqual(result["Realm"]["spec"]["namespace"], ns)
        self.assertFalse(result["RealmDeleted"])
        self.assertTrue(result["PurgeSucceeded"])
        self.assertTrue(result["Force"])
        self.assertFalse(result["Cascade"])
        self.assertEqual(result["Deleted"], [])
        self.assertEqual(result["Purged"], ["orphaned-containers", "cni-resources", "all-metadata"])
        self.assertEqual(await self.rt.containerd.list_namespaces(), [])

    async def test_dependencies(self):
        await self.call.create_realm("demo")
        await self.call.create_space("demo", "s1")
        reply = await self.call("PurgeRealm", with_flags(realm_doc("demo")))
        self.assertEqual(
            err(reply),
            (
                "ResourceHasDependencies",
                'resource has child resources: realm "demo" has 1 space(s). '
                "Use --cascade to purge them or --force to skip validation",
            ),
        )
        self.assertTrue(self.rt.store.exists(("demo", "s1")))

    async def test_cascade(self):
        await self.call.create_realm("demo")
        await self.call.create_space("demo", "s1")
        await self.call.create_stack("demo", "s1", "k1")
        await make_cell(self.rt, "demo", "s1", "k1", "c1")
        reply = await self.call.ok("PurgeRealm", with_flags(realm_doc("demo"), cascade=True))
        result = reply["Result"]
        self.assertTrue(result["RealmDeleted"])
        self.assertEqual(result["Deleted"], ["space:s1", "metadata", "cgroup", "namespace"])
        self.assertTrue(result["Cascade"])
        self.assertFalse(os.path.exists(os.path.join(self.rt.run_path, "data", "demo")))
        self.assertEqual(await self.rt.containerd.list_namespaces(), [])
        self.assertFalse(self.rt.cgroups.exists(f"{self.rt.cgroup_root}/demo"))

    async def test_force_purges_orphans_too(self):
        await self.call.create_realm("demo")
        await self.call.create_space("demo", "s1")
        conflist = os.path.join(self.rt.run_path, "data", "demo", "s1", "network.conflist")
        self.assertTrue(os.path.exists(conflist))
        reply = await self.call.ok("PurgeRealm", with_flags(realm_doc("demo"), force=True))
        self.assertTrue(reply["Result"]["PurgeSucceeded"])
        self.assertFalse(os.path.exists(os.path.join(self.rt.run_path, "data", "demo")))
        self.assertEqual(self.rt.store.keys(2), [])


class RealHierarchyTests(TestCase):
    """Realm, space and stack on the private containerd, the host cgroupfs and CNI files."""

    timeout = 120

    async def test_create_and_cascade_delete(self):
        rt = real_runtime(self)
        call = Caller(rt)
        ns = f"demo.{rt.suffix}"
        await call.create_realm("demo")
        await call.create_space("demo", "s1")
        await call.create_stack("demo", "s1", "k1")
        self.assertIn(ns, await rt.containerd.list_namespaces())
        for group in ("demo", "demo/s1", "demo/s1/k1"):
            self.assertTrue(rt.cgroups.exists(f"{rt.cgroup_root}/{group}"), group)
        space_dir = os.path.join(rt.run_path, "data", "demo", "s1")
        with open(os.path.join(space_dir, "network.conflist")) as fh:
            self.assertEqual(json.load(fh)["name"], "demo-s1")
        with open(os.path.join(space_dir, "network.json")) as fh:
            self.assertEqual(json.load(fh)["version"], "v1")
        got = (await call.ok("GetRealm", realm_doc("demo")))["Result"]
        self.assertTrue(got["CgroupExists"] and got["ContainerdNamespaceExists"])
        await load_busybox(rt, "demo")
        reply = await call.ok("DeleteRealm", with_flags(realm_doc("demo"), cascade=True))
        self.assertEqual(
            reply["Result"]["Deleted"], ["space:s1", "metadata", "cgroup", "namespace"]
        )
        self.assertNotIn(ns, await rt.containerd.list_namespaces())
        self.assertFalse(rt.cgroups.exists(f"{rt.cgroup_root}/demo"))
        self.assertFalse(os.path.exists(os.path.join(rt.run_path, "data", "demo", "s1")))
