"""Assemble the daemon: configuration in, a Twisted service tree out.

Start-up order: instance file check, containerd client (lazy: no connection
is made here), controllers, handler table, listener. Services stop in reverse
order, so the listener drains before the runtime underneath it goes away.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred

from kukeond import __version__
from kukeond.base.memory import keep_freed_memory
from kukeond.config import DaemonConfig
from kukeond.containerd.grpc import ContainerdService, GrpcContainerd
from kukeond.controller.reconcile import Reconciler
from kukeond.controller.reconcile_service import ReconcileService
from kukeond.controller.runtime import Runtime
from kukeond.handlers.registry import collect_handlers
from kukeond.host.cgroups import detect_cgroups
from kukeond.host.cninetwork import CniNetwork
from kukeond.host.subnets import SubnetAllocator
from kukeond.listener import ListenerService
from kukeond.logs import Logger, parse_level, set_level
from kukeond.rpc.dispatch import Dispatcher, Handler
from kukeond.rpc.protocol import KukeonFactory, default_frame_decoder
from kukeond.status import DaemonStatus
from kukeond.store.metadata import MetadataStore

VERSION = f"v{__version__}"
"""What ``Ping`` reports: the kukeon API release this daemon implements."""

log = Logger()


class StartupError(Exception):
    """The daemon must not start; the message says why."""


_ping_reply: Any = None


def ping_handler(args: Any) -> Any:
    """``KukeonV1.Ping``: always OK, with the version (encoded once, it never changes)."""
    global _ping_reply
    if _ping_reply is None:
        from kukeond.api.kukeonv1 import PingReply
        from kukeond.base import gojson

        _ping_reply = gojson.raw(PingReply(OK=True, Version=VERSION).to_wire())
    return _ping_reply


def build_handlers(runtime: Runtime) -> dict[str, Handler]:
    """The kukeonv1 handler table: every implemented method, by bare name."""
    handlers: dict[str, Handler] = {"Ping": ping_handler}
    handlers.update(collect_handlers(runtime))
    return handlers


class StoreService(Service):
    """Loads the metadata index before anything serves, runs the store's write thread."""

    def __init__(self, store: MetadataStore) -> None:
        self.setName("store")
        self.store = store

    def privilegedStartService(self) -> None:
        """Load the index (a blocking scan, once, before the socket exists)."""
        self.store.load()
        super().privilegedStartService()

    def startService(self) -> None:
        """Start the write thread."""
        super().startService()
        self.store.start()

    def stopService(self):
        """Stop the write thread after pending writes."""
        super().stopService()
        return self.store.stop()


class ContainerdProbe(Service):
    """Says at start-up whether containerd answers; the daemon serves either way."""

    def __init__(self, runtime: Runtime) -> None:
        self.setName("containerd-probe")
        self.runtime = runtime

    def startService(self) -> None:
        """Ask containerd for its version without holding up the start."""
        super().startService()
        d = self.runtime.containerd.version()
        d.addCallbacks(self._up, self._down)

    def _up(self, version: Any) -> None:
        log.info(
            "containerd answers socket={socket} version={version}",
            socket=self.runtime.config.containerd_socket,
            version=getattr(version, "version", version),
        )

    def _down(self, failure: Any) -> None:
        log.warn(
            "containerd does not answer on {socket} ({error}); serving anyway, "
            "operations that need it fail until it is back",
            socket=self.runtime.config.containerd_socket,
            error=failure.getErrorMessage(),
        )


class EgressRestore(Service):
    """Re-asserts the spaces' egress policies once at start (rules do not survive reboots)."""

    def __init__(self, runtime: Runtime) -> None:
        self.setName("egress-restore")
        self.runtime = runtime

    def startService(self) -> None:
        """Apply the stored policies in the background; the daemon serves meanwhile."""
        super().startService()
        from kukeond.controller.spaces import reassert_egress

        d = Deferred.fromCoroutine(reassert_egress(self.runtime))
        d.addCallback(self._done)
        d.addErrback(lambda f: log.failure("re-asserting egress policies failed", f))

    def _done(self, applied: int) -> None:
        if applied:
            log.info("egress policies re-asserted spaces={count}", count=applied)


def build_runtime(config: DaemonConfig, reactor: Any) -> tuple[Runtime, list[Service]]:
    """Create the runtime collaborators and the services that own their threads."""
    containerd = GrpcContainerd(config.containerd_socket, reactor=reactor)
    store = MetadataStore(config.run_path, reactor=reactor, watch=True)
    runtime = Runtime(
        config=config,
        store=store,
        containerd=containerd,
        cgroups=detect_cgroups(),
        network=CniNetwork(
            reactor,
            config.run_path,
            plugin_dirs=[d for d in config.cni_plugin_dirs.split(":") if d],
            cache_dir=config.cni_cache_dir,
            ipam_dir=config.cni_ipam_dir,
            allocator=SubnetAllocator(config.run_path, parent_cidr=config.cni_subnet_pool),
        ),
        reactor=reactor,
    )
    services = [
        ContainerdService(containerd),
        StoreService(store),
        ContainerdProbe(runtime),
        EgressRestore(runtime),
    ]
    return runtime, services


def check_instance(config: DaemonConfig) -> None:
    """Verify or write ``<run-path>/.kukeon-instance.json``; a mismatch stops the start."""
    from kukeond.host import instance

    try:
        instance.verify_or_write(config.run_path, config.namespace_suffix, config.cgroup_root)
    except instance.InstanceError as e:
        raise StartupError(f"instance metadata check failed: {e}") from None


class OrderedServices(MultiService):
    """Starts children in order and stops them one by one in reverse order.

    Twisted's ``MultiService`` stops every child at once; the daemon needs the
    listener to drain its requests while containerd and the store are still
    there to serve them.
    """

    @inlineCallbacks
    def stopService(self):
        """Stop the children last-to-first, each after the previous one has stopped.

        A child whose stop fails is logged and the others are still stopped:
        one left running (a thread pool) would keep the process alive.
        """
        Service.stopService(self)
        for svc in reversed(list(self)):
            try:
                yield maybeDeferred(svc.stopService)
            except Exception:  # noqa: BLE001 - every other service must still stop
                log.failure("stopping {service} failed", service=svc.name or type(svc).__name__)


def build_daemon(config: DaemonConfig, reactor: Any = None) -> OrderedServices:
    """Build the service tree for ``config``."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    set_level(parse_level(config.log_level))
    for warning in config.warnings:
        log.warn("{warning}", warning=warning)
    check_instance(config)
    keep_freed_memory()
    top = OrderedServices()
    runtime, services = build_runtime(config, reactor)
    for svc in services:
        svc.setServiceParent(top)
    status = DaemonStatus(runtime, VERSION)
    handlers = build_handlers(runtime)
    handlers["Status"] = status.handle
    dispatcher = Dispatcher(handlers)
    factory = KukeonFactory(
        dispatcher,
        max_frame_bytes=config.max_frame_bytes,
        frame_decoder=default_frame_decoder(reactor),
    )
    status.factory = factory
    ListenerService(
        reactor,
        factory,
        socket_path=config.socket,
        pid_file=config.pid_file,
        socket_gid=config.socket_gid,
    ).setServiceParent(top)
    # Last to start (first pass once the socket listens), first to stop.
    status.reconcile = ReconcileService(
        Reconciler(runtime), config.reconcile_seconds, clock=reactor
    )
    status.reconcile.setServiceParent(top)
    return top
