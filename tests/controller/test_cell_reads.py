"""GetCell and ListCells on the fake runtime: live states now, shared queries, other writers."""

from __future__ import annotations

import json
import os

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from kukeond.api import kukeonv1
from kukeond.api.v1beta1 import READY, STOPPED, UNKNOWN, CellDoc
from kukeond.base import gojson
from kukeond.containerd import errors as cerrors
from kukeond.controller.cell_reads import decode_cell
from kukeond.controller.cell_state import InFlight
from kukeond.controller.common import matching_array
from kukeond.handlers import cells
from kukeond.store.documents import render_document
from tests.controller.cellsupport import Calls, cell_doc, make_parents, workload
from tests.support.runtime import fake_runtime


class Gate:
    """Holds ``container_ids`` calls of a containerd until released; counts them."""

    def __init__(self, containerd):
        self.containerd = containerd
        self.real = containerd.container_ids
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.held: list[tuple[defer.Deferred, str, tuple[str, ...]]] = []
        containerd.container_ids = self.container_ids

    def container_ids(self, namespace, ids):
        self.calls.append((namespace, tuple(ids)))
        d = defer.Deferred()
        self.held.append((d, namespace, tuple(ids)))
        return d

    def release(self, failure=None):
        held, self.held = self.held, []
        for d, namespace, ids in held:
            if failure is not None:
                d.errback(failure)
            else:
                self.real(namespace, ids).chainDeferred(d)


def states(cell):
    return {s.id: s.state for s in cell.status.containers}


class GetCellLiveTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.call = Calls(self.rt)
        self.fake = self.rt.containerd

    async def get(self, name):
        return (await self.call("GetCell", Doc=cell_doc(name))).Result

    async def test_a_task_ended_by_another_writer_shows_at_once(self):
        ns = await make_parents(self.rt)
        await self.call("CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 9")]))
        got = await self.get("c1")
        self.assertEqual(states(got.Cell), {"web": READY, "root": READY})
        self.assertTrue(got.RootContainerExists)
        # Nothing in the store changed: only containerd knows.
        self.fake.exit_task(ns, "s1_k1_c1_web", 137)
        self.assertEqual(states((await self.get("c1")).Cell), {"web": STOPPED, "root": READY})
        await self.fake.delete_task(ns, "s1_k1_c1_web")
        self.assertEqual(states((await self.get("c1")).Cell), {"web": UNKNOWN, "root": READY})
        await self.fake.delete_container(ns, "s1_k1_c1_web")
        await self.fake.kill_task(ns, "s1_k1_c1_root", 9)
        await self.fake.delete_task(ns, "s1_k1_c1_root")
        await self.fake.delete_container(ns, "s1_k1_c1_root")
        got = await self.get("c1")
        self.assertEqual(states(got.Cell), {"web": STOPPED, "root": STOPPED})
        self.assertFalse(got.RootContainerExists)
        self.assertTrue(got.MetadataExists)

    async def test_concurrent_gets_of_one_cell_share_one_query(self):
        ns = await make_parents(self.rt)
        await self.call("CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 9")]))
        await self.call("CreateCell", Doc=cell_doc("c2", [workload("db", "sleep 9")]))
        self.fake.exit_task(ns, "s1_k1_c2_db", 1)
        gate = Gate(self.fake)
        gets = [defer.ensureDeferred(self.get(name)) for name in ("c1", "c2", "c1", "c1")]
        # One query per cell is in flight; the later GetCells of c1 wait for it.
        self.assertEqual(
            sorted(ids[-1] for _, ids in gate.calls), ["s1_k1_c1_root", "s1_k1_c2_root"]
        )
        self.assertEqual(len(self.rt.cells.in_flight), 2)
        self.assertFalse(any(d.called for d in gets))
        gate.release()
        replies = [await d for d in gets]
        self.assertEqual([r.Cell.metadata.name for r in replies], ["c1", "c2", "c1", "c1"])
        self.assertEqual(states(replies[0].Cell), {"web": READY, "root": READY})
        self.assertEqual(states(replies[1].Cell), {"db": STOPPED, "root": READY})
        self.assertEqual(replies[2], replies[0])
        self.assertEqual(len(self.rt.cells.in_flight), 0)
        # Nothing is kept once answered: the next GetCell asks again and sees the change.
        self.fake.exit_task(ns, "s1_k1_c1_web", 0)
        later = defer.ensureDeferred(self.get("c1"))
        self.assertEqual(len(gate.calls), 3)
        gate.release()
        self.assertEqual(states((await later).Cell), {"web": STOPPED, "root": READY})

    async def test_a_failed_query_answers_every_waiter_with_the_stored_statuses(self):
        await make_parents(self.rt)
        await self.call("CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 9")]))
        gate = Gate(self.fake)
        gets = [defer.ensureDeferred(self.get("c1")) for _ in range(3)]
        self.assertEqual(len(gate.calls), 1)
        gate.release(cerrors.Unavailable("failed to connect to containerd: gone"))
        for d in gets:
            got = await d
            self.assertTrue(got.MetadataExists)
            self.assertFalse(got.RootContainerExists)
            self.assertEqual(states(got.Cell), {"web": READY, "root": READY})

    async def test_a_stopped_cell_costs_one_listing(self):
        await make_parents(self.rt)
        await self.call("CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 9")]))
        await self.call("StopCell", Doc=cell_doc("c1"))
        asked = []
        task_state = self.fake.task_state
        self.fake.task_state = lambda ns, cid: (asked.append(cid), task_state(ns, cid))[1]
        got = await self.get("c1")
        self.assertEqual(states(got.Cell), {"web": STOPPED, "root": STOPPED})
        self.assertEqual(asked, [])

    async def test_restart_counts_stay_and_the_text_follows_the_stored_version(self):
        await make_parents(self.rt)
        await self.call("CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 9")]))
        path = self.rt.store.path(("r1", "s1", "k1", "c1"))
        with open(path) as fh:
            stored = json.load(fh)
        stored["status"]["containers"][0]["restartCount"] = 3
        stored["metadata"]["labels"]["team"] = "blue"
        # Another writer replaces the file (same size would not matter: the inode moves).
        with open(path + ".new", "wb") as fh:
            fh.write(render_document(stored))
        os.replace(path + ".new", path)
        got = await self.get("c1")
        self.assertEqual(got.Cell.metadata.labels["team"], "blue")
        web = next(s for s in got.Cell.status.containers if s.id == "web")
        self.assertEqual((web.state, web.restartCount), (READY, 3))

    async def test_reply_is_the_full_encoding_of_the_cell(self):
        """The spliced reply is byte for byte what encoding its values gives."""
        await make_parents(self.rt)
        await self.call("CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 9")]))
        args_type, reply_type = kukeonv1.METHODS["GetCell"]
        handler = cells.handlers(self.rt)["GetCell"]
        for stop in (False, True):
            if stop:  # another state combination, and the root gone
                await self.call("StopCell", Doc=cell_doc("c1"))
            reply = await handler(args_type(Doc=cell_doc("c1")))
            text = gojson.dumps(reply.to_wire())
            decoded = reply_type.from_wire(json.loads(text))
            self.assertEqual(gojson.dumps(decoded.to_wire()), text)
            self.assertEqual(decoded.Result.RootContainerExists, not stop)
            cell = json.loads(text)["Result"]["Cell"]
            self.assertEqual(CellDoc.from_wire(cell).to_wire(), cell)


