"""Decode request objects and encode responses like Go's ``net/rpc/jsonrpc``.

A request is ``{"method": ..., "params": [...], "id": ...}`` with header keys
matched case-insensitively (Go's ``encoding/json``); the id is echoed back in
compact form with its number literals untouched. A response is one compact
object ``{"id","result","error"}`` followed by a newline.
"""

from __future__ import annotations

import json
from typing import Any

from kukeond.base import gojson

_HEADER_KEYS = {"method": "method", "params": "params", "id": "id"}
_MISSING = object()


class GoNumber(float):
    """A JSON number written with a fraction or exponent, keeping its literal text.

    It behaves as a float for decoders (which reject it for integer fields, as
    Go does) and re-encodes to the exact literal when echoed as a request id.
    """

    __slots__ = ("literal",)
    literal: str

    def __new__(cls, literal: str) -> GoNumber:
        """Make the number from its JSON literal."""
        self = super().__new__(cls, literal)
        self.literal = literal
        return self


_DECODER = json.JSONDecoder(parse_float=GoNumber)


class RequestError(Exception):
    """The frame is not a request object Go's codec could decode: fatal for the connection."""


class Request:
    """One decoded request: the method string, the raw params value and the echo-ready id."""

    __slots__ = ("method", "params", "id_text")

    def __init__(self, method: str, params: Any, id_text: str) -> None:
        self.method = method
        self.params = params  # _MISSING when absent; otherwise the decoded JSON value
        self.id_text = id_text

    @property
    def has_params(self) -> bool:
        """Tell whether ``params`` was present and not ``null``."""
        return self.params is not _MISSING and self.params is not None

    def __eq__(self, other: object) -> bool:
        if type(other) is not Request:
            return NotImplemented
        mine = (self.method, self.params, self.id_text)
        return mine == (other.method, other.params, other.id_text)

    def __repr__(self) -> str:
        return f"Request(method={self.method!r}, params={self.params!r}, id_text={self.id_text!r})"


def _compact_raw(value: Any) -> str:
    """Re-emit a decoded JSON value compactly, number literals as written."""
    if type(value) is int:  # the usual id: its decimal text is its JSON text
        return str(value)
    if isinstance(value, GoNumber):
        return value.literal
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return gojson.dumps(value)
    if isinstance(value, list):
        return "[" + ",".join(_compact_raw(v) for v in value) + "]"
    return "{" + ",".join(gojson.dumps(k) + ":" + _compact_raw(v) for k, v in value.items()) + "}"


decode_object = _DECODER.raw_decode
"""``decode_object(text, pos)``: the JSON value starting at ``pos`` and the index after it."""


def decode_request(frame: bytes | bytearray) -> Request:
    """Decode one complete JSON object into a :class:`Request` or raise :class:`RequestError`."""
    return decode_request_text(frame.decode("utf-8", "replace"))


def decode_request_text(text: str) -> Request:
    """:func:`decode_request` of a frame already decoded from UTF-8."""
    try:
        obj = _DECODER.decode(text)
    except ValueError as e:
        raise RequestError(f"malformed JSON: {e}") from None
    return request_from_object(obj)


def request_from_object(obj: Any) -> Request:
    """The :class:`Request` of a decoded top-level value, or raise :class:`RequestError`."""
    if type(obj) is not dict:
        raise RequestError("request is not a JSON object")
    if len(obj) == 3 and "method" in obj and "params" in obj and "id" in obj:
        # The shape every client sends: no case folding, no duplicates to settle.
        name = obj["method"]
        if type(name) is not str:
            if name is not None:
                raise RequestError("method is not a string")
            name = ""
        return Request(name, obj["params"], _compact_raw(obj["id"]))
    method: Any = None
    params: Any = _MISSING
    id_value: Any = None
    for key, value in obj.items():
        header = _HEADER_KEYS.get(key) or _HEADER_KEYS.get(key.lower())
        if header == "method":
            method = value
        elif header == "params":
            params = value
        elif header == "id":
            id_value = value
    if method is not None and not isinstance(method, str):
        raise RequestError("method is not a string")
    return Request(method or "", params, _compact_raw(id_value))


def encode_response(id_text: str, result: Any = None, error: str | None = None) -> bytes:
    """Encode one response line: ``result`` is a Go-shaped value, ``error`` a protocol error."""
    if error is None:
        out = [b'{"id":', id_text.encode("utf-8"), b',"result":']
        gojson.encode_into(result, out)
        out.append(b',"error":null}\n')
        return b"".join(out)
    body = '{"id":' + id_text + ',"result":null,"error":' + gojson.dumps(error) + "}\n"
    return body.encode("utf-8")


def params_type_name(value: Any) -> str:
    """Name a JSON value's type the way Go's decoder does in its error messages."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"
