"""A declarative mirror of Go structs and their ``encoding/json`` behaviour.

Each Go struct is a :class:`GoStruct` subclass whose annotated attributes are
its fields, in Go declaration order and named by their JSON keys::

    class RealmStatus(GoStruct):
        go_package = "v1beta1"
        state: Annotated[str, REALM_STATE]
        cgroupPath: Annotated[str, OMIT]
        subtreeControllers: Annotated[list[str] | None, OMIT]

The Go type comes from the annotation (``str``, ``bool``, ``int``, ``bytes |
None`` for ``[]byte``, a struct by value, ``X | None`` for a pointer,
``list[X] | None`` for a slice, ``dict[str, X] | None`` for a map) unless an
``Annotated`` entry names it (``TIME``, ``INT64``, an :class:`Enum`, ...);
:data:`OMIT` in ``Annotated`` is ``omitempty``. ``Cls()`` is the Go zero
value, ``obj.to_wire()`` the Go-ordered dict ready for
:func:`kukeond.base.gojson.dumps`, and ``Cls.from_wire(obj)`` decodes a parsed
JSON value the way Go's decoder fills a zero value (exact key first, then
case-insensitive; unknown keys ignored; ``null`` leaves the zero value).

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
import sys
import types
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Self, Union, get_args, get_origin

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


class GoType:
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

    def decode(self, raw: Any) -> Any:
        """Decode a parsed JSON value (``None`` for ``null``)."""
        raise NotImplementedError


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


class _StructType(GoType):
    omit = _NEVER
    mutable_zero = True

    def __init__(self, cls: type[GoStruct]) -> None:
        self.cls = cls
        self.go_type = cls.go_name

    def zero(self) -> GoStruct:
        return self.cls()

    def decode(self, raw: Any) -> GoStruct:
        return self.cls._decode_value(raw)

    @staticmethod
    def encode(value: GoStruct) -> dict:
        return value.to_wire()


STRING = _String()
BOOL = _Bool()
INT = _Int("int", -(2**63), 2**63 - 1)
INT64 = _Int("int64", -(2**63), 2**63 - 1)
UINT32 = _Int("uint32", 0, 2**32 - 1)
BYTES = _Bytes()
TIME = _Time()

_struct_types: dict[type, _StructType] = {}


def as_type(t: Any) -> GoType:
    """Accept a :class:`GoType` or a :class:`GoStruct` subclass (meaning the struct by value)."""
    if isinstance(t, GoType):
        return t
    if isinstance(t, type) and issubclass(t, GoStruct):
        st = _struct_types.get(t)
        if st is None:
            st = _struct_types[t] = _StructType(t)
        return st
    raise TypeError(f"not a Go type: {t!r}")


class _OmitEmpty:
    def __repr__(self) -> str:
        return "OMIT"


OMIT = _OmitEmpty()
"""``Annotated[T, OMIT]``: the field is tagged ``omitempty``."""


def _derived_type(hint: Any) -> GoType:
    """The Go type a plain annotation stands for (see the module docstring)."""
    if hint is str:
        return STRING
    if hint is bool:
        return BOOL
    if hint is int:
        return INT
    if isinstance(hint, type) and issubclass(hint, GoStruct):
        return as_type(hint)
    args = get_args(hint)
    if get_origin(hint) in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        origin = get_origin(inner)
        if inner is bytes:
            return BYTES
        if origin is list:
            return Slice(_derived_type(get_args(inner)[0]))
        if origin is dict:
            return Map(_derived_type(get_args(inner)[1]))
        return Ptr(_derived_type(inner))
    raise TypeError(f"no Go type for annotation {hint!r}")


def _declared_fields(cls: type) -> list[tuple[str, GoType, bool]]:
    """Read ``cls``'s own annotated fields, in declaration order."""
    fields = []
    namespace = vars(sys.modules[cls.__module__])
    for key, hint in cls.__dict__.get("__annotations__", {}).items():
        if isinstance(hint, str):
            if hint.startswith("ClassVar"):
                continue
            hint = eval(hint, namespace, {cls.__name__: cls})  # noqa: S307 - our own source
        go_type, omitempty = None, False
        if get_origin(hint) is Annotated:
            hint, *extras = get_args(hint)
            for extra in extras:
                if extra is OMIT:
                    omitempty = True
                elif isinstance(extra, GoType):
                    go_type = extra
        fields.append((key, go_type or _derived_type(hint), omitempty))
    return fields


