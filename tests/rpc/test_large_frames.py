"""Large requests: decoded on the worker pool, started in arrival order, abandoned cleanly."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kukeond.api import kukeonv1, wire_results
from kukeond.blocking import BlockingPool
from kukeond.rpc import bigframe
from kukeond.rpc.bigframe import FrameDecoder
from kukeond.rpc.dispatch import Dispatcher
from kukeond.rpc.protocol import KukeonFactory
from tests.rpc.fakes import TYPES, FakePool, make_handlers
from tests.test_blocking import TriggerReactor, pool_threads

LoadImageArgs, LoadImageReply = kukeonv1.METHODS["LoadImage"]
LARGE = 2048


def load_handler(args):
    """Answers with what it was given: the realm, the tarball's size and digest."""
    digest = hashlib.sha256(args.Tarball or b"").hexdigest()
    return LoadImageReply(
        Result=wire_results.LoadImageResult(
            Realm=args.Realm, Namespace=str(len(args.Tarball or b"")), Images=[digest]
        )
    )


def load(tarball: str | bytes, id_: int = 1, realm: str = "default") -> bytes:
    if isinstance(tarball, bytes):
        tarball = base64.b64encode(tarball).decode()
    return json.dumps(
        {
            "method": "KukeonV1.LoadImage",
            "params": [{"Realm": realm, "Tarball": tarball}],
            "id": id_,
        }
    ).encode()


def echo(id_: int, method: str = "Echo") -> bytes:
    return json.dumps(
        {"method": f"KukeonV1.{method}", "params": [{"Value": id_}], "id": id_}
    ).encode()


def responses(transport):
    return [json.loads(line) for line in transport.value().splitlines()]


class Connection:
    """A factory whose large frames go to a pool of the test's choosing, and one connection."""

    def __init__(self, pool=None, large=LARGE, pending=None):
        handlers = make_handlers(pending=pending)
        handlers["LoadImage"] = load_handler
        types = {**TYPES, "LoadImage": (LoadImageArgs, LoadImageReply)}
        decoder = None if pool is None else FrameDecoder(pool, long_string=256, piece=64)
        self.factory = KukeonFactory(
            Dispatcher(handlers, types),
            max_frame_bytes=1 << 24,
            frame_decoder=decoder,
            large_frame_bytes=large,
        )
        self.proto = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def send(self, *frames: bytes) -> None:
        data = b"".join(frames)
        for i in range(0, len(data), 1000):  # as the socket hands it over: in chunks
            self.proto.dataReceived(data[i : i + 1000])

    def ids(self):
        return [r["id"] for r in responses(self.transport)]


TARBALL = os.urandom(6000)
BIG = load(TARBALL)


