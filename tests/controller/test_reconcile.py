"""Per-cell reconcile rules and the pass, on fakes."""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kukeond.api import v1beta1 as v1
from kukeond.controller import reconcile
from kukeond.controller.reconcile import LiveView, Reconciler
from tests.controller.reconcile_support import (
    RecordingActions,
    cell_doc,
    load_image,
    namespace,
    seed_cell,
)
from tests.support.runtime import fake_runtime

KEY = ("r", "s", "k", "c")


def view(running=(), stopped=(), containers=()):
    tasks = {cid: "running" for cid in running}
    tasks.update({cid: "stopped" for cid in stopped})
    return LiveView(frozenset(containers) | frozenset(tasks), tasks)


class DeriveTests(SynchronousTestCase):
    def setUp(self):
        self.doc = v1.CellDoc.from_wire(cell_doc(KEY, ("a", "b")))

    def test_task_states(self):
        live = LiveView(
            frozenset({"x", "y", "z", "w"}),
            {"x": "running", "y": "paused", "z": "created", "w": "weird"},
        )
        self.assertEqual(live.container_state("x"), v1.READY)
        self.assertEqual(live.container_state("y"), v1.PAUSED)
        self.assertEqual(live.container_state("z"), v1.PENDING)
        self.assertEqual(live.container_state("w"), v1.UNKNOWN)
        self.assertEqual(live.container_state("absent"), v1.STOPPED)
        self.assertEqual(LiveView(frozenset({"n"}), {}).container_state("n"), v1.UNKNOWN)

    def test_workloads_decide(self):
        st = reconcile.live_statuses(self.doc, view(running=["s_k_c_root", "s_k_c_a"]))
        self.assertEqual([s.state for s in st], [v1.READY, v1.READY, v1.STOPPED])
        self.assertEqual(reconcile.derive_state(self.doc, st, True), v1.READY)
        st = reconcile.live_statuses(self.doc, view(running=["s_k_c_root"]))
        self.assertEqual(reconcile.derive_state(self.doc, st, True), v1.STOPPED)
        st = reconcile.live_statuses(self.doc, view(["s_k_c_root"], containers=["s_k_c_a"]))
        self.assertEqual(reconcile.derive_state(self.doc, st, True), v1.UNKNOWN)

    def test_root_only_and_missing_cgroup(self):
        doc = v1.CellDoc.from_wire(cell_doc(KEY, ()))
        st = reconcile.live_statuses(doc, view(running=["s_k_c_root"]))
        self.assertEqual(reconcile.derive_state(doc, st, True), v1.READY)
        self.assertEqual(reconcile.derive_state(doc, st, False), v1.UNKNOWN)
        st = reconcile.live_statuses(doc, view(stopped=["s_k_c_root"]))
        self.assertEqual(reconcile.derive_state(doc, st, True), v1.STOPPED)

    def test_failed_is_sticky(self):
        self.doc.status.state = v1.FAILED
        decision = reconcile.decide(self.doc, view(running=["s_k_c_root", "s_k_c_a"]), True)
        self.assertEqual(decision.doc.status.state, v1.FAILED)
        self.assertTrue(decision.write)
        self.assertIsNone(decision.action)

    def test_latch_and_unchanged(self):
        live = view(running=["s_k_c_root", "s_k_c_a", "s_k_c_b"])
        decision = reconcile.decide(self.doc, live, True)
        self.assertFalse(decision.write)
        self.doc.status.readyObserved = False
        self.doc.status.state = v1.PENDING
        decision = reconcile.decide(self.doc, live, True)
        self.assertTrue(decision.write)
        self.assertTrue(decision.doc.status.readyObserved)

    def test_auto_delete_and_wind_down(self):
        live = view(running=["s_k_c_root"], stopped=["s_k_c_a", "s_k_c_b"])
        self.assertEqual(reconcile.decide(self.doc, live, True).action, "wind-down")
        self.doc.spec.autoDelete = True
        self.assertEqual(reconcile.decide(self.doc, live, True).action, "delete")
        self.doc.status.readyObserved = False
        self.doc.status.state = v1.PENDING
        self.assertIsNone(reconcile.decide(self.doc, live, True).action)
        self.doc.status.state = v1.READY
        self.assertEqual(reconcile.decide(self.doc, live, False).action, None)


