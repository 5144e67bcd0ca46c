"""Restart policies: parsing, backoff, and the reconciler restarting workloads (fakes)."""

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kukeond.api import v1beta1 as v1
from kukeond.controller.reconcile import Reconciler
from kukeond.controller.reconcile_service import ReconcileService
from kukeond.controller.restart_policy import (
    BACKOFF_MAX,
    Backoff,
    RestartPolicy,
    parse_policy,
)
from tests.controller.reconcile_support import load_image, namespace, seed_cell
from tests.support.runtime import fake_runtime

KEY = ("r", "s", "k", "c")
APP = "s_k_c_app"
ROOT = "s_k_c_root"


class ParseTests(SynchronousTestCase):
    def test_known_values(self):
        self.assertEqual(parse_policy(""), RestartPolicy("no"))
        self.assertEqual(parse_policy("no"), RestartPolicy("no"))
        self.assertEqual(parse_policy("always"), RestartPolicy("always"))
        self.assertEqual(parse_policy(" Unless-Stopped "), RestartPolicy("always"))
        self.assertEqual(parse_policy("on-failure"), RestartPolicy("on-failure"))
        self.assertEqual(parse_policy("on-failure:3"), RestartPolicy("on-failure", 3))

    def test_unknown_values(self):
        for text in (
            "sometimes",
            "on-failure:",
            "on-failure:0",
            "on-failure:-1",
            "on-failure:x",
            "always:2",
        ):
            self.assertIsNone(parse_policy(text), text)

    def test_wants_restart(self):
        self.assertTrue(RestartPolicy("always").wants_restart(0, 100))
        self.assertFalse(RestartPolicy("no").wants_restart(1, 0))
        limited = RestartPolicy("on-failure", 2)
        self.assertFalse(limited.wants_restart(0, 0))
        self.assertTrue(limited.wants_restart(137, 1))
        self.assertFalse(limited.wants_restart(3, 2))
        self.assertTrue(RestartPolicy("on-failure").wants_restart(1, 1000))


class BackoffTests(SynchronousTestCase):
    def test_doubles_up_to_the_cap(self):
        backoff = Backoff()
        now = 0.0
        waits = []
        for _ in range(12):
            wait = backoff.wait(KEY, "app", now)
            waits.append(wait)
            # Asking again before it is due does not move the deadline.
            self.assertAlmostEqual(backoff.wait(KEY, "app", now + wait / 2), wait / 2)
            now += wait
            backoff.restarted(KEY, "app", now)
            now += 1.0  # runs one second, then exits again
        for got, want in zip(waits, [0.1, 0.2, 0.4, 0.8], strict=False):
            self.assertAlmostEqual(got, want)
        self.assertAlmostEqual(waits[-1], BACKOFF_MAX)

    def test_resets_after_a_long_run_and_on_forget(self):
        backoff = Backoff()
        for step in range(4):
            backoff.wait(KEY, "app", step)
            backoff.restarted(KEY, "app", step)
        self.assertAlmostEqual(backoff.wait(KEY, "app", 3.5), 1.6)
        backoff.restarted(KEY, "app", 5.1)
        self.assertAlmostEqual(backoff.wait(KEY, "app", 15.1), 0.1)
        backoff.forget(KEY)
        self.assertEqual(backoff.tracks, {})

    def test_failed_attempt_backs_off_further(self):
        backoff = Backoff()
        self.assertAlmostEqual(backoff.wait(KEY, "app", 0), 0.1)
        self.assertAlmostEqual(backoff.failed(KEY, "app", 0.1), 0.2)


