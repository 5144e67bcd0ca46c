"""``KukeonV1.Status``: a probe that proves the daemon can do work, not just that it is up.

It asks containerd for its version (so a dead containerd shows), and reports
the last reconcile pass, the request counters and how many resources the
metadata index holds. Only this daemon answers it; the reference client never
calls it.
"""

from __future__ import annotations

from typing import Any

from kukeond.api.extensions import ReconcileStatus, StatusReply, StatusResult
from kukeond.base import gojson
from kukeond.controller.failures import log_if_bug
from kukeond.controller.runtime import Runtime
from kukeond.logs import Logger

log = Logger()


class DaemonStatus:
    """Collects the status of one daemon; ``factory`` and ``reconcile`` are set once built."""

    def __init__(self, runtime: Runtime, version: str) -> None:
        self.runtime = runtime
        self.version = version
        self.started_at = gojson.now()
        self.factory: Any = None
        self.reconcile: Any = None

    async def handle(self, args: Any) -> StatusReply:
        """The ``Status`` handler."""
        config = self.runtime.config
        result = StatusResult(
            Version=self.version,
            StartedAt=self.started_at,
            Socket=config.socket,
            RunPath=config.run_path,
            ContainerdSocket=config.containerd_socket,
        )
        try:
            version = await self.runtime.containerd.version()
        except Exception as e:  # noqa: BLE001 - any failure means "cannot do work"; say which
            log_if_bug(log, e, "checking containerd for Status failed")
            result.ContainerdError = str(e)
        else:
            result.ContainerdReachable = True
            result.ContainerdVersion = getattr(version, "version", str(version))
        result.Reconcile = self._reconcile_status()
        if self.factory is not None:
            result.Connections = len(self.factory.connections)
            result.RequestsInFlight = self.factory.in_flight - 1  # not counting this call
            result.RequestsServed = self.factory.served
        store = self.runtime.store
        result.Realms, result.Spaces, result.Stacks, result.Cells = (
            len(store.keys(depth)) for depth in (1, 2, 3, 4)
        )
        return StatusReply(Result=result)

    def _reconcile_status(self) -> ReconcileStatus:
        config = self.runtime.config
        status = ReconcileStatus(
            Enabled=config.reconcile_seconds > 0, Interval=config.reconcile_interval
        )
        service = self.reconcile
        report = getattr(service, "last_report", None)
        if report is not None:
            status.LastPassAt = service.last_pass_at
            status.LastPassMillis = int(service.last_pass_seconds * 1000)
            status.CellsScanned = report.cells_scanned
            status.CellsUpdated = report.cells_updated
            status.CellsDeleted = report.cells_deleted
            status.CellsErrored = report.cells_errored
            status.ContainerdDown = report.containerd_down
            status.Errors = list(report.errors)
        return status
