"""A Python kukeonv1 client: a Twisted flavour (Deferreds) and a blocking flavour.

Both speak Go ``net/rpc`` + ``jsonrpc`` over ``unix://`` addresses, number
requests from 0 per connection as the Go client does, and match responses by
id, so many calls can be in flight on one connection.

``python -m kukeond.client --host unix:///run/kukeon/kukeond.sock ping`` prints
the daemon's version; ``call <Method> '<json args>'`` prints any reply.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from kukeond.base import gojson
from kukeond.rpc.framing import FrameSplitter

DEFAULT_HOST = "unix:///run/kukeon/kukeond.sock"
_MAX_RESPONSE = 1 << 31


class ClientError(Exception):
    """The call could not be made or answered (bad address, connection lost)."""


class RemoteError(ClientError):
    """The daemon answered with a protocol-level ``error`` string."""


class APIError(ClientError):
    """The reply carried ``Err{Kind, Message}``; ``reply`` holds the whole reply."""

    def __init__(self, kind: str, message: str, reply: dict[str, Any]) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.reply = reply


def socket_path(host: str) -> str:
    """Return the filesystem path of a ``unix://`` address, or raise :class:`ClientError`."""
    if not host.startswith("unix://"):
        raise ClientError(f"unsupported host {host!r}: only unix:// addresses are supported")
    path = host[len("unix://") :]
    if not path:
        raise ClientError(f"invalid host {host!r}: empty socket path")
    return path


def _encode_call(method: str, args: Any, call_id: int) -> bytes:
    name = method if "." in method else f"KukeonV1.{method}"
    return (gojson.dumps({"method": name, "params": [args], "id": call_id}) + "\n").encode()


def _outcome(response: dict[str, Any]) -> Any:
    """Turn a decoded response into the reply, or raise the error it carries."""
    error = response.get("error")
    if error is not None:
        raise RemoteError(str(error))
    reply = response.get("result")
    if isinstance(reply, dict) and isinstance(reply.get("Err"), dict):
        err = reply["Err"]
        raise APIError(err.get("Kind", "Unknown"), err.get("Message", ""), reply)
    return reply


class _ClientProtocol(Protocol):
    def __init__(self) -> None:
        self._splitter = FrameSplitter(_MAX_RESPONSE)
        self._pending: dict[int, defer.Deferred] = {}
        self._next_id = 0
        self._lost: Failure | None = None

    def call(self, method: str, args: Any) -> defer.Deferred:
        if self._lost is not None:
            return defer.fail(ClientError("connection closed"))
        call_id = self._next_id
        self._next_id += 1
        d: defer.Deferred = defer.Deferred()
        self._pending[call_id] = d
        assert self.transport is not None  # set before any call can be made
        self.transport.write(_encode_call(method, args, call_id))
        return d

    def dataReceived(self, data: bytes) -> None:
        for frame in self._splitter.feed(data):
            response = json.loads(frame)
            d = self._pending.pop(response.get("id"), None)
            if d is None:
                continue
            try:
                d.callback(_outcome(response))
            except ClientError as e:
                d.errback(e)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = reason
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(ClientError(f"connection lost: {reason.getErrorMessage()}"))


class KukeonClient:
    """Twisted flavour: ``yield client.call("ListRealms", {})`` from reactor code.

    The connection is dialed on first use and re-dialed after it is lost.
    """

    def __init__(self, reactor: Any, host: str = DEFAULT_HOST, timeout: float = 5.0) -> None:
        self._endpoint = UNIXClientEndpoint(reactor, socket_path(host), timeout=timeout)
        self._proto: _ClientProtocol | None = None
        self._connecting: defer.Deferred | None = None

    async def _connection(self) -> _ClientProtocol:
        if self._proto is not None and self._proto._lost is None:
            return self._proto
        if self._connecting is None:
            self._connecting = connectProtocol(self._endpoint, _ClientProtocol())
        try:
            self._proto = await self._connecting
        finally:
            self._connecting = None
        return self._proto

    def call(self, method: str, args: Any = None) -> defer.Deferred:
        """Call ``method`` (``"Ping"`` or ``"KukeonV1.Ping"``); fire with the reply."""

        async def run() -> Any:
            proto = await self._connection()
            return await proto.call(method, {} if args is None else args)

        return defer.Deferred.fromCoroutine(run())

    def close(self) -> None:
        """Close the connection; calls in flight fail."""
        proto = self._proto
        if proto is not None and proto._lost is None and proto.transport is not None:
            proto.transport.loseConnection()


class BlockingClient:
    """Blocking flavour, safe to share between threads; calls may overlap on one connection."""

    def __init__(self, host: str = DEFAULT_HOST, timeout: float = 60.0) -> None:
        self._path = socket_path(host)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._waiters: dict[int, list] = {}
        self._next_id = 0
        self._reader: threading.Thread | None = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5.0)
            try:
                sock.connect(self._path)
            except OSError as e:
                sock.close()
                raise ClientError(f"dial {self._path}: {e}") from None
            sock.settimeout(None)
            self._sock = sock
            self._next_id = 0
            self._reader = threading.Thread(
                target=self._read_loop, args=(sock,), name="kukeon-client-reader", daemon=True
            )
            self._reader.start()
        return self._sock

    def _read_loop(self, sock: socket.socket) -> None:
        splitter = FrameSplitter(_MAX_RESPONSE)
        error: Exception = ClientError("connection closed by the daemon")
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    break
                for frame in splitter.feed(data):
                    response = json.loads(frame)
                    with self._lock:
                        waiter = self._waiters.pop(response.get("id"), None)
                    if waiter is not None:
                        waiter[1] = response
                        waiter[0].set()
        except OSError as e:
            error = ClientError(f"connection lost: {e}")
        with self._lock:
            if self._sock is sock:
                self._sock = None
            waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter[1] = error
            waiter[0].set()

    def call(self, method: str, args: Any = None) -> Any:
        """Call ``method`` and return the reply; raise :class:`APIError` / :class:`RemoteError`."""
        waiter: list = [threading.Event(), None]
        with self._lock:
            sock = self._connect()
            call_id = self._next_id
            self._next_id += 1
            self._waiters[call_id] = waiter
            sock.sendall(_encode_call(method, {} if args is None else args, call_id))
        if not waiter[0].wait(self._timeout):
            with self._lock:
                self._waiters.pop(call_id, None)
            raise ClientError(f"{method}: no answer within {self._timeout}s")
        if isinstance(waiter[1], Exception):
            raise waiter[1]
        return _outcome(waiter[1])

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``ping``, ``status`` or ``call <Method> [json-args]``."""
    parser = argparse.ArgumentParser(prog="python -m kukeond.client")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"daemon address [{DEFAULT_HOST}]")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ping", help="print the daemon's version")
    sub.add_parser("status", help="print whether the daemon can do work (containerd, reconcile)")
    call = sub.add_parser("call", help="call a method and print its reply as JSON")
    call.add_argument("method")
    call.add_argument("args", nargs="?", default="{}")
    ns = parser.parse_args(argv)
    client = BlockingClient(ns.host)
    try:
        if ns.command == "ping":
            print(client.call("Ping")["Version"])
        elif ns.command == "status":
            print(gojson.dumps_indent(client.call("Status")["Result"]))
        else:
            print(gojson.dumps_indent(client.call(ns.method, json.loads(ns.args))))
    except APIError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except ClientError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
