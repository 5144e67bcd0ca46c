"""Task events from the private containerd reach the reconciler: a killed workload shows at once."""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from kukeond.api.v1beta1 import READY, STOPPED
from kukeond.controller.reconcile import Reconciler
from kukeond.controller.reconcile_service import ReconcileService
from tests.controller.cellsupport import Calls, cell_doc, make_parents, workload
from tests.support.runtime import real_runtime


async def wait_for(predicate, timeout=15.0):
    """Poll ``predicate`` every 50 ms until true or ``timeout``."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        await task.deferLater(reactor, 0.05, lambda: None)
    return predicate()


class RealEventTests(TestCase):
    timeout = 120

    def setUp(self):
        self.rt = real_runtime(self)
        self.call = Calls(self.rt)
        self.addCleanup(self.rt.network.remove_space_network, "r1", "s1")

    def stored_state(self, cell):
        raw = self.rt.store.get(("r1", "s1", "k1", cell))
        return raw and raw["status"]["state"]

    async def start_service(self):
        # A long interval: only the start-up pass and events can change anything.
        svc = ReconcileService(Reconciler(self.rt), 3600, clock=reactor)
        svc.startService()
        self.addCleanup(svc.stopService)
        await svc.idle()
        return svc

    async def test_killed_workload_winds_down_cell(self):
        ns = await make_parents(self.rt)
        created = await self.call(
            "CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 300")])
        )
        self.assertEqual(created.Result.Cell.status.state, READY)
        await self.start_service()
        self.assertEqual(self.stored_state("c1"), READY)
        await self.rt.containerd.kill_task(ns, "s1_k1_c1_web", 9)
        self.assertTrue(await wait_for(lambda: self.stored_state("c1") == STOPPED))
        got = await self.call("GetCell", Doc=cell_doc("c1"))
        self.assertEqual(got.Result.Cell.status.state, STOPPED)
        self.assertEqual(await self.rt.containerd.list_containers(ns), [])

    async def test_auto_delete_cell(self):
        ns = await make_parents(self.rt)
        await self.call(
            "CreateCell",
            Doc=cell_doc("c2", [workload("job", "sleep 300")], autoDelete=True),
        )
        await self.start_service()
        await self.rt.containerd.kill_task(ns, "s1_k1_c2_job", 9)
        self.assertTrue(await wait_for(lambda: not self.rt.store.exists(("r1", "s1", "k1", "c2"))))
        self.assertEqual(await self.rt.containerd.list_containers(ns), [])
