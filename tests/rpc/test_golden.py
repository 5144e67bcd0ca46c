"""Byte-exact frames of wire-api §5 through the daemon's own handler table."""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from kukeond.daemon import build_handlers
from kukeond.rpc.dispatch import Dispatcher
from kukeond.rpc.protocol import KukeonFactory
from tests.support.runtime import fake_runtime

GOLDEN = [
    (
        b'{"method":"KukeonV1.Ping","params":[{}],"id":0}',
        b'{"id":0,"result":{"OK":true,"Version":"v0.5.0","Err":null},"error":null}\n',
    ),
    (
        b'{"method":"KukeonV1.Reboot","params":[{}],"id":8}',
        b'{"id":8,"result":null,"error":"rpc: can\'t find method KukeonV1.Reboot"}\n',
    ),
    (
        b'{"method":"KukeonV1.Ping","id":9}',
        b'{"id":9,"result":null,"error":"jsonrpc: request body missing params"}\n',
    ),
    (
        b'{"method":"KukeonV1.CreateRealm","params":[{"Doc":{"metadata":{"name":"x"},'
        b'"status":{"state":""}}}],"id":10}',
        b'{"id":10,"result":null,"error":"realm state: unknown label \\"\\""}\n',
    ),
    (
        b'{"method":"KukeonV2.Ping","params":[{}],"id":11}',
        b'{"id":11,"result":null,"error":"rpc: can\'t find service KukeonV2.Ping"}\n',
    ),
    (
        b'{"method":"KukeonV1.Ping","params":{},"id":12}',
        b'{"id":12,"result":null,"error":'
        b'"json: cannot unmarshal object into Go value of type [1]interface {}"}\n',
    ),
    (
        b'{"method":"KukeonV1.Ping","params":[{}]}',
        b'{"id":null,"result":{"OK":true,"Version":"v0.5.0","Err":null},"error":null}\n',
    ),
]


class GoldenFrameTests(TestCase):
    def setUp(self):
        factory = KukeonFactory(Dispatcher(build_handlers(fake_runtime(self))))
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def test_frames(self):
        for request, response in GOLDEN:
            self.transport.clear()
            self.proto.dataReceived(request)
            self.assertEqual(self.transport.value(), response, request)

    def test_every_method_has_a_handler(self):
        from kukeond.api.kukeonv1 import METHODS

        missing = sorted(set(METHODS) - set(build_handlers(fake_runtime(self))))
        self.assertEqual(missing, [], "methods still answered with can't find method")
