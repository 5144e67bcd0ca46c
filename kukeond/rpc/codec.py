"""Decode request objects and encode responses like Go's ``net/rpc/jsonrpc``.

A request is ``{"method": ..., "params": [...], "id": ...}`` with header keys
matched case-insensitively (Go's ``encoding/json``); the id is echoed back in
compact form with its number literals untouched. A response is one compact
object ``{"id","result","error"}`` followed by a newline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kukeond.api import gojson

_HEADER_KEYS = {"method": "method", "params": "params", "id": "id"}
_MISSING = object()


class GoNumber(float):
    """A JSON number written with a fraction or exponent, keeping its literal text.

    It behaves as a float for decoders (which reject it for integer fields, as
    Go does) and re-encodes to the exact literal when echoed as a request id.
    """

    __slots__ = ("literal",)

    def __new__(cls, literal: str) -> GoNumber:
        """Make the number from its JSON literal."""
        self = super().__new__(cls, literal)
        self.literal = literal
        return self


_DECODER = json.JSONDecoder(parse_float=GoNumber)


class RequestError(Exception):
    """The frame is not a request object Go's codec could decode: fatal for the connection."""


@dataclass(frozen=True)
class Request:
    """One decoded request: the method string, the raw params value and the echo-ready id."""

    method: str
    params: Any  # _MISSING when absent; otherwise the decoded JSON value
    id_text: str

    @property
    def has_params(self) -> bool:
        """Tell whether ``params`` was present and not ``null``."""
        return self.params is not _MISSING and self.params is not None


def _compact_raw(value: Any) -> str:
    """Re-emit a decoded JSON value compactly, number literals as written."""
    if isinstance(value, GoNumber):
        return value.literal
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return gojson.dumps(value)
    if isinstance(value, list):
        return "[" + ",".join(_compact_raw(v) for v in value) + "]"
    return "{" + ",".join(gojson.dumps(k) + ":" + _compact_raw(v) for k, v in value.items()) + "}"


def decode_request(frame: bytes) -> Request:
    """Decode one complete JSON object into a :class:`Request` or raise :class:`RequestError`."""
    try:
        obj = _DECODER.decode(frame.decode("utf-8", "replace"))
    except ValueError as e:
        raise RequestError(f"malformed JSON: {e}") from None
    if not isinstance(obj, dict):
        raise RequestError("request is not a JSON object")
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
    return Request(method=method or "", params=params, id_text=_compact_raw(id_value))


def encode_response(id_text: str, result: Any = None, error: str | None = None) -> bytes:
    """Encode one response line: ``result`` is a Go-shaped value, ``error`` a protocol error."""
    if error is None:
        body = '{"id":' + id_text + ',"result":' + gojson.dumps(result) + ',"error":null}\n'
    else:
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
