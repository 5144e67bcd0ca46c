"""Multi-document YAML into v1beta1 documents, as the reference's apply parser reads it.

* The input is split on lines holding only ``---`` (surrounding blanks
  allowed); pieces are trimmed and empty ones dropped.
* Each piece is composed with PyYAML's safe loader and decoded by the target
  struct's field table with yaml.v3's rules: keys are case-sensitive, unknown
  keys ignored, any scalar fills a string field with its text as written
  (``port: 08`` stays ``"08"``), booleans also accept ``yes/no/on/off``,
  integers accept ``0x``/``0o``/``0b`` and ``_`` separators, ``null`` leaves
  the zero value. Type mismatches read like yaml.v3's
  (``line 3: cannot unmarshal !!map into string``).
* :func:`parse_documents` returns one :class:`Parsed` per good piece and one
  :class:`DocumentError` per bad one, whose text is the reference's line
  ``document <i> (<Kind>[ "<name>"]): <reason>``. The reference rejects the
  whole request when one document is bad; we fail only that document.
"""

from __future__ import annotations

import os.path
import re
from dataclasses import dataclass
from typing import Any

import yaml

from kukeond.api import gotypes as gt
from kukeond.api import structs as st
from kukeond.api import v1beta1 as v1
from kukeond.base import gojson
from kukeond.errors import KukeonError

SEPARATOR = re.compile(r"^\s*---\s*$", re.MULTILINE)

KINDS: dict[str, type[st.GoStruct]] = {
    v1.KIND_REALM: v1.RealmDoc,
    v1.KIND_SPACE: v1.SpaceDoc,
    v1.KIND_STACK: v1.StackDoc,
    v1.KIND_CELL: v1.CellDoc,
    v1.KIND_CONTAINER: v1.ContainerDoc,
}
"""The kinds ApplyDocuments accepts, in the order they are applied."""

_TAG = "tag:yaml.org,2002:"
_TRUE = frozenset(("true", "yes", "on", "y"))
_FALSE = frozenset(("false", "no", "off", "n"))


class DocumentError(Exception):
    """One document cannot be used; ``str()`` is the reference's line for it."""

    def __init__(self, index: int, reason: str, kind: str = "", name: str = "") -> None:
        super().__init__(reason)
        self.index, self.reason, self.kind, self.name = index, reason, kind, name

    def __str__(self) -> str:
        if self.name:
            return f"document {self.index} ({self.kind} {gt.go_quote(self.name)}): {self.reason}"
        return f"document {self.index} ({self.kind}): {self.reason}"


@dataclass
class Parsed:
    """A decoded document and where it came from."""

    index: int
    kind: str
    doc: Any

    @property
    def name(self) -> str:
        """The document's ``metadata.name``."""
        return self.doc.metadata.name


class _Unmarshal(Exception):
    def __init__(self, line: int, text: str) -> None:
        super().__init__(f"line {line}: {text}")


