"""The kukeonv1 connection: a stream of requests served concurrently, answered in completion order.

Each decoded request runs at once while reading goes on; its response is
written whole when it completes. Input that Go's decoder could not read (bad
JSON, a top-level array, a header of the wrong type, an over-long frame) ends
the connection after the responses already in flight are written, and nothing
after it is read. A half-close by the client is honoured the same way.

Requests start in the order they arrive, as in Go's server, which reads and
decodes one request before it reads the next. A large frame (an image
tarball) is decoded on a worker thread (:mod:`kukeond.rpc.bigframe`); until
it is done the frames behind it wait, undecoded, and the connection reads
nothing more. The wait keeps the order, and keeps a rule of the protocol:
when that large frame turns out not to be a request Go could read, nothing
after it runs. Other connections are served meanwhile.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from twisted.internet import defer, unix
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from kukeond.logs import Logger
from kukeond.rpc.bigframe import LARGE_FRAME, Cancelled, Decoded, FrameDecoder, PendingDecode
from kukeond.rpc.codec import (
    Request,
    RequestError,
    decode_object,
    decode_request,
    encode_response,
    request_from_object,
)
from kukeond.rpc.dispatch import Call, Dispatcher, Outcome
from kukeond.rpc.framing import FrameError, FrameSplitter, FrameTooLarge

_NON_WHITESPACE = re.compile(r"[^ \t\r\n]").search

_DIRECT_MAX = 1 << 16
"""Longer replies go to Twisted's queue whole: a partial send would copy the rest."""

_DONE = -1
_BAD_REQUEST = -2

DEFAULT_MAX_FRAME_BYTES = 1 << 30
"""Default per-request limit: admits an in-band image tarball of several hundred MB."""


