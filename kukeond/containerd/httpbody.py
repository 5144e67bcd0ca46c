"""Consumers of HTTP response bodies for registry pulls, on Twisted's web client.

:class:`Collector` gathers a small body (a manifest, a token, an error
document) up to a size limit. :class:`BlobSink` streams a blob to a file
on a thread pool while hashing it, pausing the transport while a chunk is
being written so a layer never sits in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from kukeond.containerd.errors import PullError

_CHUNK_FLUSH = 1 << 20


def _producer(body: Protocol) -> IPushProducer:
    """The transport of a response body, which Twisted's web client makes a push producer."""
    return cast(IPushProducer, body.transport)


class Collector(Protocol):
    """Gather a small body, refusing more than ``limit`` bytes."""

    def __init__(self, done: Deferred[bytes], limit: int) -> None:
        self._done = done
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._too_big = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted protocol API
        """Keep ``data`` while under the limit; past it, stop the transport."""
        self._size += len(data)
        if self._size > self._limit:
            if not self._too_big:
                self._too_big = True
                _producer(self).stopProducing()
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """Fire ``done`` with the whole body, or with why it is incomplete."""
        if self._too_big:
            self._done.errback(PullError(f"response larger than {self._limit} bytes"))
        elif reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(reason)


class BlobSink(Protocol):
    """Stream a response body to a file on a thread pool, hashing as it goes.

    The transport is paused while a chunk is being written and resumed
    once the write finished, so at most ~1 MiB sits in memory. Fires
    ``done`` with ``(size, sha256 hex)``.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        path: str,
        run: Callable[..., Deferred[Any]],
        idle_timeout: float,
        done: Deferred[tuple[int, str]],
        progress: Callable[[int], None],
    ) -> None:
        self._reactor = reactor
        self._run = run
        self._path = path
        self._done = done
        self._progress = progress
        self._idle_timeout = idle_timeout
        self._hasher = hashlib.sha256()
        self._file: Any = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._received = 0
        self._pending = 0
        self._paused = False
        self._finished = False
        self._error: Failure | None = None
        self._timer: IDelayedCall | None = None
        self._tail: Deferred[Any] = run(open, path, "wb")
        self._tail.addCallback(self._opened)
        self._tail.addErrback(self._write_failed)

    def connectionMade(self) -> None:  # noqa: N802
        """Start the idle timer."""
        self._timer = self._reactor.callLater(self._idle_timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Buffer ``data`` and hand a full chunk to the thread pool."""
        if self._error is not None:
            return
        self._received += len(data)
        self._buffer.append(data)
        self._buffered += len(data)
        self._touch()
        if self._buffered >= _CHUNK_FLUSH:
            self._flush()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """Write what is left, close the file, then fire ``done``."""
        self._finished = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._error is None and not reason.check(ResponseDone, PotentialDataLoss):
            self._error = reason
        if self._error is None:
            self._flush()
        self._tail.addCallback(lambda _: self._run(self._close))
        self._tail.addBoth(self._finish)

    def _opened(self, handle: Any) -> None:
        self._file = handle

    def _write_chunk(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hasher.update(chunk)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _flush(self) -> None:
        if not self._buffer or self._error is not None:
            return
        chunk = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        self._pending += 1
        if not self._paused and not self._finished:
            self._paused = True
            _producer(self).pauseProducing()
        self._tail.addCallback(lambda _: self._run(self._write_chunk, chunk))
        self._tail.addCallback(self._written, len(chunk))
        self._tail.addErrback(self._write_failed)

    def _written(self, _: object, size: int) -> None:
        self._pending -= 1
        self._progress(size)
        if self._pending == 0 and self._paused and not self._finished:
            self._paused = False
            self._touch()
            _producer(self).resumeProducing()

    def _write_failed(self, failure: Failure) -> None:
        if self._error is None:
            self._error = failure
        if not self._finished:
            _producer(self).stopProducing()

    def _touch(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(self._idle_timeout)

    def _timed_out(self) -> None:
        self._error = Failure(PullError(f"no data for {self._idle_timeout:g}s"))
        _producer(self).stopProducing()

    def _finish(self, result: object) -> None:
        if isinstance(result, Failure) and self._error is None:
            self._error = result
        if self._error is not None:
            self._done.errback(self._error)
        else:
            self._done.callback((self._received, self._hasher.hexdigest()))
