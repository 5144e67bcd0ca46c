"""gRPC unary calls over one HTTP/2 connection that the reactor drives, without threads.

``GrpcContainerd`` runs its operations with the grpc library on a thread pool.
For the reads on the request path (which containers exist, a task's state)
that costs several times the exchange itself: the library's work per call
(about 0.4 ms of CPU here) and two thread hops, against about 0.07 ms for
writing and parsing the frames. :class:`UnaryClient` speaks just enough
HTTP/2 (RFC 9113) for unary calls to one server:

* one connection, opened on first use and again after it is lost; calls
  start right after the connection preface;
* our SETTINGS turn push off and give every stream the largest window, and
  the connection window is raised to the largest at once, so the server
  never waits for us; it is topped up as replies arrive;
* a request is a HEADERS frame (literal fields, see :mod:`hpack`) and one
  DATA frame, written together when the server's windows and stream limit
  allow, queued until they do otherwise;
* replies (headers, DATA, trailers; or trailers only) are decoded in order,
  CONTINUATION frames joined, padding removed; SETTINGS are acknowledged,
  PINGs answered;
* every call has a deadline: ``grpc-timeout`` tells the server, a timer here
  resets the stream and fails the call with ``DeadlineExceeded``;
* GOAWAY: the calls the server did not take go to a new connection, the
  others finish first. A lost connection fails its calls with
  ``Unavailable``, after trying each once more on a new connection.

The last point makes it a client for idempotent reads only. Failures are the
types of :mod:`kukeond.containerd.errors`, with the messages the threaded
client gives (``Tasks.Get: <containerd's message>``).
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any
from urllib.parse import unquote_to_bytes

import grpc
from google.protobuf.message import DecodeError
from twisted.internet import defer, protocol, unix
from twisted.python.failure import Failure

from kukeond.containerd import errors, hpack
from kukeond.containerd.stubs import unary_method

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0, 1, 2, 3, 4
_PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 5, 6, 7, 8, 9
_END_STREAM = _ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY_FLAG = 0x20

_ENABLE_PUSH, _MAX_CONCURRENT_STREAMS, _INITIAL_WINDOW_SIZE, _MAX_FRAME_SIZE = 2, 3, 4, 5
_NO_ERROR, _PROTOCOL_ERROR, _REFUSED_STREAM, _CANCEL = 0x0, 0x1, 0x7, 0x8

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535
FRAME_SIZE = 16384
"""The largest frame either side may send unless told otherwise; we never raise ours."""
MAX_MESSAGE = 64 << 20
"""The largest reply accepted (the grpc channel's limit in :mod:`sync`)."""
MAX_HEADER_BLOCK = 1 << 20
MAX_STREAM_ID = 2**31 - 1

_HEADER = struct.Struct(">HBBBL")  # length (24 bits, split), type, flags, stream id
_U32 = struct.Struct(">L")

_OK = grpc.StatusCode.OK.value[0]
_INTERNAL = grpc.StatusCode.INTERNAL.value[0]
_CANCELLED = grpc.StatusCode.CANCELLED.value[0]
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
_UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]
_HTTP_TO_GRPC = {
    b"400": _INTERNAL,
    b"401": grpc.StatusCode.UNAUTHENTICATED.value[0],
    b"403": grpc.StatusCode.PERMISSION_DENIED.value[0],
    b"404": grpc.StatusCode.UNIMPLEMENTED.value[0],
    b"429": _UNAVAILABLE,
    b"502": _UNAVAILABLE,
    b"503": _UNAVAILABLE,
    b"504": _UNAVAILABLE,
}


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    size = len(payload)
    return _HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream) + payload


class ProtocolError(Exception):
    """The server broke HTTP/2: the connection is dropped."""


def _unpad(payload: bytes) -> bytes:
    if not payload or payload[0] >= len(payload):
        raise ProtocolError("bad padding")
    return payload[1 : len(payload) - payload[0]]


class _Call:
    """One call: its request bytes, where it is, and what has arrived."""

    __slots__ = (
        "name",
        "block",
        "body",
        "response",
        "deferred",
        "timer",
        "conn",
        "stream",
        "headers",
        "data",
        "size",
        "retried",
    )

    def __init__(self, name: str, block: bytes, body: bytes, response: Any) -> None:
        self.name = name
        self.block = block
        self.body = body
        self.response = response
        self.deferred: defer.Deferred[Any] = defer.Deferred()
        self.timer: Any = None
        self.conn: _Connection | None = None
        self.stream = 0
        self.headers: list[hpack.Field] | None = None
        self.data: list[bytes] = []
        self.size = 0
        self.retried = False


