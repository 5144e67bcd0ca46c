"""Restart policies on the private containerd: real exits, kills and a user stop."""

from __future__ import annotations

from twisted.internet import reactor, task

from kukeond.api.v1beta1 import READY, STOPPED
from kukeond.base import naming
from tests.controller.cellsupport import (
    RealCellTestCase,
    cell_doc,
    make_parents,
    wait_for,
    workload,
)

KEY = ("r1", "s1", "k1")


class RealRestartTests(RealCellTestCase):
    def stored(self, cell):
        return self.rt.store.get((*KEY, cell))

    def container_status(self, cell, name):
        raw = self.stored(cell)
        return next(s for s in raw["status"]["containers"] if s["id"] == name)

    async def test_on_failure_restarts_twice_then_stays_exited(self):
        await make_parents(self.rt)
        await self.start_service()
        job = workload("job", "echo run; exit 3", restartPolicy="on-failure:2")
        await self.call("CreateCell", Doc=cell_doc("c1", [job]))
        self.assertTrue(await wait_for(lambda: self.stored("c1")["status"]["state"] == STOPPED))
        self.assertEqual(self.container_status("c1", "job")["restartCount"], 2)
        log = naming.container_log_path(self.rt.run_path, *KEY, "c1", "job")
        with open(log) as f:
            self.assertEqual(f.read().split(), ["run", "run", "run"])

    async def test_always_restarts_after_a_kill_until_the_cell_is_stopped(self):
        ns = await make_parents(self.rt)
        await self.start_service()
        web = workload("web", "sleep 300", restartPolicy="always")
        await self.call("CreateCell", Doc=cell_doc("c2", [web]))
        cid = "s1_k1_c2_web"
        first = await self.rt.containerd.task_state(ns, cid)
        await self.rt.containerd.kill_task(ns, cid, 9)
        self.assertTrue(
            await wait_for(lambda: self.container_status("c2", "web")["restartCount"] == 1)
        )
        again = await self.rt.containerd.task_state(ns, cid)
        self.assertEqual(again.status, "running")
        self.assertNotEqual(again.pid, first.pid)
        self.assertEqual(self.stored("c2")["status"]["state"], READY)
        await self.call("StopCell", Doc=cell_doc("c2"))
        # Time for any event or wake-up to act; the stop must hold.
        await task.deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(self.stored("c2")["status"]["state"], STOPPED)
        self.assertEqual(await self.rt.containerd.list_containers(ns), [])
