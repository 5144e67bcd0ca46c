"""Methods this daemon serves beyond the reference's 40: ``KukeonV1.Status``.

Adding a method to the ``KukeonV1`` service does not disturb the reference
client (it never calls it); the Go-shaped structs follow the same rules as
:mod:`kukeond.api.kukeonv1` (PascalCase keys, no ``omitempty``).
"""

from __future__ import annotations

from typing import Annotated

from kukeond.api.gotypes import INT64, TIME
from kukeond.api.kukeonv1 import APIError, Reply
from kukeond.api.wire_results import WireStruct


class StatusArgs(WireStruct):
    """Arguments of ``KukeonV1.Status`` (none)."""


class ReconcileStatus(WireStruct):
    """The last reconcile pass: when, how long, and its counters."""

    Enabled: bool
    Interval: str
    LastPassAt: Annotated[str, TIME]
    LastPassMillis: Annotated[int, INT64]
    CellsScanned: int
    CellsUpdated: int
    CellsDeleted: int
    CellsErrored: int
    ContainerdDown: bool
    Errors: list[str] | None


class StatusResult(WireStruct):
    """Whether the daemon can do work: containerd, the reconciler, requests, resources."""

    Version: str
    StartedAt: Annotated[str, TIME]
    Socket: str
    RunPath: str
    ContainerdSocket: str
    ContainerdReachable: bool
    ContainerdVersion: str
    ContainerdError: str
    Reconcile: ReconcileStatus
    Connections: int
    RequestsInFlight: int
    RequestsServed: Annotated[int, INT64]
    Realms: int
    Spaces: int
    Stacks: int
    Cells: int


class StatusReply(Reply):
    """Reply of ``KukeonV1.Status``."""

    Result: StatusResult
    Err: APIError | None


EXTENSION_METHODS: dict[str, tuple[type[WireStruct], type[Reply]]] = {
    "Status": (StatusArgs, StatusReply),
}
"""Bare method name → ``(ArgsCls, ReplyCls)`` of the methods beyond the reference's."""
