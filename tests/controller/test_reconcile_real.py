"""Task events from the private containerd reach the reconciler: a killed workload shows at once."""

from __future__ import annotations

from kukeond.api.v1beta1 import READY, STOPPED
from tests.controller.cellsupport import (
    RealCellTestCase,
    cell_doc,
    make_parents,
    wait_for,
    workload,
)


class RealEventTests(RealCellTestCase):
    def stored_state(self, cell):
        raw = self.rt.store.get(("r1", "s1", "k1", cell))
        return raw and raw["status"]["state"]

    async def test_killed_workload_winds_down_cell(self):
        ns = await make_parents(self.rt)
        created = await self.call("CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 300")]))
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
