"""The daemon's service tree stops one service at a time, last started first."""

from twisted.application.service import Service
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from kukeond.daemon import OrderedServices


class Recorder(Service):
    def __init__(self, name, log):
        self.name = name
        self.log = log
        self.stopping = defer.Deferred()

    def stopService(self):
        super().stopService()
        self.log.append(f"stop {self.name}")
        return self.stopping


class OrderedServicesTests(SynchronousTestCase):
    def test_stop_waits_for_each_child_in_reverse(self):
        log = []
        top = OrderedServices()
        first, second = Recorder("runtime", log), Recorder("listener", log)
        first.setServiceParent(top)
        second.setServiceParent(top)
        top.startService()
        done = top.stopService()
        self.assertEqual(log, ["stop listener"])
        second.stopping.callback(None)
        self.assertEqual(log, ["stop listener", "stop runtime"])
        self.assertNoResult(done)
        first.stopping.callback(None)
        self.successResultOf(done)

    def test_a_failed_stop_does_not_keep_the_others_running(self):
        log = []
        top = OrderedServices()
        first, second = Recorder("containerd", log), Recorder("listener", log)
        first.setServiceParent(top)
        second.setServiceParent(top)
        top.startService()
        done = top.stopService()
        second.stopping.errback(FileNotFoundError("socket already removed"))
        self.assertEqual(log, ["stop listener", "stop containerd"])
        first.stopping.callback(None)
        self.successResultOf(done)
        self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)
