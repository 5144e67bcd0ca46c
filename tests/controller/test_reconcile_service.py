"""The reconcile service: timer, no overlap, failures, stop, and task events (fakes)."""

from twisted.internet import defer, task
from twisted.trial.unittest import TestCase

from kukeond.api import v1beta1 as v1
from kukeond.controller.reconcile import PassReport, Reconciler
from kukeond.controller.reconcile_service import ReconcileService
from tests.controller.reconcile_support import (
    IMAGE,
    load_image,
    namespace,
    seed_cell,
)
from tests.support.runtime import fake_runtime


class StubReconciler:
    """Passes that finish when the test says so."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.started = 0
        self.pending: list[defer.Deferred] = []
        self.fail_next = False

    async def run_pass(self):
        self.started += 1
        if self.fail_next:
            self.fail_next = False
            raise ZeroDivisionError("boom")
        d = defer.Deferred()
        self.pending.append(d)
        await d
        return PassReport(cells_scanned=1)

    def finish(self):
        self.pending.pop(0).callback(None)


class LoopTests(TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.stub = StubReconciler(fake_runtime(self))

    def service(self, interval=30.0):
        svc = ReconcileService(self.stub, interval, clock=self.clock)
        svc.startService()
        self.addCleanup(self.stop, svc)
        return svc

    def stop(self, svc):
        while self.stub.pending:
            self.stub.finish()
        return svc.running and svc.stopService()

    def test_first_pass_at_start_then_interval(self):
        svc = self.service()
        self.assertEqual(self.stub.started, 1)
        self.stub.finish()
        self.assertEqual(svc.last_report.cells_scanned, 1)
        self.clock.advance(29)
        self.assertEqual(self.stub.started, 1)
        self.clock.advance(1)
        self.assertEqual(self.stub.started, 2)

    def test_passes_never_overlap(self):
        svc = self.service(interval=10)
        self.clock.advance(10)
        self.clock.advance(10)
        self.assertEqual(self.stub.started, 1)
        svc.request_pass()
        svc.request_pass()
        self.assertEqual(self.stub.started, 1)
        self.stub.finish()
        # The requests made meanwhile fold into exactly one more pass.
        self.assertEqual(self.stub.started, 2)
        self.stub.finish()
        self.assertEqual(self.stub.started, 2)

    def test_failure_is_logged_and_loop_continues(self):
        self.stub.fail_next = True
        svc = self.service(interval=5)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(svc._loop.running)
        self.clock.advance(5)
        self.assertEqual(self.stub.started, 2)

    def test_interval_zero_disables(self):
        self.service(interval=0)
        self.clock.advance(1000)
        self.assertEqual(self.stub.started, 0)
        self.assertEqual(self.stub.runtime.containerd._subscribers, [])

    def test_stop_waits_for_pass(self):
        svc = self.service()
        stopped = svc.stopService()
        self.assertNoResult(stopped)
        self.stub.finish()
        self.successResultOf(stopped)
        self.clock.advance(100)
        self.assertEqual(self.stub.started, 1)

    def test_resubscribe_runs_a_pass(self):
        svc = self.service()
        self.stub.finish()
        svc._on_resubscribe()
        self.assertEqual(self.stub.started, 2)


class EventTests(TestCase):
    key = ("r", "s", "k", "c")

    @defer.inlineCallbacks
    def setUp(self):
        self.clock = task.Clock()
        self.runtime = fake_runtime(self)
        yield load_image(self.runtime, "r")
        self.svc = ReconcileService(Reconciler(self.runtime), 30, clock=self.clock)
        self.svc.startService()
        self.addCleanup(self.svc.stopService)

    def state(self):
        return v1.CellDoc.from_wire(self.runtime.store.get(self.key)).status.state

    @defer.inlineCallbacks
    def test_exit_reconciles_cell_at_once(self):
        yield seed_cell(self.runtime, self.key, workloads=(), autoDelete=False)
        self.runtime.containerd.exit_task(namespace(self.runtime, "r"), "s_k_c_root", 137)
        self.assertEqual(self.state(), v1.READY)
        self.clock.advance(0.1)
        yield self.svc.idle()
        self.assertEqual(self.state(), v1.STOPPED)

    @defer.inlineCallbacks
    def test_burst_is_one_reconcile(self):
        yield seed_cell(self.runtime, self.key, workloads=("a",), autoDelete=True)
        ns = namespace(self.runtime, "r")
        self.runtime.containerd.exit_task(ns, "s_k_c_a")
        self.runtime.containerd.exit_task(ns, "s_k_c_root")
        self.assertEqual(len(self.svc._cells_due), 1)
        self.clock.advance(0.1)
        yield self.svc.idle()
        self.assertFalse(self.runtime.store.exists(self.key))

    @defer.inlineCallbacks
    def test_foreign_containers_are_ignored(self):
        yield seed_cell(self.runtime, self.key)
        ns = namespace(self.runtime, "r")
        yield self.runtime.containerd.create_container(ns, "other", IMAGE, {})
        yield self.runtime.containerd.create_task(ns, "other")
        yield self.runtime.containerd.start_task(ns, "other")
        self.runtime.containerd.exit_task(ns, "other")
        self.assertEqual(self.svc._cells_due, {})
