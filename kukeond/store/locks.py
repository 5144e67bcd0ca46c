"""One lock per resource path, created on demand and dropped when idle."""

from __future__ import annotations

from collections.abc import Hashable
from types import TracebackType

from twisted.internet.defer import Deferred, DeferredLock
from twisted.python.failure import Failure


class KeyedLock:
    """A family of :class:`DeferredLock`, one per key.

    ``async with keyed(key): ...`` serialises holders of the same key while
    different keys proceed in parallel. A key's lock exists only while
    someone holds or waits for it, so the family does not grow with the
    number of resources ever seen.
    """

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[DeferredLock, list[int]]] = {}

    def __call__(self, key: Hashable) -> _Held:
        """Return an async context manager holding ``key``'s lock."""
        return _Held(self, key)

    def acquire(self, key: Hashable) -> Deferred[DeferredLock]:
        """Wait for ``key``'s lock; the Deferred fires once it is held."""
        entry = self._locks.get(key)
        if entry is None:
            entry = (DeferredLock(), [0])
            self._locks[key] = entry
        entry[1][0] += 1
        acquired = entry[0].acquire()
        acquired.addErrback(self._gave_up, key)
        return acquired

    def _gave_up(self, failure: Failure, key: Hashable) -> Failure:
        # A cancelled wait never holds the lock; only the interest is dropped.
        lock, users = self._locks[key]
        users[0] -= 1
        if users[0] == 0 and not lock.locked:
            del self._locks[key]
        return failure

    def release(self, key: Hashable) -> None:
        """Release ``key``'s lock, forgetting it when nobody else wants it."""
        lock, users = self._locks[key]
        users[0] -= 1
        if users[0] == 0:
            del self._locks[key]
        lock.release()

    def locked(self, key: Hashable) -> bool:
        """Whether ``key``'s lock is currently held."""
        entry = self._locks.get(key)
        return entry is not None and entry[0].locked

    def __len__(self) -> int:
        return len(self._locks)


class _Held:
    def __init__(self, family: KeyedLock, key: Hashable) -> None:
        self._family = family
        self._key = key

    async def __aenter__(self) -> None:
        await self._family.acquire(self._key)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._family.release(self._key)
