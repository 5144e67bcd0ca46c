"""JSON exactly as Go's ``encoding/json`` writes it, and Go ``time.Time`` text.

Everything the daemon emits (wire replies, ``metadata.json`` files) goes
through :func:`dumps` or :func:`dumps_indent`, so the escaping rules live in
one place:

* compact output, keys in the order of the mapping given (callers build
  Go-ordered dicts; Go maps must be given sorted, see :func:`sorted_map`);
* HTML-safe escaping: ``<`` ``>`` ``&`` U+2028 U+2029 as ``\\uXXXX``;
* non-ASCII printable characters raw, control characters as Go writes them;
* invalid UTF-8 (lone surrogates in a Python string) as U+FFFD.

Times are kept as canonical Go text (RFC 3339, nanoseconds, trailing zeros
trimmed, ``Z`` for UTC); :func:`normalize_time` turns any RFC 3339 input into
that form, so a stored timestamp round-trips to the byte.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"

_HTML_SAFE = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)
_HTML_SAFE_PAIRS = tuple((chr(k), v) for k, v in _HTML_SAFE.items())
_SURROGATE = re.compile("[\ud800-\udfff]")

_indented = json.JSONEncoder(ensure_ascii=False, separators=(",", ": "), indent=2, allow_nan=False)


def _finish(text: str) -> str:
    # Chained replace scans with memchr; str.translate does a dict lookup per character.
    for char, escaped in _HTML_SAFE_PAIRS:
        if char in text:
            text = text.replace(char, escaped)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text


class RawJSON:
    """Compact JSON in Go's form, as UTF-8 bytes, written verbatim by the encoders here.

    A document whose wire encoding is kept (one per stored version) travels
    in a reply as one of these: encoding the reply copies the bytes instead
    of walking the document again. ``to_wire()`` returns the value itself,
    so it stands wherever a struct is expected in a reply.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def to_wire(self) -> RawJSON:
        """Return itself: the bytes are the wire form."""
        return self

    def __eq__(self, other: object) -> bool:
        return type(other) is RawJSON and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        return f"RawJSON({self.data!r})"


class _Spliced(Exception):
    """The value holds a :class:`RawJSON`: the C encoder cannot write it."""


def _refuse_raw(obj: Any) -> Any:
    if type(obj) is RawJSON:
        raise _Spliced
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_compact_c = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_refuse_raw
).encode


def raw(obj: Any) -> RawJSON:
    """Encode ``obj`` once as a :class:`RawJSON` to be spliced into later output."""
    return RawJSON(dumps(obj).encode("utf-8"))


def dumps(obj: Any) -> str:
    """Encode ``obj`` compactly, the way Go's ``json.Marshal`` does.

    :class:`RawJSON` values anywhere inside are written as they are.
    """
    if type(obj) is RawJSON:
        return obj.data.decode("utf-8")
    try:
        return _finish(_compact_c(obj))
    except _Spliced:
        out: list[bytes] = []
        _splice_into(obj, out)
        return b"".join(out).decode("utf-8")


def encode_into(obj: Any, out: list[bytes]) -> None:
    """Append the UTF-8 pieces of :func:`dumps` of ``obj`` to ``out`` (join them to send).

    Kept :class:`RawJSON` bytes are appended as they are, so a reply made of
    many of them is copied once, by the final join.
    """
    if type(obj) is RawJSON:
        out.append(obj.data)
        return
    try:
        out.append(_finish(_compact_c(obj)).encode("utf-8"))
    except _Spliced:
        _splice_into(obj, out)


def _splice_into(obj: Any, out: list[bytes]) -> None:
    """Encode a value holding :class:`RawJSON` leaves: containers by hand, the rest in C."""
    kind = type(obj)
    if kind is list or kind is tuple:
        out.append(b"[")
        for i, value in enumerate(obj):
            if i:
                out.append(b",")
            encode_into(value, out)
        out.append(b"]")
    elif kind is dict:
        out.append(b"{")
        for i, (key, value) in enumerate(obj.items()):
            if i:
                out.append(b",")
            encode_into(str(key), out)
            out.append(b":")
            encode_into(value, out)
        out.append(b"}")
    else:
        encode_into(obj, out)


def dumps_indent(obj: Any) -> str:
    """Encode ``obj`` like Go's ``json.MarshalIndent(v, "", "  ")``."""
    return _finish(_indented.encode(obj))


def sorted_map(mapping: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return a Go ``map[string]T`` ready to encode: keys sorted byte-wise, ``None`` kept."""
    if mapping is None:
        return None
    return {k: mapping[k] for k in sorted(mapping, key=lambda k: k.encode("utf-8"))}


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z"
)


class GoTimeError(ValueError):
    """A string that Go's ``time.Time.UnmarshalJSON`` would reject."""


def _offset_text(seconds: int) -> str:
    if seconds == 0:
        return "Z"
    sign = "+" if seconds > 0 else "-"
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _fraction_text(nanos: int) -> str:
    if not nanos:
        return ""
    return "." + f"{nanos:09d}".rstrip("0")


def normalize_time(text: str) -> str:
    """Return the canonical Go form of an RFC 3339 timestamp, or raise :class:`GoTimeError`."""
    if not isinstance(text, str):
        raise GoTimeError(f"parsing time {text!r}: not a string")
    m = _RFC3339.match(text)
    if m is None:
        raise GoTimeError(f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse')
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError as e:
        raise GoTimeError(f'parsing time "{text}": {e}') from None
    nanos = int((m.group(7) or "0").ljust(9, "0"))
    offset = 0
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        if m.group(9) == "-":
            offset = -offset
    return (
        f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
        f"{_fraction_text(nanos)}{_offset_text(offset)}"
    )


def format_epoch_ns(epoch_ns: int) -> str:
    """Format nanoseconds since the Unix epoch as a UTC Go timestamp."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + _fraction_text(nanos) + "Z"


def now() -> str:
    """Return the current UTC time as a Go timestamp with nanosecond precision."""
    return format_epoch_ns(time.time_ns())
