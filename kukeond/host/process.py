"""Host commands run from the reactor: spawn, feed stdin, collect output, kill at a deadline.

The CNI plugins, ``ip`` and ``iptables`` all run through a
:class:`ProcessRunner`, which never blocks the reactor and turns a
command that outlives its deadline into :class:`~kukeond.host.cni.CNITimeout`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IReactorProcess
from twisted.python.failure import Failure

from kukeond.host.cni import CNITimeout

DEFAULT_TIMEOUT = 60.0


class _Collector(protocol.ProcessProtocol):
    def __init__(self, stdin: bytes, done: defer.Deferred) -> None:
        self._stdin = stdin
        self._done = done
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self.timed_out = False

    def connectionMade(self) -> None:  # noqa: N802
        transport = self.transport
        assert transport is not None  # connectionMade comes with the transport
        if self._stdin:
            transport.write(self._stdin)
        transport.closeStdin()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self._out.append(data)

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self._err.append(data)

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        code = getattr(reason.value, "exitCode", None)
        self._done.callback(
            (-1 if code is None else code, b"".join(self._out), b"".join(self._err))
        )


class ProcessRunner:
    """Run a command without blocking the reactor, killing it after ``timeout``."""

    def __init__(self, reactor: IReactorProcess, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._reactor = reactor
        self.timeout = timeout

    async def __call__(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, stdin: bytes = b""
    ) -> tuple[int, bytes, bytes]:
        """Run ``argv``; returns ``(exit code, stdout, stderr)`` (-1: killed by signal)."""
        done: defer.Deferred = defer.Deferred()
        proto = _Collector(stdin, done)
        transport = self._reactor.spawnProcess(
            proto, argv[0], list(argv), env=dict(os.environ if env is None else env)
        )

        def expire() -> None:
            proto.timed_out = True
            try:
                transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass

        timer = self._reactor.callLater(self.timeout, expire)  # type: ignore[attr-defined]
        try:
            result = await done
        finally:
            if timer.active():
                timer.cancel()
        if proto.timed_out:
            raise CNITimeout(f"{argv[0]}: timed out after {self.timeout:g}s")
        return result