class LargeFrameTests(SynchronousTestCase):
    def setUp(self):
        self.pool = FakePool()
        self.pending = []
        self.conn = Connection(self.pool, pending=self.pending)

    def test_decoded_on_the_pool_not_inline(self):
        self.conn.send(BIG)
        self.assertEqual(self.conn.transport.value(), b"")
        self.assertEqual(len(self.pool.jobs), 1)
        self.assertEqual(self.conn.transport.producerState, "paused")
        self.pool.finish()
        (reply,) = responses(self.conn.transport)
        self.assertIsNone(reply["error"])
        self.assertEqual(reply["result"]["Result"]["Namespace"], str(len(TARBALL)))
        self.assertEqual(reply["result"]["Result"]["Images"], [hashlib.sha256(TARBALL).hexdigest()])
        self.assertEqual(self.conn.transport.producerState, "producing")
        self.assertEqual(self.conn.factory.in_flight, 0)

    def test_small_frames_stay_inline(self):
        self.conn.send(load(b"x" * 100), echo(2))
        self.assertEqual(self.conn.ids(), [1, 2])
        self.assertEqual(self.pool.jobs, [])

    def test_same_replies_as_inline(self):
        good = TARBALL
        frames = [
            load(good),
            load(base64.b64encode(good).decode()[:-1]),
            load(base64.b64encode(good).decode()[:3000] + "-" + "A" * 5000),
            load(good, realm=5),
            load(good).replace(b"LoadImage", b"LoadImages"),
            load(good).replace(b"Tarball", b"tarball"),
            load(base64.b64encode(good).decode()[:100] + "\\n" + "A" * 8000),
        ]
        for frame in frames:
            with self.subTest(frame=frame[:60]):
                self.assertGreaterEqual(len(frame), LARGE)
                inline = Connection(None, large=1 << 30)
                inline.send(frame)
                pooled = Connection(self.pool)
                pooled.send(frame)
                self.assertEqual(pooled.transport.value(), b"")
                self.pool.finish()
                self.assertEqual(pooled.transport.value(), inline.transport.value())
                self.assertNotEqual(inline.transport.value(), b"")

    def test_invalid_base64_error_reply(self):
        text = base64.b64encode(TARBALL).decode()
        self.conn.send(load(text[:5000] + "!" + text[5001:]))
        self.pool.finish()
        (reply,) = responses(self.conn.transport)
        self.assertEqual(
            (reply["result"], reply["error"]), (None, "illegal base64 data at input byte 5000")
        )
        self.assertFalse(self.conn.transport.disconnecting)

    def test_frames_behind_it_wait_and_start_in_order(self):
        self.conn.send(echo(1), BIG.replace(b'"id": 1', b'"id": 2'), echo(3), echo(4, "Slow"))
        self.conn.send(echo(5))  # read although paused (a StringTransport does not pause)
        self.assertEqual(self.conn.ids(), [1])
        self.assertEqual(self.pending, [])  # Slow has not started either
        self.pool.finish()
        self.assertEqual(self.conn.ids(), [1, 2, 3, 5])
        self.assertEqual(len(self.pending), 1)
        self.pending[0].callback(None)
        self.assertEqual(self.conn.ids(), [1, 2, 3, 5, 4])

    def test_two_large_frames_one_after_the_other(self):
        second = load(TARBALL[::-1], id_=2)
        self.conn.send(BIG, echo(3), second, echo(4))
        self.assertEqual(len(self.pool.jobs), 1)
        self.pool.finish()
        self.assertEqual(self.conn.ids(), [1, 3])
        self.assertEqual(len(self.pool.jobs), 1)
        self.assertEqual(self.conn.transport.producerState, "paused")
        self.pool.finish()
        self.assertEqual(self.conn.ids(), [1, 3, 2, 4])
        self.assertEqual(self.conn.transport.producerState, "producing")

    def test_large_frame_not_json_is_fatal_and_nothing_after_it_runs(self):
        text = base64.b64encode(TARBALL).decode()
        bad = load(text).replace(text[100:101].encode(), b"\x01", 1)
        self.conn.send(echo(1, "Slow"), bad, echo(3))
        self.pool.finish()
        self.assertEqual(self.conn.ids(), [])
        self.assertFalse(self.conn.transport.disconnecting)  # Slow is still in flight
        self.pending[0].callback(None)
        self.assertEqual(self.conn.ids(), [1])
        self.assertTrue(self.conn.transport.disconnecting)

    def test_malformed_frame_behind_a_large_one(self):
        self.conn.send(BIG, b'{"method": oops}', echo(3))
        self.assertFalse(self.conn.transport.disconnecting)
        self.pool.finish()
        self.assertEqual(self.conn.ids(), [1])
        self.assertTrue(self.conn.transport.disconnecting)

    def test_connection_lost_during_decode(self):
        self.conn.send(BIG, echo(2))
        fn, args, kwargs, d = self.pool.jobs[0]
        self.conn.proto.connectionLost(None)
        self.assertTrue(args[2].is_set())  # the worker is told to stop
        self.pool.finish()  # ... and does, with Cancelled: swallowed
        self.assertEqual(self.conn.transport.value(), b"")
        self.assertEqual(self.conn.factory.in_flight, 0)
        self.assertEqual(self.conn.factory.connections, set())

    def test_decode_done_after_the_connection_was_lost(self):
        self.conn.send(BIG)
        fn, args, kwargs, d = self.pool.jobs.pop()
        result = fn(args[0], args[1], threading.Event(), **kwargs)  # finished before noticing
        self.conn.proto.connectionLost(None)
        d.callback(result)
        self.assertEqual(self.conn.transport.value(), b"")
        self.assertEqual(self.conn.factory.in_flight, 0)
        self.assertEqual(self.conn.factory.served, 0)  # the handler never ran

    def test_half_close_during_decode(self):
        self.conn.send(BIG, echo(2))
        self.conn.proto.readConnectionLost()
        self.assertFalse(self.conn.transport.disconnecting)
        self.pool.finish()
        self.assertEqual(self.conn.ids(), [1, 2])
        self.assertTrue(self.conn.transport.disconnecting)

    def test_drain_abandons_a_decode(self):
        self.conn.send(echo(1, "Slow"), BIG, echo(3))
        cancelled = self.pool.jobs[0][1][2]
        d = self.conn.factory.drain(10, Clock())
        self.assertTrue(cancelled.is_set())
        self.assertNoResult(d)  # Slow is still running
        self.pending[0].callback(None)
        self.assertEqual(self.successResultOf(d), 0)
        self.assertTrue(self.conn.transport.disconnecting)
        self.pool.finish()
        self.assertEqual(self.conn.ids(), [1])

    def test_decoder_bug_closes_this_connection_only(self):
        self.patch(bigframe, "decode_frame", _explode)
        conn = Connection(self.pool)
        conn.send(BIG, echo(2))
        self.pool.finish()
        self.assertEqual(conn.ids(), [])
        self.assertTrue(conn.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_pool_that_cannot_start(self):
        self.conn.factory.frame_decoder = FrameDecoder(_BrokenPool())
        self.conn.send(echo(1), BIG, echo(3))
        self.assertEqual(self.conn.ids(), [1])
        self.assertTrue(self.conn.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class FastPathTests(SynchronousTestCase):
    def test_requests_before_bad_input_in_one_chunk_are_answered(self):
        conn = Connection(FakePool())
        conn.proto.dataReceived(echo(1) + b"[1]")
        self.assertEqual(conn.ids(), [1])
        self.assertTrue(conn.transport.disconnecting)


class RealThreadTests(SynchronousTestCase):
    """The worker thread of a real pool, with the reactor's side played by the test."""

    def setUp(self):
        self.reactor = TriggerReactor()
        self.pool = BlockingPool(self.reactor, "kukeond-test-frames", max_threads=1, timeout=None)
        self.addCleanup(self.pool.stop)
        self.conn = Connection(self.pool)
        self.conn.factory.frame_decoder = FrameDecoder(self.pool)  # the real sizes

    def test_megabytes(self):
        tarball = os.urandom(3 << 20)
        self.conn.send(load(tarball), echo(2))
        self.assertEqual(self.conn.ids(), [])
        self.reactor.deliver()
        result = responses(self.conn.transport)[0]["result"]["Result"]
        self.assertEqual(result["Images"], [hashlib.sha256(tarball).hexdigest()])
        self.assertEqual(self.conn.ids(), [1, 2])

    def test_stop_does_not_wait_for_the_decode(self):
        started = threading.Event()
        real = bigframe.decode_base64

        def slow(text, piece, between):
            started.set()
            while True:  # a decode that would run for minutes; between() ends it
                between()
                time.sleep(0.001)
            return real(text, piece, between)

        self.patch(bigframe, "decode_base64", slow)
        self.conn.send(load(os.urandom(3 << 20)))
        self.assertTrue(started.wait(30))
        self.conn.proto.stop_reading_and_close()
        begun = time.monotonic()
        self.pool.stop()  # joins the worker, as the reactor's shutdown trigger does
        self.assertLess(time.monotonic() - begun, 5)
        self.assertEqual(pool_threads("kukeond-test-frames"), [])
        self.reactor.deliver()  # the Cancelled failure reaches the "reactor": swallowed
        self.assertEqual(self.conn.transport.value(), b"")
        self.assertTrue(self.conn.transport.disconnecting)


def _explode(*args, **kwargs):
    raise RuntimeError("decoder bug")


class _BrokenPool:
    def run(self, *args, **kwargs):
        raise RuntimeError("no threads")
