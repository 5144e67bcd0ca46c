"""One gRPC channel to containerd, and the blocking calls made over it.

:class:`ContainerdChannel` is the base of
:class:`~kukeond.containerd.sync.SyncContainerd`: it creates the channel on
first use, sends unary and streaming calls with the namespace and lease
headers and a deadline, waits for the reconnect (with a short back-off)
when containerd restarts, and raises the typed errors of
:mod:`kukeond.containerd.errors`. It also runs work under a temporary lease
and picks the default snapshotter.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc

from kukeond.containerd import errors
from kukeond.containerd._pb.services.introspection.v1 import introspection_pb2
from kukeond.containerd._pb.services.leases.v1 import leases_pb2
from kukeond.containerd.stubs import Stubs

T = TypeVar("T")
NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
GC_EXPIRE = "containerd.io/gc.expire"
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 << 20),
]


class ContainerdChannel:
    """Blocking calls to containerd over one channel (see the module docstring)."""

    def __init__(
        self,
        address: str,
        call_timeout: float = 30.0,
        long_timeout: float = 600.0,
        snapshotter: str | None = None,
    ) -> None:
        self.address = (
            address if "://" in address or address.startswith("unix:") else ("unix://" + address)
        )
        self.call_timeout = call_timeout
        self.long_timeout = long_timeout
        self.snapshotter = snapshotter
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stubs: Stubs | None = None
        self._closed = False

    def stubs(self) -> Stubs:
        """The method callables, creating the channel on first use."""
        with self._lock:
            if self._closed:
                raise errors.Unavailable("containerd client is stopped")
            if self._stubs is None:
                self._channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
                self._stubs = Stubs(self._channel)
            return self._stubs

    def _translate(self, exc: grpc.RpcError, name: str) -> errors.ContainerdError:
        """A typed error; an unreachable containerd is named as such, with its socket."""
        error = errors.from_rpc_error(exc, name)
        if isinstance(error, errors.Unavailable):
            details = exc.details() or ""
            # gRPC's connect failure text repeats the address twice; keep its cause.
            if "connect failed" in details and "error: " in details:
                error = errors.Unavailable(
                    f"{name}: {details.rsplit('error: ', 1)[1].strip()}", error.code
                )
            return errors.Unavailable(
                f"failed to connect to containerd at {self.address}: {error}", error.code
            )
        return error

    def _worth_waiting(self, exc: grpc.RpcError) -> bool:
        """Whether a failed connect should be retried, waiting for the channel to be ready.

        After containerd restarts, the channel stays in reconnect back-off for
        up to a second and fails calls at once meanwhile. A call that never
        left (``failed to connect``) is safe to send again; it is worth
        waiting for the reconnect only when something accepts connections on
        the socket now, so a containerd that is really down still fails fast.
        """
        if exc.code() != grpc.StatusCode.UNAVAILABLE or "failed to connect" not in (
            exc.details() or ""
        ):
            return False
        if not self.address.startswith("unix:"):
            return True
        path = self.address.removeprefix("unix:").removeprefix("//")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError:
                return False
        return True

    def close(self) -> None:
        """Close the channel: in-flight calls end with ``Cancelled``; later calls fail."""
        with self._lock:
            self._closed = True
            channel, self._channel, self._stubs = self._channel, None, None
        if channel is not None:
            channel.close()

    def call(
        self,
        name: str,
        request: Any,
        namespace: str | None = None,
        lease: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call a unary method with the namespace/lease headers and a deadline."""
        metadata = []
        if namespace is not None:
            metadata.append((NAMESPACE_HEADER, namespace))
        if lease is not None:
            metadata.append((LEASE_HEADER, lease))
        try:
            method = self.stubs()(name)
            try:
                return method(request, timeout=timeout or self.call_timeout, metadata=metadata)
            except grpc.RpcError as exc:
                if not self._worth_waiting(exc):
                    raise
            return method(
                request,
                timeout=timeout or self.call_timeout,
                metadata=metadata,
                wait_for_ready=True,
            )
        except grpc.RpcError as exc:
            raise self._translate(exc, name) from None
        except ValueError as exc:  # grpc raises this on a channel closed under us
            raise errors.Unavailable(f"{name}: {exc}") from None

    def stream(
        self,
        name: str,
        request: Any,
        namespace: str | None = None,
        lease: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Any]:
        """Iterate a server-streaming (or bidi, given an iterator) method's responses."""
        metadata = [(NAMESPACE_HEADER, namespace)] if namespace is not None else []
        if lease is not None:
            metadata.append((LEASE_HEADER, lease))
        method = self.stubs()(name)
        # A request iterator is consumed by the first attempt, so only a
        # single request message can be sent again.
        replayable = not isinstance(request, Iterator)
        wait = False
        while True:
            answered = False
            try:
                for reply in method(
                    request,
                    timeout=timeout or self.call_timeout,
                    metadata=metadata,
                    wait_for_ready=wait,
                ):
                    answered = True
                    yield reply
                return
            except grpc.RpcError as exc:
                if wait or answered or not replayable or not self._worth_waiting(exc):
                    raise self._translate(exc, name) from None
                wait = True

    def _with_lease(self, namespace: str, work: Callable[[str], T]) -> T:
        """Run ``work(lease_id)`` under a fresh expiring lease, deleted afterwards.

        On failure the lease is deleted synchronously so that the garbage
        collector removes whatever the work created.
        """
        lease_id = f"kukeond-{uuid.uuid4().hex}"
        expire = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.call(
            "Leases.Create",
            leases_pb2.CreateRequest(id=lease_id, labels={GC_EXPIRE: expire}),
            namespace,
        )
        try:
            result = work(lease_id)
        except BaseException:
            try:
                self.call(
                    "Leases.Delete",
                    leases_pb2.DeleteRequest(id=lease_id, sync=True),
                    namespace,
                    timeout=self.long_timeout,
                )
            except errors.ContainerdError:
                pass  # the gc.expire label reclaims it later
            raise
        self.call("Leases.Delete", leases_pb2.DeleteRequest(id=lease_id), namespace)
        return result

    def default_snapshotter(self) -> str:
        """overlayfs when containerd's overlayfs plugin loaded, else native."""
        if self.snapshotter is None:
            reply = self.call(
                "Introspection.Plugins",
                introspection_pb2.PluginsRequest(filters=['type=="io.containerd.snapshotter.v1"']),
            )
            usable = {p.id for p in reply.plugins if not p.HasField("init_err")}
            self.snapshotter = "overlayfs" if "overlayfs" in usable else "native"
        return self.snapshotter
