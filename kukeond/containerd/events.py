"""Decode containerd event envelopes into ``model.Event`` values."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool, message_factory

import kukeond.containerd.stubs  # noqa: F401  (registers the event message types)
from kukeond.containerd.messages import time_of
from kukeond.containerd.model import Event


def decode_any(value: Any) -> Any:
    """The message inside a ``google.protobuf.Any``, or None for an unknown type."""
    name = value.type_url.rsplit("/", 1)[-1]
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    message = message_factory.GetMessageClass(desc)()
    message.ParseFromString(value.value)
    return message


def decode_envelope(envelope: Any) -> Event:
    """An ``Envelope`` from ``Events.Subscribe`` as an ``Event``."""
    event = decode_any(envelope.event) if envelope.HasField("event") else None
    return Event(envelope.namespace, envelope.topic, time_of(envelope.timestamp), event)
