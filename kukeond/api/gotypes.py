"""The Go types a :class:`~kukeond.api.structs.GoStruct` field can have.

Each :class:`GoType` knows its Go zero value, how Go's ``encoding/json``
decodes a parsed JSON value into it (with Go's error texts, raised as
:class:`DecodeError`) and how the value is encoded back: strings, bools and
sized integers, ``[]byte`` (base64 on the wire, also decodable a piece at a
time by :func:`decode_base64`), ``time.Time``, state enums, and slices, maps
and pointers of another Go type. :func:`as_type` turns a struct class into
the Go type of that struct by value.

Value representations: ``str``/``bool``/``int`` as is; times as canonical Go
text (:data:`~kukeond.base.gojson.ZERO_TIME` when zero); state enums as their
label strings; ``[]byte`` as ``bytes`` or ``None``; slices as ``list`` or
``None`` (nil); maps as ``dict`` or ``None``; pointers as the value or ``None``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from kukeond.base import gojson
from kukeond.base.bigbytes import BytesBuilder

# omitempty modes
_NEVER = 0  # not tagged, or a struct/time (Go never omits those)
_FALSY = 1  # "", 0, false, nil or empty slice/map/[]byte
_NIL = 2  # pointers: only nil is omitted


class DecodeError(ValueError):
    """A JSON value Go's decoder would reject; ``str()`` is the Go error text."""


class _Mismatch(Exception):
    """A type mismatch on its way up to the struct that names the field."""

    def __init__(self, value: str, go_type: str) -> None:
        super().__init__(value)
        self.value = value
        self.go_type = go_type
        self.struct: str | None = None
        self.path: list[str] = []

    def to_error(self) -> DecodeError:
        if self.struct is None:
            return DecodeError(
                f"json: cannot unmarshal {self.value} into Go value of type {self.go_type}"
            )
        field = ".".join(reversed(self.path))
        return DecodeError(
            f"json: cannot unmarshal {self.value} into Go struct field "
            f"{self.struct}.{field} of type {self.go_type}"
        )


def json_kind(raw: Any) -> str:
    """Name a decoded JSON value's kind as Go's error messages do."""
    if isinstance(raw, str):
        return "string"
    if isinstance(raw, bool):
        return "bool"
    if isinstance(raw, (int, float)):
        return "number"
    if isinstance(raw, list):
        return "array"
    if isinstance(raw, dict):
        return "object"
    return "null"


def raw_text(raw: Any) -> str:
    """Re-emit a decoded JSON value compactly (number literals kept when known)."""
    literal = getattr(raw, "literal", None)
    if literal is not None:
        return literal
    if isinstance(raw, list):
        return "[" + ",".join(raw_text(v) for v in raw) + "]"
    if isinstance(raw, dict):
        return "{" + ",".join(gojson.dumps(k) + ":" + raw_text(v) for k, v in raw.items()) + "}"
    return gojson.dumps(raw)


def go_quote(text: str) -> str:
    """Quote ``text`` roughly like Go's ``%q`` (double quotes, backslash escapes)."""
    return json.dumps(text, ensure_ascii=False)


class GoType(ABC):
    """How one Go type is zeroed, decoded and encoded.

    ``encode`` is ``None`` when the Python value is already JSON-ready, so the
    struct encoder can skip the call.
    """

    go_type: str = ""
    omit = _FALSY
    mutable_zero = False
    encode: Callable[[Any], Any] | None = None

    def zero(self) -> Any:
        """Return a fresh zero value (``None``: nil slice, map, pointer or ``[]byte``)."""
        return None

    @abstractmethod
    def decode(self, raw: Any) -> Any:
        """Decode a parsed JSON value (``None`` for ``null``)."""


class _String(GoType):
    go_type = "string"

    def zero(self) -> str:
        return ""

    def decode(self, raw: Any) -> str:
        if isinstance(raw, str):
            return raw
        if raw is None:
            return ""
        raise _Mismatch(json_kind(raw), self.go_type)


class _Bool(GoType):
    go_type = "bool"

    def zero(self) -> bool:
        return False

    def decode(self, raw: Any) -> bool:
        if raw is True or raw is False:
            return raw
        if raw is None:
            return False
        raise _Mismatch(json_kind(raw), self.go_type)