@implementer(IHalfCloseableProtocol)
class KukeonProtocol(Protocol):
    """One client connection speaking Go ``net/rpc`` + ``jsonrpc``."""

    log = Logger()

    def __init__(
        self, dispatcher: Dispatcher, max_frame_bytes: int, large_frame_bytes: int | None = None
    ) -> None:
        self._dispatcher = dispatcher
        self._splitter = FrameSplitter(max_frame_bytes)
        # Frames from this size on are decoded by the factory's FrameDecoder.
        self._large = max_frame_bytes + 1 if large_frame_bytes is None else large_frame_bytes
        self._in_flight = 0
        self._closing = False  # no more requests are read; close once idle
        self._lost = False
        self._socket = None  # the connected socket, when replies may be sent directly
        self._decoding: PendingDecode | None = None  # a large frame on the worker thread
        self._waiting: deque[bytes | bytearray] = deque()  # frames behind it, in order
        self._paused = False  # reading paused while a large frame decodes
        self.factory: KukeonFactory | None = None

    @property
    def in_flight(self) -> int:
        """Requests received and not yet answered."""
        return self._in_flight

    def connectionMade(self) -> None:
        """Register with the factory so shutdown can drain us."""
        if self.factory is not None:
            self.factory.connections.add(self)
        if type(self.transport) is unix.Server and not self.transport._sendmsgQueue:
            self._socket = self.transport.socket

    def dataReceived(self, data: bytes) -> None:
        """Split ``data`` into requests and start each one."""
        if self._closing:
            return
        if (
            not self._splitter.pending
            and self._decoding is None
            and len(data) < self._large
            and data.isascii()
        ):
            # The usual chunk: whole ASCII requests and nothing buffered. One C
            # call per request finds its end and decodes it; anything else
            # (an incomplete, malformed or oversized object, or a top-level
            # value that is not an object) goes to the splitter from there on,
            # which keeps every error behaviour.
            requests: list[Request] = []
            rest = self._decode_ascii(data, requests)
            if rest < 0:
                self._start_all(requests, rest == _BAD_REQUEST)
                return
            self._start_all(requests, False)
            data = data[rest:]
        try:
            frames = self._splitter.feed(data)
        except FrameTooLarge as e:
            self.log.warn("closing connection: {error}", error=e)
            self._start_all([], True)
            return
        except FrameError as e:
            self.log.debug("closing connection on undecodable input: {error}", error=e)
            self._start_all([], True)
            return
        self._waiting.extend(frames)
        self._start_waiting()

    def _start_waiting(self) -> None:
        """Start the waiting frames in order, up to a large one (decoded on a worker thread)."""
        waiting = self._waiting
        while waiting and self._decoding is None:
            frame = waiting.popleft()
            if len(frame) >= self._large and self.factory is not None:
                self._decode_later(frame, self.factory)
                break
            try:
                request = decode_request(frame)
            except RequestError as e:
                self.log.debug("closing connection on undecodable request: {error}", error=e)
                waiting.clear()
                self._stop_reading()
                break
            self._start(request)
        if self._decoding is None and self._paused:
            self._paused = False
            if not self._closing and not self._lost:
                self.transport.resumeProducing()  # type: ignore[union-attr]
        self._close_if_idle()

    def _decode_later(self, frame: bytes | bytearray, factory: KukeonFactory) -> None:
        """Decode ``frame`` on the worker thread, reading nothing more until it is started.

        Not reading also keeps what a client can make us hold to the frames
        already read, as when requests are decoded inline.
        """
        try:
            pending = self._decoding = factory.decode_large(frame)
        except Exception:  # noqa: BLE001 - no thread for it: this connection only
            self.log.failure("closing connection: cannot decode a large request")
            self._waiting.clear()
            self._stop_reading()
            return
        if not self._paused and not self._closing:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]
        pending.deferred.addCallbacks(
            self._decoded, self._decode_failed, callbackArgs=(pending,), errbackArgs=(pending,)
        )

    def _decoded(self, decoded: Decoded, pending: PendingDecode) -> None:
        if self._decoding is not pending:
            return  # abandoned: the connection closed or the daemon stops
        self._decoding = None
        request, call = decoded
        self._start(request, call)
        self._start_waiting()

    def _decode_failed(self, failure: Failure, pending: PendingDecode) -> None:
        if self._decoding is not pending:
            if not failure.check(Cancelled, RequestError):
                self.log.failure("decoding an abandoned large request failed", failure)
            return
        self._decoding = None
        if failure.check(RequestError):
            self.log.debug(
                "closing connection on undecodable request: {error}",
                error=failure.getErrorMessage(),
            )
        else:  # a bug, or no memory for the decoded tarball: this connection only
            self.log.failure("closing connection: decoding a large request failed", failure)
        self._waiting.clear()
        self._stop_reading()
        self._start_waiting()

    def _abandon(self) -> None:
        """Drop the large frame being decoded and the frames waiting behind it, unanswered."""
        pending, self._decoding = self._decoding, None
        self._waiting.clear()
        if pending is not None:
            pending.cancel()

    def _decode_ascii(self, data: bytes, requests: list[Request]) -> int:
        """Decode the whole requests at the start of ``data``; return where the rest begins.

        Returns ``_DONE`` when ``data`` was whole requests (and whitespace)
        only, ``_BAD_REQUEST`` when an object was not a request Go could read
        (nothing after it is read).
        """
        text = data.decode("ascii")
        size = len(text)
        limit = self._splitter.max_frame_bytes
        pos = 0
        while True:
            m = _NON_WHITESPACE(text, pos)
            if m is None:
                return _DONE
            pos = m.start()
            if text[pos] != "{":
                return pos
            try:
                obj, end = decode_object(text, pos)
            except ValueError:
                return pos
            if end - pos > limit:
                return pos
            try:
                requests.append(request_from_object(obj))
            except RequestError as e:
                self.log.debug("closing connection on undecodable request: {error}", error=e)
                return _BAD_REQUEST
            if end == size:
                return _DONE
            pos = end

    def _start_all(self, requests: list[Request], stop: bool) -> None:
        """Start ``requests`` in order; with ``stop``, read nothing more afterwards."""
        for request in requests:
            self._start(request)
        if stop:
            self._stop_reading()
        self._close_if_idle()

    def _start(self, request: Request, call: Call | Outcome | None = None) -> None:
        """Start ``request``, or its ``call`` when it was prepared on the worker thread."""
        self._in_flight += 1
        if self.factory is not None:
            self.factory.request_started()
        try:
            if call is None:
                outcome = self._dispatcher.dispatch(request)
            elif isinstance(call, Call):
                outcome = self._dispatcher.run(call)
            else:
                outcome = call
            if not isinstance(outcome, defer.Deferred):
                self._respond(outcome, request.id_text)
                self._finished(None)
                return
        except Exception:  # noqa: BLE001 - every request is answered; _internal_error logs it
            self._internal_error(Failure(), request.id_text)
            self._finished(None)
            return
        outcome.addCallback(self._respond, request.id_text)
        outcome.addErrback(self._internal_error, request.id_text)
        outcome.addBoth(self._finished)

    def _respond(self, outcome, id_text: str) -> None:
        result, error = outcome
        if not self._lost:
            self._write(encode_response(id_text, result, error))

    def _write(self, data: bytes) -> None:
        """Send at once when nothing is queued; Twisted's buffer takes what the socket refuses.

        ``transport.write`` only queues and asks the reactor to watch the
        socket for writability: two ``epoll_ctl`` calls and one more reactor
        turn per reply. A reply to a connection with an empty queue can go out
        directly, as Go's and asyncio's writers do; order is kept because the
        queue is used as soon as it holds anything.
        """
        transport = self.transport
        sock = self._socket
        if (
            sock is not None
            and len(data) <= _DIRECT_MAX
            and not transport._tempDataLen
            and len(transport.dataBuffer) == transport.offset
            and transport.connected
            and not transport.disconnecting
        ):
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0  # the transport's own write finds and reports the error
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)  # type: ignore[union-attr]

    def _internal_error(self, failure: Failure, id_text: str) -> None:
        # The dispatcher turns handler errors into replies; reaching here means
        # a reply could not be encoded. Answer with a protocol error, never drop.
        self.log.failure("could not answer request", failure)
        if not self._lost:
            message = f"kukeond: internal error: {failure.getErrorMessage()}"
            self._write(encode_response(id_text, None, message))

    def _finished(self, _) -> None:
        self._in_flight -= 1
        if self.factory is not None:
            self.factory.request_finished()
        if self._closing:
            self._close_if_idle()

    def _stop_reading(self) -> None:
        self._closing = True
        if not self._lost:
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def _close_if_idle(self) -> None:
        if (
            self._closing
            and self._in_flight == 0
            and self._decoding is None
            and not self._waiting
            and not self._lost
        ):
            self.transport.loseConnection()  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        """The client half-closed: answer what is in flight, then close."""
        self._closing = True
        self._close_if_idle()

    def writeConnectionLost(self) -> None:
        """Nothing to do: we only write responses."""

    def stop_reading_and_close(self) -> None:
        """Used at shutdown: read no more requests, close once the in-flight ones are answered.

        A large frame still being decoded is abandoned like the unread
        input behind it: its worker stops at its next piece, so neither the
        drain nor the thread pool's join at shutdown waits for it.
        """
        self._abandon()
        self._stop_reading()
        self._close_if_idle()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget the connection; handlers still running finish without writing."""
        self._lost = True
        self._abandon()
        if self.factory is not None:
            self.factory.connection_lost(self)


class KukeonFactory(Factory):
    """Builds :class:`KukeonProtocol` instances and counts in-flight requests for draining."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        frame_decoder: FrameDecoder | None = None,
        large_frame_bytes: int = LARGE_FRAME,
    ) -> None:
        self.dispatcher = dispatcher
        self.noisy = False
        self.max_frame_bytes = max_frame_bytes
        self.frame_decoder = frame_decoder  # made on first use when not given
        self.large_frame_bytes = large_frame_bytes
        self.connections: set[KukeonProtocol] = set()
        self.in_flight = 0
        self.served = 0
        self._idle_waiters: list[defer.Deferred] = []
        self._closed_waiters: list[defer.Deferred] = []

    def buildProtocol(self, addr: Any) -> KukeonProtocol:  # type: ignore[override]
        """Create the protocol for one accepted connection."""
        proto = KukeonProtocol(self.dispatcher, self.max_frame_bytes, self.large_frame_bytes)
        proto.factory = self
        return proto

    def decode_large(self, frame: bytes | bytearray) -> PendingDecode:
        """Start decoding a large frame on the worker thread."""
        if self.frame_decoder is None:
            self.frame_decoder = default_frame_decoder()
        return self.frame_decoder.decode(frame, self.dispatcher)

    def request_started(self) -> None:
        """Count a request in."""
        self.in_flight += 1

    def request_finished(self) -> None:
        """Count a request out and wake drain waiters when none is left."""
        self.in_flight -= 1
        self.served += 1
        if self.in_flight == 0:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    def connection_lost(self, proto: KukeonProtocol) -> None:
        """Forget a closed connection; wake :meth:`closed` waiters when none is left."""
        self.connections.discard(proto)
        if not self.connections:
            waiters, self._closed_waiters = self._closed_waiters, []
            for d in waiters:
                d.callback(None)

    def closed(self, timeout: float, clock) -> defer.Deferred:
        """Fire once every connection has closed (replies flushed), or at ``timeout``."""
        if not self.connections:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._closed_waiters.append(d)
        d.addTimeout(timeout, clock, onTimeoutCancel=lambda _result, _timeout: None)
        return d

    def drain(self, timeout: float, clock) -> defer.Deferred:
        """Stop reading on every connection; fire when in-flight requests are done or at timeout.

        The Deferred fires with the number of requests still running when it
        gave up (0 on a clean drain).
        """
        for proto in list(self.connections):
            proto.stop_reading_and_close()
        if self.in_flight == 0:
            return defer.succeed(0)
        d: defer.Deferred = defer.Deferred()
        self._idle_waiters.append(d)
        d.addTimeout(timeout, clock, onTimeoutCancel=lambda _result, _timeout: self.in_flight)
        d.addCallback(lambda left: left or 0)
        return d


def default_frame_decoder(reactor: Any = None) -> FrameDecoder:
    """A :class:`FrameDecoder` with one thread of its own, stopped at reactor shutdown."""
    from kukeond.blocking import BlockingPool

    if reactor is None:
        from twisted.internet import reactor
    return FrameDecoder(BlockingPool(reactor, "kukeond-rpc-decode", max_threads=1, timeout=None))
