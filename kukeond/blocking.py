"""Blocking work off the reactor thread: a named, bounded pool with a deadline per call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0
"""Seconds a piece of blocking work may take before its Deferred fails."""


class BlockingPool:
    """A named, bounded thread pool, created on first use and stopped at reactor shutdown.

    Every call gets a deadline, unless the pool is made with ``timeout=None``:
    past it the Deferred fails with ``twisted.internet.defer.TimeoutError``
    (the thread itself cannot be interrupted and finishes on its own). A call
    after :meth:`stop` starts a fresh pool, since a stopped ``ThreadPool``
    cannot be restarted.
    """

    def __init__(
        self,
        reactor: Any,
        name: str,
        max_threads: int = 2,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.name = name
        self._reactor = reactor
        self._max_threads = max_threads
        self._timeout = timeout
        self._pool: ThreadPool | None = None
        self._trigger: Any = None

    def run(
        self, fn: Callable[..., T], *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Deferred[T]:
        """Run ``fn(*args, **kwargs)`` on the pool; the Deferred fires in the reactor thread."""
        pool = self._pool
        if pool is None:
            pool = ThreadPool(minthreads=0, maxthreads=self._max_threads, name=self.name)
            pool.start()
            self._pool = pool
            self._trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self._halt)
        d = deferToThreadPool(self._reactor, pool, fn, *args, **kwargs)
        if timeout is None:
            timeout = self._timeout
        if timeout is not None:
            d.addTimeout(timeout, self._reactor)
        return d

    def stop(self) -> None:
        """Stop the pool after the work already queued (idempotent)."""
        if self._trigger is not None:
            self._reactor.removeSystemEventTrigger(self._trigger)
        self._halt()

    def _halt(self) -> None:
        self._trigger = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
