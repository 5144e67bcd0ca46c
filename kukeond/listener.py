"""The unix-socket listener: permissions, stale-socket check, pid file, draining stop.

The socket is created with mode 0600 from the first moment (umask held while
binding) and only widened to 0660 after it is chowned to ``0:<gid>``. A
leftover socket file is removed only after checking that no daemon answers on
it. Under systemd socket activation (``LISTEN_FDS``) the inherited socket is
adopted through Twisted's ``systemd:`` endpoint and its permissions are left to
the unit.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError

from kukeond.logs import Logger
from kukeond.rpc.protocol import KukeonFactory


class ListenerError(Exception):
    """The daemon cannot listen; the message says why."""


def _live_daemon_answers(path: str, timeout: float = 1.0) -> bool:
    """Tell whether something accepts connections on the unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(path)
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        if isinstance(e, TimeoutError):  # a full backlog still means someone is there
            return True
        raise
    finally:
        probe.close()
    return True


def remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a dead daemon; refuse if a live one answers on it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenerError(f"{path} exists and is not a socket; refusing to replace it")
    if _live_daemon_answers(path):
        raise ListenerError(f"another daemon is already listening on {path}; stop it first")
    os.unlink(path)


def write_pid_file(path: str, pid: int) -> None:
    """Write ``"<pid>\\n"`` atomically with mode 0644, replacing a stale file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    tmp = f"{path}.{pid}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, f"{pid}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def systemd_activated() -> bool:
    """Tell whether this process was handed listening sockets by systemd.

    Twisted reads (and clears) ``LISTEN_FDS``/``LISTEN_PID`` when its endpoint
    module is imported, which under twistd happens before our code runs, so
    the inherited descriptors are asked of its ``systemd:`` parser. That
    module loads pyOpenSSL (see :mod:`kukeond.startup`), so it is imported
    only when it was already, or when the environment names sockets.
    """
    if "twisted.internet.endpoints" not in sys.modules and "LISTEN_FDS" not in os.environ:
        return False
    from twisted.internet.endpoints import _SystemdParser

    return bool(_SystemdParser._sddaemon.inheritedDescriptors())


class ListenerService(Service):
    """Listen on the daemon socket, serve ``factory``, drain requests on stop."""

    log = Logger()

    def __init__(
        self,
        reactor,
        factory: KukeonFactory,
        socket_path: str,
        pid_file: str,
        socket_gid: int = 0,
        drain_timeout: float = 10.0,
    ) -> None:
        self.setName("listener")
        self._reactor = reactor
        self.factory = factory
        self.socket_path = socket_path
        self.pid_file = pid_file
        self.socket_gid = socket_gid
        self.drain_timeout = drain_timeout
        self._port = None
        self._owns_socket = False

    def privilegedStartService(self) -> None:
        """Bind the socket (as root, before any privilege drop) and write the pid file."""
        if self._port is None:
            self._listen()
        super().privilegedStartService()

    def startService(self) -> None:
        """Bind if ``privilegedStartService`` was not called, then mark running."""
        if self._port is None:
            self._listen()
        super().startService()

    def _listen(self) -> None:
        if systemd_activated():
            from twisted.internet.endpoints import serverFromString

            d = serverFromString(self._reactor, "systemd:domain=UNIX:index=0").listen(self.factory)
            self._port = _result_now(d)
            self._owns_socket = False
            self.log.info("kukeond listening on an inherited systemd socket")
        else:
            self._port = self._bind()
            self._owns_socket = True
            self.log.info("kukeond listening socket={socket}", socket=self.socket_path)
        write_pid_file(self.pid_file, os.getpid())

    def _bind(self):
        path = self.socket_path
        directory = os.path.dirname(path)
        if directory and directory != ".":
            os.makedirs(directory, mode=0o755, exist_ok=True)
        remove_stale_socket(path)
        old_umask = os.umask(0o177)
        try:
            port = self._reactor.listenUNIX(path, self.factory, backlog=128, mode=0o600)
        except (CannotListenError, OSError) as e:
            raise ListenerError(f"listen on {path}: {e}") from None
        finally:
            os.umask(old_umask)
        if self.socket_gid > 0:
            try:
                os.chown(path, 0, self.socket_gid)
            except OSError as e:
                self.log.warn(
                    "chown socket to group {gid} failed; non-root operators will need sudo: "
                    "{error}",
                    gid=self.socket_gid,
                    error=e,
                )
            try:
                os.chmod(path, 0o660)
            except OSError as e:
                port.stopListening()
                raise ListenerError(f"chmod socket {path}: {e}") from None
        return port

    @defer.inlineCallbacks
    def stopService(self):
        """Stop accepting, let in-flight requests finish (bounded), remove socket and pid file."""
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return
        if self._owns_socket:
            try:
                yield defer.maybeDeferred(port.stopListening)
            except FileNotFoundError:  # someone removed the socket file: the port is closed
                self.log.warn("socket {path} was already removed", path=self.socket_path)
        else:
            # Twisted unlinks a unix port's path when it stops listening; an
            # inherited socket belongs to the systemd unit, so only stop accepting.
            port.stopReading()
        left = yield self.factory.drain(self.drain_timeout, self._reactor)
        if left:
            self.log.warn("stopped with {count} request(s) still running", count=left)
        for proto in list(self.factory.connections):
            if proto.in_flight:  # idle ones already close after flushing their replies
                proto.transport.abortConnection()
        # Replies are flushed by the reactor; wait for the connections to close
        # so the process does not exit with an answer still in a buffer.
        yield self.factory.closed(2.0, self._reactor)
        if self._owns_socket:
            _unlink_quietly(self.socket_path)
        _unlink_quietly(self.pid_file)
        self.log.info("kukeond stopped")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _result_now(d: defer.Deferred):
    """Return the result of an already-fired Deferred, raising its failure."""
    results: list = []
    d.addBoth(results.append)
    if not results:
        raise ListenerError("listening did not complete synchronously")
    outcome = results[0]
    if isinstance(outcome, Exception) or hasattr(outcome, "raiseException"):
        outcome.raiseException()
    return outcome
