"""Cell RPCs on the fake runtime: lifecycle, naming, errors, networking, concurrency."""

from __future__ import annotations

import json
import os

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from kukeond import errors
from kukeond.api.v1beta1 import FAILED, READY, STOPPED, ContainerSpec
from kukeond.base import gojson, naming
from kukeond.controller import cells
from kukeond.controller.cell_state import flatten_message
from tests.controller.cellsupport import Calls, cell_doc, container_doc, make_parents, workload
from tests.support.fake_network import FakeNetwork
from tests.support.runtime import fake_runtime


class CellTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.call = Calls(self.rt)
        self.fake = self.rt.containerd

    async def create(self, name="c1", *containers, **spec):
        reply = await self.call("CreateCell", Doc=cell_doc(name, containers, **spec))
        return reply.Result

    def containers(self, ns):
        return sorted(self.fake._ns(ns, create=False).containers)

    async def test_create_synthesizes_root_and_runs_workload(self):
        ns = await make_parents(self.rt)
        result = await self.create("c1", workload("web", "echo hi"))
        cell = result.Cell
        self.assertEqual(cell.status.state, READY)
        self.assertTrue(cell.status.readyObserved)
        self.assertEqual([c.id for c in cell.spec.containers], ["web", "root"])
        root = cell.spec.containers[1]
        self.assertEqual(
            (root.image, root.command, root.args, root.containerdId),
            ("docker.io/library/busybox:latest", "sleep", ["infinity"], "s1_k1_c1_root"),
        )
        self.assertEqual(cell.spec.containers[0].containerdId, "s1_k1_c1_web")
        self.assertEqual(
            cell.metadata.labels,
            {
                "realm.kukeon.io": "r1",
                "space.kukeon.io": "s1",
                "stack.kukeon.io": "k1",
                "cell.kukeon.io": "c1",
            },
        )
        self.assertEqual(cell.status.cgroupPath, f"{self.rt.cgroup_root}/r1/s1/k1/c1")
        self.assertEqual(cell.status.network.bridgeName, naming.bridge_name("r1", "s1"))
        self.assertEqual(
            [(s.id, s.state) for s in cell.status.containers], [("web", READY), ("root", READY)]
        )
        self.assertTrue(result.Created and result.Started and result.RootContainerCreated)
        self.assertEqual([(o.Name, o.Created) for o in result.Containers], [("web", True)])
        self.assertEqual(self.containers(ns), ["s1_k1_c1_root", "s1_k1_c1_web"])
        tasks = self.fake._ns(ns).tasks
        self.assertEqual(
            {c: t["status"] for c, t in tasks.items()},
            {"s1_k1_c1_root": "running", "s1_k1_c1_web": "running"},
        )

    async def test_specs_labels_and_files(self):
        ns = await make_parents(self.rt)
        await self.create("c1", workload("web", "echo hi", env=["KUKEON_REALM=mine", "A=1"]))
        info = self.fake._ns(ns).containers
        root, web = info["s1_k1_c1_root"], info["s1_k1_c1_web"]
        self.assertEqual(root.labels["kukeon.io/container-type"], "root")
        self.assertEqual(root.labels["kukeon.io/cell-name"], "c1")
        self.assertEqual(root.labels["cell.kukeon.io"], "c1")
        self.assertEqual(
            web.labels,
            {
                "kukeon.io/container-type": "container",
                "kukeon.io/cell": "c1",
                "kukeon.io/space": "s1",
                "kukeon.io/realm": "r1",
                "kukeon.io/stack": "k1",
            },
        )
        cgroup = f"{self.rt.cgroup_root}/r1/s1/k1/c1"
        self.assertEqual(root.spec["linux"]["cgroupsPath"], f"{cgroup}/s1_k1_c1_root")
        self.assertEqual(root.spec["hostname"], "c1")
        self.assertNotIn("hostname", web.spec)
        pid = self.fake._ns(ns).tasks["s1_k1_c1_root"]["pid"]
        joined = {n["type"]: n.get("path") for n in web.spec["linux"]["namespaces"]}
        self.assertEqual(joined["network"], f"/proc/{pid}/ns/net")
        self.assertEqual(joined["ipc"], f"/proc/{pid}/ns/ipc")
        self.assertEqual(joined["uts"], f"/proc/{pid}/ns/uts")
        self.assertIsNone(joined["pid"])
        self.assertIn("cgroup", joined)
        env = web.spec["process"]["env"]
        self.assertIn("KUKEON_REALM=mine", env)
        self.assertIn("KUKEON_CELL_NAME=c1", env)
        self.assertIn(f"KUKEON_CGROUP_PATH={cgroup}", env)
        self.assertIn("A=1", env)
        self.assertEqual(web.spec["process"]["args"], ["sh", "-c", "echo hi"])
        conflist = naming.network_conflist_path(self.rt.run_path, "r1", "s1")
        self.assertEqual(web.spec["annotations"], {"io.kukeon.cni.config": conflist})
        mounts = {m["destination"]: m for m in web.spec["mounts"]}
        hosts = naming.etc_hosts_path(self.rt.run_path, "r1", "s1", "k1", "c1")
        self.assertEqual(mounts["/etc/hosts"]["source"], hosts)
        self.assertEqual(mounts["/etc/hosts"]["options"], ["rbind", "ro"])
        with open(hosts) as f:
            self.assertTrue(
                f.read().endswith(
                    "10.88.0.2\tc1\n".replace(
                        "10.88.0.2", self.rt.network.attached[("r1-s1", "s1_k1_c1_root", "eth0")]
                    )
                )
            )
        hostname = naming.etc_hostname_path(self.rt.run_path, "r1", "s1", "k1", "c1")
        with open(hostname) as f:
            self.assertEqual(f.read(), "c1\n")
        log = naming.container_log_path(self.rt.run_path, "r1", "s1", "k1", "c1", "web")
        self.assertTrue(os.path.exists(log))

    async def test_space_defaults_and_security(self):
        await make_parents(self.rt)
        space = self.rt.store.get(("r1", "s1"))
        space["spec"]["defaults"] = {
            "container": {
                "user": "1000:1000",
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"], "add": ["net_bind_service"]},
                "resources": {"memoryLimitBytes": 1 << 26, "pidsLimit": 64},
            }
        }
        await self.rt.store.put(("r1", "s1"), space)
        result = await self.create("c1", workload("web", "true", user="root"))
        web = result.Cell.spec.containers[0]
        self.assertEqual(web.user, "root")
        self.assertTrue(web.readOnlyRootFilesystem)
        spec = self.fake._ns("r1." + self.rt.suffix).containers["s1_k1_c1_web"].spec
        self.assertEqual(spec["process"]["user"]["uid"], 0)
        self.assertTrue(spec["root"]["readonly"])
        self.assertEqual(spec["process"]["capabilities"]["bounding"], ["CAP_NET_BIND_SERVICE"])
        self.assertEqual(spec["linux"]["resources"]["memory"], {"limit": 1 << 26})
        self.assertEqual(spec["linux"]["resources"]["pids"], {"limit": 64})
        root_spec = self.fake._ns("r1." + self.rt.suffix).containers["s1_k1_c1_root"].spec
        self.assertNotIn("readonly", root_spec["root"])

    async def test_stop_start_kill_and_delete_leave_nothing(self):
        ns = await make_parents(self.rt)
        await self.create("c1", workload("web", "sleep 100"))
        doc = cell_doc("c1")
        stopped = (await self.call("StopCell", Doc=doc)).Result
        self.assertTrue(stopped.Stopped)
        self.assertEqual(stopped.Cell.status.state, STOPPED)
        self.assertEqual(self.containers(ns), [])
        self.assertEqual(self.rt.network.attached, {})
        started = (await self.call("StartCell", Doc=doc)).Result
        self.assertEqual(started.Cell.status.state, READY)
        self.assertEqual(self.containers(ns), ["s1_k1_c1_root", "s1_k1_c1_web"])
        with self.assertRaises(errors.KukeonError) as caught:
            await self.call("StartCell", Doc=doc)
        self.assertEqual(
            str(caught.exception), 'cell "c1" has running containers and must first be stopped'
        )
        killed = (await self.call("KillCell", Doc=doc)).Result
        self.assertTrue(killed.Killed)
        self.assertEqual(self.containers(ns), [])
        await self.call("StartCell", Doc=doc)
        deleted = (await self.call("DeleteCell", Doc=doc)).Result
        self.assertTrue(deleted.ContainersDeleted and deleted.MetadataDeleted)
        self.assertEqual(self.containers(ns), [])
        self.assertEqual(
            self.fake._ns(ns).snapshots.keys()
            - {
                k
                for k in self.fake._ns(ns).snapshots
                if self.fake._ns(ns).snapshots[k].kind == "committed"
            },
            set(),
        )
        self.assertIsNone(self.rt.store.get(("r1", "s1", "k1", "c1")))
        self.assertFalse(self.rt.cgroups.exists(f"{self.rt.cgroup_root}/r1/s1/k1/c1"))
        self.assertFalse(
            os.path.exists(naming.resource_dir(self.rt.run_path, "r1", "s1", "k1", "c1"))
        )
        self.assertEqual(self.rt.network.attached, {})
        with self.assertRaises(errors.KukeonError) as caught:
            await self.call("DeleteCell", Doc=doc)
        self.assertEqual(
            str(caught.exception), 'cell "c1" not found in realm "r1", space "s1", stack "k1"'
        )

    async def test_start_after_its_workloads_were_stopped_on_request(self):
        ns = await make_parents(self.rt)
        await self.create("c1", workload("web", "sleep 100"))
        await self.call("StopContainer", Doc=container_doc("web"))
        self.assertEqual(self.containers(ns), ["s1_k1_c1_root"])
        started = (await self.call("StartCell", Doc=cell_doc("c1"))).Result
        self.assertTrue(started.Started)
        self.assertEqual(started.Cell.status.state, READY)
        self.assertEqual(self.containers(ns), ["s1_k1_c1_root", "s1_k1_c1_web"])
        self.assertEqual(self.fake._ns(ns).tasks["s1_k1_c1_web"]["status"], "running")

    async def test_start_is_a_noop_when_running(self):
        ns = await make_parents(self.rt)
        await self.create("c1")
        before = dict(self.fake._ns(ns).tasks["s1_k1_c1_root"])
        result = await self.create("c1")
        self.assertFalse(result.Created)
        self.assertTrue(result.MetadataExistsPre)
        self.assertEqual(self.fake._ns(ns).tasks["s1_k1_c1_root"]["pid"], before["pid"])

    async def test_get_and_list(self):
        await make_parents(self.rt)
        await self.create("c1")
        await self.create("c2")
        got = (await self.call("GetCell", Doc=cell_doc("c1"))).Result
        self.assertTrue(got.MetadataExists and got.CgroupExists and got.RootContainerExists)
        self.assertEqual(got.Cell.status.containers[0].state, READY)
        missing = (await self.call("GetCell", Doc=cell_doc("nope"))).Result
        self.assertFalse(missing.MetadataExists)
        listed = await self.call("ListCells", RealmName="r1", SpaceName="", StackName="")
        # Listed cells travel as their kept wire text: read them as a client does.
        wire = json.loads(gojson.dumps(listed.to_wire()))
        self.assertEqual([c["metadata"]["name"] for c in wire["Cells"]], ["c1", "c2"])
        none = await self.call("ListCells", RealmName="r2", SpaceName="", StackName="")
        self.assertEqual(none.Cells, [])
        with self.assertRaises(errors.KukeonError) as caught:
            await self.call("GetCell", Doc=cell_doc(""))
        self.assertEqual(caught.exception.kind, "CellNameRequired")

    async def test_request_errors(self):
        await make_parents(self.rt)
        for doc, kind in [
            (cell_doc("a_b"), "Unknown"),
            (cell_doc("c", realm=""), "RealmNameRequired"),
            (cell_doc("c", [ContainerSpec(id="")]), "ContainerNameRequired"),
            (
                cell_doc("c", [workload("a", root=True), workload("b", root=True)]),
                "ConversionFailed",
            ),
        ]:
            with self.assertRaises(errors.KukeonError) as caught:
                await self.call("CreateCell", Doc=doc)
            self.assertEqual(caught.exception.kind, kind, str(caught.exception))
        with self.assertRaises(errors.KukeonError) as caught:
            await self.create(
                "c", workload("w", "true", hostNetwork=True), workload("r", "sleep 9", root=True)
            )
        self.assertIn("explicit rootContainerId must have hostNetwork", str(caught.exception))
        self.assertEqual(caught.exception.kind, "CreateCell")
        self.assertEqual(self.rt.store.keys(4), [])

    async def test_missing_image_fails_cell_and_leaves_no_containers(self):
        ns = await make_parents(self.rt, image=False)
        with self.assertRaises(errors.KukeonError) as caught:
            await self.create("c1", workload("web", "true"))
        message = str(caught.exception)
        self.assertIn("kuke image load --realm r1", message)
        self.assertEqual(caught.exception.kind, "ImageNotFound")
        stored = self.rt.store.get(("r1", "s1", "k1", "c1"))
        self.assertEqual(stored["status"]["state"], FAILED)
        self.assertEqual(stored["status"]["reason"], "CreateCellFailed")
        self.assertIn("kuke image load", stored["status"]["message"])
        self.assertEqual(self.containers(ns), [])
        self.assertEqual(self.fake._ns(ns).snapshots, {})

    async def test_missing_cni_plugin_fails_start_cleanly(self):
        self.rt.network = FakeNetwork(self.rt.run_path, missing_plugins=["bridge"])
        self.call = Calls(self.rt)
        ns = await make_parents(self.rt)
        with self.assertRaises(errors.KukeonError) as caught:
            await self.create("c1", workload("web", "true"))
        self.assertIn(
            "cni plugin not found: required CNI plugin missing on host", str(caught.exception)
        )
        self.assertTrue(str(caught.exception).startswith("failed to start cell containers: "))
        stored = self.rt.store.get(("r1", "s1", "k1", "c1"))
        self.assertEqual(
            (stored["status"]["state"], stored["status"]["reason"]), (FAILED, "StartCellFailed")
        )
        self.assertEqual(self.containers(ns), [])
        self.assertEqual(self.rt.network.attached, {})

    async def test_host_network_cell_skips_cni(self):
        self.rt.network = FakeNetwork(self.rt.run_path, missing_plugins=["bridge"])
        self.call = Calls(self.rt)
        ns = await make_parents(self.rt)
        result = await self.create("c1", workload("web", "true", hostNetwork=True))
        self.assertEqual(result.Cell.status.state, READY)
        root = self.fake._ns(ns).containers["s1_k1_c1_root"]
        self.assertNotIn("network", [n["type"] for n in root.spec["linux"]["namespaces"]])
        self.assertNotIn("/etc/hosts", [m["destination"] for m in root.spec["mounts"]])

    async def test_missing_workload_image_fails(self):
        ns = await make_parents(self.rt)
        with self.assertRaises(errors.KukeonError):
            await self.create("c1", workload("web", image="docker.io/library/nothere:1"))
        self.assertEqual(self.containers(ns), [])

    async def test_containerd_lost_mid_start(self):
        ns = await make_parents(self.rt)
        real_start = self.fake.start_task

        def start_then_fail(namespace, cid):
            d = real_start(namespace, cid)
            self.fake.available = False
            return d

        self.fake.start_task = start_then_fail
        with self.assertRaises(errors.KukeonError) as caught:
            await self.create("c1", workload("web", "true"))
        self.assertIn("failed to connect to containerd", str(caught.exception))
        stored = self.rt.store.get(("r1", "s1", "k1", "c1"))
        self.assertEqual(stored["status"]["state"], FAILED)
        self.fake.available = True
        self.fake.start_task = real_start
        await self.call("DeleteCell", Doc=cell_doc("c1"))
        self.assertEqual(self.containers(ns), [])
        self.assertEqual(self.rt.network.attached, {})

    async def test_concurrent_start_and_stop_are_serialised(self):
        ns = await make_parents(self.rt)
        await self.create("c1", workload("web", "sleep 100"))
        await self.call("StopCell", Doc=cell_doc("c1"))
        outcomes = await defer.DeferredList(
            [
                defer.ensureDeferred(self.call(m, Doc=cell_doc("c1")))
                for m in ("StartCell", "StopCell", "StartCell", "StopCell")
            ],
            consumeErrors=True,
        )
        self.assertTrue(all(ok for ok, _ in outcomes[:2]))
        stored = self.rt.store.get(("r1", "s1", "k1", "c1"))
        running = sorted(c for c, t in self.fake._ns(ns).tasks.items() if t["status"] == "running")
        if stored["status"]["state"] == READY:
            self.assertEqual(running, ["s1_k1_c1_root", "s1_k1_c1_web"])
        else:
            self.assertEqual(stored["status"]["state"], STOPPED)
            self.assertEqual(self.containers(ns), [])

    async def test_purge_and_cascade_helpers(self):
        ns = await make_parents(self.rt)
        await self.create("c1", workload("web", "true"))
        reply = await self.call("PurgeCell", Doc=cell_doc("c1"), Force=True, Cascade=False)
        self.assertTrue(reply.Result.PurgeSucceeded)
        self.assertEqual(
            reply.Result.Purged, ["cni-resources", "orphaned-containers", "all-metadata"]
        )
        self.assertEqual(self.containers(ns), [])
        await self.create("c2")
        await cells.delete_cell(self.rt, ("r1", "s1", "k1", "c2"))
        self.assertEqual(self.containers(ns), [])
        self.assertIsNone(await cells.delete_cell(self.rt, ("r1", "s1", "k1", "c2")))


class HelperTests(TestCase):
    def test_flatten_message(self):
        self.assertEqual(flatten_message("a\n\tb  c\r\n"), "a b c")
        long = flatten_message("é" * 300)
        self.assertLessEqual(len(long.encode()), 256)
        self.assertTrue(long.endswith("..."))
