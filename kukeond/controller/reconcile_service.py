"""The reconcile loop as a service: periodic passes plus containerd task events.

* A ``LoopingCall`` runs a pass every ``interval`` seconds, the first one at
  start-up. ``interval`` 0 disables the loop and the event subscription.
* Passes never overlap: a pass requested while one runs (a tick, or a
  containerd re-subscription) is folded into one more pass afterwards.
* A failing pass is logged and the loop goes on.
* Task events (``/tasks/exit``, ``/tasks/oom``, ``/tasks/delete``) reconcile
  the affected cell at once, after a short delay that folds the burst of
  events one exit produces into a single reconcile.
* A container waiting out its restart backoff has its cell reconciled
  again when the backoff ends (the reconciler asks through ``wake``).
* Stopping waits for the pass and cell reconciles in flight.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger as TwistedLogger

from kukeond.base import gojson, naming
from kukeond.containerd.model import Event
from kukeond.controller.common import realm_namespace
from kukeond.controller.failures import log_step_failure
from kukeond.controller.reconcile import Key, PassReport, Reconciler
from kukeond.logs import Logger

EVENT_TOPICS = ("/tasks/exit", "/tasks/oom", "/tasks/delete")
EVENT_DELAY = 0.1
"""Seconds an event waits so the events of one exit lead to one reconcile."""


def log_report(log: TwistedLogger, report: PassReport) -> None:
    """Write the one summary line of a pass."""
    if not report.errors:
        log.info(
            "reconcile ok cells_scanned={cells_scanned} cells_updated={cells_updated} "
            "cells_deleted={cells_deleted}",
            cells_scanned=report.cells_scanned,
            cells_updated=report.cells_updated,
            cells_deleted=report.cells_deleted,
        )
        return
    log.warn(
        "reconcile pass completed with errors cells_scanned={cells_scanned} "
        "cells_updated={cells_updated} cells_deleted={cells_deleted} "
        "cells_errored={cells_errored} containerd_down={containerd_down} errors={errors}",
        cells_scanned=report.cells_scanned,
        cells_updated=report.cells_updated,
        cells_deleted=report.cells_deleted,
        cells_errored=report.cells_errored,
        containerd_down=report.containerd_down,
        errors=report.errors,
    )


def _spec_id(raw: dict[str, Any]) -> Any:
    return (raw.get("spec") or {}).get("id")


def cell_of_event(reconciler: Reconciler, event: Event) -> Key | None:
    """The stored cell an event's container belongs to, or None if it is not ours."""
    cid = getattr(event.event, "container_id", "") or ""
    names = naming.split_containerd_id(cid)
    if names is None:
        return None
    space, stack, cell_id, _ = names
    store = reconciler.runtime.store
    for realm in store.children(()):
        if realm_namespace(reconciler.runtime, realm) != event.namespace:
            continue
        if store.exists((realm, space, stack, cell_id)):
            return (realm, space, stack, cell_id)
        for key, spec_id in store.decoded_keys(4, (realm, space, stack), _spec_id):
            if spec_id == cell_id:
                return key
    return None


