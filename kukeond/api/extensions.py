"""Methods this daemon serves beyond the reference's 40: ``KukeonV1.Status``.

Adding a method to the ``KukeonV1`` service does not disturb the reference
client (it never calls it); the Go-shaped structs follow the same rules as
:mod:`kukeond.api.kukeonv1` (PascalCase keys, no ``omitempty``).
"""

from __future__ import annotations

from kukeond.api.kukeonv1 import APIError, Reply
from kukeond.api.structs import BOOL, INT, INT64, STRING, TIME, GoStruct, Ptr, Slice


class StatusArgs(GoStruct):
    """Arguments of ``KukeonV1.Status`` (none)."""

    go_name = "kukeonv1.StatusArgs"
    fields = ()


class ReconcileStatus(GoStruct):
    """The last reconcile pass: when, how long, and its counters."""

    go_name = "kukeonv1.ReconcileStatus"
    fields = (
        ("Enabled", BOOL),
        ("Interval", STRING),
        ("LastPassAt", TIME),
        ("LastPassMillis", INT64),
        ("CellsScanned", INT),
        ("CellsUpdated", INT),
        ("CellsDeleted", INT),
        ("CellsErrored", INT),
        ("ContainerdDown", BOOL),
        ("Errors", Slice(STRING)),
    )


class StatusResult(GoStruct):
    """Whether the daemon can do work: containerd, the reconciler, requests, resources."""

    go_name = "kukeonv1.StatusResult"
    fields = (
        ("Version", STRING),
        ("StartedAt", TIME),
        ("Socket", STRING),
        ("RunPath", STRING),
        ("ContainerdSocket", STRING),
        ("ContainerdReachable", BOOL),
        ("ContainerdVersion", STRING),
        ("ContainerdError", STRING),
        ("Reconcile", ReconcileStatus),
        ("Connections", INT),
        ("RequestsInFlight", INT),
        ("RequestsServed", INT64),
        ("Realms", INT),
        ("Spaces", INT),
        ("Stacks", INT),
        ("Cells", INT),
    )


class StatusReply(Reply):
    """Reply of ``KukeonV1.Status``."""

    go_name = "kukeonv1.StatusReply"
    fields = (("Result", StatusResult), ("Err", Ptr(APIError)))


EXTENSION_METHODS: dict[str, tuple[type[GoStruct], type[Reply]]] = {
    "Status": (StatusArgs, StatusReply),
}
"""Bare method name → ``(ArgsCls, ReplyCls)`` of the methods beyond the reference's."""
