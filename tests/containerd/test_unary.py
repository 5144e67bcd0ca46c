"""The reactor's own HTTP/2 client for unary gRPC reads, against a scripted server.

The server here speaks HTTP/2 frame by frame on a unix socket, so each test
can answer the way it wants: normal replies, errors in trailers only,
GOAWAY, refused and reset streams, closed windows, PINGs, split header
blocks, a connection cut in the middle. Against containerd itself the same
calls are covered by ``test_icontainerd`` (``container_ids``, ``task_state``).
"""

from __future__ import annotations

import os
import struct

from twisted.internet import protocol, reactor, task
from twisted.trial.unittest import TestCase

from kukeond.containerd import errors, hpack, unary
from kukeond.containerd._pb.services.containers.v1 import containers_pb2 as c_pb
from kukeond.containerd._pb.services.tasks.v1 import tasks_pb2 as t_pb
from kukeond.containerd._pb.types.task import task_pb2 as task_types
from tests.support.runtime import short_tmpdir

ONE = struct.Struct(">HBBBL")


def fields_block(*fields: tuple[bytes, bytes]) -> bytes:
    return b"".join(hpack.encode_literal(n, v) for n, v in fields)


OK_HEADERS = fields_block((b":status", b"200"), (b"content-type", b"application/grpc"))


def message(msg) -> bytes:
    raw = msg.SerializeToString()
    return b"\x00" + struct.pack(">L", len(raw)) + raw


def trailers(status: int = 0, text: str = "") -> bytes:
    fields = [(b"grpc-status", str(status).encode())]
    if text:
        fields.append((b"grpc-message", text.encode()))
    return fields_block(*fields)


class Server(protocol.Protocol):
    """Reads the client's frames; ``on_request(server, stream, headers, body)`` answers."""

    def connectionMade(self):
        self.factory.connections.append(self)
        self.buffer = b""
        self.preface = False
        self.decoder = hpack.Decoder()
        self.frames = []  # (type, flags, stream, payload) the client sent
        self.headers = {}
        self.bodies = {}
        if self.factory.settings is not None:
            self.send(unary._SETTINGS, 0, 0, self.factory.settings)

    def send(self, kind, flags, stream, payload=b""):
        self.transport.write(unary.frame(kind, flags, stream, payload))

    def reply(self, stream, msg=None, status=0, text=""):
        self.send(unary._HEADERS, unary._END_HEADERS, stream, OK_HEADERS)
        if msg is not None:
            self.send(unary._DATA, 0, stream, message(msg))
        self.send(
            unary._HEADERS, unary._END_HEADERS | unary._END_STREAM, stream, trailers(status, text)
        )

    def dataReceived(self, data):
        self.buffer += data
        if not self.preface:
            if len(self.buffer) < len(unary.PREFACE):
                return
            assert self.buffer.startswith(unary.PREFACE)
            self.buffer = self.buffer[len(unary.PREFACE) :]
            self.preface = True
        while len(self.buffer) >= 9:
            high, low, kind, flags, stream = ONE.unpack_from(self.buffer)
            size = high << 8 | low
            if len(self.buffer) < 9 + size:
                return
            payload, self.buffer = self.buffer[9 : 9 + size], self.buffer[9 + size :]
            self.frames.append((kind, flags, stream, payload))
            if kind == unary._HEADERS:
                self.headers[stream] = dict(self.decoder.decode(payload))
            elif kind == unary._DATA:
                self.bodies[stream] = self.bodies.get(stream, b"") + payload
                if flags & unary._END_STREAM:
                    self.factory.on_request(self, stream, self.headers[stream], self.bodies[stream])

    def kinds(self, kind):
        return [f for f in self.frames if f[0] == kind]


class ServerFactory(protocol.ServerFactory):
    protocol = Server

    def __init__(self, on_request, settings=b""):
        self.on_request = on_request
        self.settings = settings
        self.connections: list[Server] = []


def answer_ids(server, stream, headers, body):
    """A Containers.List server: every id filter names an existing container but 'gone'."""
    request = c_pb.ListContainersRequest.FromString(body[5:])
    ids = [f.split("==", 1)[1].strip('"') for f in request.filters]
    reply = c_pb.ListContainersResponse(
        containers=[c_pb.Container(id=i) for i in ids if i != "gone"]
    )
    server.reply(stream, reply)