class UnaryClient:
    """Unary calls to the gRPC server on a unix socket (see the module docstring)."""

    def __init__(self, reactor: Any, socket_path: str, timeout: float = 30.0) -> None:
        for prefix in ("unix://", "unix:"):
            if socket_path.startswith(prefix):
                socket_path = socket_path[len(prefix) :]
                break
        self.path = socket_path
        self.address = f"unix://{socket_path}"
        self.timeout = timeout
        self._reactor = reactor
        self._conn: _Connection | None = None
        self._waiting: list[_Call] | None = None  # not None while a connection is being made
        self._blocks: dict[tuple[str, str | None, float], bytes] = {}
        self._closed = False

    def call(
        self, name: str, request: Any, namespace: str | None = None, timeout: float | None = None
    ) -> defer.Deferred[Any]:
        """Call ``name`` (e.g. ``"Tasks.Get"``) with ``request``; fires with the reply message."""
        if self._closed:
            return defer.fail(errors.Unavailable("containerd client is stopped"))
        path, response = unary_method(name)
        seconds = timeout or self.timeout
        message = request.SerializeToString()
        body = b"\x00" + _U32.pack(len(message)) + message
        if len(body) > FRAME_SIZE:
            raise ValueError(f"{name}: a request of {len(body)} bytes is too large for this client")
        call = _Call(name, self._block(path, namespace, seconds), body, response)
        call.timer = self._reactor.callLater(seconds, self._expire, call)
        self._submit(call)
        return call.deferred

    def close(self) -> None:
        """Fail every call in progress and drop the connection; later calls fail."""
        self._closed = True
        waiting, self._waiting = self._waiting or [], None
        for call in waiting:
            self._settle(call, Failure(errors.Unavailable("containerd client is stopped")))
        if self._conn is not None:
            self._conn.transport.abortConnection()

    # --- plumbing --------------------------------------------------------------------

    def _block(self, path: str, namespace: str | None, seconds: float) -> bytes:
        key = (path, namespace, seconds)
        block = self._blocks.get(key)
        if block is None:
            if len(self._blocks) >= 256:
                self._blocks.clear()
            millis = max(1, int(seconds * 1000))
            deadline = f"{millis}m" if millis < 10**8 else f"{min(millis // 1000, 10**8 - 1)}S"
            block = (
                hpack.encode_indexed(3)  # :method POST
                + hpack.encode_indexed(6)  # :scheme http
                + hpack.encode_literal_indexed_name(4, path.encode())  # :path
                + hpack.encode_literal_indexed_name(1, b"localhost")  # :authority
                + hpack.encode_literal_indexed_name(31, b"application/grpc")  # content-type
                + hpack.encode_literal(b"te", b"trailers")
                + hpack.encode_literal(b"grpc-timeout", deadline.encode())
            )
            if namespace is not None:
                block += hpack.encode_literal(b"containerd-namespace", namespace.encode())
            self._blocks[key] = block
        return block

    def _submit(self, call: _Call) -> None:
        conn = self._conn
        if conn is not None and conn.open:
            conn.start(call)
        elif self._waiting is not None:
            self._waiting.append(call)
        else:
            self._waiting = [call]
            self._reactor.connectUNIX(self.path, _Factory(self), timeout=self.timeout)

    def _connected(self, conn: _Connection) -> None:
        if self._closed:
            conn.transport.abortConnection()
            return
        self._conn = conn
        waiting, self._waiting = self._waiting or [], None
        for call in waiting:
            if not call.deferred.called:
                conn.start(call)

    def _connect_failed(self, reason: Failure) -> None:
        waiting, self._waiting = self._waiting or [], None
        cause = reason.getErrorMessage()
        for call in waiting:
            error = errors.Unavailable(
                f"failed to connect to containerd at {self.address}: {call.name}: {cause}"
            )
            self._settle(call, Failure(error))

    def _lost(self, conn: _Connection, calls: list[_Call], why: str) -> None:
        if self._conn is conn:
            self._conn = None
        for call in calls:
            self._retry(call, f"connection to containerd at {self.address} lost: {why}")

    def _retry(self, call: _Call, why: str) -> None:
        """Send a call again on another connection, once; then it fails ``Unavailable``."""
        call.conn = None
        if call.deferred.called:
            return
        if call.retried or self._closed:
            stopped = "containerd client is stopped" if self._closed else f"{call.name}: {why}"
            self._settle(call, Failure(errors.Unavailable(stopped)))
            return
        call.retried = True
        self._submit(call)

    def _expire(self, call: _Call) -> None:
        call.timer = None
        if call.conn is not None:
            call.conn.forget(call, _CANCEL)
        elif self._waiting is not None and call in self._waiting:
            self._waiting.remove(call)
        self._settle(call, Failure(errors.DeadlineExceeded(f"{call.name}: Deadline Exceeded")))

    @staticmethod
    def _settle(call: _Call, result: Any) -> None:
        if call.timer is not None:
            if call.timer.active():
                call.timer.cancel()
            call.timer = None
        if call.deferred.called:
            return
        if isinstance(result, Failure):
            call.deferred.errback(result)
        else:
            call.deferred.callback(result)


