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
``Annotated`` entry names it (``TIME``, ``INT64``, an :class:`~kukeond.api.gotypes.Enum`, ...);
:data:`OMIT` in ``Annotated`` is ``omitempty``. ``Cls()`` is the Go zero
value, ``obj.to_wire()`` the Go-ordered dict ready for
:func:`kukeond.base.gojson.dumps`, and ``Cls.from_wire(obj)`` decodes a parsed
JSON value the way Go's decoder fills a zero value (exact key first, then
case-insensitive; unknown keys ignored; ``null`` leaves the zero value).

The Go types themselves (zero values, decoding, encoding and the value
representations) are in :mod:`kukeond.api.gotypes`.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Self, Union, get_args, get_origin

from kukeond.api.gotypes import (
    _NEVER,
    _NIL,
    BOOL,
    BYTES,
    INT,
    STRING,
    GoType,
    Map,
    Ptr,
    Slice,
    _Mismatch,
    json_kind,
)


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


_struct_types: dict[type, _StructType] = {}


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
        return hint.go_type_by_value()
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
    def go_type_by_value(cls) -> GoType:
        """Return the Go type of this struct by value (one per class, made on first use)."""
        st = _struct_types.get(cls)
        if st is None:
            st = _struct_types[cls] = _StructType(cls)
        return st

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
