"""``GrpcContainerd``: the real ``IContainerd`` over containerd's gRPC socket.

Each operation runs ``SyncContainerd`` on a dedicated, bounded, named
``ThreadPool`` (never the reactor's shared pool); every call carries a
deadline so a hung containerd cannot park a thread forever. The pool is
sized for waiting, not computing: a thread spends almost all of a call
blocked on the socket (``Tasks.Wait`` for a whole stop grace period), so a
few slow stops must not queue every other cell's calls behind them. Nothing connects
at construction: ``start()`` starts the pool and the channel is created on
the first call. ``ContainerdService`` ties ``start``/``stop`` to the
application's service tree.

Two reads on the request path, ``container_ids`` and ``task_state``, do not
use the pool: they go over an HTTP/2 connection the reactor drives
(:mod:`kukeond.containerd.unary`), which costs a fraction of a thread hop and
the library's call.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from twisted.application import service
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from kukeond.containerd import errors
from kukeond.containerd._pb.services.containers.v1 import containers_pb2 as c_pb
from kukeond.containerd._pb.services.events.v1 import events_pb2
from kukeond.containerd._pb.services.tasks.v1 import tasks_pb2 as t_pb
from kukeond.containerd.events import decode_envelope
from kukeond.containerd.interface import IContainerd, ISubscription
from kukeond.containerd.messages import id_filters, task_info
from kukeond.containerd.model import Event, TaskInfo
from kukeond.containerd.sync import SyncContainerd
from kukeond.containerd.unary import UnaryClient
from kukeond.logs import Logger

DEFAULT_SOCKET = "/run/containerd/containerd.sock"
DEFAULT_THREADS = 32
"""Threads of the call pool (see the module docstring)."""


def _threaded(name: str) -> Callable[..., defer.Deferred[Any]]:
    sync_method = getattr(SyncContainerd, name)

    @functools.wraps(sync_method)
    def method(self: GrpcContainerd, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return self._defer(getattr(self._sync, name), *args, **kwargs)

    return method


@implementer(IContainerd)
class GrpcContainerd:
    """containerd over gRPC; see ``IContainerd`` for the operations."""

    log = Logger()

    def __init__(
        self,
        socket_path: str = DEFAULT_SOCKET,
        reactor: Any = None,
        max_threads: int = DEFAULT_THREADS,
        call_timeout: float = 30.0,
        long_timeout: float = 600.0,
        snapshotter: str | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._sync = SyncContainerd(socket_path, call_timeout, long_timeout, snapshotter)
        self._unary = UnaryClient(reactor, socket_path, call_timeout)
        self._pool = ThreadPool(minthreads=0, maxthreads=max_threads, name="containerd")
        self._subscriptions: set[_Subscription] = set()
        self._running = False

    @property
    def snapshotter(self) -> str | None:
        """The default snapshotter, once known."""
        return self._sync.snapshotter

    def start(self) -> None:
        """Start the thread pool (no connection is made yet)."""
        if not self._running:
            self._pool.start()
            self._running = True

    def stop(self) -> defer.Deferred[None]:
        """Stop subscriptions, close the channel (cancelling calls), join the pool."""
        subs = [s.stop() for s in list(self._subscriptions)]
        self._sync.close()
        self._unary.close()
        if self._running:
            self._running = False
            self._pool.stop()
        return defer.DeferredList(subs).addCallback(lambda _: None)

    def _defer(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        if not self._running:
            return defer.fail(errors.Unavailable("containerd client is not started"))
        return threads.deferToThreadPool(self._reactor, self._pool, fn, *args, **kwargs)

    version = _threaded("version")
    create_namespace = _threaded("create_namespace")
    ensure_namespace = _threaded("ensure_namespace")
    list_namespaces = _threaded("list_namespaces")
    namespace_labels = _threaded("namespace_labels")
    delete_namespace = _threaded("delete_namespace")
    import_image = _threaded("import_image")
    list_images = _threaded("list_images")
    get_image = _threaded("get_image")
    image_runtime_config = _threaded("image_runtime_config")
    delete_image = _threaded("delete_image")
    create_container = _threaded("create_container")
    get_container = _threaded("get_container")
    list_containers = _threaded("list_containers")
    update_container_labels = _threaded("update_container_labels")
    delete_container = _threaded("delete_container")
    snapshot_mounts = _threaded("snapshot_mounts")
    remove_snapshot = _threaded("remove_snapshot")
    list_snapshots = _threaded("list_snapshots")
    create_task = _threaded("create_task")
    start_task = _threaded("start_task")
    kill_task = _threaded("kill_task")
    wait_task = _threaded("wait_task")
    task_pids = _threaded("task_pids")
    delete_task = _threaded("delete_task")
    list_tasks = _threaded("list_tasks")
    list_leases = _threaded("list_leases")

    # The reads on the request path go over the reactor's own HTTP/2 connection.

    def container_ids(self, namespace: str, ids: Sequence[str]) -> defer.Deferred[frozenset[str]]:
        """See ``IContainerd``."""
        if not self._running:
            return defer.fail(errors.Unavailable("containerd client is not started"))
        if not ids:
            return defer.succeed(frozenset())
        request = c_pb.ListContainersRequest(filters=id_filters(ids))
        return self._unary.call("Containers.List", request, namespace).addCallback(
            lambda reply: frozenset(c.id for c in reply.containers)
        )

    def task_state(self, namespace: str, container_id: str) -> defer.Deferred[TaskInfo]:
        """See ``IContainerd``."""
        if not self._running:
            return defer.fail(errors.Unavailable("containerd client is not started"))
        request = t_pb.GetRequest(container_id=container_id)
        return self._unary.call("Tasks.Get", request, namespace).addCallback(
            lambda reply: task_info(reply.process)
        )

    def subscribe(
        self,
        callback: Callable[[Event], Any],
        namespace: str | None = None,
        topics: Sequence[str] | None = None,
        on_resubscribe: Callable[[], Any] | None = None,
    ) -> ISubscription:
        """Stream events to ``callback`` from a dedicated thread (see ``IContainerd``)."""
        filters = []
        for topic in topics or [""]:
            parts = []
            if namespace is not None:
                parts.append(f"namespace=={namespace}")
            if topic:
                parts.append(f'topic~="^{topic}"')
            if parts:
                filters.append(",".join(parts))
        sub = _Subscription(self, filters, callback, on_resubscribe)
        self._subscriptions.add(sub)
        sub.start()
        return sub


@implementer(ISubscription)
class _Subscription:
    """One ``Events.Subscribe`` stream, re-opened with back-off until stopped."""

    log = Logger()

    def __init__(
        self,
        owner: GrpcContainerd,
        filters: list[str],
        callback: Callable[[Event], Any],
        on_resubscribe: Callable[[], Any] | None,
    ) -> None:
        self._owner = owner
        self._filters = filters
        self._callback = callback
        self._on_resubscribe = on_resubscribe
        self._stopping = threading.Event()
        self._call: Any = None
        self._lock = threading.Lock()
        self._done: defer.Deferred[None] = defer.Deferred()
        self._thread = threading.Thread(target=self._run, name="containerd-events", daemon=True)

    def start(self) -> None:
        """Start the streaming thread."""
        self._thread.start()

    def stop(self) -> defer.Deferred[None]:
        """Cancel the stream; the Deferred fires when the thread has ended."""
        self._stopping.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self._owner._subscriptions.discard(self)
        return self._done

    def _run(self) -> None:
        reactor = self._owner._reactor
        sync = self._owner._sync
        backoff = 0.1
        first = True
        try:
            while not self._stopping.is_set():
                try:
                    if not first:
                        sync.version()  # wait until containerd answers again
                    with self._lock:
                        if self._stopping.is_set():
                            break
                        self._call = sync.stubs()("Events.Subscribe")(
                            events_pb2.SubscribeRequest(filters=self._filters)
                        )
                    if not first and self._on_resubscribe is not None:
                        reactor.callFromThread(self._on_resubscribe)
                    first = False
                    backoff = 0.1
                    for envelope in self._call:
                        reactor.callFromThread(self._callback, decode_envelope(envelope))
                except Exception as exc:  # noqa: BLE001  (any failure: retry after back-off)
                    if self._stopping.is_set():
                        break
                    first = False
                    if isinstance(exc, (grpc.RpcError, ValueError, errors.ContainerdError)):
                        self.log.debug("event stream interrupted: {error}", error=exc)
                    else:
                        self.log.failure("event stream failed; subscribing again")
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
                else:
                    first = False
        finally:
            reactor.callFromThread(self._done.callback, None)


class ContainerdService(service.Service):
    """Starts and stops a ``GrpcContainerd`` with the application."""

    def __init__(self, client: GrpcContainerd) -> None:
        self.setName("containerd")
        self.client = client

    def startService(self) -> None:
        """Start the client's thread pool."""
        super().startService()
        self.client.start()

    def stopService(self) -> defer.Deferred[None]:
        """Stop the client; fires once event threads have ended."""
        super().stopService()
        return self.client.stop()
