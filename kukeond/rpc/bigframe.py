"""Decode a large request on a worker thread, holding the GIL only briefly at a time.

A ``LoadImage`` request carries its image as one base64 string, up to the
frame limit (1 GiB by default). Decoded the usual way, ``json.loads`` of the
frame and ``a2b_base64`` of the string are C calls that hold the GIL for
their whole duration, seconds at the limit: run on a thread as they are,
they would still stop the reactor thread that long. :func:`decode_frame`
runs on a worker thread and splits the work instead:

1. find the frame's long strings (:data:`LONG_STRING` bytes or more) with
   ``bytes.find`` over windows of :data:`PIECE` bytes;
2. decode the rest of the frame the usual way (it is short), with a
   placeholder string where each long string was;
3. when every placeholder stands for a ``[]byte`` field of the method's
   arguments (``LoadImage.Tarball``, ``ApplyDocuments.RawYAML``), decode those
   strings as base64 :data:`PIECE` characters per C call
   (:func:`kukeond.api.gotypes.decode_base64`) and give the results to the
   argument decoder in their place;
4. in every other case (a long string elsewhere, a backslash escape in one,
   a character JSON does not allow in a string), decode the whole frame the
   usual way: same result, but those C calls hold the GIL as long as before.

Either way the outcome is that of the usual path: the same arguments, the
same protocol error text (an invalid base64 string gives the same ``illegal
base64 data at input byte N``), and a frame that is not valid JSON is still
fatal for its connection.

Between pieces the worker checks whether it was cancelled (the connection
closed, the daemon stops), so it never runs on for long after that, and it
lets go of the GIL for a moment (``time.sleep(0)``), which a reactor thread
waiting for it may take then, rather than only when the interpreter's
switch interval (5 ms) forces a hand-over.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from typing import Any

from twisted.internet import defer

from kukeond.api.gotypes import DecodedBytes, DecodeError, decode_base64
from kukeond.api.structs import bytes_field
from kukeond.rpc.codec import Request, decode_request, decode_request_text
from kukeond.rpc.dispatch import Call, Dispatcher, Outcome

LARGE_FRAME = 1 << 20
"""Frames of this size or more are decoded on a worker thread, smaller ones inline.

