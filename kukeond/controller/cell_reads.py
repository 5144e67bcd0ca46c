"""The wire text of stored cells, built once per stored version, for GetCell and ListCells.

A stored cell version is decoded once into a :class:`CellText` (through
``MetadataStore.decoded``, so a version another writer put on disk is seen at
the next read): its output text as ListCells sends it, that text split around
the ``status.containers`` value, and what GetCell needs to ask containerd
about the cell (the containerd IDs of its containers and of its root). GetCell
splices the live container statuses into the split text; the texts of the
state combinations seen are kept with the version, so a GetCell whose states
did not change copies bytes instead of encoding the document.
"""

from __future__ import annotations

from typing import Any

from kukeond import errors
from kukeond.api.gotypes import DecodeError
from kukeond.api.v1beta1 import KIND_CELL, CellDoc, ContainerStatus
from kukeond.base import gojson, naming
from kukeond.controller.cell_state import cell_key, containerd_id_of, expects_running
from kukeond.controller.common import Unreadable, as_output, safe
from kukeond.controller.runtime import Runtime
from kukeond.store.documents import Key
from kukeond.store.errors import MetadataCorrupt

_MARK = b"\x00"
"""Stands for ``status.containers`` while the text is split (encoded text never holds a NUL)."""

_KEPT_TEXTS = 8
"""Live-state combinations whose text a version keeps (a cell rarely shows more)."""


def finish_output(doc: CellDoc) -> CellDoc:
    """A cell as it leaves the daemon (``containers`` arrays never null)."""
    as_output(doc, KIND_CELL)
    if doc.spec.containers is None:
        doc.spec.containers = []
    if doc.status.containers is None:
        doc.status.containers = []
    return doc


class CellText:
    """One stored cell version as the daemon sends it (see the module docstring).

    Shared by every reader of that version: nothing in it changes after it is
    built, except the kept texts of live states, which only grow.
    """

    __slots__ = (
        "raw",
        "key",
        "cgroup_path",
        "running",
        "ids",
        "cids",
        "query",
        "root_cid",
        "_head",
        "_tail",
        "_restarts",
        "_texts",
    )

    def __init__(self, doc: CellDoc) -> None:
        finish_output(doc)
        wire = doc.to_wire()
        wire["status"]["containers"] = gojson.RawJSON(_MARK)
        pieces: list[bytes] = []
        gojson.encode_into(wire, pieces)
        head, tail = b"".join(pieces).split(_MARK)
        stored = gojson.dumps(wire_statuses(doc.status.containers)).encode("utf-8")
        self.raw = gojson.RawJSON(head + stored + tail)
        self._head, self._tail = head, tail
        self.key = cell_key(doc)
        self.cgroup_path = doc.status.cgroupPath
        self.running = expects_running(doc)
        containers = doc.spec.containers or []
        self.ids = tuple(c.id for c in containers)
        self.cids = tuple(containerd_id_of(doc, c) for c in containers)
        _realm, space, stack, cell = self.key
        self.root_cid = naming.root_containerd_id(space, stack, cell)
        self.query = tuple(dict.fromkeys((*self.cids, self.root_cid)))
        self._restarts = {
            s.id: (s.restartCount, s.restartTime)
            for s in doc.status.containers or ()
            if s.restartCount
        }
        self._texts: dict[tuple[str, ...], gojson.RawJSON] = {}

    def with_states(self, states: dict[str, str]) -> gojson.RawJSON:
        """The text with live ``status.containers``: ``states`` maps containerd IDs to states.

        Restart counts and times recorded for a container are kept, as
        :func:`kukeond.controller.cell_state.carry_restarts` does.
        """
        combination = tuple(states[cid] for cid in self.cids)
        text = self._texts.get(combination)
        if text is None:
            statuses = []
            for name, state in zip(self.ids, combination, strict=True):
                status = ContainerStatus(name=name, id=name, state=state)
                restart = self._restarts.get(name)
                if restart is not None:
                    status.restartCount, status.restartTime = restart
                statuses.append(status)
            listed = gojson.dumps(wire_statuses(statuses)).encode("utf-8")
            if len(self._texts) >= _KEPT_TEXTS:
                self._texts.clear()
            text = self._texts[combination] = gojson.RawJSON(self._head + listed + self._tail)
        return text


def wire_statuses(statuses: list[ContainerStatus] | None) -> list[dict[str, Any]]:
    """``status.containers`` as the encoder writes it."""
    return [s.to_wire() for s in statuses or ()]


def decode_cell(raw: Any) -> CellText | Unreadable:
    """The one decoder of stored cells for ``MetadataStore.decoded`` (the cache key)."""
    try:
        doc = CellDoc.from_wire(dict(raw))
    except DecodeError as exc:
        return Unreadable(str(exc))
    return CellText(doc)


def stored_cell(runtime: Runtime, key: Key) -> CellText | None:
    """The :class:`CellText` of the cell stored under ``key``; ``None`` when absent or unsafe.

    An unusable file raises ``ConversionFailed`` (``failed to get cell: conversion
    failed: <path>: <reason>``), as every read of a stored cell does.
    """
    if not safe(*key):
        return None
    try:
        text = runtime.store.decoded(key, decode_cell)
    except MetadataCorrupt as exc:
        raise errors.ConversionFailed(f"{exc.path}: {exc.reason}").wrap(
            "failed to get cell"
        ) from None
    if type(text) is Unreadable:
        path = runtime.store.path(key)
        raise errors.ConversionFailed(f"{path}: {text.reason}").wrap("failed to get cell")
    return text
