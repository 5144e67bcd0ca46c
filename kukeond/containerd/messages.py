"""Plain values from containerd's protobuf messages, and the list filters sent in requests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kukeond.containerd._pb.types.task import task_pb2 as task_types
from kukeond.containerd.model import TaskInfo

_STATUS = {v: k.lower() for k, v in task_types.Status.items()}


def time_of(ts: Any) -> datetime | None:
    """A protobuf Timestamp as an aware datetime, or None when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=UTC)


def task_info(p: Any) -> TaskInfo:
    """A ``TaskInfo`` from a task's ``Process`` message."""
    return TaskInfo(
        p.container_id or p.id,
        p.pid,
        _STATUS.get(p.status, "unknown"),
        p.exit_status,
        time_of(p.exited_at),
    )


def id_filters(ids: Sequence[str]) -> list[str]:
    """``Containers.List`` filters matching any of ``ids`` (containerd ORs the filters)."""
    return [f"id=={json.dumps(i)}" for i in ids]


def label_filter(labels: Mapping[str, str]) -> str:
    """A containerd filter matching every label key with its value."""
    return ",".join(f"labels.{json.dumps(k)}=={json.dumps(v)}" for k, v in sorted(labels.items()))
