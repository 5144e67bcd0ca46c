"""Pulling an image a cell needs when its realm's containerd namespace lacks it.

One pull runs per ``(namespace, image)`` at a time: cells created together
that need the same image wait for the same pull. A pull uses the realm's
``registryCredentials``, chosen as the reference chooses them (the entry
whose ``serverAddress`` is the image's registry host, else the one without a
``serverAddress``), is bounded by :data:`PULL_TIMEOUT`, and leaves nothing
behind when it fails: its temporary layout is removed and whatever it
ingested is unreferenced, so containerd's garbage collector takes it.
Credentials appear in no message and no log line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from kukeond.api.v1beta1 import RegistryCredentials
from kukeond.logs import Logger

PULL_TIMEOUT = 600.0
"""Seconds a whole pull (every blob, then the import) may take."""


def credentials_for(image: str, entries: Iterable[RegistryCredentials]) -> Any:
    """The ``pull.Credentials`` for ``image`` among a realm's entries, or ``None``."""
    from kukeond.containerd.pull import Credentials
    from kukeond.containerd.reference import parse_reference

    host = parse_reference(image).registry
    fallback = None
    for entry in entries:
        if entry.serverAddress and entry.serverAddress == host:
            return Credentials(entry.username, entry.password)
        if not entry.serverAddress and fallback is None:
            fallback = Credentials(entry.username, entry.password)
    return fallback


class ImagePulls:
    """The pulls of one daemon (the registry client is made on the first pull)."""

    log = Logger()

    def __init__(self, containerd: Any, reactor: Any) -> None:
        self._containerd = containerd
        self._reactor = reactor
        self._puller: Any = None
        self._running: dict[tuple[str, str], defer.Deferred[None]] = {}
        self._waiters: dict[tuple[str, str], list[defer.Deferred[None]]] = {}
        self.started = 0
        """Pulls begun (waiters that joined a running pull do not count)."""

    def ensure(
        self, namespace: str, image: str, credentials: Iterable[RegistryCredentials] = ()
    ) -> defer.Deferred[None]:
        """Fire once ``image`` has been pulled into ``namespace`` (joining a running pull)."""
        key = (namespace, image)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.setdefault(key, []).append(waiter)
        if key not in self._running:
            self.started += 1
            running = defer.Deferred.fromCoroutine(
                self._pull(namespace, image, credentials_for(image, credentials))
            )
            self._running[key] = running
            running.addTimeout(PULL_TIMEOUT, self._reactor)
            running.addBoth(self._finished, key)
        return waiter

    def _finished(self, result: Any, key: tuple[str, str]) -> None:
        # Every waiter gets the outcome; none of them can cancel the shared pull.
        del self._running[key]
        for waiter in self._waiters.pop(key, []):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)

    async def _pull(self, namespace: str, image: str, credentials: Any) -> None:
        from kukeond.containerd.pull import RegistryPuller, pull_image

        if self._puller is None:
            self._puller = RegistryPuller(self._reactor)
        await pull_image(self._containerd, self._puller, namespace, image, credentials=credentials)

    def close(self) -> defer.Deferred[None]:
        """Close the registry client, if one was made."""
        puller, self._puller = self._puller, None
        return puller.close() if puller is not None else defer.succeed(None)