def split_documents(raw: bytes | str) -> list[str]:
    """The non-empty, trimmed documents of a multi-document blob."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return [piece.strip() for piece in SEPARATOR.split(text) if piece.strip()]


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _mismatch(node: yaml.Node, go_type: str) -> _Unmarshal:
    value = ""
    if isinstance(node, yaml.ScalarNode):
        text = node.value if len(node.value) <= 10 else node.value[:7] + "..."
        value = f" `{text}`"
    line = node.start_mark.line + 1
    return _Unmarshal(line, f"cannot unmarshal {_short(node.tag)}{value} into {go_type}")


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "null"


def _pairs(node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
    """Key/value pairs with ``<<`` merge keys expanded (explicit keys win)."""
    own, merged = [], []
    for key, value in node.value:
        if key.tag == _TAG + "merge":
            sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    merged.extend(_pairs(source))
        else:
            own.append((key, value))
    names = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
    return own + [(k, v) for k, v in merged if getattr(k, "value", None) not in names]


def _int(node: yaml.Node, t: Any) -> int:
    if not isinstance(node, yaml.ScalarNode):
        raise _mismatch(node, t.go_type)
    text = node.value.replace("_", "")
    try:
        value = int(text, 0) if node.tag != _TAG + "float" else int(float(text))
    except ValueError:
        raise _mismatch(node, t.go_type) from None
    if not t.low <= value <= t.high:
        raise _mismatch(node, t.go_type)
    return value


def decode_node(node: yaml.Node, t: Any) -> Any:
    """Decode a composed node into the Python value of Go type ``t``."""
    t = gt.as_type(t)
    if _is_null(node):
        return t.zero()
    if isinstance(t, gt.Ptr):
        return decode_node(node, t.elem)
    if isinstance(t, st._StructType):
        if not isinstance(node, yaml.MappingNode):
            raise _mismatch(node, t.go_type)
        return decode_struct(node, t.cls)
    if isinstance(t, gt.Slice):
        if not isinstance(node, yaml.SequenceNode):
            raise _mismatch(node, t.go_type)
        return [decode_node(item, t.elem) for item in node.value]
    if isinstance(t, gt.Map):
        if not isinstance(node, yaml.MappingNode):
            raise _mismatch(node, t.go_type)
        return {str(k.value): decode_node(v, t.elem) for k, v in _pairs(node)}
    if not isinstance(node, yaml.ScalarNode):
        raise _mismatch(node, t.go_type)
    if t is gt.STRING:
        return node.value
    if t is gt.BOOL:
        word = node.value.lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise _mismatch(node, t.go_type)
    if isinstance(t, gt._Int):
        return _int(node, t)
    if t is gt.TIME:
        try:
            return gojson.normalize_time(node.value)
        except gojson.GoTimeError as exc:
            raise _Unmarshal(node.start_mark.line + 1, str(exc)) from None
    if isinstance(t, gt.Enum):
        raw: Any = node.value
        if node.tag == _TAG + "int":
            raw = _int(node, gt.INT64)
        try:
            return t.decode(raw)
        except gt.DecodeError as exc:
            raise _Unmarshal(node.start_mark.line + 1, str(exc)) from None
    raise _mismatch(node, t.go_type)


def decode_struct(node: yaml.MappingNode, cls: type[st.GoStruct]) -> st.GoStruct:
    """Fill a zero ``cls`` from a mapping node (exact keys; others ignored)."""
    obj = cls()
    types = {entry[0]: entry[1] for entry in cls.fields}
    for key, value in _pairs(node):
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name in types:
            setattr(obj, name, decode_node(value, types[name]))
    return obj


def _compose(index: int, text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise DocumentError(
            index, f"document {index}: failed to parse kind: yaml: {where}{exc.problem}"
        ) from None
    except yaml.YAMLError as exc:
        raise DocumentError(index, f"document {index}: failed to parse kind: yaml: {exc}") from None


def parse_document(index: int, text: str) -> Parsed:
    """Decode one document by its ``kind`` (raises :class:`DocumentError`)."""
    node = _compose(index, text)
    if not isinstance(node, yaml.MappingNode):
        detail = _mismatch(node, "struct { Kind v1beta1.Kind }") if node is not None else None
        reason = f"yaml: unmarshal errors:\n  {detail}" if detail else "unknown kind: "
        prefix = "failed to parse kind: " if detail else ""
        raise DocumentError(index, f"document {index}: {prefix}{reason}")
    kind = ""
    for key, value in _pairs(node):
        if getattr(key, "value", None) == "kind":
            try:
                kind = decode_node(value, gt.STRING)
            except _Unmarshal as exc:
                raise DocumentError(
                    index,
                    f"document {index}: failed to parse kind: yaml: unmarshal errors:\n  {exc}",
                ) from None
    cls = KINDS.get(kind)
    if cls is None:
        raise DocumentError(index, f"document {index}: unknown kind: {kind}")
    try:
        doc = decode_struct(node, cls)
    except _Unmarshal as exc:
        raise DocumentError(
            index, f"document {index}: failed to parse {kind}: yaml: unmarshal errors:\n  {exc}"
        ) from None
    return Parsed(index, kind, doc)


def _secrets_problem(secrets: list[Any] | None) -> str | None:
    for i, secret in enumerate(secrets or []):
        name = secret.name.strip()
        if not name:
            return f"secret name is required (secrets[{i}])"
        sources = [s for s in (secret.fromFile.strip(), secret.fromEnv.strip()) if s]
        if not sources:
            return (
                "secret requires exactly one of fromFile or fromEnv "
                f"(secrets[{i}] {gt.go_quote(name)})"
            )
        if len(sources) == 2:
            return (
                f"secret must not set both fromFile and fromEnv (secrets[{i}] {gt.go_quote(name)})"
            )
        mount = secret.mountPath.strip()
        if mount and not os.path.isabs(mount):
            return (
                "secret mountPath must be an absolute container path "
                f"(secrets[{i}] {gt.go_quote(name)} mountPath {gt.go_quote(mount)})"
            )
    return None


_REQUIRED = {
    v1.KIND_REALM: (),
    v1.KIND_SPACE: ("realmId",),
    v1.KIND_STACK: ("realmId", "spaceId"),
    v1.KIND_CELL: ("realmId", "spaceId", "stackId"),
    v1.KIND_CONTAINER: ("realmId", "spaceId", "stackId", "cellId", "image"),
}


def validate(parsed: Parsed) -> None:
    """The reference's per-document checks, in its order (raises :class:`DocumentError`)."""
    doc, kind, index = parsed.doc, parsed.kind, parsed.index
    version = doc.apiVersion
    if version not in ("", v1.API_VERSION):
        raise DocumentError(
            index, f"unsupported apiVersion: {version} (expected {v1.API_VERSION})", kind
        )
    name = doc.metadata.name
    if not name:
        raise DocumentError(index, "metadata.name is required", kind)
    for field in _REQUIRED[kind]:
        if not getattr(doc.spec, field):
            raise DocumentError(index, f"spec.{field} is required", kind, name)
    if kind == v1.KIND_CELL and not doc.spec.containers:
        raise DocumentError(index, "spec.containers is required and cannot be empty", kind, name)
    if kind == v1.KIND_CONTAINER:
        problem = _secrets_problem(doc.spec.secrets)
        if problem:
            raise DocumentError(index, problem, kind, name)


def parse_documents(raw: bytes | str) -> tuple[list[Parsed], list[DocumentError]]:
    """Parse and validate every document; return the good ones and the rejected ones.

    A document that does not parse or validate is rejected on its own (its
    ``str()`` is the reference's line for it); the others are still applied.
    Input with no document at all is a :class:`KukeonError`.
    """
    pieces = split_documents(raw)
    if not pieces:
        raise KukeonError("failed to parse YAML: no documents found in input")
    parsed: list[Parsed] = []
    rejected: list[DocumentError] = []
    for index, text in enumerate(pieces):
        try:
            item = parse_document(index, text)
            validate(item)
        except DocumentError as exc:
            rejected.append(exc)
            continue
        parsed.append(item)
    return parsed, rejected
