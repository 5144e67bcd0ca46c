import json

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kukeond.rpc.dispatch import Dispatcher
from kukeond.rpc.protocol import KukeonFactory
from tests.rpc.fakes import TYPES, make_handlers


def responses(transport):
    return [json.loads(line) for line in transport.value().splitlines()]


class ProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.pending = []
        self.factory = KukeonFactory(
            Dispatcher(make_handlers(pending=self.pending), TYPES), max_frame_bytes=4096
        )
        self.proto = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def send(self, *objs):
        self.proto.dataReceived(b"".join(json.dumps(o).encode() for o in objs))

    def test_echo(self):
        self.send({"method": "KukeonV1.Echo", "params": [{"Value": "hi"}], "id": 3})
        self.assertEqual(
            self.transport.value(),
            b'{"id":3,"result":{"Value":"hi","Err":null},"error":null}\n',
        )

    def test_completion_order(self):
        self.send(
            {"method": "KukeonV1.Slow", "params": [{"Value": 1}], "id": 1},
            {"method": "KukeonV1.Echo", "params": [{"Value": 2}], "id": 2},
        )
        self.assertEqual([r["id"] for r in responses(self.transport)], [2])
        self.pending[0].callback(None)
        self.assertEqual([r["id"] for r in responses(self.transport)], [2, 1])

    def test_protocol_errors_keep_connection(self):
        self.send(
            {"method": "KukeonV1.Reboot", "params": [{}], "id": 8},
            {"method": "KukeonV1.Echo", "id": 9},
            {"method": "KukeonV2.Ping", "params": [{}], "id": 11},
            {"method": "Ping", "params": [{}], "id": 12},
            {"method": "KukeonV1.Echo", "params": {}, "id": 13},
            {"method": "KukeonV1.Echo", "params": [5], "id": 14},
            {"method": "KukeonV1.echo", "params": [{}], "id": 15},
            {"method": "KukeonV1.Missing", "params": [{}], "id": 16},
        )
        errors = {r["id"]: r["error"] for r in responses(self.transport)}
        self.assertEqual(
            errors,
            {
                8: "rpc: can't find method KukeonV1.Reboot",
                9: "jsonrpc: request body missing params",
                11: "rpc: can't find service KukeonV2.Ping",
                12: "rpc: service/method request ill-formed: Ping",
                13: "json: cannot unmarshal object into Go value of type [1]interface {}",
                14: "json: cannot unmarshal number into Go value of type EchoArgs",
                15: "rpc: can't find method KukeonV1.echo",
                16: "rpc: can't find method KukeonV1.Missing",
            },
        )
        self.assertFalse(self.transport.disconnecting)

    def test_empty_params_array_is_zero_args(self):
        self.send({"method": "KukeonV1.Echo", "params": [], "id": 1})
        self.assertEqual(responses(self.transport)[0]["result"], {"Value": None, "Err": None})

    def test_handler_exception_becomes_unknown(self):
        self.send({"method": "KukeonV1.Boom", "params": [{}], "id": 1})
        (r,) = responses(self.transport)
        self.assertEqual(r["result"]["Err"], {"Kind": "Unknown", "Message": "kaboom"})
        self.assertIsNone(r["error"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_async_handler_exception_becomes_unknown(self):
        self.send({"method": "KukeonV1.BoomLater", "params": [{}], "id": 1})
        (r,) = responses(self.transport)
        self.assertEqual(r["result"]["Err"], {"Kind": "Unknown", "Message": "kaboom later"})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_domain_error_in_reply(self):
        self.send({"method": "KukeonV1.Fail", "params": [{}], "id": 1})
        (r,) = responses(self.transport)
        self.assertEqual(
            r["result"]["Err"], {"Kind": "RealmNameRequired", "Message": "realm name is required"}
        )

    def test_malformed_closes_after_in_flight(self):
        self.send({"method": "KukeonV1.Slow", "params": [{"Value": 1}], "id": 1})
        self.proto.dataReceived(b'{"method": oops}{"method":"KukeonV1.Echo","params":[{}],"id":2}')
        self.assertFalse(self.transport.disconnecting)
        self.pending[0].callback(None)
        self.assertEqual([r["id"] for r in responses(self.transport)], [1])
        self.assertTrue(self.transport.disconnecting)

    def test_batch_array_is_fatal(self):
        self.proto.dataReceived(b'[{"method":"KukeonV1.Echo","params":[{}],"id":1}]')
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(self.transport.disconnecting)

    def test_huge_frame_closes_only_this_connection(self):
        other = self.factory.buildProtocol(None)
        other_transport = StringTransport()
        other.makeConnection(other_transport)
        self.proto.dataReceived(b'{"method":"KukeonV1.Echo","params":["' + b"x" * 5000)
        self.assertTrue(self.transport.disconnecting)
        other.dataReceived(b'{"method":"KukeonV1.Echo","params":[{"Value":1}],"id":1}')
        self.assertEqual(json.loads(other_transport.value())["result"]["Value"], 1)

    def test_half_close_answers_in_flight_then_closes(self):
        self.send({"method": "KukeonV1.Slow", "params": [{"Value": 1}], "id": 1})
        self.proto.readConnectionLost()
        self.assertFalse(self.transport.disconnecting)
        self.pending[0].callback(None)
        self.assertEqual([r["id"] for r in responses(self.transport)], [1])
        self.assertTrue(self.transport.disconnecting)

    def test_lost_connection_drops_late_answer(self):
        self.send({"method": "KukeonV1.Slow", "params": [{"Value": 1}], "id": 1})
        self.proto.connectionLost(None)
        self.pending[0].callback(None)
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.factory.in_flight, 0)

    def test_drain_waits_for_in_flight(self):
        from twisted.internet.task import Clock

        clock = Clock()
        self.send({"method": "KukeonV1.Slow", "params": [{"Value": 1}], "id": 1})
        d = self.factory.drain(10, clock)
        self.assertNoResult(d)
        self.pending[0].callback(None)
        self.assertEqual(self.successResultOf(d), 0)

    def test_drain_gives_up_at_timeout(self):
        from twisted.internet.task import Clock

        clock = Clock()
        self.send({"method": "KukeonV1.Slow", "params": [{"Value": 1}], "id": 1})
        d = self.factory.drain(10, clock)
        clock.advance(10)
        self.assertEqual(self.successResultOf(d), 1)
