"""containerd going away under a running daemon, and in the middle of starting a cell.

Both tests run their own private containerd (``RestartableContainerd``) and
stop it themselves; the shared test containerd is never touched. The daemon
test drives ``python -m kukeond.cli serve`` over its socket like a client
would; the mid-start test wraps the runtime's containerd client so that
containerd goes down right after the root task is created.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from kukeond.api.v1beta1 import FAILED, READY
from kukeond.base import naming
from kukeond.client import APIError, KukeonClient
from kukeond.containerd.grpc import GrpcContainerd
from kukeond.errors import KukeonError
from kukeond.host.cgroups import detect_cgroups
from tests.containerd.test_restart import RestartableContainerd, eventually
from tests.controller.cellsupport import Calls, cell_doc, make_parents, workload
from tests.network.hostenv import free_parent_cidr, link_exists, preserve_ip_forward, sh
from tests.support.image import busybox_image
from tests.support.runtime import (
    purge_test_namespaces,
    real_runtime,
    remove_cgroup_tree,
    short_tmpdir,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "docker.io/library/busybox:latest"


class DaemonSurvivesContainerdRestartTests(TestCase):
    timeout = 180

    async def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("the daemon on a real containerd needs root")
        self.ctrd = RestartableContainerd(self)
        await self.ctrd.start()
        self.dir = short_tmpdir(self, "kd-")
        token = secrets.token_hex(3)
        self.realm = f"d{token}"
        self.suffix = f"t{token}.kukeon.test"
        self.cgroot = f"/kukeon-test-{token}"
        self.sock = os.path.join(self.dir, "kukeond.sock")
        self.run_path = os.path.join(self.dir, "run")
        preserve_ip_forward(self)
        self.containerd = GrpcContainerd(self.ctrd.socket, reactor=reactor)
        self.containerd.start()
        self.addCleanup(self.cleanup_host)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kukeond.cli", "serve",
             "--configuration", os.path.join(self.dir, "absent.yaml"),
             "--socket", self.sock,
             "--run-path", self.run_path,
             "--containerd-socket", self.ctrd.socket,
             "--containerd-namespace-suffix", self.suffix,
             "--cgroup-root", self.cgroot,
             "--reconcile-interval", "1s", "--pull-policy", "never",
             "--cni-cache-dir", os.path.join(self.dir, "cni-cache"),
             "--cni-ipam-dir", os.path.join(self.dir, "cni-ipam"),
             "--cni-subnet-pool", free_parent_cidr()],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "daemon.log"), "ab"),
        )  # fmt: skip
        self.client = KukeonClient(reactor, f"unix://{self.sock}")
        pidfile = os.path.join(self.dir, "kukeond.pid")
        self.assertTrue(await eventually(lambda: os.path.exists(pidfile)), self.daemon_log())

    async def cleanup_host(self):
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            await eventually(lambda: self.proc.poll() is not None, timeout=10)
            if self.proc.poll() is None:
                self.proc.kill()
        self.proc.wait()
        if not self.ctrd.daemon.running:
            await self.ctrd.start()
        await purge_test_namespaces(self.containerd, self.suffix)
        await self.containerd.stop()
        remove_cgroup_tree(detect_cgroups(), self.cgroot)
        bridge = naming.bridge_name(self.realm, "web")
        if link_exists(bridge):
            sh("ip", "link", "delete", bridge, check=False)
        self.assertEqual(self.proc.returncode, 0, self.daemon_log())

    def daemon_log(self) -> str:
        try:
            with open(os.path.join(self.dir, "daemon.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    async def call(self, method, **args):
        return await self.client.call(method, args)

    def where(self, name: str, **spec):
        return {
            "metadata": {"name": name},
            "spec": {"realmId": self.realm, "spaceId": "web", "stackId": "front", **spec},
        }

    def stored_cell(self, name: str) -> dict:
        path = naming.metadata_path(self.run_path, self.realm, "web", "front", name)
        with open(path) as f:
            return json.load(f)

    async def test_serves_through_a_containerd_restart(self):
        await self.call("CreateRealm", Doc={"metadata": {"name": self.realm}})
        await self.call(
            "CreateSpace", Doc={"metadata": {"name": "web"}, "spec": {"realmId": self.realm}}
        )
        await self.call(
            "CreateStack",
            Doc={"metadata": {"name": "front"}, "spec": {"realmId": self.realm, "spaceId": "web"}},
        )
        with open(busybox_image().oci_tar, "rb") as f:
            tarball = base64.b64encode(f.read()).decode()
        await self.call("LoadImage", Realm=self.realm, Tarball=tarball)
        app = {
            "id": "app",
            "image": IMAGE,
            "command": "sh",
            "args": ["-c", 'trap "exit 0" TERM; sleep 600 & wait'],
        }
        created = await self.call("CreateCell", Doc=self.where("shop", containers=[app]))
        self.assertEqual(created["Result"]["Cell"]["status"]["state"], READY)
        before = self.stored_cell("shop")

        await self.ctrd.stop()
        ping = await self.call("Ping")
        self.assertTrue(ping["OK"])
        with self.assertRaises(APIError) as refused:
            await self.call("CreateRealm", Doc={"metadata": {"name": f"{self.realm}x"}})
        self.assertIn("containerd", refused.exception.message)
        for method in ("StopCell", "StartCell"):
            with self.assertRaises(APIError) as refused:
                await self.call(method, Doc=self.where("shop"))
            self.assertIn("containerd", refused.exception.message)
        # Several reconcile passes (1 s apart) run while containerd is down.
        await task.deferLater(reactor, 3.5, lambda: None)
        after = self.stored_cell("shop")
        self.assertEqual(after["status"]["state"], READY)
        self.assertEqual(after["status"]["containers"], before["status"]["containers"])
        got = await self.call("GetCell", Doc=self.where("shop"))
        self.assertEqual(got["Result"]["Cell"]["status"]["state"], READY)

        await self.ctrd.start()

        async def app_running():
            cell = (await self.call("GetCell", Doc=self.where("shop")))["Result"]["Cell"]
            states = {c["id"]: c["state"] for c in cell["status"]["containers"]}
            return cell["status"]["state"] == READY and states.get("app") == READY

        self.assertTrue(await eventually(app_running), self.daemon_log())
        self.assertEqual(self.stored_cell("shop")["status"]["state"], READY)
        # A cell made after the restart works, without restarting the daemon.
        other = await self.call("CreateCell", Doc=self.where("more", containers=[app]))
        self.assertEqual(other["Result"]["Cell"]["status"]["state"], READY)
        await self.call(
            "DeleteRealm", Doc={"metadata": {"name": self.realm}}, Force=False, Cascade=True
        )
        ns = f"{self.realm}.{self.suffix}"
        self.assertNotIn(ns, await self.containerd.list_namespaces())


class StopsOnRootTaskCreated:
    """An ``IContainerd`` that stops containerd right after one task is created.

    Every other attribute is the wrapped client's.
    """

    def __init__(self, inner, ctrd: RestartableContainerd, container_id: str) -> None:
        self._inner = inner
        self._ctrd = ctrd
        self._container_id = container_id

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def create_task(self, namespace, container_id, log_path=None):
        pid = await self._inner.create_task(namespace, container_id, log_path)
        if container_id == self._container_id:
            await self._ctrd.stop()
        return pid


class ContainerdStopsMidStartTests(TestCase):
    timeout = 120

    async def setUp(self):
        self.ctrd = RestartableContainerd(self)
        await self.ctrd.start()
        self.patch(
            sys.modules["tests.support.containerd"],
            "get_containerd_socket",
            lambda: self.ctrd.socket,
        )
        self.rt = real_runtime(self)
        self.addCleanup(self.containerd_up)
        self.r = f"m{secrets.token_hex(3)}"
        self.addCleanup(self.rt.network.remove_space_network, self.r, "s1")
        self.call = Calls(self.rt)

    async def containerd_up(self):
        if not self.ctrd.daemon.running:
            await self.ctrd.start()

    async def test_cell_failed_then_deleted_without_leftovers(self):
        where = {"realm": self.r, "space": "s1", "stack": "k1"}
        ns = await make_parents(self.rt, **where)
        real = self.rt.containerd
        root = naming.root_containerd_id("s1", "k1", "c1")
        self.rt.containerd = StopsOnRootTaskCreated(real, self.ctrd, root)
        with self.assertRaises(KukeonError) as failed:
            await self.call(
                "CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 300")], **where)
            )
        self.assertIn(
            f"failed to connect to containerd at unix://{self.ctrd.socket}", str(failed.exception)
        )
        stored = self.rt.store.get((self.r, "s1", "k1", "c1"))
        self.assertEqual(stored["status"]["state"], FAILED)
        self.assertTrue(stored["status"]["reason"])
        self.assertIn("containerd", stored["status"]["message"])

        self.rt.containerd = real
        await self.ctrd.start()
        await self.call("DeleteCell", Doc=cell_doc("c1", **where))
        self.assertEqual(await real.list_tasks(ns), [])
        self.assertEqual(await real.list_containers(ns), [])
        active = [s.key for s in await real.list_snapshots(ns) if s.kind == "active"]
        self.assertEqual(active, [])
        self.assertIsNone(self.rt.store.get((self.r, "s1", "k1", "c1")))
        self.assertFalse(
            self.rt.cgroups.exists(
                naming.cgroup_path(self.rt.cgroup_root, self.r, "s1", "k1", "c1")
            )
        )