class _Factory(protocol.ClientFactory):
    def __init__(self, client: UnaryClient) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> _Connection:
        return _Connection(self.client)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.client._connect_failed(reason)


class _Connection(protocol.Protocol):
    """One HTTP/2 connection of a :class:`UnaryClient`."""

    transport: Any  # a unix.Client once connected

    def __init__(self, client: UnaryClient) -> None:
        self.client = client
        self.open = False  # takes new calls
        self.decoder = hpack.Decoder()
        self.streams: dict[int, _Call] = {}
        self.queue: deque[_Call] = deque()
        self.next_id = 1
        self.send_window = DEFAULT_WINDOW  # the connection's, for our DATA
        self.stream_window = DEFAULT_WINDOW  # the server's initial window of a stream
        self.max_streams = MAX_STREAM_ID
        self.unacked = 0  # DATA bytes received since our last connection WINDOW_UPDATE
        self.buffer = b""
        self.continuing: tuple[int, int, list[bytes]] | None = None
        self._socket: Any = None  # the connected socket, when requests may be sent directly

    def connectionMade(self) -> None:
        if type(self.transport) is unix.Client:
            self._socket = self.transport.socket
        settings = struct.pack(">HLHL", _ENABLE_PUSH, 0, _INITIAL_WINDOW_SIZE, MAX_WINDOW)
        self._write(
            PREFACE
            + frame(_SETTINGS, 0, 0, settings)
            + frame(_WINDOW_UPDATE, 0, 0, _U32.pack(MAX_WINDOW - DEFAULT_WINDOW))
        )
        self.open = True
        self.client._connected(self)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.open = False
        calls = [*self.streams.values(), *self.queue]
        self.streams.clear()
        self.queue.clear()
        self.client._lost(self, calls, reason.getErrorMessage())

    # --- sending -----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Send ``data`` at once when nothing is queued before it, else through the transport.

        ``transport.write`` always queues and waits for the socket to be
        writable: two ``epoll_ctl`` calls and one more reactor turn per request.
        """
        transport = self.transport
        sock = self._socket
        if (
            sock is not None
            and not transport._tempDataLen
            and len(transport.dataBuffer) == transport.offset
            and transport.connected
            and not transport.disconnecting
        ):
            try:
                sent = sock.send(data)
            except OSError:
                sent = 0  # the transport's own write finds and reports the error
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def start(self, call: _Call) -> None:
        """Send ``call`` now if the server's limits allow, else queue it."""
        call.conn = self
        if self.queue or not self._fits(call):
            self.queue.append(call)
        else:
            self._send(call)

    def _fits(self, call: _Call) -> bool:
        size = len(call.body)
        return (
            len(self.streams) < self.max_streams
            and size <= self.send_window
            and size <= self.stream_window
        )

    def _send(self, call: _Call) -> None:
        stream = self.next_id
        self.next_id += 2
        if self.next_id > MAX_STREAM_ID:
            self.open = False  # no stream IDs left: later calls go to a new connection
        call.stream = stream
        call.headers, call.data, call.size = None, [], 0
        self.streams[stream] = call
        self.send_window -= len(call.body)
        self._write(
            frame(_HEADERS, _END_HEADERS, stream, call.block)
            + frame(_DATA, _END_STREAM, stream, call.body)
        )

    def _flush(self) -> None:
        queue = self.queue
        while queue:
            call = queue[0]
            if call.deferred.called:
                queue.popleft()
            elif not self.open:
                queue.popleft()
                call.conn = None
                self.client._submit(call)
            elif self._fits(call):
                queue.popleft()
                self._send(call)
            else:
                break
        if not self.open and not self.streams and not queue:
            self.transport.loseConnection()

    def forget(self, call: _Call, code: int) -> None:
        """Stop waiting for ``call`` (resetting its stream with ``code``)."""
        call.conn = None
        if self.streams.get(call.stream) is call:
            del self.streams[call.stream]
            self._write(frame(_RST_STREAM, 0, call.stream, _U32.pack(code)))
            self._flush()
        elif call in self.queue:
            self.queue.remove(call)

    # --- receiving ---------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        pos, end = 0, len(buf)
        try:
            while end - pos >= 9:
                high, low, kind, flags, stream = _HEADER.unpack_from(buf, pos)
                size = high << 8 | low
                if size > FRAME_SIZE:
                    raise ProtocolError(f"a frame of {size} bytes")
                if end - pos - 9 < size:
                    break
                payload = buf[pos + 9 : pos + 9 + size]
                pos += 9 + size
                self._frame(kind, flags, stream & MAX_STREAM_ID, payload)
        except (ProtocolError, hpack.HpackError) as exc:
            self.buffer = b""
            self._drop(str(exc))
            return
        self.buffer = buf[pos:]

    def _drop(self, why: str) -> None:
        """End the connection after a protocol error (its calls go to a new one, once)."""
        self.open = False
        if self.transport is not None:
            # The last stream is the server's: it opens none to us.
            self._write(
                frame(_GOAWAY, 0, 0, _U32.pack(0) + _U32.pack(_PROTOCOL_ERROR) + why.encode())
            )
            self.transport.loseConnection()

    def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if self.continuing is not None and kind != _CONTINUATION:
            raise ProtocolError("a header block was interrupted")
        if kind == _DATA:
            self._data(flags, stream, payload)
        elif kind == _HEADERS:
            self._headers(flags, stream, payload)
        elif kind == _CONTINUATION:
            self._continuation(flags, stream, payload)
        elif kind == _SETTINGS:
            self._settings(flags, stream, payload)
        elif kind == _PING:
            if len(payload) != 8:
                raise ProtocolError("a PING of the wrong size")
            if not flags & _ACK:
                self._write(frame(_PING, _ACK, 0, payload))
        elif kind == _WINDOW_UPDATE:
            if len(payload) != 4:
                raise ProtocolError("a WINDOW_UPDATE of the wrong size")
            if stream == 0:
                self.send_window += _U32.unpack(payload)[0] & MAX_STREAM_ID
                self._flush()
        elif kind == _RST_STREAM:
            if len(payload) != 4:
                raise ProtocolError("a RST_STREAM of the wrong size")
            self._reset(stream, _U32.unpack(payload)[0])
        elif kind == _GOAWAY:
            if len(payload) < 8:
                raise ProtocolError("a GOAWAY too short")
            self._goaway(_U32.unpack_from(payload)[0] & MAX_STREAM_ID)
        elif kind == _PUSH_PROMISE:
            raise ProtocolError("a push promise, though push is off")
        # PRIORITY and frame types this client does not know are ignored.

    def _data(self, flags: int, stream: int, payload: bytes) -> None:
        if stream == 0:
            raise ProtocolError("DATA on stream 0")
        self.unacked += len(payload)
        if self.unacked >= MAX_WINDOW // 2:
            self._write(frame(_WINDOW_UPDATE, 0, 0, _U32.pack(self.unacked)))
            self.unacked = 0
        if flags & _PADDED:
            payload = _unpad(payload)
        call = self.streams.get(stream)
        if call is None:
            return
        call.size += len(payload)
        if call.size > MAX_MESSAGE + 5:
            self.forget(call, _CANCEL)
            error = errors.ContainerdError(
                f"{call.name}: reply larger than {MAX_MESSAGE} bytes", "RESOURCE_EXHAUSTED"
            )
            self.client._settle(call, Failure(error))
            return
        call.data.append(payload)
        if flags & _END_STREAM:
            self._complete(call, None)

    def _headers(self, flags: int, stream: int, payload: bytes) -> None:
        if flags & _PADDED:
            payload = _unpad(payload)
        if flags & _PRIORITY_FLAG:
            payload = payload[5:]
        if flags & _END_HEADERS:
            self._block(stream, flags, payload)
        else:
            self.continuing = (stream, flags, [payload])

    def _continuation(self, flags: int, stream: int, payload: bytes) -> None:
        if self.continuing is None or self.continuing[0] != stream:
            raise ProtocolError("a CONTINUATION out of place")
        parts = self.continuing[2]
        parts.append(payload)
        if sum(map(len, parts)) > MAX_HEADER_BLOCK:
            raise ProtocolError("a header block too large")
        if flags & _END_HEADERS:
            first_flags = self.continuing[1]
            self.continuing = None
            self._block(stream, first_flags, b"".join(parts))

    def _block(self, stream: int, flags: int, block: bytes) -> None:
        fields = self.decoder.decode(block)  # every block, to keep the table in step
        call = self.streams.get(stream)
        if call is None:
            return
        if flags & _END_STREAM:
            self._complete(call, fields)
        elif call.headers is None:
            call.headers = fields
        else:
            raise ProtocolError("a second header block without end of stream")

    def _settings(self, flags: int, stream: int, payload: bytes) -> None:
        if stream != 0 or len(payload) % 6:
            raise ProtocolError("a malformed SETTINGS frame")
        if flags & _ACK:
            return
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HL", payload, offset)
            if key == _MAX_CONCURRENT_STREAMS:
                self.max_streams = value
            elif key == _INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError("an initial window above the largest")
                self.stream_window = value
            elif key == _MAX_FRAME_SIZE and not FRAME_SIZE <= value < 1 << 24:
                raise ProtocolError("a maximum frame size out of range")
        self._write(frame(_SETTINGS, _ACK, 0))
        self._flush()

    def _reset(self, stream: int, code: int) -> None:
        call = self.streams.pop(stream, None)
        if call is None:
            return
        call.conn = None
        if code == _REFUSED_STREAM:  # not processed: safe to send again
            self.client._retry(call, "the server refused the stream")
        else:
            number = _CANCELLED if code == _CANCEL else _INTERNAL
            text = f"stream reset by the server (code {code})"
            error = errors.from_status(number, text, call.name)
            self.client._settle(call, Failure(error))
        self._flush()

    def _goaway(self, last: int) -> None:
        self.open = False
        for stream in [s for s in self.streams if s > last]:
            call = self.streams.pop(stream)
            self.client._retry(call, "the server went away before taking the call")
        self._flush()

    def _complete(self, call: _Call, trailers: list[hpack.Field] | None) -> None:
        del self.streams[call.stream]
        call.conn = None
        self.client._settle(call, _outcome(call, trailers))
        self._flush()