class _Int(GoType):
    def __init__(self, go_type: str, low: int, high: int) -> None:
        self.go_type = go_type
        self.low = low
        self.high = high

    def zero(self) -> int:
        return 0

    def decode(self, raw: Any) -> int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            if self.low <= raw <= self.high:
                return raw
            raise _Mismatch(f"number {raw}", self.go_type)
        if raw is None:
            return 0
        if isinstance(raw, float):
            raise _Mismatch(f"number {raw_text(raw)}", self.go_type)
        raise _Mismatch(json_kind(raw), self.go_type)


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]*")


def _illegal_base64(pos: int) -> DecodeError:
    return DecodeError(f"illegal base64 data at input byte {pos}")


class DecodedBytes:
    """A ``[]byte`` value decoded ahead of its struct: the bytes, or the error text.

    The RPC layer decodes the long base64 string of a large request off the
    reactor thread, a piece at a time (:func:`decode_base64`), and puts this in
    the parsed JSON where the string was; the struct decoder then takes the
    outcome as it is, in field order, as if it had decoded the string itself.
    """

    __slots__ = ("data", "error")

    def __init__(self, data: bytes | None = None, error: str | None = None) -> None:
        self.data = data
        self.error = error

    def __repr__(self) -> str:
        size = None if self.data is None else len(self.data)
        return f"DecodedBytes(<{size} bytes>, error={self.error!r})"


class _Bytes(GoType):
    go_type = "[]uint8"

    def decode(self, raw: Any) -> bytes | None:
        if raw is None:
            return None
        if type(raw) is DecodedBytes:
            if raw.error is not None:
                raise DecodeError(raw.error)
            return raw.data
        if not isinstance(raw, str):
            raise _Mismatch(json_kind(raw), self.go_type)
        if "\n" in raw or "\r" in raw:  # Go's decoder skips line breaks
            raw = raw.replace("\r", "").replace("\n", "")
        if len(raw) % 4 == 0 and raw.isascii():
            try:  # strict mode checks alphabet and padding in C, straight from the str
                return binascii.a2b_base64(raw, strict_mode=True)
            except binascii.Error:
                pass
        m = _BASE64_RUN.match(raw.encode("utf-8", "replace"))
        raise _illegal_base64(m.end() if m else 0)

    @staticmethod
    def encode(value: bytes | None) -> str | None:
        if value is None:
            return None
        return base64.b64encode(value).decode("ascii")


