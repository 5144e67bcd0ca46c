"""The cell runner's overlapped steps keep their order where it matters.

Start overlaps the root's CNI attach with the creation of the workload
tasks, and stop overlaps the root's detach with the deletion of the
workloads; these tests pin what must still come first.
"""

from __future__ import annotations

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from kukeond.api.v1beta1 import READY
from tests.controller.cellsupport import Calls, cell_doc, make_parents, workload
from tests.support.runtime import fake_runtime

ROOT, WEB = "s1_k1_c1_root", "s1_k1_c1_web"


class CellOrderTests(TestCase):
    """Order of the overlapped start and stop steps, on the fake runtime."""

    def setUp(self):
        self.rt = fake_runtime(self)
        self.call = Calls(self.rt)

    def tasks(self, ns):
        return {cid: dict(t) for cid, t in self.rt.containerd._ns(ns).tasks.items()}

    async def test_workloads_start_only_after_the_root_network_is_attached(self):
        ns = await make_parents(self.rt)
        network = self.rt.network
        attach = network.attach
        attaching: defer.Deferred = defer.Deferred()
        release: defer.Deferred = defer.Deferred()

        def held_attach(cid, netns, conflist, ifname="eth0"):
            attaching.callback(netns)
            return release.addCallback(lambda _: attach(cid, netns, conflist, ifname))

        network.attach = held_attach
        creating = defer.Deferred.fromCoroutine(
            self.call("CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 1")]))
        )
        netns = await attaching
        self.assertEqual(netns, f"/proc/{self.tasks(ns)[ROOT]['pid']}/ns/net")
        for _ in range(500):  # the workload is created meanwhile (file work runs on threads)
            if WEB in self.tasks(ns):
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(self.tasks(ns)[WEB]["status"], "created")
        self.assertNoResult(creating)
        release.callback(None)
        reply = await creating
        self.assertEqual(reply.Result.Cell.status.state, READY)
        self.assertEqual(
            {c: t["status"] for c, t in self.tasks(ns).items()}, {ROOT: "running", WEB: "running"}
        )

    async def test_root_is_detached_after_its_workloads_have_ended(self):
        ns = await make_parents(self.rt)
        doc = cell_doc("c1", [workload("web", "sleep 1")])
        await self.call("CreateCell", Doc=doc)
        network = self.rt.network
        detach = network.detach
        seen = []

        def watched_detach(cid, netns, conflist, ifname="eth0"):
            seen.append({c: t["status"] for c, t in self.tasks(ns).items()})
            return detach(cid, netns, conflist, ifname)

        network.detach = watched_detach
        await self.call("StopCell", Doc=cell_doc("c1"))
        self.assertEqual(len(seen), 1)
        self.assertEqual(seen[0][ROOT], "running")
        self.assertIn(seen[0].get(WEB, "deleted"), ("stopped", "deleted"))
        self.assertEqual(self.tasks(ns), {})
