"""The kukeonv1 connection: a stream of requests served concurrently, answered in completion order.

Each decoded request runs at once while reading goes on; its response is
written whole when it completes. Input that Go's decoder could not read (bad
JSON, a top-level array, a header of the wrong type, an over-long frame) ends
the connection after the responses already in flight are written, and nothing
after it is read. A half-close by the client is honoured the same way.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from kukeond.logs import Logger
from kukeond.rpc.codec import RequestError, decode_request, encode_response
from kukeond.rpc.dispatch import Dispatcher
from kukeond.rpc.framing import FrameError, FrameSplitter, FrameTooLarge

DEFAULT_MAX_FRAME_BYTES = 1 << 30
"""Default per-request limit: admits an in-band image tarball of several hundred MB."""


@implementer(IHalfCloseableProtocol)
class KukeonProtocol(Protocol):
    """One client connection speaking Go ``net/rpc`` + ``jsonrpc``."""

    log = Logger()

    def __init__(self, dispatcher: Dispatcher, max_frame_bytes: int) -> None:
        self._dispatcher = dispatcher
        self._splitter = FrameSplitter(max_frame_bytes)
        self._in_flight = 0
        self._closing = False  # no more requests are read; close once idle
        self._lost = False
        self.factory: KukeonFactory | None = None

    @property
    def in_flight(self) -> int:
        """Requests received and not yet answered."""
        return self._in_flight

    def connectionMade(self) -> None:
        """Register with the factory so shutdown can drain us."""
        if self.factory is not None:
            self.factory.connections.add(self)

    def dataReceived(self, data: bytes) -> None:
        """Split ``data`` into requests and start each one."""
        if self._closing:
            return
        try:
            frames = self._splitter.feed(data)
        except FrameTooLarge as e:
            self.log.warn("closing connection: {error}", error=e)
            frames = []
            self._stop_reading()
        except FrameError as e:
            self.log.debug("closing connection on undecodable input: {error}", error=e)
            frames = []
            self._stop_reading()
        for frame in frames:
            try:
                request = decode_request(frame)
            except RequestError as e:
                self.log.debug("closing connection on undecodable request: {error}", error=e)
                self._stop_reading()
                break
            self._start(request)
        self._close_if_idle()

    def _start(self, request) -> None:
        self._in_flight += 1
        if self.factory is not None:
            self.factory.request_started()
        try:
            outcome = self._dispatcher.dispatch(request)
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
            self.transport.write(encode_response(id_text, result, error))

    def _internal_error(self, failure: Failure, id_text: str) -> None:
        # The dispatcher turns handler errors into replies; reaching here means
        # a reply could not be encoded. Answer with a protocol error, never drop.
        self.log.failure("could not answer request", failure)
        if not self._lost:
            message = f"kukeond: internal error: {failure.getErrorMessage()}"
            self.transport.write(encode_response(id_text, None, message))

    def _finished(self, _) -> None:
        self._in_flight -= 1
        if self.factory is not None:
            self.factory.request_finished()
        self._close_if_idle()

    def _stop_reading(self) -> None:
        self._closing = True
        if not self._lost:
            self.transport.pauseProducing()

    def _close_if_idle(self) -> None:
        if self._closing and self._in_flight == 0 and not self._lost:
            self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        """The client half-closed: answer what is in flight, then close."""
        self._closing = True
        self._close_if_idle()

    def writeConnectionLost(self) -> None:
        """Nothing to do: we only write responses."""

    def stop_reading_and_close(self) -> None:
        """Used at shutdown: read no more requests, close once the in-flight ones are answered."""
        self._stop_reading()
        self._close_if_idle()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget the connection; handlers still running finish without writing."""
        self._lost = True
        if self.factory is not None:
            self.factory.connection_lost(self)


class KukeonFactory(Factory):
    """Builds :class:`KukeonProtocol` instances and counts in-flight requests for draining."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.dispatcher = dispatcher
        self.noisy = False
        self.max_frame_bytes = max_frame_bytes
        self.connections: set[KukeonProtocol] = set()
        self.in_flight = 0
        self.served = 0
        self._idle_waiters: list[defer.Deferred] = []
        self._closed_waiters: list[defer.Deferred] = []

    def buildProtocol(self, addr) -> KukeonProtocol:
        """Create the protocol for one accepted connection."""
        proto = KukeonProtocol(self.dispatcher, self.max_frame_bytes)
        proto.factory = self
        return proto

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