class ReconcileService(Service):
    """Drives a :class:`Reconciler` from a timer and from containerd events."""

    log = Logger()

    def __init__(
        self,
        reconciler: Reconciler,
        interval: float,
        clock: Any = None,
        event_delay: float = EVENT_DELAY,
    ) -> None:
        self.setName("reconcile")
        if clock is None:
            from twisted.internet import reactor as clock
        self.reconciler = reconciler
        self.interval = interval
        self.clock = clock
        self.event_delay = event_delay
        self.last_report: PassReport | None = None
        self.last_pass_at = gojson.ZERO_TIME
        self.last_pass_seconds = 0.0
        self._loop: task.LoopingCall | None = None
        self._subscription: Any = None
        self._pass: defer.Deferred | None = None
        self._again = False
        self._cells_due: dict[Key, Any] = {}
        self._cells_running: set[defer.Deferred] = set()

    # life cycle

    def startService(self) -> None:
        """Subscribe to task events and start the loop (first pass now)."""
        super().startService()
        if self.interval <= 0:
            self.log.info("reconcile loop disabled (interval 0)")
            return
        containerd = self.reconciler.runtime.containerd
        self._subscription = containerd.subscribe(
            self._on_event, topics=list(EVENT_TOPICS), on_resubscribe=self._on_resubscribe
        )
        self.reconciler.wake = self.reconcile_cell_in
        self._loop = task.LoopingCall(self.request_pass)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        """Stop the loop and events, then wait for work in flight."""
        super().stopService()
        self.reconciler.wake = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for call in self._cells_due.values():
            if call.active():
                call.cancel()
        self._cells_due.clear()
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            yield subscription.stop()
        yield self.idle()

    def idle(self) -> defer.Deferred:
        """Fire once the pass and the cell reconciles running now have finished."""
        work = list(self._cells_running)
        if self._pass is not None:
            work.append(_observe(self._pass))
        return defer.DeferredList(work)

    # passes

    def request_pass(self) -> defer.Deferred:
        """Run a pass now, or once more after the running one; fires when it is done."""
        if self._pass is not None:
            self._again = True
            return _observe(self._pass)
        running = defer.Deferred.fromCoroutine(self._passes())
        if running.called:
            return running
        self._pass = running

        def finished(result: Any) -> Any:
            self._pass = None
            return result

        running.addBoth(finished)
        return _observe(running)

    async def _passes(self) -> None:
        while True:
            self._again = False
            await self._one_pass()
            if not self._again or not self.running:
                return

    async def _one_pass(self) -> None:
        started = time.monotonic()
        try:
            report = await self.reconciler.run_pass()
        except Exception:  # noqa: BLE001  (the loop must survive anything)
            self.log.failure("reconcile pass panicked; loop continues")
            return
        self.last_report = report
        self.last_pass_at = gojson.now()
        self.last_pass_seconds = time.monotonic() - started
        log_report(self.log, report)

    def _on_resubscribe(self) -> None:
        self.log.info("containerd events re-subscribed; running a full reconcile pass")
        if self.running:
            self.request_pass()

    # events

    def _on_event(self, event: Event) -> None:
        if not self.running:
            return
        try:
            key = cell_of_event(self.reconciler, event)
        except Exception:  # noqa: BLE001  (a bad event must not break the stream)
            self.log.failure("cannot map containerd event {topic}", topic=event.topic)
            return
        if key is not None:
            self.reconcile_cell_in(key, self.event_delay)

    def reconcile_cell_in(self, key: Key, delay: float) -> None:
        """Reconcile the cell ``key`` in ``delay`` seconds, or sooner if already due sooner."""
        if not self.running:
            return
        call = self._cells_due.get(key)
        if call is not None:
            if call.getTime() <= self.clock.seconds() + delay:
                return
            call.cancel()
        self._cells_due[key] = self.clock.callLater(delay, self._run_cell, key)

    def _run_cell(self, key: Key) -> None:
        self._cells_due.pop(key, None)
        d = defer.Deferred.fromCoroutine(self._reconcile_cell(key))
        self._cells_running.add(d)
        d.addBoth(lambda _: self._cells_running.discard(d))

    async def _reconcile_cell(self, key: Key) -> None:
        try:
            outcome = await self.reconciler.reconcile_cell(key)
        except Exception as exc:  # noqa: BLE001  (the next pass retries)
            log_step_failure(self.log, exc, "reconcile of cell {cell} failed", cell="/".join(key))
            return
        self.log.debug(
            "reconciled cell {cell} after a task event: {outcome}",
            cell="/".join(key),
            outcome=outcome,
        )


def _observe(d: defer.Deferred) -> defer.Deferred:
    """A Deferred firing with None when ``d`` fires, leaving ``d``'s result alone."""
    waiter: defer.Deferred = defer.Deferred()

    def fire(result: Any) -> Any:
        waiter.callback(None)
        return result

    d.addBoth(fire)
    return waiter