class UnaryClientTests(TestCase):
    def setUp(self):
        self.path = os.path.join(short_tmpdir(self), "s.sock")
        self.client = unary.UnaryClient(reactor, self.path, timeout=5)
        self.addCleanup(self.client.close)

    def serve(self, on_request, settings=b""):
        factory = ServerFactory(on_request, settings)
        port = reactor.listenUNIX(self.path, factory)
        self.addCleanup(port.stopListening)
        return factory

    def list_call(self, *ids, namespace="ns1", timeout=None):
        request = c_pb.ListContainersRequest(filters=[f'id=="{i}"' for i in ids])
        return self.client.call("Containers.List", request, namespace, timeout)

    async def test_a_call_carries_its_method_namespace_and_deadline(self):
        factory = self.serve(answer_ids)
        reply = await self.list_call("a", "gone", "b")
        self.assertEqual([c.id for c in reply.containers], ["a", "b"])
        server = factory.connections[0]
        headers = server.headers[1]
        self.assertEqual(headers[b":path"], b"/containerd.services.containers.v1.Containers/List")
        self.assertEqual(headers[b":method"], b"POST")
        self.assertEqual(headers[b"content-type"], b"application/grpc")
        self.assertEqual(headers[b"containerd-namespace"], b"ns1")
        self.assertEqual(headers[b"grpc-timeout"], b"5000m")
        # Our SETTINGS: no push, the largest stream window; the connection window raised.
        settings = server.kinds(unary._SETTINGS)[0][3]
        self.assertEqual(struct.unpack(">HLHL", settings), (2, 0, 4, unary.MAX_WINDOW))
        update = server.kinds(unary._WINDOW_UPDATE)[0]
        self.assertEqual(struct.unpack(">L", update[3])[0], unary.MAX_WINDOW - 65535)
        # The server's SETTINGS are acknowledged; later calls share the connection.
        await wait_until(lambda: (unary._SETTINGS, unary._ACK, 0, b"") in server.frames)
        await self.list_call("c", namespace="ns2")
        self.assertEqual(len(factory.connections), 1)
        self.assertEqual(server.headers[3][b"containerd-namespace"], b"ns2")

    async def test_errors_in_trailers_only_keep_code_and_message(self):
        def not_found(server, stream, headers, body):
            block = fields_block(
                (b":status", b"200"),
                (b"content-type", b"application/grpc"),
                (b"grpc-status", b"5"),
                (b"grpc-message", b"task s_k_c_app not found: not found %E2%9C%93"),
            )
            server.send(unary._HEADERS, unary._END_HEADERS | unary._END_STREAM, stream, block)

        self.serve(not_found)
        request = t_pb.GetRequest(container_id="s_k_c_app")
        failure = await self.assertFailure(
            self.client.call("Tasks.Get", request, "ns"), errors.NotFound
        )
        self.assertEqual(failure.message, "Tasks.Get: task s_k_c_app not found: not found \u2713")
        self.assertEqual(failure.code, "NOT_FOUND")

    async def test_headers_split_in_continuations_and_padded_frames(self):
        def split(server, stream, headers, body):
            block = OK_HEADERS
            server.send(unary._HEADERS, 0, stream, block[:5])
            server.send(unary._CONTINUATION, 0, stream, block[5:9])
            server.send(unary._CONTINUATION, unary._END_HEADERS, stream, block[9:])
            data = message(t_pb.GetResponse(process=task_types.Process(pid=7, status=2)))
            server.send(unary._DATA, unary._PADDED, stream, b"\x03" + data + b"\x00\x00\x00")
            end = trailers()
            server.send(
                unary._HEADERS,
                unary._END_HEADERS | unary._END_STREAM | unary._PADDED | unary._PRIORITY_FLAG,
                stream,
                b"\x02" + b"\x00\x00\x00\x00\x10" + end + b"\x00\x00",
            )

        self.serve(split)
        reply = await self.client.call("Tasks.Get", t_pb.GetRequest(container_id="x"), "ns")
        self.assertEqual((reply.process.pid, reply.process.status), (7, 2))

    async def test_pings_are_answered_and_unknown_frames_ignored(self):
        def pinging(server, stream, headers, body):
            server.send(unary._PING, 0, 0, b"12345678")
            server.send(0x42, 0, 0, b"what is this")
            server.send(unary._PRIORITY, 0, stream, b"\x00\x00\x00\x00\x10")
            answer_ids(server, stream, headers, body)

        factory = self.serve(pinging)
        await self.list_call("a")
        frames = factory.connections[0].frames
        await wait_until(lambda: (unary._PING, unary._ACK, 0, b"12345678") in frames)

    async def test_a_deadline_resets_the_stream_and_the_connection_goes_on(self):
        held = []
        factory = self.serve(lambda server, stream, h, b: held.append(stream))
        started = reactor.seconds()
        await self.assertFailure(self.list_call("a", timeout=0.2), errors.DeadlineExceeded)
        self.assertLess(reactor.seconds() - started, 2)
        server = factory.connections[0]
        await wait_until(lambda: server.kinds(unary._RST_STREAM))
        self.assertEqual(server.kinds(unary._RST_STREAM)[0][2:], (1, struct.pack(">L", 8)))
        # A late answer to the reset stream is read and dropped; the next call works.
        server.reply(held[0], c_pb.ListContainersResponse())
        factory.on_request = answer_ids
        reply = await self.list_call("b")
        self.assertEqual([c.id for c in reply.containers], ["b"])

    async def test_goaway_sends_untaken_calls_to_a_new_connection(self):
        pending = []

        def first(server, stream, headers, body):
            pending.append((server, stream, body))
            if len(pending) == 2:
                # The server took stream 1 only: stream 3 goes elsewhere, 1 finishes here.
                server.send(unary._GOAWAY, 0, 0, struct.pack(">LL", 1, 0))
                factory.on_request = answer_ids
                answer_ids(server, 1, headers, pending[0][2])

        factory = self.serve(first)
        one, two = self.list_call("a"), self.list_call("b")
        self.assertEqual([c.id for c in (await one).containers], ["a"])
        self.assertEqual([c.id for c in (await two).containers], ["b"])
        self.assertEqual(len(factory.connections), 2)
        self.assertEqual(list(factory.connections[1].headers), [1])

    async def test_refused_stream_is_sent_again_and_a_reset_fails(self):
        seen = []

        def refuse_then_answer(server, stream, headers, body):
            seen.append(stream)
            if len(seen) == 1:
                server.send(unary._RST_STREAM, 0, stream, struct.pack(">L", 7))
            elif len(seen) == 2:
                answer_ids(server, stream, headers, body)
            else:
                server.send(unary._RST_STREAM, 0, stream, struct.pack(">L", 2))

        self.serve(refuse_then_answer)
        self.assertEqual([c.id for c in (await self.list_call("a")).containers], ["a"])
        failure = await self.assertFailure(self.list_call("a"), errors.ContainerdError)
        self.assertIn("stream reset by the server (code 2)", failure.message)
        self.assertEqual(seen, [1, 3, 5])

    async def test_a_lost_connection_is_retried_once_then_unavailable(self):
        cuts = []

        def cut(server, stream, headers, body):
            cuts.append(stream)
            if len(cuts) == 2:
                answer_ids(server, stream, headers, body)
            else:
                server.transport.loseConnection()

        factory = self.serve(cut)
        self.assertEqual([c.id for c in (await self.list_call("a")).containers], ["a"])
        self.assertEqual(len(factory.connections), 2)
        factory.on_request = lambda server, stream, h, b: server.transport.loseConnection()
        failure = await self.assertFailure(self.list_call("a"), errors.Unavailable)
        self.assertIn("Containers.List: connection to containerd", failure.message)

    async def test_nothing_listening_is_unavailable(self):
        failure = await self.assertFailure(self.list_call("a"), errors.Unavailable)
        self.assertIn(f"failed to connect to containerd at unix://{self.path}", failure.message)
        # The socket appears (containerd started): the next call connects.
        self.serve(answer_ids)
        self.assertEqual([c.id for c in (await self.list_call("a")).containers], ["a"])

    async def test_the_servers_stream_limit_holds_calls_back(self):
        open_streams, most = set(), []

        def answer_later(server, stream, headers, body):
            open_streams.add(stream)
            most.append(len(open_streams))

            def answer():
                open_streams.discard(stream)
                answer_ids(server, stream, headers, body)

            reactor.callLater(0.02, answer)

        # One stream at a time, says the server.
        self.serve(answer_later, settings=struct.pack(">HL", 3, 1))
        await self.list_call("warm")  # the server's SETTINGS are known from here on
        calls = [self.list_call(str(i)) for i in range(3)]
        replies = [await d for d in calls]
        self.assertEqual([[c.id for c in r.containers] for r in replies], [["0"], ["1"], ["2"]])
        self.assertEqual(max(most), 1)

    async def test_connection_window_exhausted_waits_for_an_update(self):
        factory = self.serve(answer_ids)
        await self.list_call("warm")
        conn = self.client._conn
        conn.send_window = 3  # as if the server had not read our earlier requests
        waiting = self.list_call("a")
        await task.deferLater(reactor, 0.05, lambda: None)
        self.assertFalse(waiting.called)
        factory.connections[0].send(unary._WINDOW_UPDATE, 0, 0, struct.pack(">L", 1000))
        self.assertEqual([c.id for c in (await waiting).containers], ["a"])

    async def test_a_protocol_error_drops_the_connection(self):
        def bad(server, stream, headers, body):
            if stream == 1:
                server.send(unary._PUSH_PROMISE, unary._END_HEADERS, stream, b"\x00\x00\x00\x02")
            else:
                answer_ids(server, stream, headers, body)

        factory = self.serve(bad)
        # Dropped and sent again on a new connection, where stream 1 is answered alike:
        # the retry fails too, then the call is Unavailable.
        await self.assertFailure(self.list_call("a"), errors.Unavailable)
        self.assertEqual(len(factory.connections), 2)
        goaway = factory.connections[0].kinds(unary._GOAWAY)
        self.assertEqual(struct.unpack(">L", goaway[0][3][4:8])[0], 1)

    async def test_close_fails_calls_in_flight(self):
        self.serve(lambda server, stream, h, b: None)
        pending = self.list_call("a")
        await wait_until(lambda: self.client._conn is not None and self.client._conn.streams)
        self.client.close()
        failure = await self.assertFailure(pending, errors.Unavailable)
        self.assertEqual(failure.message, "containerd client is stopped")
        await self.assertFailure(self.list_call("b"), errors.Unavailable)


async def wait_until(predicate, timeout=5.0):
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition not reached")