Decoding 1 MiB inline takes 4 to 10 ms here, about the interpreter's GIL
switch interval (5 ms): a worker thread would take the GIL from the reactor
for that long anyway. Below that, the thread hop (a queue, a wake-up of the
reactor, reading paused and resumed) costs more than it saves, and the usual
request, a few hundred bytes, keeps its path unchanged.
"""

LONG_STRING = 1 << 16
"""Strings of this many bytes or more are cut out of a large frame before it is parsed."""

PIECE = 1 << 18
"""Bytes per C call for scanning and base64 decoding: about 1.5 ms each here, a multiple of 4."""

_CONTROL = re.compile(rb"[\x00-\x1f]")


class Cancelled(Exception):
    """The decode was abandoned: its connection closed or the daemon stops."""


Decoded = tuple[Request, Call | Outcome]
"""The request and what :meth:`Dispatcher.prepare` made of it."""


def decode_frame(
    frame: bytes | bytearray,
    dispatcher: Dispatcher,
    cancelled: threading.Event,
    *,
    long_string: int = LONG_STRING,
    piece: int = PIECE,
) -> Decoded:
    """Decode one request frame and prepare its call, in pieces (run on a worker thread).

    Raises :class:`~kukeond.rpc.codec.RequestError` when the frame is not a
    request Go's codec could read, :class:`Cancelled` once ``cancelled`` is set.
    """

    def between() -> None:
        if cancelled.is_set():
            raise Cancelled()
        time.sleep(0)

    spans = _long_strings(frame, long_string, piece, between)
    if spans:
        decoded = _decode_around(frame, spans, dispatcher, piece, between)
        if decoded is not None:
            return decoded
    between()
    request = decode_request(frame)
    between()
    return request, dispatcher.prepare(request)


def _decode_around(
    frame: bytes | bytearray,
    spans: list[tuple[int, int]],
    dispatcher: Dispatcher,
    piece: int,
    between: Any,
) -> Decoded | None:
    """Decode ``frame`` with its long strings (``spans``) as ``[]byte`` fields; ``None``: cannot."""
    nonce = secrets.token_hex(8)  # a placeholder no client can have sent by chance
    parts = []
    prev = 0
    for n, (start, end) in enumerate(spans):
        # Cut at quotes (ASCII), so decoding the parts is decoding the whole.
        parts.append(frame[prev:start].decode("utf-8", "replace"))
        parts.append(f"\\u0000{nonce}:{n}")
        prev = end
    parts.append(frame[prev:].decode("utf-8", "replace"))
    # Not valid JSON without the long strings is not valid JSON with them.
    request = decode_request_text("".join(parts))
    params = request.params
    if type(params) is not list or not params or type(params[0]) is not dict:
        return None
    raw = params[0]
    args_type = dispatcher.args_type(request.method)
    placeholders = {f"\x00{nonce}:{i}": i for i in range(len(spans))}
    found: list[tuple[str, int]] = []
    for key, value in raw.items():
        index = placeholders.get(value) if type(value) is str else None
        if index is not None:
            if not bytes_field(args_type, key):
                return None
            found.append((key, index))
    if len(found) != len(spans):
        return None  # a long string elsewhere: the id, a key, a nested value, a repeated key
    with memoryview(frame) as view:
        for key, i in found:
            start, end = spans[i]
            try:
                raw[key] = DecodedBytes(decode_base64(view[start:end], piece, between))
            except DecodeError as e:
                if _has_control(frame, start, end, piece, between):
                    return None  # not valid JSON: the usual decoder rejects the frame
                raw[key] = DecodedBytes(error=str(e))
    between()
    return request, dispatcher.prepare(request)


def _long_strings(
    frame: bytes | bytearray, minimum: int, window: int, between: Any
) -> list[tuple[int, int]] | None:
    """The ``(start, end)`` of every string's content of ``minimum`` bytes or more.

    ``None`` when one of them holds a backslash escape (its raw bytes are not
    its value). The frame is whole and balanced (the splitter found its end),
    so every quote outside a string opens one.
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    size = len(frame)
    while True:
        quote = _find(frame, b'"', pos, size, window, between)
        if quote < 0:
            return spans
        start = at = quote + 1
        escaped = False
        while True:
            end = _find(frame, b'"', at, size, window, between)
            if end < 0:
                return None  # not a whole frame: let the usual decoder say what is wrong
            backslash = _find(frame, b"\\", at, end, window, between)
            if backslash < 0:
                break
            escaped = True
            at = backslash + 2  # the escaped byte may be the quote just found
        if end - start >= minimum:
            if escaped:
                return None
            spans.append((start, end))
        pos = end + 1


def _find(
    frame: bytes | bytearray, sub: bytes, start: int, stop: int, window: int, between: Any
) -> int:
    """``frame.find(sub, start, stop)``, ``window`` bytes per C call."""
    while start < stop:
        upto = min(start + window, stop)
        found = frame.find(sub, start, upto)
        if found >= 0:
            return found
        start = upto
        if start < stop:
            between()
    return -1


def _has_control(
    frame: bytes | bytearray, start: int, stop: int, window: int, between: Any
) -> bool:
    """Tell whether ``frame[start:stop]`` holds a control character (not valid in a JSON string)."""
    for at in range(start, stop, window):
        between()
        if _CONTROL.search(frame, at, min(at + window, stop)):
            return True
    return False


class PendingDecode:
    """A frame being decoded on a worker thread: its Deferred, and a way to abandon it."""

    __slots__ = ("deferred", "_cancelled")

    def __init__(self, deferred: defer.Deferred, cancelled: threading.Event) -> None:
        self.deferred = deferred
        self._cancelled = cancelled

    def cancel(self) -> None:
        """Ask the worker to stop at its next piece; its Deferred fails with :class:`Cancelled`."""
        self._cancelled.set()


class FrameDecoder:
    """Decodes large frames on a thread pool (``pool.run(fn, *args, **kw)`` -> Deferred).

    The daemon gives it one thread: decoding is bound by the GIL, so more
    threads would not go faster, and one frame at a time bounds the memory
    that decoded tarballs take.
    """

    def __init__(self, pool: Any, long_string: int = LONG_STRING, piece: int = PIECE) -> None:
        self.pool = pool
        self.long_string = long_string
        self.piece = piece

    def decode(self, frame: bytes | bytearray, dispatcher: Dispatcher) -> PendingDecode:
        """Start decoding ``frame``; the Deferred fires with a :data:`Decoded` on the reactor."""
        cancelled = threading.Event()
        d = self.pool.run(
            decode_frame,
            frame,
            dispatcher,
            cancelled,
            long_string=self.long_string,
            piece=self.piece,
        )
        return PendingDecode(d, cancelled)
