"""Assemble the daemon: configuration in, a Twisted service tree out.

Start-up order: instance file check, containerd client (lazy: no connection
is made here), controllers, handler table, listener. Services stop in reverse
order, so the listener drains before the runtime underneath it goes away.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService

from kukeond import __version__
from kukeond.config import DaemonConfig
from kukeond.listener import ListenerService
from kukeond.logs import Logger, parse_level, set_level
from kukeond.rpc.dispatch import Dispatcher, Handler
from kukeond.rpc.protocol import KukeonFactory

VERSION = f"v{__version__}"
"""What ``Ping`` reports: the kukeon API release this daemon implements."""

log = Logger()


class StartupError(Exception):
    """The daemon must not start; the message says why."""


def ping_handler(args: Any) -> Any:
    """``KukeonV1.Ping``: always OK, with the version."""
    from kukeond.api.kukeonv1 import PingReply

    return PingReply(OK=True, Version=VERSION)


def build_handlers(runtime: Any = None) -> dict[str, Handler]:
    """The kukeonv1 handler table: every implemented method, by bare name."""
    handlers: dict[str, Handler] = {"Ping": ping_handler}
    return handlers


def check_instance(config: DaemonConfig) -> None:
    """Verify or write ``<run-path>/.kukeon-instance.json``; a mismatch stops the start."""
    from kukeond.host import instance

    try:
        instance.verify_or_write(config.run_path, config.namespace_suffix, config.cgroup_root)
    except instance.InstanceError as e:
        raise StartupError(f"instance metadata check failed: {e}") from None


def build_daemon(config: DaemonConfig, reactor: Any = None) -> MultiService:
    """Build the service tree for ``config``."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    set_level(parse_level(config.log_level))
    for warning in config.warnings:
        log.warn("{warning}", warning=warning)
    check_instance(config)
    top = MultiService()
    dispatcher = Dispatcher(build_handlers())
    factory = KukeonFactory(dispatcher, max_frame_bytes=config.max_frame_bytes)
    ListenerService(
        reactor,
        factory,
        socket_path=config.socket,
        pid_file=config.pid_file,
        socket_gid=config.socket_gid,
    ).setServiceParent(top)
    return top