def decode_base64(text: Any, piece: int, between: Callable[[], None]) -> bytes:
    """Decode base64 ``text`` as a ``[]byte`` field does, ``piece`` characters per C call.

    ``text`` is a bytes-like object holding no line breaks (the raw content
    of a JSON string without escapes: a line break there is not valid JSON,
    so the caller never gets this far with one). The result and the error
    text are those of the field decoder; ``piece`` is a multiple of 4, so
    every piece but the last is whole base64 quanta and must decode to
    exactly three bytes per four characters (padding only at the very end).
    Each C call holds the GIL for one piece; ``between()`` runs before each
    one and may raise to abandon the work.
    """
    if piece <= 0 or piece % 4:
        raise ValueError(f"piece must be a positive multiple of 4, not {piece}")
    view = memoryview(text).cast("B")
    size = len(view)
    if size % 4:
        raise _illegal_base64(_base64_run(view, piece, between))
    out = BytesBuilder(size // 4 * 3)
    try:
        whole = piece // 4 * 3
        for start in range(0, size, piece):
            between()
            try:
                data = binascii.a2b_base64(view[start : start + piece], strict_mode=True)
            except binascii.Error:
                data = None
            if data is None or (len(data) != whole and start + piece < size):
                raise _illegal_base64(_base64_run(view, piece, between))
            out.write(data)
        return out.getvalue()
    finally:
        out.close()


def _base64_run(view: memoryview, piece: int, between: Callable[[], None]) -> int:
    """Length of the leading run of base64 alphabet characters, one piece per C call."""
    size = len(view)
    for start in range(0, size, piece):
        between()
        stop = min(start + piece, size)
        end = _BASE64_RUN.match(view, start, stop).end()  # type: ignore[union-attr]
        if end < stop:
            return end
    return size


class _Time(GoType):
    go_type = "time.Time"
    omit = _NEVER

    def zero(self) -> str:
        return gojson.ZERO_TIME

    def decode(self, raw: Any) -> str:
        if raw is None:
            return gojson.ZERO_TIME
        if not isinstance(raw, str):
            raise DecodeError("Time.UnmarshalJSON: input is not a JSON string")
        if raw == "":
            raise DecodeError(
                'parsing time "" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "2006"'
            )
        try:
            return gojson.normalize_time(raw)
        except gojson.GoTimeError as e:
            raise DecodeError(str(e)) from None


class Enum(GoType):
    """A v1beta1 state enum: a label string on the wire, legacy ints accepted."""

    omit = _FALSY

    def __init__(self, go_type: str, what: str, labels: tuple[str, ...]) -> None:
        self.go_type = go_type
        self.what = what
        self.labels = labels
        self._set = frozenset(labels)

    def zero(self) -> str:
        """Return the label of code 0."""
        return self.labels[0]

    def decode(self, raw: Any) -> str:
        """Accept a label or an in-range code; reject anything else as the reference does."""
        if raw is None:
            raw = ""
        if isinstance(raw, str):
            if raw in self._set:
                return raw
            raise DecodeError(f"{self.what} state: unknown label {go_quote(raw)}")
        if isinstance(raw, int) and not isinstance(raw, bool) and -(2**63) <= raw < 2**63:
            if 0 <= raw < len(self.labels):
                return self.labels[raw]
            raise DecodeError(f"{self.what} state: int {raw} out of range")
        raise DecodeError(f"{self.what} state: expected string or int, got {raw_text(raw)}")


class Slice(GoType):
    """Go ``[]T``: ``None`` is nil (``null``), ``[]`` is empty (``[]``)."""

    def __init__(self, elem: Any) -> None:
        self.elem = as_type(elem)
        self.go_type = "[]" + self.elem.go_type
        if self.elem.encode is not None:
            enc = self.elem.encode
            self.encode = lambda v: None if v is None else [enc(x) for x in v]

    def decode(self, raw: Any) -> list | None:
        """Decode an array element by element; ``null`` is nil."""
        if isinstance(raw, list):
            dec = self.elem.decode
            return [dec(x) for x in raw]
        if raw is None:
            return None
        raise _Mismatch(json_kind(raw), self.go_type)


class Map(GoType):
    """Go ``map[string]T``: emitted with keys sorted byte-wise; ``None`` is nil."""

    def __init__(self, elem: Any) -> None:
        self.elem = as_type(elem)
        self.go_type = "map[string]" + self.elem.go_type
        enc = self.elem.encode
        if enc is None:
            self.encode = gojson.sorted_map
        else:
            self.encode = lambda v: (
                None if v is None else {k: enc(x) for k, x in (gojson.sorted_map(v) or {}).items()}
            )

    def decode(self, raw: Any) -> dict | None:
        """Decode an object value by value; ``null`` is nil."""
        if isinstance(raw, dict):
            dec = self.elem.decode
            return {k: dec(x) for k, x in raw.items()}
        if raw is None:
            return None
        raise _Mismatch(json_kind(raw), self.go_type)


class Ptr(GoType):
    """Go ``*T``: ``None`` is nil; omitempty omits only nil (``false``/``0`` are kept)."""

    omit = _NIL

    def __init__(self, elem: Any) -> None:
        self.elem = as_type(elem)
        self.go_type = "*" + self.elem.go_type
        if self.elem.encode is not None:
            enc = self.elem.encode
            self.encode = lambda v: None if v is None else enc(v)

    def decode(self, raw: Any) -> Any:
        """Decode into a new pointee; ``null`` is nil."""
        if raw is None:
            return None
        return self.elem.decode(raw)


STRING = _String()
BOOL = _Bool()
INT = _Int("int", -(2**63), 2**63 - 1)
INT64 = _Int("int64", -(2**63), 2**63 - 1)
UINT32 = _Int("uint32", 0, 2**32 - 1)
BYTES = _Bytes()
TIME = _Time()


def as_type(t: Any) -> GoType:
    """Accept a :class:`GoType` or a :class:`~kukeond.api.structs.GoStruct` subclass.

    A struct class means the struct by value; the class hands over its Go
    type through ``go_type_by_value()``.
    """
    if isinstance(t, GoType):
        return t
    if isinstance(t, type):
        by_value = getattr(t, "go_type_by_value", None)
        if by_value is not None:
            return by_value()
    raise TypeError(f"not a Go type: {t!r}")
