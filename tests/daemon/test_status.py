"""KukeonV1.Status: containerd reachability, reconcile summary, counters, resources."""

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from kukeond.controller.reconcile import PassReport
from kukeond.status import DaemonStatus
from tests.support.runtime import fake_runtime


class FakeFactory:
    connections = {object(), object()}
    in_flight = 1
    served = 41


class FakeReconcile:
    last_report = PassReport(cells_scanned=3, cells_updated=1, errors=["x"])
    last_pass_at = "2026-01-02T03:04:05Z"
    last_pass_seconds = 0.0123


class StatusTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.status = DaemonStatus(self.rt, "v0.5.0")

    @defer.inlineCallbacks
    def test_reports_everything(self):
        yield self.rt.store.put(("r",), {"metadata": {"name": "r"}})
        yield self.rt.store.put(("r", "s"), {"metadata": {"name": "s"}})
        self.status.factory = FakeFactory()
        self.status.reconcile = FakeReconcile()
        self.rt.config.reconcile_interval = "30s"
        reply = yield defer.ensureDeferred(self.status.handle(None))
        wire = reply.to_wire()["Result"]
        self.assertTrue(wire["ContainerdReachable"])
        self.assertEqual(wire["ContainerdError"], "")
        self.assertEqual(
            (wire["Realms"], wire["Spaces"], wire["Stacks"], wire["Cells"]), (1, 1, 0, 0)
        )
        self.assertEqual(
            (wire["Connections"], wire["RequestsInFlight"], wire["RequestsServed"]), (2, 0, 41)
        )
        self.assertEqual(
            wire["Reconcile"],
            {
                "Enabled": True,
                "Interval": "30s",
                "LastPassAt": "2026-01-02T03:04:05Z",
                "LastPassMillis": 12,
                "CellsScanned": 3,
                "CellsUpdated": 1,
                "CellsDeleted": 0,
                "CellsErrored": 0,
                "ContainerdDown": False,
                "Errors": ["x"],
            },
        )
        self.assertIsNone(reply.to_wire()["Err"])

    @defer.inlineCallbacks
    def test_containerd_down_is_reported_not_raised(self):
        self.rt.containerd.available = False
        reply = yield defer.ensureDeferred(self.status.handle(None))
        result = reply.Result
        self.assertFalse(result.ContainerdReachable)
        self.assertIn("unavailable", result.ContainerdError)
        self.assertEqual(result.Reconcile.LastPassAt, "0001-01-01T00:00:00Z")