def _outcome(call: _Call, trailers: list[hpack.Field] | None) -> Any:
    """The reply message of a finished call, or a Failure."""
    name = call.name
    headers = dict(call.headers if call.headers is not None else trailers or ())
    status = headers.get(b":status", b"")
    if status != b"200":
        number = _HTTP_TO_GRPC.get(status, _UNKNOWN)
        text = f"unexpected HTTP status code received from server: {status.decode('latin-1')}"
        return Failure(errors.from_status(number, text, name))
    if trailers is None:
        return Failure(errors.from_status(_INTERNAL, "stream ended without trailers", name))
    fields = dict(trailers)
    try:
        number = int(fields[b"grpc-status"])
    except (KeyError, ValueError):
        return Failure(errors.from_status(_INTERNAL, "no valid grpc-status in trailers", name))
    if number != _OK:
        message = unquote_to_bytes(fields.get(b"grpc-message", b"")).decode("utf-8", "replace")
        return Failure(errors.from_status(number, message, name))
    body = b"".join(call.data)
    if len(body) < 5 or body[0] != 0 or _U32.unpack_from(body, 1)[0] != len(body) - 5:
        return Failure(errors.from_status(_INTERNAL, "not one uncompressed reply message", name))
    try:
        return call.response.FromString(body[5:])
    except DecodeError as exc:
        return Failure(errors.from_status(_INTERNAL, f"reply does not decode: {exc}", name))
