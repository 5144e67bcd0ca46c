"""The daemon as a user meets it: a real process on a real containerd, driven over its socket.

One workflow, in the order a ``kuke`` user would go: realm, space, stack,
image load, a cell with a workload, its log, a daemon restart that picks the
host state back up, a workload killed behind the daemon's back, and a
cascading delete that leaves nothing behind in containerd, the cgroupfs, the
network or the run path. Requests are the JSON objects the Go client sends.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from kukeond.base import naming
from kukeond.client import APIError, KukeonClient
from kukeond.containerd.grpc import GrpcContainerd
from kukeond.host.cgroups import detect_cgroups
from tests.network.hostenv import free_parent_cidr, link_exists, preserve_ip_forward, sh
from tests.support.containerd import get_containerd_socket
from tests.support.daemon import spawn_daemon, stop_daemon_process
from tests.support.image import busybox_image
from tests.support.runtime import purge_test_namespaces, remove_cgroup_tree, short_tmpdir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "docker.io/library/busybox:latest"


async def eventually(check, timeout=15.0, every=0.1):
    """Poll the coroutine function ``check`` until it returns a true value."""
    for _ in range(int(timeout / every)):
        value = await check()
        if value:
            return value
        await task.deferLater(reactor, every, lambda: None)
    return await check()


class WorkflowTests(TestCase):
    timeout = 240

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("the end-to-end workflow needs root")
        self.containerd_socket = get_containerd_socket()
        self.dir = short_tmpdir(self, "ke-")
        token = secrets.token_hex(3)
        self.realm = f"e{token}"
        self.suffix = f"t{token}.kukeon.test"
        self.cgroot = f"/kukeon-test-{token}"
        self.sock = os.path.join(self.dir, "kukeond.sock")
        self.flags = [
            "--configuration", os.path.join(self.dir, "absent.yaml"),
            "--socket", self.sock,
            "--run-path", os.path.join(self.dir, "run"),
            "--containerd-socket", self.containerd_socket,
            "--containerd-namespace-suffix", self.suffix,
            "--cgroup-root", self.cgroot,
            "--reconcile-interval", "2s",
            "--pull-policy", "never",
            "--cni-cache-dir", os.path.join(self.dir, "cni-cache"),
            "--cni-ipam-dir", os.path.join(self.dir, "cni-ipam"),
            "--cni-subnet-pool", free_parent_cidr(),
        ]  # fmt: skip
        preserve_ip_forward(self)
        self.containerd = GrpcContainerd(self.containerd_socket, reactor=reactor)
        self.containerd.start()
        self.addCleanup(self.cleanup_host)
        self.proc = None
        self.client = None

    async def cleanup_host(self):
        await self.stop_daemon()
        await purge_test_namespaces(self.containerd, self.suffix)
        await self.containerd.stop()
        remove_cgroup_tree(detect_cgroups(), self.cgroot)
        bridge = naming.bridge_name(self.realm, "web")
        if link_exists(bridge):
            sh("ip", "link", "delete", bridge, check=False)

    def start_daemon(self):
        self.proc = spawn_daemon(self.flags, os.path.join(self.dir, "daemon.log"))
        self.client = KukeonClient(reactor, f"unix://{self.sock}")

    async def stop_daemon(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None:
            await stop_daemon_process(self.proc, 10)
        self.assertEqual(self.proc.returncode if self.proc else 0, 0, self.daemon_log())

    def daemon_log(self):
        try:
            with open(os.path.join(self.dir, "daemon.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    async def call(self, method, **args):
        for _ in range(200):  # the daemon may still be starting
            if os.path.exists(os.path.join(self.dir, "kukeond.pid")):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        return await self.client.call(method, args)

    def cell_doc(self, name, containers=None):
        spec = {"realmId": self.realm, "spaceId": "web", "stackId": "front"}
        if containers is not None:
            spec["containers"] = containers
        return {"metadata": {"name": name}, "spec": spec}

    async def get_cell(self, name):
        reply = await self.call("GetCell", Doc=self.cell_doc(name))
        return reply["Result"]["Cell"]

    async def test_workflow(self):
        self.start_daemon()
        ns = f"{self.realm}.{self.suffix}"
        realm = await self.call("CreateRealm", Doc={"metadata": {"name": self.realm}})
        self.assertTrue(realm["Result"]["ContainerdNamespaceCreated"])
        self.assertIn(ns, await self.containerd.list_namespaces())
        await self.call(
            "CreateSpace", Doc={"metadata": {"name": "web"}, "spec": {"realmId": self.realm}}
        )
        await self.call(
            "CreateStack",
            Doc={"metadata": {"name": "front"}, "spec": {"realmId": self.realm, "spaceId": "web"}},
        )
        with open(busybox_image().oci_tar, "rb") as f:
            tarball = base64.b64encode(f.read()).decode()
        loaded = await self.call("LoadImage", Realm=self.realm, Tarball=tarball)
        self.assertEqual(loaded["Result"]["Images"], [IMAGE])

        workload = {
            "id": "app",
            "image": IMAGE,
            "command": "sh",
            "args": ["-c", "echo hello from $KUKEON_CELL_NAME; exec sleep 600"],
        }
        created = await self.call("CreateCell", Doc=self.cell_doc("shop", [workload]))
        cell = created["Result"]["Cell"]
        self.assertEqual(cell["status"]["state"], "Ready")
        logs = await self.call(
            "LogContainer",
            Doc={
                "metadata": {"name": "app"},
                "spec": {
                    "realmId": self.realm,
                    "spaceId": "web",
                    "stackId": "front",
                    "cellId": "shop",
                },
            },
        )
        log_path = logs["Result"]["HostLogPath"]

        async def logged():
            return os.path.exists(log_path) and "hello from shop" in open(log_path).read()

        self.assertTrue(await eventually(logged), self.daemon_log())

        # A restarted daemon serves the same host state.
        await self.stop_daemon()
        self.start_daemon()
        again = await self.get_cell("shop")
        self.assertEqual(again["status"]["state"], "Ready")
        listed = await self.call(
            "ListCells", RealmName=self.realm, SpaceName="web", StackName="front"
        )
        self.assertEqual([c["metadata"]["name"] for c in listed["Cells"]], ["shop"])

        # A workload killed behind the daemon's back shows up without any RPC touching it.
        app_id = naming.containerd_id("web", "front", "shop", "app")
        await self.containerd.kill_task(ns, app_id, signal=9, all=True)

        async def noticed():
            cell = await self.get_cell("shop")
            states = {c["name"] or c["id"]: c["state"] for c in cell["status"]["containers"]}
            return states.get("app") not in (None, "Ready")

        self.assertTrue(await eventually(noticed), self.daemon_log())

        # Deleting the realm with --cascade leaves nothing behind.
        with self.assertRaises(APIError) as refused:
            await self.call(
                "DeleteRealm", Doc={"metadata": {"name": self.realm}}, Force=False, Cascade=False
            )
        self.assertEqual(refused.exception.kind, "ResourceHasDependencies")
        await self.call(
            "DeleteRealm", Doc={"metadata": {"name": self.realm}}, Force=False, Cascade=True
        )
        self.assertNotIn(ns, await self.containerd.list_namespaces())
        self.assertFalse(detect_cgroups().exists(f"{self.cgroot}/{self.realm}"))
        self.assertFalse(link_exists(naming.bridge_name(self.realm, "web")))
        self.assertEqual(os.listdir(os.path.join(self.dir, "run", "data")), [])
        realms = await self.call("ListRealms")
        self.assertEqual(realms["Realms"], [])

    async def make_parents(self):
        await self.call("CreateRealm", Doc={"metadata": {"name": self.realm}})
        await self.call(
            "CreateSpace", Doc={"metadata": {"name": "web"}, "spec": {"realmId": self.realm}}
        )
        await self.call(
            "CreateStack",
            Doc={"metadata": {"name": "front"}, "spec": {"realmId": self.realm, "spaceId": "web"}},
        )

    async def test_sigterm_lets_a_slow_request_finish(self):
        self.start_daemon()
        await self.make_parents()
        with open(busybox_image().oci_tar, "rb") as f:
            tarball = base64.b64encode(f.read()).decode()
        await self.call("LoadImage", Realm=self.realm, Tarball=tarball)
        stubborn = {
            "id": "app",
            "image": IMAGE,
            "command": "sh",
            "args": ["-c", 'trap "" TERM; while true; do sleep 1; done'],
        }
        await self.call("CreateCell", Doc=self.cell_doc("slow", [stubborn]))
        # StopCell waits out the workload's grace period (it ignores SIGTERM);
        # the daemon is told to stop while that request is in flight.
        stopping = self.client.call("StopCell", {"Doc": self.cell_doc("slow")})
        await task.deferLater(reactor, 1.0, lambda: None)
        self.proc.send_signal(signal.SIGTERM)
        reply = await stopping
        self.assertTrue(reply["Result"]["Stopped"])
        self.assertEqual(reply["Result"]["Cell"]["status"]["state"], "Stopped")
        for _ in range(200):
            if self.proc.poll() is not None:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(self.proc.returncode, 0, self.daemon_log())
        self.assertFalse(os.path.exists(self.sock))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "kukeond.pid")))

    @defer.inlineCallbacks
    def test_starts_without_containerd_and_reports_it(self):
        self.flags[self.flags.index("--containerd-socket") + 1] = os.path.join(self.dir, "gone")
        self.start_daemon()
        ping = yield defer.ensureDeferred(self.call("Ping"))
        self.assertTrue(ping["OK"])
        with self.assertRaises(APIError) as failed:
            yield defer.ensureDeferred(
                self.call("CreateRealm", Doc={"metadata": {"name": self.realm}})
            )
        self.assertIn("containerd", failed.exception.message.lower())