class RestartTests(TestCase):
    """Workloads of a running cell on the fake containerd, timed by a ``task.Clock``."""

    @defer.inlineCallbacks
    def setUp(self):
        self.clock = task.Clock()
        self.runtime = fake_runtime(self)
        self.ns = namespace(self.runtime, "r")
        yield load_image(self.runtime, "r")
        self.reconciler = Reconciler(self.runtime, clock=self.clock)
        self.svc = ReconcileService(self.reconciler, 30, clock=self.clock)

    @defer.inlineCallbacks
    def seed(self, policy, workloads=("app",), host_network=False):
        yield seed_cell(self.runtime, KEY, workloads=workloads)
        doc = self.doc()
        for container in doc.spec.containers:
            if container.root:
                container.hostNetwork = host_network
            else:
                container.restartPolicy = policy
        yield self.runtime.store.put(KEY, doc.to_wire())
        self.svc.startService()
        self.addCleanup(self.svc.stopService)
        yield self.settle()

    def doc(self):
        return v1.CellDoc.from_wire(self.runtime.store.get(KEY))

    def status(self, name="app"):
        return next(s for s in self.doc().status.containers if s.id == name)

    @defer.inlineCallbacks
    def settle(self, seconds=0.0):
        self.clock.advance(seconds)
        yield self.svc.idle()

    def exit(self, code, cid=APP):
        self.runtime.containerd.exit_task(self.ns, cid, code)

    @defer.inlineCallbacks
    def task_status(self, cid=APP):
        info = yield self.runtime.containerd.task_state(self.ns, cid)
        return info.status

    @defer.inlineCallbacks
    def test_on_failure_restarts_at_most_n_times(self):
        yield self.seed("on-failure:2")
        for count, backoff in ((1, 0.1), (2, 0.2)):
            self.exit(3)
            yield self.settle(0.1)
            # Exited and backing off: still Ready, not wound down.
            self.assertEqual(self.doc().status.state, v1.READY)
            self.assertEqual(self.status().state, v1.STOPPED)
            yield self.settle(backoff)
            self.assertEqual((yield self.task_status()), "running")
            status = self.status()
            self.assertEqual((status.state, status.restartCount), (v1.READY, count))
            self.assertNotEqual(status.restartTime, "0001-01-01T00:00:00Z")
        self.exit(3)
        yield self.settle(0.1)
        yield self.settle(60)
        # Limit reached: the cell follows the plain rules and winds down.
        doc = self.doc()
        self.assertEqual(doc.status.state, v1.STOPPED)
        self.assertEqual(self.status().restartCount, 2)
        containers = yield self.runtime.containerd.list_containers(self.ns)
        self.assertEqual(containers, [])

    @defer.inlineCallbacks
    def test_on_failure_ignores_a_clean_exit(self):
        yield self.seed("on-failure")
        self.exit(0)
        yield self.settle(0.1)
        self.assertEqual(self.doc().status.state, v1.STOPPED)
        self.assertEqual(self.status().restartCount, 0)

    @defer.inlineCallbacks
    def test_always_waits_for_the_backoff(self):
        yield self.seed("always")
        self.exit(0)
        yield self.settle(0.1)
        yield self.settle(0.1)
        self.assertEqual(self.status().restartCount, 1)
        self.exit(137)
        yield self.settle(0.1)
        yield self.settle(0.1)
        # The second restart waits 0.2 s.
        self.assertEqual((yield self.task_status()), "stopped")
        yield self.settle(0.1)
        self.assertEqual((yield self.task_status()), "running")
        self.assertEqual(self.status().restartCount, 2)

    @defer.inlineCallbacks
    def test_stop_cell_wins_over_a_pending_restart(self):
        yield self.seed("always")
        self.exit(1)
        yield self.settle(0.1)
        runner = self.reconciler.runner

        async def stop_cell():
            async with self.runtime.store.lock(KEY):
                await runner.stop(self.doc())

        yield defer.Deferred.fromCoroutine(stop_cell())
        yield self.settle(0.1)
        yield self.settle(60)
        self.assertEqual(self.doc().status.state, v1.STOPPED)
        containers = yield self.runtime.containerd.list_containers(self.ns)
        self.assertEqual(containers, [])
        self.assertEqual(self.reconciler.backoff.tracks, {})

    @defer.inlineCallbacks
    def test_a_removed_container_is_a_user_stop(self):
        yield self.seed("always", workloads=("app", "side"))
        yield self.reconciler.runner.remove_container(self.ns, APP, 0.0)
        yield self.svc.request_pass()
        yield self.settle(60)
        self.assertEqual(self.status().state, v1.STOPPED)
        self.assertEqual(self.status().restartCount, 0)
        self.assertEqual(self.status("side").state, v1.READY)

    @defer.inlineCallbacks
    def test_unknown_policy_is_no_and_warned_once(self):
        yield self.seed("sometimes", workloads=("app", "side"))
        self.exit(1)
        yield self.settle(0.1)
        yield self.svc.request_pass()
        self.assertEqual(self.status().state, v1.STOPPED)
        self.assertEqual(self.status().restartCount, 0)
        warned = [k for k in self.reconciler._warned if k[1] == "app"]
        self.assertEqual(warned, [(KEY, "app", "sometimes")])

    @defer.inlineCallbacks
    def test_periodic_pass_restarts_without_events(self):
        yield self.seed("always")
        yield self.svc.stopService()
        self.reconciler.wake = None
        self.exit(1)
        yield self.reconciler.run_pass()
        self.assertEqual(self.status().state, v1.STOPPED)
        self.clock.advance(0.1)
        yield self.reconciler.run_pass()
        self.assertEqual(self.status().restartCount, 1)
        self.assertEqual((yield self.task_status()), "running")

    @defer.inlineCallbacks
    def test_counts_survive_status_reads_and_reset_on_start(self):
        yield self.seed("always", host_network=True)
        self.exit(1)
        yield self.settle(0.1)
        yield self.settle(0.1)
        runner = self.reconciler.runner
        live = yield defer.Deferred.fromCoroutine(runner.live_statuses(self.doc()))
        self.assertEqual([s.restartCount for s in live], [0, 1])

        async def restart_cell():
            async with self.runtime.store.lock(KEY):
                stopped = await runner.stop(self.doc())
                self.assertEqual(stopped.status.containers[1].restartCount, 1)
                await runner.start(stopped)

        yield defer.Deferred.fromCoroutine(restart_cell())
        self.assertEqual(self.status().restartCount, 0)