class GoStruct:
    """Base of every mirrored Go struct: annotated attributes are its fields.

    ``go_package`` (inherited) names the Go package; ``go_name`` is then
    ``package.ClassName`` unless the class sets it. :attr:`fields` lists
    ``(json_key, GoType, omitempty)`` in Go declaration order, the base
    class's fields first.
    """

    go_package: ClassVar[str] = ""
    go_name: ClassVar[str] = ""
    fields: ClassVar[tuple[tuple[str, GoType, bool], ...]] = ()

    _enc: ClassVar[tuple]
    _dec: ClassVar[dict[str, tuple[str, Callable[[Any], Any]]]]
    _fold: ClassVar[dict[str, tuple[str, Callable[[Any], Any]]]]
    _scalar_zero: ClassVar[dict[str, Any]]
    _mutable_zero: ClassVar[tuple]
    _keys: ClassVar[frozenset]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "go_name" not in cls.__dict__:
            cls.go_name = f"{cls.go_package}.{cls.__name__}" if cls.go_package else ""
        cls.fields = cls.fields + tuple(_declared_fields(cls))
        enc: list[tuple] = []
        mutable: list[tuple] = []
        dec: dict[str, tuple[str, Callable[[Any], Any]]] = {}
        fold: dict[str, tuple[str, Callable[[Any], Any]]] = {}
        scalar: dict[str, Any] = {}
        for key, t, omitempty in cls.fields:
            enc.append((key, t.encode, t.omit if omitempty else _NEVER))
            dec[key] = (key, t.decode)
            fold.setdefault(key.lower(), (key, t.decode))
            if t.mutable_zero:
                mutable.append((key, t.zero))
            else:
                scalar[key] = t.zero()
        cls._enc = tuple(enc)
        cls._dec = dec
        cls._fold = fold
        cls._scalar_zero = scalar
        cls._mutable_zero = tuple(mutable)
        cls._keys = frozenset(dec)

    def __init__(self, **values: Any) -> None:
        d = self.__dict__
        d.update(self._scalar_zero)
        for key, zero in self._mutable_zero:
            if key not in values:
                d[key] = zero()
        if values:
            unknown = values.keys() - self._keys
            if unknown:
                raise TypeError(f"{type(self).__name__} has no fields {sorted(unknown)}")
            d.update(values)

    def to_wire(self) -> dict[str, Any]:
        """Return the Go-ordered JSON object (a dict) for this value."""
        d = self.__dict__
        out = {}
        for key, enc, omit in self._enc:
            v = d[key]
            if omit and (v is None if omit == _NIL else not v):
                continue
            out[key] = v if enc is None else enc(v)
        return out

    @classmethod
    def _decode_value(cls, raw: Any) -> Self:
        if isinstance(raw, dict):
            return cls._decode(raw)
        if raw is None:
            return cls()
        raise _Mismatch(json_kind(raw), cls.go_name)

    @classmethod
    def _decode(cls, raw: dict) -> Self:
        obj = cls()
        d = obj.__dict__
        exact, fold = cls._dec, cls._fold
        for k, v in raw.items():
            entry = exact.get(k) or fold.get(k.lower())
            if entry is None:
                continue
            try:
                d[entry[0]] = entry[1](v)
            except _Mismatch as e:
                if e.struct is None:
                    e.struct = cls.go_name.rpartition(".")[2]
                e.path.append(entry[0])
                raise
        return obj

    @classmethod
    def from_wire(cls, raw: Any) -> Self:
        """Decode a parsed JSON value into a new instance, or raise :class:`DecodeError`."""
        try:
            return cls._decode_value(raw)
        except _Mismatch as e:
            raise e.to_error() from None

    def clone(self) -> Self:
        """Return a deep copy (through the wire form, which is faster than ``copy.deepcopy``)."""
        return type(self).from_wire(self.to_wire())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={self.__dict__[k]!r}" for k, _, _ in self._enc)
        return f"{type(self).__name__}({inner})"


def bytes_field(cls: Any, key: str) -> bool:
    """Tell whether ``key`` of a JSON object decodes into a ``[]byte`` field of struct ``cls``.

    Keys match as the struct decoder matches them: exactly first, then case-insensitively.
    """
    if not (isinstance(cls, type) and issubclass(cls, GoStruct)):
        return False
    entry = cls._dec.get(key) or cls._fold.get(key.lower())
    return entry is not None and entry[1] == BYTES.decode
