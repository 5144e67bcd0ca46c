"""BlockingPool: results, deadlines, and a pool that never outlives the reactor."""

from __future__ import annotations

import queue
import threading
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from kukeond.blocking import BlockingPool


def pool_threads(name: str) -> list[threading.Thread]:
    """Live worker threads of the pool called ``name``."""
    return [t for t in threading.enumerate() if t.name.startswith(f"PoolThread-{name}-")]


class TriggerReactor(Clock):
    """Enough of a reactor to see the pool's shutdown trigger and thread hand-offs."""

    def __init__(self) -> None:
        super().__init__()
        self.triggers: list[tuple[Any, ...]] = []
        self.from_threads: queue.Queue = queue.Queue()

    def addSystemEventTrigger(self, phase: str, event: str, fn: Any, *args: Any) -> Any:
        handle = (phase, event, fn, args)
        self.triggers.append(handle)
        return handle

    def removeSystemEventTrigger(self, handle: Any) -> None:
        self.triggers.remove(handle)

    def callFromThread(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        self.from_threads.put((fn, args, kwargs))

    def deliver(self) -> None:
        """Run the next call a worker handed back to the "reactor thread"."""
        fn, args, kwargs = self.from_threads.get(timeout=30)
        fn(*args, **kwargs)


class BlockingPoolTests(unittest.TestCase):
    """The pool against the real reactor."""

    def make(self, name: str, **kwargs: Any) -> BlockingPool:
        pool = BlockingPool(reactor, name, **kwargs)
        self.addCleanup(pool.stop)
        return pool

    @defer.inlineCallbacks
    def test_runs_off_the_reactor_thread(self):
        pool = self.make("kukeond-test-off")
        name = yield pool.run(lambda: threading.current_thread().name)
        self.assertTrue(name.startswith("PoolThread-kukeond-test-off-"), name)

    @defer.inlineCallbacks
    def test_passes_arguments_and_keywords(self):
        pool = self.make("kukeond-test-args")
        got = yield pool.run(lambda a, b=0: (a, b), 1, b=2)
        self.assertEqual(got, (1, 2))

    def test_deadline_fails_the_call(self):
        release = threading.Event()
        pool = self.make("kukeond-test-deadline", timeout=0.01)
        # Cleanups run last-in first-out: the worker is released before the pool is joined.
        self.addCleanup(release.set)
        return self.assertFailure(pool.run(release.wait), defer.TimeoutError)

    @defer.inlineCallbacks
    def test_a_call_after_stop_starts_a_fresh_pool(self):
        pool = self.make("kukeond-test-again")
        self.assertEqual((yield pool.run(lambda: 1)), 1)
        pool.stop()
        self.assertEqual(pool_threads("kukeond-test-again"), [])
        self.assertEqual((yield pool.run(lambda: 2)), 2)

    def test_bounded(self):
        pool = self.make("kukeond-test-bounded", max_threads=2)
        release = threading.Event()
        self.addCleanup(release.set)
        started = threading.Semaphore(0)

        def hold() -> None:
            started.release()
            release.wait()

        calls = [pool.run(hold) for _ in range(4)]
        started.acquire()
        started.acquire()
        self.assertLessEqual(len(pool_threads("kukeond-test-bounded")), 2)
        release.set()
        return defer.gatherResults(calls)


class ShutdownTests(unittest.SynchronousTestCase):
    """The shutdown trigger, seen through a fake reactor."""

    def test_first_call_registers_a_shutdown_trigger(self):
        fake = TriggerReactor()
        pool = BlockingPool(fake, "kukeond-test-trigger")
        self.addCleanup(pool.stop)
        self.assertEqual(fake.triggers, [])
        d = pool.run(lambda: 7)
        fake.deliver()
        self.assertEqual(self.successResultOf(d), 7)
        self.assertEqual([t[:2] for t in fake.triggers], [("during", "shutdown")])

    def test_shutdown_trigger_joins_the_workers(self):
        fake = TriggerReactor()
        pool = BlockingPool(fake, "kukeond-test-shutdown")
        self.addCleanup(pool.stop)
        d = pool.run(lambda: None)
        fake.deliver()
        self.successResultOf(d)
        _, _, fn, args = fake.triggers[0]
        fn(*args)
        self.assertEqual(pool_threads("kukeond-test-shutdown"), [])

    def test_stop_removes_the_trigger_and_is_idempotent(self):
        fake = TriggerReactor()
        pool = BlockingPool(fake, "kukeond-test-stop")
        d = pool.run(lambda: None)
        fake.deliver()
        self.successResultOf(d)
        pool.stop()
        pool.stop()
        self.assertEqual(fake.triggers, [])
        self.assertEqual(pool_threads("kukeond-test-stop"), [])

    def test_no_deadline(self):
        fake = TriggerReactor()
        pool = BlockingPool(fake, "kukeond-test-nodeadline", timeout=None)
        self.addCleanup(pool.stop)
        d = pool.run(lambda: 3)
        self.assertEqual(fake.getDelayedCalls(), [])
        fake.deliver()
        self.assertEqual(self.successResultOf(d), 3)
        d = pool.run(lambda: 4, timeout=5)  # a deadline of its own still applies
        self.assertEqual(len(fake.getDelayedCalls()), 1)
        fake.deliver()
        self.assertEqual(self.successResultOf(d), 4)
