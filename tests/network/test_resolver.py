"""reactor_resolver: IPv4 answers only, and a deadline on a lookup that never ends."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.trial import unittest

from kukeond.host.netpolicy import reactor_resolver


class ScriptedResolver:
    """An IHostnameResolver that answers with ``addresses``, or never when ``None``."""

    def __init__(self, addresses):
        self.addresses = addresses
        self.asked = []

    def resolveHostName(
        self,
        receiver,
        host,
        portNumber=0,
        addressTypes=None,  # noqa: N802
        transportSemantics="TCP",
    ):
        self.asked.append(host)
        receiver.resolutionBegan(object())
        if self.addresses is None:
            return
        for address in self.addresses:
            receiver.addressResolved(address)
        receiver.resolutionComplete()


class ResolverReactor(Clock):
    """A clock with a ``nameResolver``."""

    def __init__(self, resolver):
        super().__init__()
        self.nameResolver = resolver


class ReactorResolverTests(unittest.SynchronousTestCase):
    def test_answers_with_ipv4_addresses(self):
        reactor = ResolverReactor(
            ScriptedResolver(
                [IPv4Address("TCP", "192.0.2.1", 0), IPv6Address("TCP", "2001:db8::1", 0)]
            )
        )
        d = defer.Deferred.fromCoroutine(reactor_resolver(reactor)("db.example"))
        self.assertEqual(self.successResultOf(d), ["192.0.2.1"])
        self.assertEqual(reactor.nameResolver.asked, ["db.example"])

    def test_a_lookup_without_answer_fails_after_the_timeout(self):
        reactor = ResolverReactor(ScriptedResolver(None))
        d = defer.Deferred.fromCoroutine(reactor_resolver(reactor, timeout=5)("slow.example"))
        reactor.advance(4.9)
        self.assertNoResult(d)
        reactor.advance(0.2)
        failure = self.failureResultOf(d, defer.TimeoutError)
        self.assertIn("no answer within 5s", str(failure.value))
