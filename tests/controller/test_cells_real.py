"""Cells on the private containerd, the real cgroupfs and real CNI: the real thing, briefly."""

from __future__ import annotations

import os
import secrets

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from kukeond.api.v1beta1 import READY, STOPPED
from kukeond.base import naming
from tests.controller.cellsupport import Calls, cell_doc, container_doc, make_parents, workload
from tests.support.runtime import real_runtime


async def wait_for(predicate, timeout=10.0):
    """Poll ``predicate`` (a plain function) every 50 ms until true or ``timeout``."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        await task.deferLater(reactor, 0.05, lambda: None)
    return predicate()


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class RealCellTests(TestCase):
    timeout = 120

    def setUp(self):
        self.rt = real_runtime(self)
        self.call = Calls(self.rt)
        # Bridge names derive from realm and space only: unique names keep tests
        # running in parallel workers off each other's bridges.
        self.r = f"r{secrets.token_hex(3)}"
        self.where = {"realm": self.r, "space": "s1", "stack": "k1"}
        self.addCleanup(self.rt.network.remove_space_network, self.r, "s1")

    async def leftovers(self, ns):
        containers = [c.id for c in await self.rt.containerd.list_containers(ns)]
        snapshots = [
            s.key for s in await self.rt.containerd.list_snapshots(ns) if s.kind == "active"
        ]
        return containers, snapshots

    async def test_cell_lifecycle_log_and_cleanup(self):
        ns = await make_parents(self.rt, **self.where)
        log = naming.container_log_path(self.rt.run_path, self.r, "s1", "k1", "c1", "web")
        result = await self.call(
            "CreateCell",
            Doc=cell_doc(
                "c1",
                **self.where,
                containers=[
                    workload(
                        "web",
                        'trap "exit 0" TERM; echo hello from $KUKEON_CELL_NAME; '
                        "cat /etc/hostname; sleep 300 & wait",
                    )
                ],
            ),
        )
        cell = result.Result.Cell
        self.assertEqual(cell.status.state, READY)
        self.assertTrue(await wait_for(lambda: "c1\n" in read(log)), read(log))
        self.assertIn("hello from c1", read(log))
        cgroup = cell.status.cgroupPath
        self.assertTrue(self.rt.cgroups.exists(f"{cgroup}/s1_k1_c1_web"))
        hosts = read(naming.etc_hosts_path(self.rt.run_path, self.r, "s1", "k1", "c1"))
        self.assertTrue(hosts.endswith("\tc1\n"), hosts)
        logs = await self.call("LogContainer", Doc=container_doc("web", **self.where))
        self.assertEqual(logs.Result.HostLogPath, log)

        stopped = await self.call("StopCell", Doc=cell_doc("c1", **self.where))
        self.assertEqual(stopped.Result.Cell.status.state, STOPPED)
        self.assertEqual(await self.leftovers(ns), ([], []))
        started = await self.call("StartCell", Doc=cell_doc("c1", **self.where))
        self.assertEqual([s.state for s in started.Result.Cell.status.containers], [READY, READY])
        self.assertTrue(await wait_for(lambda: read(log).count("hello from c1") == 2))

        await self.call("DeleteCell", Doc=cell_doc("c1", **self.where))
        self.assertEqual(await self.leftovers(ns), ([], []))
        self.assertFalse(os.path.exists("/sys/fs/cgroup/pids" + cgroup))
        self.assertFalse(self.rt.cgroups.exists(cgroup))
        ipam = os.path.join(self.rt.network.ipam_dir, f"{self.r}-s1")
        leases = [f for f in os.listdir(ipam) if f[0].isdigit()] if os.path.isdir(ipam) else []
        self.assertEqual(leases, [])

    async def test_two_cells_share_the_space_bridge(self):
        await make_parents(self.rt, **self.where)
        ips = []
        for name in ("a", "b"):
            await self.call("CreateCell", Doc=cell_doc(name, **self.where))
            hosts = read(naming.etc_hosts_path(self.rt.run_path, self.r, "s1", "k1", name))
            ips.append(hosts.strip().splitlines()[-1].split("\t")[0])
        subnet = self.rt.network.ensure_space_network(self.r, "s1").subnet
        prefix = subnet.rsplit(".", 1)[0] + "."
        self.assertTrue(all(ip.startswith(prefix) for ip in ips), (ips, subnet))
        log = naming.container_log_path(self.rt.run_path, self.r, "s1", "k1", "a", "ping")
        await self.call(
            "CreateContainer",
            Doc=container_doc(
                "ping",
                cell="a",
                **self.where,
                image="docker.io/library/busybox:latest",
                command="sh",
                args=["-c", f"ping -c 1 -W 2 {ips[1]} && echo PINGED"],
            ),
        )
        self.assertTrue(await wait_for(lambda: "PINGED" in read(log)), read(log))
        for name in ("a", "b"):
            await self.call("DeleteCell", Doc=cell_doc(name, **self.where))
