"""RefreshAll on fakes: derived statuses, nothing erased, idempotent, containerd down."""

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from kukeond.api import kukeonv1
from kukeond.api import v1beta1 as v1
from kukeond.base import naming
from kukeond.handlers import refresh
from tests.controller.cellsupport import make_parents
from tests.controller.reconcile_support import namespace, seed_cell
from tests.support.runtime import fake_runtime

CELL = ("r1", "s1", "k1", "c1")


class RefreshTests(TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.rt = fake_runtime(self)
        yield defer.Deferred.fromCoroutine(make_parents(self.rt))
        for key in (("r1",), ("r1", "s1"), ("r1", "s1", "k1")):
            self.rt.cgroups.create(naming.cgroup_path(self.rt.cgroup_root, *key))
        self.handler = refresh.handlers(self.rt)["RefreshAll"]

    def refresh(self):
        return defer.Deferred.fromCoroutine(self.handler(kukeonv1.RefreshAllArgs()))

    def cell(self, key=CELL):
        return v1.CellDoc.from_wire(self.rt.store.get(key))

    @defer.inlineCallbacks
    def test_found_updated_and_idempotent(self):
        yield seed_cell(self.rt, CELL)
        reply = yield self.refresh()
        result = reply.Result
        self.assertIsNone(reply.Err)
        self.assertEqual(result.RealmsFound, ["r1"])
        self.assertEqual(result.SpacesFound, ["s1"])
        self.assertEqual(result.StacksFound, ["k1"])
        self.assertEqual(result.CellsFound, ["c1"])
        self.assertEqual(result.ContainersFound, ["r1/s1/k1/c1/root", "r1/s1/k1/c1/app"])
        self.assertEqual(result.RealmsUpdated, ["r1"])
        self.assertEqual(result.Errors, [])
        realm = v1.RealmDoc.from_wire(self.rt.store.get(("r1",)))
        self.assertEqual(realm.status.state, v1.READY)
        self.assertTrue(realm.status.cgroupReady and realm.status.containerdNamespaceReady)
        again = (yield self.refresh()).Result
        for name in ("Realms", "Spaces", "Stacks", "Cells", "Containers"):
            self.assertEqual(getattr(again, name + "Updated"), [], name)
        wire = again.to_wire()
        self.assertEqual(wire["CellsUpdated"], [])

    @defer.inlineCallbacks
    def test_stopped_cell_is_not_ready_and_keeps_fields(self):
        yield seed_cell(self.rt, CELL)
        raw = self.rt.store.get(CELL)
        raw["status"]["subtreeControllers"] = ["cpu", "memory"]
        raw["status"]["network"] = {"bridgeName": "k-00000001"}
        yield self.rt.store.put(CELL, raw)
        ns = namespace(self.rt, "r1")
        self.rt.containerd.exit_task(ns, "s1_k1_c1_app")
        self.rt.containerd.exit_task(ns, "s1_k1_c1_root")
        result = (yield self.refresh()).Result
        self.assertEqual(result.CellsUpdated, ["c1"])
        self.assertEqual(result.ContainersUpdated, ["r1/s1/k1/c1/root", "r1/s1/k1/c1/app"])
        cell = self.cell()
        self.assertEqual(cell.status.state, v1.STOPPED)
        self.assertTrue(cell.status.readyObserved)
        self.assertEqual(cell.status.subtreeControllers, ["cpu", "memory"])
        self.assertEqual(cell.status.network.bridgeName, "k-00000001")
        self.assertEqual({s.state for s in cell.status.containers}, {v1.STOPPED})

    @defer.inlineCallbacks
    def test_failed_stays_failed_and_missing_cgroup_is_unknown(self):
        yield seed_cell(self.rt, CELL)
        yield seed_cell(self.rt, ("r1", "s1", "k1", "c2"), cgroup=False)
        raw = self.rt.store.get(CELL)
        raw["status"]["state"] = v1.FAILED
        yield self.rt.store.put(CELL, raw)
        yield self.refresh()
        self.assertEqual(self.cell().status.state, v1.FAILED)
        self.assertEqual(self.cell(("r1", "s1", "k1", "c2")).status.state, v1.UNKNOWN)

    @defer.inlineCallbacks
    def test_containerd_down(self):
        yield seed_cell(self.rt, CELL)
        before = self.rt.store.get(CELL)
        self.rt.containerd.available = False
        result = (yield self.refresh()).Result
        self.assertEqual(len(result.Errors), 1)
        self.assertTrue(result.Errors[0].startswith("containerd unavailable"))
        self.assertEqual(result.CellsFound, ["c1"])
        self.assertEqual(result.RealmsUpdated, [])
        self.assertEqual(self.rt.store.get(CELL), before)
