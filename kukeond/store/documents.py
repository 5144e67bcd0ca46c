"""What a metadata document is: its key, and its file content parsed, rendered and stamped.

A document is a plain JSON dict (a v1beta1 document in its Go JSON shape),
addressed by its *key*: ``(R,)``, ``(R, S)``, ``(R, S, K)`` or
``(R, S, K, C)``. The file holds it as Go's ``MarshalIndent`` writes it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kukeond.base import gojson, naming

Key = tuple[str, ...]
Document = dict[str, Any]

ACCEPTED_API_VERSIONS = ("", "v1beta1")


def check_key(key: Key, *, allow_empty: bool = False) -> Key:
    """Return ``key`` as a tuple of one to four names usable as path components.

    ``allow_empty`` also accepts ``()`` (the top of the tree); raises
    ``ValueError`` otherwise.
    """
    key = tuple(key)
    low = 0 if allow_empty else 1
    if not low <= len(key) <= 4:
        raise ValueError(f"a metadata key has one to four names, got {key!r}")
    for name in key:
        if not naming.is_safe_path_component(name):
            raise ValueError(f"name {name!r} cannot be used as a path component")
    return key


def parse_document(raw: bytes) -> Document:
    """Decode a metadata file the way the reference reads it.

    Invalid UTF-8 becomes U+FFFD (as Go's decoder does); the top level must
    be an object whose ``apiVersion`` is empty or ``v1beta1``. Raises
    ``ValueError`` with the reason otherwise.
    """
    doc = json.loads(raw.decode("utf-8", "replace"))
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, found {type(doc).__name__}")
    version = doc.get("apiVersion") or ""
    if version not in ACCEPTED_API_VERSIONS:
        raise ValueError(f"unsupported apiVersion: {version}")
    return doc


def render_document(doc: Document) -> bytes:
    """File content for ``doc``: Go ``MarshalIndent`` with two spaces, plus a newline."""
    return (gojson.dumps_indent(doc) + "\n").encode("utf-8")


def stamp_lifecycle(doc: Document, now: str) -> None:
    """Set ``status`` timestamps in place as every reference persist does.

    ``createdAt`` only when zero, ``updatedAt`` always, ``readyAt`` the first
    time the document is written in state ``Ready``.
    """
    status = doc.get("status")
    if not isinstance(status, dict):
        return
    if _is_zero(status.get("createdAt")):
        status["createdAt"] = now
    status["updatedAt"] = now
    if status.get("state") == "Ready" and _is_zero(status.get("readyAt")):
        status["readyAt"] = now


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON tree (dicts, lists, scalars), several times faster than deepcopy.

    Values of any other type fall back to :func:`copy.deepcopy`.
    """
    kind = type(value)
    # Leaves are tested inline: a call per string would double the cost.
    if kind is dict:
        return {k: v if type(v) in _JSON_SCALARS else copy_json(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _JSON_SCALARS else copy_json(v) for v in value]
    if kind in _JSON_SCALARS:
        return value
    return copy.deepcopy(value)


_JSON_SCALARS = frozenset((str, int, float, bool, type(None)))


def _is_zero(value: Any) -> bool:
    return not value or value == gojson.ZERO_TIME
