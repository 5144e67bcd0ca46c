"""The controller test runtimes build and clean up after themselves."""

from twisted.internet import defer
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from kukeond.containerd.interface import IContainerd
from kukeond.host.cgroups import ICgroups
from kukeond.host.cni import INetwork
from tests.support.runtime import fake_runtime, load_busybox, real_runtime


class RuntimeSupportTests(TestCase):
    def check(self, runtime):
        verifyObject(IContainerd, runtime.containerd)
        verifyObject(ICgroups, runtime.cgroups)
        verifyObject(INetwork, runtime.network)
        self.assertTrue(runtime.cgroup_root.startswith("/kukeon-test-"))

    @defer.inlineCallbacks
    def test_fake(self):
        runtime = fake_runtime(self)
        self.check(runtime)
        images = yield load_busybox(runtime, "r1")
        self.assertEqual(images[0].name, "docker.io/library/busybox:latest")

    @defer.inlineCallbacks
    def test_real(self):
        runtime = real_runtime(self)
        self.check(runtime)
        images = yield load_busybox(runtime, "r1")
        self.assertEqual(images[0].name, "docker.io/library/busybox:latest")
        namespaces = yield runtime.containerd.list_namespaces()
        self.assertIn(f"r1.{runtime.suffix}", namespaces)


class HostFailureReportingTests(TestCase):
    @defer.inlineCallbacks
    def test_host_failures_become_unknown_errors_not_bugs(self):
        from kukeond.containerd.errors import Unavailable
        from kukeond.errors import KukeonError
        from kukeond.handlers.registry import reporting_host_failures

        async def handler(args):
            raise Unavailable("failed to connect to containerd at unix:///x: gone")

        with self.assertRaises(KukeonError) as caught:
            yield defer.ensureDeferred(reporting_host_failures(handler)(None))
        self.assertEqual(caught.exception.kind, "Unknown")
        self.assertEqual(
            str(caught.exception), "failed to connect to containerd at unix:///x: gone"
        )

    @defer.inlineCallbacks
    def test_other_exceptions_pass_through(self):
        from kukeond.handlers.registry import reporting_host_failures

        def handler(args):
            raise RuntimeError("a bug")

        with self.assertRaises(RuntimeError):
            yield defer.ensureDeferred(reporting_host_failures(handler)(None))
