"""Per-cell reconcile rules and the pass, on fakes."""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kukeond.api import v1beta1 as v1
from kukeond.controller import reconcile
from kukeond.controller.reconcile import LiveView, Reconciler
from tests.controller.reconcile_support import (
    CountingContainerd,
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

    def state(self, live, cgroup_ok=True, doc=None):
        doc = doc or self.doc
        return reconcile.decide(doc, live.statuses(doc), cgroup_ok).doc.status.state

    def test_task_states(self):
        doc = v1.CellDoc.from_wire(cell_doc(KEY, ("x", "y", "z", "w", "n")))
        live = LiveView(
            frozenset({"s_k_c_x", "s_k_c_y", "s_k_c_z", "s_k_c_w", "s_k_c_n"}),
            {"s_k_c_x": "running", "s_k_c_y": "paused", "s_k_c_z": "created", "s_k_c_w": "weird"},
        )
        got = [s.state for s in live.statuses(doc)]
        self.assertEqual(got, [v1.STOPPED, v1.READY, v1.PAUSED, v1.PENDING, v1.UNKNOWN, v1.UNKNOWN])

    def test_workloads_decide(self):
        self.assertEqual(self.state(view(running=["s_k_c_root", "s_k_c_a"])), v1.READY)
        self.assertEqual(self.state(view(stopped=["s_k_c_a", "s_k_c_b"])), v1.STOPPED)
        live = view(["s_k_c_root"], containers=["s_k_c_a"])
        self.assertEqual(self.state(live), v1.UNKNOWN)

    def test_root_only_and_missing_cgroup(self):
        doc = v1.CellDoc.from_wire(cell_doc(KEY, ()))
        self.assertEqual(self.state(view(running=["s_k_c_root"]), doc=doc), v1.READY)
        self.assertEqual(self.state(view(running=["s_k_c_root"]), False, doc), v1.UNKNOWN)
        self.assertEqual(self.state(view(stopped=["s_k_c_root"]), doc=doc), v1.STOPPED)

    def test_failed_is_sticky(self):
        self.doc.status.state = v1.FAILED
        live = view(running=["s_k_c_root", "s_k_c_a"])
        decision = reconcile.decide(self.doc, live.statuses(self.doc), True)
        self.assertEqual(decision.doc.status.state, v1.FAILED)
        self.assertTrue(decision.write)
        self.assertIsNone(decision.action)

    def test_latch_and_unchanged(self):
        live = view(running=["s_k_c_root", "s_k_c_a", "s_k_c_b"])
        decision = reconcile.decide(self.doc, live.statuses(self.doc), True)
        self.assertFalse(decision.write)
        self.doc.status.readyObserved = False
        self.doc.status.state = v1.PENDING
        decision = reconcile.decide(self.doc, live.statuses(self.doc), True)
        self.assertTrue(decision.write)
        self.assertTrue(decision.doc.status.readyObserved)

    def test_auto_delete_and_wind_down(self):
        live = view(running=["s_k_c_root"], stopped=["s_k_c_a", "s_k_c_b"])

        def action(cgroup_ok=True):
            return reconcile.decide(self.doc, live.statuses(self.doc), cgroup_ok).action

        self.assertEqual(action(), reconcile.WIND_DOWN)
        self.doc.spec.autoDelete = True
        self.assertEqual(action(), reconcile.DELETE)
        self.doc.status.readyObserved = False
        self.doc.status.state = v1.PENDING
        self.assertIsNone(action())
        self.doc.status.state = v1.READY
        self.assertIsNone(action(cgroup_ok=False))

    def test_workloads_stopped_on_request_never_end_the_cell(self):
        def action(live):
            return reconcile.decide(
                self.doc, live.statuses(self.doc), True, live.removed(self.doc)
            ).action

        # A stop, kill or delete removed both workloads' containers; the root runs.
        asked = view(running=["s_k_c_root"])
        self.assertIsNone(action(asked))
        self.doc.spec.autoDelete = True
        self.assertIsNone(action(asked))
        self.doc.spec.autoDelete = False
        # One removed on request, the other exited by itself: the cell winds down.
        mixed = view(running=["s_k_c_root"], stopped=["s_k_c_b"])
        self.assertEqual(mixed.removed(self.doc), frozenset({"a"}))
        self.assertEqual(action(mixed), reconcile.WIND_DOWN)
        # Root gone too: an autoDelete cell is deleted whatever ended it.
        self.doc.spec.autoDelete = True
        self.assertEqual(action(view()), reconcile.DELETE)


class PassTests(TestCase):
    def setUp(self):
        self.runtime = fake_runtime(self)
        self.fake = self.runtime.containerd
        self.runtime.containerd = self.counter = CountingContainerd(self.fake)
        self.reconciler = Reconciler(self.runtime)
        return load_image(self.runtime, "r")

    def run_pass(self):
        self.counter.calls.clear()
        return defer.Deferred.fromCoroutine(self.reconciler.run_pass())

    def containers(self, realm="r"):
        return [c.id for c in self.fake._ns(namespace(self.runtime, realm)).containers.values()]

    def stored(self, key=KEY):
        return v1.CellDoc.from_wire(self.runtime.store.get(key))

    @defer.inlineCallbacks
    def test_steady_cell_is_not_rewritten(self):
        yield seed_cell(self.runtime, KEY)
        before = self.runtime.store.get(KEY)
        report = yield self.run_pass()
        self.assertEqual((report.cells_scanned, report.cells_updated), (1, 0))
        self.assertEqual(self.counter.total(), 2)
        self.assertEqual(self.runtime.store.get(KEY), before)

    @defer.inlineCallbacks
    def test_exited_workload_winds_down(self):
        yield seed_cell(self.runtime, KEY)
        self.fake.exit_task(namespace(self.runtime, "r"), "s_k_c_app", 3)
        report = yield self.run_pass()
        self.assertEqual(report.cells_updated, 1)
        self.assertEqual(self.stored().status.state, v1.STOPPED)
        self.assertEqual(self.containers(), [])

    @defer.inlineCallbacks
    def test_a_requested_stop_does_not_wind_down(self):
        yield seed_cell(self.runtime, KEY)
        ns = namespace(self.runtime, "r")
        # What StopContainer leaves: the workload's task and container removed.
        yield self.fake.kill_task(ns, "s_k_c_app", 15)
        yield self.fake.delete_task(ns, "s_k_c_app")
        yield self.fake.delete_container(ns, "s_k_c_app", True)
        yield self.run_pass()
        yield self.reconciler.reconcile_cell(KEY)
        self.assertEqual(self.containers(), ["s_k_c_root"])
        self.assertEqual((yield self.fake.task_state(ns, "s_k_c_root")).status, "running")

    @defer.inlineCallbacks
    def test_auto_delete(self):
        yield seed_cell(self.runtime, KEY, autoDelete=True)
        self.fake.exit_task(namespace(self.runtime, "r"), "s_k_c_app")
        report = yield self.run_pass()
        self.assertEqual(report.cells_deleted, 1)
        self.assertFalse(self.runtime.store.exists(KEY))
        self.assertEqual(self.containers(), [])

    @defer.inlineCallbacks
    def test_missing_cgroup_is_unknown(self):
        yield seed_cell(self.runtime, KEY, cgroup=False)
        report = yield self.run_pass()
        self.assertEqual(report.cells_updated, 1)
        self.assertEqual(self.stored().status.state, v1.UNKNOWN)

    @defer.inlineCallbacks
    def test_containerd_down_leaves_documents(self):
        yield seed_cell(self.runtime, KEY)
        yield load_image(self.runtime, "r2")
        yield seed_cell(self.runtime, ("r2", "s", "k", "c"))
        before = self.runtime.store.get(KEY)
        self.fake.available = False
        report = yield self.run_pass()
        self.assertTrue(report.containerd_down)
        self.assertEqual((report.cells_scanned, report.cells_errored), (2, 2))
        self.assertEqual(self.counter.total(), 2)
        self.assertEqual(self.runtime.store.get(KEY), before)
        self.fake.available = True
        report = yield self.run_pass()
        self.assertFalse(report.containerd_down)
        self.assertEqual(report.errors, [])

    @defer.inlineCallbacks
    def test_cost_per_namespace(self):
        for i in range(5):
            yield seed_cell(self.runtime, ("r", "s", "k", f"c{i}"), running=False)
        report = yield self.run_pass()
        self.assertEqual(report.cells_scanned, 5)
        self.assertEqual(self.counter.total(), 2)

    @defer.inlineCallbacks
    def test_cell_error_does_not_stop_pass(self):
        yield seed_cell(self.runtime, ("r", "s", "k", "a"))
        yield seed_cell(self.runtime, ("r", "s", "k", "b"), running=False)
        yield self.runtime.store.put(("r", "s", "k", "a"), {"kind": "Cell", "spec": 5})
        report = yield self.run_pass()
        self.assertEqual(report.cells_errored, 1)
        self.assertTrue(report.errors[0].startswith("reconcile cell r/s/k/a: "))
        self.assertEqual(report.cells_updated, 1)

    @defer.inlineCallbacks
    def test_pass_does_not_hold_other_cells(self):
        yield seed_cell(self.runtime, ("r", "s", "k", "a"))
        yield seed_cell(self.runtime, ("r", "s", "k", "b"), running=False)
        locked = self.runtime.store.lock(("r", "s", "k", "a"))
        yield defer.Deferred.fromCoroutine(locked.__aenter__())
        running = self.run_pass()
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
        running = self.run_pass()
        # Meanwhile a start runs the tasks and rewrites the document.
        ns = namespace(self.runtime, "r")
        for cid in ("s_k_c_root", "s_k_c_app"):
            yield self.fake.create_task(ns, cid)
            yield self.fake.start_task(ns, cid)
        raw = self.runtime.store.get(KEY)
        raw["status"]["message"] = "started"
        yield self.runtime.store.put(KEY, raw)
        yield defer.Deferred.fromCoroutine(lock.__aexit__(None, None, None))
        yield running
        self.assertEqual(self.counter.calls["list_containers"], 1)
        self.assertEqual(self.counter.calls["task_state"], 2)
        self.assertEqual(self.stored().status.state, v1.READY)

    @defer.inlineCallbacks
    def test_reconcile_cell(self):
        yield seed_cell(self.runtime, KEY)
        self.fake.exit_task(namespace(self.runtime, "r"), "s_k_c_root")
        outcome = yield defer.Deferred.fromCoroutine(self.reconciler.reconcile_cell(KEY))
        self.assertEqual(outcome, reconcile.UPDATED)
        statuses = {s.id: s.state for s in self.stored().status.containers}
        self.assertEqual(statuses, {"root": v1.STOPPED, "app": v1.READY})


class PassCostTests(TestCase):
    """What keeps a pass cheap: shared documents left intact, and turns for the reactor."""

    def setUp(self):
        self.runtime = fake_runtime(self)
        self.reconciler = Reconciler(self.runtime)
        return load_image(self.runtime, "r")

    def run_pass(self):
        return defer.Deferred.fromCoroutine(self.reconciler.run_pass())

    def shared(self, key=KEY):
        return self.runtime.store.decoded(key, v1.CellDoc.from_wire)

    @defer.inlineCallbacks
    def test_steady_pass_keeps_the_shared_document(self):
        yield seed_cell(self.runtime, KEY)
        before = self.shared()
        wire = before.to_wire()
        report = yield self.run_pass()
        self.assertEqual(report.cells_updated, 0)
        self.assertIs(self.shared(), before)
        self.assertEqual(before.to_wire(), wire)

    @defer.inlineCallbacks
    def test_writing_pass_never_modifies_the_shared_document(self):
        yield seed_cell(self.runtime, KEY)
        before = self.shared()
        wire = before.to_wire()
        self.runtime.containerd.exit_task(namespace(self.runtime, "r"), "s_k_c_app", 3)
        report = yield self.run_pass()
        self.assertEqual(report.cells_updated, 1)
        self.assertEqual(before.to_wire(), wire)
        self.assertEqual(self.shared().status.state, v1.STOPPED)

    @defer.inlineCallbacks
    def test_pass_lets_the_reactor_run_between_chunks(self):
        from twisted.internet import reactor

        self.patch(reconcile, "CHUNK", 2)
        for i in range(5):
            yield seed_cell(self.runtime, ("r", "s", "k", f"c{i}"))
        turns = []
        reactor.callLater(0, turns.append, "reactor")
        running = self.run_pass()
        # Everything before the first chunk boundary ran synchronously; the rest waits.
        self.assertNoResult(running)
        report = yield running
        self.assertEqual(turns, ["reactor"])
        self.assertEqual((report.cells_scanned, report.cells_updated), (5, 0))

    @defer.inlineCallbacks
    def test_small_pass_completes_without_yielding(self):
        for i in range(3):
            yield seed_cell(self.runtime, ("r", "s", "k", f"c{i}"))
        report = self.successResultOf(self.run_pass())
        self.assertEqual(report.cells_scanned, 3)


class JudgeTests(SynchronousTestCase):
    def test_judge_matches_decide_and_copies_nothing(self):
        doc = v1.CellDoc.from_wire(cell_doc(KEY, ("a", "b")))
        wire = doc.to_wire()
        cases = [
            view(running=["s_k_c_root", "s_k_c_a", "s_k_c_b"]),
            view(running=["s_k_c_root"], stopped=["s_k_c_a", "s_k_c_b"]),
            view(stopped=["s_k_c_root", "s_k_c_a"]),
            view(),
        ]
        for live in cases:
            for cgroup_ok in (True, False):
                statuses = live.statuses(doc)
                verdict = reconcile.judge(doc, statuses, cgroup_ok)
                decision = reconcile.decide(doc, statuses, cgroup_ok)
                self.assertEqual(
                    (verdict.write, verdict.action, verdict.state, verdict.observed),
                    (decision.write, decision.action, decision.doc.status.state,
                     decision.doc.status.readyObserved),
                )  # fmt: skip
                self.assertEqual(doc.to_wire(), wire)
