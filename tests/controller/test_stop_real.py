"""Stops on the private containerd: workloads that ignore SIGTERM, and user stops vs wind-down."""

from __future__ import annotations

import signal

from twisted.internet import reactor, task

from kukeond.api.v1beta1 import READY, STOPPED
from kukeond.containerd import errors as cerrors
from kukeond.controller import stopping
from tests.controller.cellsupport import (
    RealCellTestCase,
    cell_doc,
    container_doc,
    make_parents,
    workload,
)

KEY = ("r1", "s1", "k1")
STUBBORN = "trap '' TERM; while :; do sleep 1; done"
"""A shell that ignores SIGTERM (its ``sleep`` children do not, and are replaced)."""
WILLING = "trap 'exit 0' TERM; while :; do sleep 0.2; done"


async def pause(seconds):
    await task.deferLater(reactor, seconds, lambda: None)


class StubbornStopTests(RealCellTestCase):
    timeout = 180

    async def test_twenty_stops_escalate_to_sigkill(self):
        # No slack: containerd's own Tasks.Wait deadline and our grace timer
        # end together, the case where containerd 1.6 answers UNKNOWN.
        self.patch(stopping, "WAIT_SLACK", 0.0)
        ns = await make_parents(self.rt)
        await self.call("CreateCell", Doc=cell_doc("c1", [workload("w", STUBBORN)]))
        cid = "s1_k1_c1_w"
        runner = self.rt.cells
        for round_ in range(20):
            info = await self.rt.containerd.task_state(ns, cid)
            self.assertEqual(info.status, "running", f"round {round_}")
            await pause(0.05)  # let the shell install its trap
            await stopping.stop_task(self.rt.containerd, reactor, ns, cid, 0.3)
            info = await self.rt.containerd.task_state(ns, cid)
            self.assertEqual(
                (info.status, info.exit_status),
                ("stopped", 128 + signal.SIGKILL),
                f"round {round_}",
            )
            await runner.remove_container(ns, cid, 0.3)
            await self.call("StartContainer", Doc=container_doc("w", cell="c1"))

    async def test_stop_container_and_cascade_delete(self):
        ns = await make_parents(self.rt)
        cell = cell_doc("c2", [workload("a", STUBBORN), workload("b", WILLING)])
        await self.call("CreateCell", Doc=cell)
        await pause(0.1)
        await self.call("StopContainer", Doc=container_doc("a", cell="c2"))
        with self.assertRaises(cerrors.NotFound):
            await self.rt.containerd.get_container(ns, "s1_k1_c2_a")
        await self.call("DeleteCell", Doc=cell_doc("c2"))
        self.assertEqual(await self.rt.containerd.list_containers(ns), [])
        self.assertIsNone(self.rt.store.get((*KEY, "c2")))


class UserStopVersusWindDownTests(RealCellTestCase):
    async def stop_start_twice(self, ns, cell, name):
        root = f"s1_k1_{cell}_root"
        for verb in ("StopContainer", "StartContainer", "StopContainer", "StartContainer"):
            await self.call(verb, Doc=container_doc(name, cell=cell))
            # Time for the exit event's reconcile (0.1 s after it) to act.
            await pause(0.5)
            info = await self.rt.containerd.task_state(ns, root)
            self.assertEqual(info.status, "running", f"root after {verb} {name}")
            self.assertEqual(
                self.rt.store.get((*KEY, cell))["status"]["state"],
                READY if verb == "StartContainer" or cell == "c1" else STOPPED,
            )
        info = await self.rt.containerd.task_state(ns, f"s1_k1_{cell}_{name}")
        self.assertEqual(info.status, "running")

    async def test_one_container_of_two(self):
        ns = await make_parents(self.rt)
        await self.start_service()
        cell = cell_doc("c1", [workload("a", WILLING), workload("b", WILLING)])
        await self.call("CreateCell", Doc=cell)
        await self.stop_start_twice(ns, "c1", "a")

    async def test_the_last_workload_of_a_cell(self):
        ns = await make_parents(self.rt)
        await self.start_service()
        await self.call("CreateCell", Doc=cell_doc("c3", [workload("only", WILLING)]))
        await self.stop_start_twice(ns, "c3", "only")

    async def test_an_exit_nobody_asked_for_still_winds_down(self):
        ns = await make_parents(self.rt)
        await self.start_service()
        await self.call("CreateCell", Doc=cell_doc("c4", [workload("job", "sleep 0.3")]))
        for _ in range(60):
            if self.rt.store.get((*KEY, "c4"))["status"]["state"] == STOPPED:
                break
            await pause(0.1)
        self.assertEqual(self.rt.store.get((*KEY, "c4"))["status"]["state"], STOPPED)
        self.assertEqual(await self.rt.containerd.list_containers(ns), [])