class PassTests(TestCase):
    def setUp(self):
        self.runtime = fake_runtime(self)
        self.actions = RecordingActions(self.runtime)
        self.reconciler = Reconciler(self.runtime, self.actions)
        return load_image(self.runtime, "r")

    def stored(self, key=KEY):
        return v1.CellDoc.from_wire(self.runtime.store.get(key))

    @defer.inlineCallbacks
    def test_steady_cell_is_not_rewritten(self):
        yield seed_cell(self.runtime, KEY)
        before = self.runtime.store.get(KEY)
        report = yield defer.Deferred.fromCoroutine(self.reconciler.run_pass())
        self.assertEqual((report.cells_scanned, report.cells_updated), (1, 0))
        self.assertEqual(report.containerd_calls, 2)
        self.assertEqual(self.runtime.store.get(KEY), before)

    @defer.inlineCallbacks
    def test_exited_workload_winds_down(self):
        yield seed_cell(self.runtime, KEY)
        self.runtime.containerd.exit_task(namespace(self.runtime, "r"), "s_k_c_app", 3)
        report = yield defer.Deferred.fromCoroutine(self.reconciler.run_pass())
        self.assertEqual(report.cells_updated, 1)
        self.assertEqual(self.actions.calls, [("kill", KEY)])
        self.assertEqual(self.stored().status.state, v1.STOPPED)

    @defer.inlineCallbacks
    def test_auto_delete(self):
        yield seed_cell(self.runtime, KEY, autoDelete=True)
        self.runtime.containerd.exit_task(namespace(self.runtime, "r"), "s_k_c_app")
        report = yield defer.Deferred.fromCoroutine(self.reconciler.run_pass())
        self.assertEqual(report.cells_deleted, 1)
        self.assertEqual(self.actions.calls, [("kill", KEY), ("delete", KEY)])
        self.assertFalse(self.runtime.store.exists(KEY))

    @defer.inlineCallbacks
    def test_missing_cgroup_is_unknown(self):
        yield seed_cell(self.runtime, KEY, cgroup=False)
        report = yield defer.Deferred.fromCoroutine(self.reconciler.run_pass())
        self.assertEqual(report.cells_updated, 1)
        self.assertEqual(self.stored().status.state, v1.UNKNOWN)

    @defer.inlineCallbacks
    def test_containerd_down_leaves_documents(self):
        yield seed_cell(self.runtime, KEY)
        yield load_image(self.runtime, "r2")
        yield seed_cell(self.runtime, ("r2", "s", "k", "c"))
        before = self.runtime.store.get(KEY)
        self.runtime.containerd.available = False
        report = yield defer.Deferred.fromCoroutine(self.reconciler.run_pass())
        self.assertTrue(report.containerd_down)
        self.assertEqual((report.cells_scanned, report.cells_errored), (2, 2))
        self.assertEqual(report.containerd_calls, 2)
        self.assertEqual(self.runtime.store.get(KEY), before)
        self.runtime.containerd.available = True
        report = yield defer.Deferred.fromCoroutine(self.reconciler.run_pass())
        self.assertFalse(report.containerd_down)
        self.assertEqual(report.errors, [])

    @defer.inlineCallbacks
    def test_cost_per_namespace(self):
        for i in range(5):
            yield seed_cell(self.runtime, ("r", "s", "k", f"c{i}"), running=False)
        report = yield defer.Deferred.fromCoroutine(self.reconciler.run_pass())
        self.assertEqual(report.cells_scanned, 5)
        self.assertEqual(report.containerd_calls, 2)

    @defer.inlineCallbacks
    def test_cell_error_does_not_stop_pass(self):
        yield seed_cell(self.runtime, ("r", "s", "k", "a"))
        yield seed_cell(self.runtime, ("r", "s", "k", "b"), running=False)
        yield self.runtime.store.put(("r", "s", "k", "a"), {"kind": "Cell", "spec": 5})
        report = yield defer.Deferred.fromCoroutine(self.reconciler.run_pass())
        self.assertEqual(report.cells_errored, 1)
        self.assertTrue(report.errors[0].startswith("reconcile cell r/s/k/a: "))
        self.assertEqual(report.cells_updated, 1)

    @defer.inlineCallbacks
    def test_pass_does_not_hold_other_cells(self):
        yield seed_cell(self.runtime, ("r", "s", "k", "a"))
        yield seed_cell(self.runtime, ("r", "s", "k", "b"), running=False)
        locked = self.runtime.store.lock(("r", "s", "k", "a"))
        yield defer.Deferred.fromCoroutine(locked.__aenter__())
        running = defer.Deferred.fromCoroutine(self.reconciler.run_pass())
        self.assertNoResult(running)
        # The pass waits on cell a; cell b is still free for RPCs.
        other = self.runtime.store.lock(("r", "s", "k", "b"))
        yield defer.Deferred.fromCoroutine(other.__aenter__())
        yield defer.Deferred.fromCoroutine(other.__aexit__(None, None, None))
        yield defer.Deferred.fromCoroutine(locked.__aexit__(None, None, None))
        report = yield running
        self.assertEqual(report.cells_scanned, 2)

    @defer.inlineCallbacks
    def test_change_under_lock_is_requeried(self):
        yield seed_cell(self.runtime, KEY, running=False)
        lock = self.runtime.store.lock(KEY)
        yield defer.Deferred.fromCoroutine(lock.__aenter__())
        running = defer.Deferred.fromCoroutine(self.reconciler.run_pass())
        # Meanwhile a start runs the tasks and rewrites the document.
        ns = namespace(self.runtime, "r")
        for cid in ("s_k_c_root", "s_k_c_app"):
            yield self.runtime.containerd.create_task(ns, cid)
            yield self.runtime.containerd.start_task(ns, cid)
        raw = self.runtime.store.get(KEY)
        raw["status"]["message"] = "started"
        yield self.runtime.store.put(KEY, raw)
        yield defer.Deferred.fromCoroutine(lock.__aexit__(None, None, None))
        report = yield running
        self.assertEqual(report.containerd_calls, 2 + 4)
        self.assertEqual(self.stored().status.state, v1.READY)

    @defer.inlineCallbacks
    def test_reconcile_cell(self):
        yield seed_cell(self.runtime, KEY)
        self.runtime.containerd.exit_task(namespace(self.runtime, "r"), "s_k_c_root")
        outcome = yield defer.Deferred.fromCoroutine(self.reconciler.reconcile_cell(KEY))
        self.assertEqual(outcome, reconcile.UPDATED)
        statuses = {s.id: s.state for s in self.stored().status.containers}
        self.assertEqual(statuses, {"root": v1.STOPPED, "app": v1.READY})
