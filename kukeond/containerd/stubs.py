"""gRPC method callables built from the generated service descriptors.

No ``*_pb2_grpc`` modules are generated: ``Stubs`` looks each method up in
the service descriptor (``/<package.Service>/<Method>``, request and response
classes) and asks the channel for the matching multi-callable, which works
with any grpcio release.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory

from kukeond.containerd._pb.events import (  # noqa: F401  (registers the event types)
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    snapshot_pb2,
    task_pb2,
)
from kukeond.containerd._pb.services.containers.v1 import containers_pb2
from kukeond.containerd._pb.services.content.v1 import content_pb2 as content_service_pb2
from kukeond.containerd._pb.services.diff.v1 import diff_pb2
from kukeond.containerd._pb.services.events.v1 import events_pb2
from kukeond.containerd._pb.services.images.v1 import images_pb2
from kukeond.containerd._pb.services.introspection.v1 import introspection_pb2
from kukeond.containerd._pb.services.leases.v1 import leases_pb2
from kukeond.containerd._pb.services.namespaces.v1 import namespace_pb2 as namespaces_pb2
from kukeond.containerd._pb.services.snapshots.v1 import snapshots_pb2
from kukeond.containerd._pb.services.tasks.v1 import tasks_pb2
from kukeond.containerd._pb.services.version.v1 import version_pb2

SERVICES = {
    "Containers": containers_pb2,
    "Content": content_service_pb2,
    "Diff": diff_pb2,
    "Events": events_pb2,
    "Images": images_pb2,
    "Introspection": introspection_pb2,
    "Leases": leases_pb2,
    "Namespaces": namespaces_pb2,
    "Snapshots": snapshots_pb2,
    "Tasks": tasks_pb2,
    "Version": version_pb2,
}


class Stubs:
    """Multi-callables of a channel, by ``"Service.Method"``, cached."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel
        self._cache: dict[str, Any] = {}

    def __call__(self, name: str) -> Any:
        """Return the callable for e.g. ``"Tasks.Create"``."""
        callable_ = self._cache.get(name)
        if callable_ is None:
            callable_ = self._cache[name] = self._build(name)
        return callable_

    def _build(self, name: str) -> Any:
        service_name, _, method_name = name.partition(".")
        service = SERVICES[service_name].DESCRIPTOR.services_by_name[service_name]
        method = service.methods_by_name[method_name]
        path = f"/{service.full_name}/{method.name}"
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        kind = {
            (False, False): self._channel.unary_unary,
            (False, True): self._channel.unary_stream,
            (True, False): self._channel.stream_unary,
            (True, True): self._channel.stream_stream,
        }[(method.client_streaming, method.server_streaming)]
        return kind(
            path,
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
        )


_unary: dict[str, tuple[str, Any]] = {}


def unary_method(name: str) -> tuple[str, Any]:
    """The HTTP/2 path and response class of a unary method, e.g. ``"Tasks.Get"``."""
    found = _unary.get(name)
    if found is None:
        service_name, _, method_name = name.partition(".")
        service = SERVICES[service_name].DESCRIPTOR.services_by_name[service_name]
        method = service.methods_by_name[method_name]
        if method.client_streaming or method.server_streaming:
            raise ValueError(f"{name} is not a unary method")
        path = f"/{service.full_name}/{method.name}"
        found = _unary[name] = (path, message_factory.GetMessageClass(method.output_type))
    return found