class ListCellsOtherWriterTests(TestCase):
    watch = False

    def setUp(self):
        self.rt = fake_runtime(self, watch=self.watch)
        self.call = Calls(self.rt)

    async def names(self, **where):
        fields = {"RealmName": "r1", "SpaceName": "", "StackName": "", **where}
        return [c.metadata.name for c in (await self.call("ListCells", **fields)).Cells]

    async def test_a_cell_removed_or_changed_on_disk_is_seen_by_the_next_list(self):
        await make_parents(self.rt)
        for name in ("a", "b", "c"):
            await self.call("CreateCell", Doc=cell_doc(name))
        self.assertEqual(await self.names(), ["a", "b", "c"])
        os.remove(self.rt.store.path(("r1", "s1", "k1", "b")))
        self.assertEqual(await self.names(), ["a", "c"])
        self.assertEqual(await self.names(StackName="k1"), ["a", "c"])
        path = self.rt.store.path(("r1", "s1", "k1", "c"))
        with open(path) as fh:
            stored = json.load(fh)
        stored["metadata"]["labels"]["team"] = "red"
        with open(path, "wb") as fh:  # rewritten in place, as a plain writer does
            fh.write(render_document(stored))
        cells = (await self.call("ListCells", RealmName="r1", SpaceName="", StackName="")).Cells
        self.assertEqual(cells[-1].metadata.labels["team"], "red")
        got = (await self.call("GetCell", Doc=cell_doc("c"))).Result
        self.assertEqual(got.Cell.metadata.labels["team"], "red")

    async def test_the_array_is_kept_while_nothing_changes(self):
        await make_parents(self.rt)
        for name in ("a", "b"):
            await self.call("CreateCell", Doc=cell_doc(name))
        wanted = ("r1", "", "")
        first = matching_array(self.rt, 4, wanted, decode_cell, lambda t: t.raw)
        again = matching_array(self.rt, 4, wanted, decode_cell, lambda t: t.raw)
        self.assertEqual(first, again)
        self.assertEqual([c["metadata"]["name"] for c in json.loads(first)], ["a", "b"])
        if self.watch:
            same = matching_array(self.rt, 4, wanted, decode_cell, _raw)
            self.assertIs(matching_array(self.rt, 4, wanted, decode_cell, _raw), same)
        await self.call("StopCell", Doc=cell_doc("b"))
        after = json.loads(matching_array(self.rt, 4, wanted, decode_cell, _raw))
        self.assertEqual(after[1]["status"]["state"], STOPPED)


def _raw(text):
    return text.raw


class WatchedListCellsTests(ListCellsOtherWriterTests):
    """The same, the store trusting inotify as the daemon's does."""

    watch = True


class InFlightTests(TestCase):
    def test_callers_of_one_key_share_a_result_and_nothing_is_kept(self):
        shared = InFlight()
        started = []

        def query(value):
            d = defer.Deferred()
            started.append((value, d))
            return lambda: d

        first = shared.run("k", query(1))
        second = shared.run("k", query(2))
        other = shared.run("j", query(3))
        self.assertEqual([v for v, _ in started], [1, 2, 3])  # factories made, two started
        started[0][1].callback("one")
        started[2][1].callback("three")
        self.assertEqual(
            (self.successResultOf(first), self.successResultOf(second)), ("one", "one")
        )
        self.assertEqual(self.successResultOf(other), "three")
        again = shared.run("k", lambda: defer.succeed("fresh"))
        self.assertEqual(self.successResultOf(again), "fresh")
        self.assertEqual(len(shared), 0)

    def test_a_failure_reaches_every_waiter(self):
        shared = InFlight()
        d = defer.Deferred()
        waiters = [shared.run("k", lambda: d) for _ in range(3)]
        d.errback(cerrors.Unavailable("down"))
        for waiter in waiters:
            self.failureResultOf(waiter, cerrors.Unavailable)
        self.assertEqual(len(shared), 0)
