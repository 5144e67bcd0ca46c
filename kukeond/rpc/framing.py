"""Split a byte stream into top-level JSON objects, as Go's streaming decoder reads it.

Go's ``jsonrpc`` codec reads requests with a ``json.Decoder``: objects may be
separated by whitespace or by nothing, and one object may arrive in many
writes. :class:`FrameSplitter` finds object boundaries incrementally (a scan
resumes where the previous one stopped, so a frame that arrives in a thousand
pieces is still scanned once) and enforces a per-frame size limit. Long
strings (a base64 image tarball) are skipped by a regular expression, not
byte by byte.
"""

from __future__ import annotations

import re

_WHITESPACE = b" \t\r\n"
_STRUCTURAL = re.compile(rb'[{}\[\]"]')
_NON_WHITESPACE = re.compile(rb"[^ \t\r\n]")


class FrameError(Exception):
    """The stream holds something that is not a JSON object at the top level."""


class FrameTooLarge(FrameError):
    """One object grew past the configured size limit before it was complete."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request larger than {limit} bytes")
        self.limit = limit


class FrameSplitter:
    """Incremental splitter of a stream of JSON objects.

    ``feed(data)`` returns the complete objects (as ``bytes``) found so far. It
    raises :class:`FrameError` when the next top-level value does not start
    with ``{`` and :class:`FrameTooLarge` when an object exceeds
    ``max_frame_bytes``. Both are final: the stream cannot be resynchronised.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._pos = 0  # next byte to scan
        self._start = -1  # start of the object being scanned, -1 between objects
        self._depth = 0
        self._in_string = False
        self._resume = 0

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a complete object."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | bytearray]:
        """Add ``data`` to the stream and return every object it completes."""
        buf = self._buf
        buf += data
        frames: list[bytes | bytearray] = []
        pos = self._pos
        while True:
            if self._start < 0:
                m = _NON_WHITESPACE.search(buf, pos)
                if m is None:
                    del buf[:]
                    pos = 0
                    break
                pos = m.start()
                if buf[pos] != 0x7B:  # "{"
                    raise FrameError("top-level JSON value is not an object")
                self._start = pos
                self._depth = 1
                pos += 1
            end = self._scan(buf, pos)
            if end < 0:
                pos = self._resume
                if pos - self._start > self.max_frame_bytes:
                    raise FrameTooLarge(self.max_frame_bytes)
                break
            if end - self._start > self.max_frame_bytes:
                raise FrameTooLarge(self.max_frame_bytes)
            if self._start == 0 and end >= len(buf) - end:
                # The frame starts the buffer and is most of it (the usual
                # shape of a large request, maybe with the next request's first
                # bytes behind it): hand the buffer over and keep a copy of the
                # short tail, instead of copying the frame out (two copies of
                # up to max_frame_bytes on the reactor thread).
                tail = buf[end:]
                del buf[end:]
                frames.append(buf)
                buf = self._buf = tail
                end = 0
            else:
                frames.append(bytes(buf[self._start : end]))
            self._start = -1
            pos = end
        if self._start > 0:
            del buf[: self._start]
            pos -= self._start
            self._start = 0
        elif self._start < 0 and pos:
            del buf[:pos]
            pos = 0
        self._pos = pos
        return frames

    def _scan(self, buf: bytearray, pos: int) -> int:
        """Scan from ``pos``; return the end of the current object or -1 if incomplete."""
        size = len(buf)
        while pos < size:
            if self._in_string:
                # Two memchr scans beat a character-class regex by an order of
                # magnitude on long strings (a base64 tarball).
                quote = buf.find(b'"', pos)
                backslash = buf.find(b"\\", pos, quote if quote >= 0 else size)
                if backslash >= 0:  # skip the escaped byte, which may be a quote
                    if backslash + 1 >= size:
                        return self._suspend(backslash)
                    pos = backslash + 2
                    continue
                if quote < 0:
                    return self._suspend(size)
                self._in_string = False
                pos = quote + 1
                continue
            m = _STRUCTURAL.search(buf, pos)
            if m is None:
                return self._suspend(size)
            pos = m.start()
            c = buf[pos]
            pos += 1
            if c == 0x22:
                self._in_string = True
            elif c in (0x7B, 0x5B):
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    return pos
        return self._suspend(pos)

    def _suspend(self, pos: int) -> int:
        """Remember where scanning stopped so the next feed resumes there."""
        self._resume = pos
        return -1
