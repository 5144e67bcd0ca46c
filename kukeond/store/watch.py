"""What changed in the metadata tree since it was last read, from inotify.

The store validates a cached document with a ``stat`` of its file, which
costs a few microseconds each: most of a ListCells of a thousand cells. The
kernel can say instead which directories changed: an inotify watch on every
directory the store has read from queues an event for each change, during
the system call that makes it. So once another writer's ``write``,
``rename`` or ``unlink`` has returned, the event is there to be read; a
read of the queue before answering (one non-blocking ``read``) tells what
the cache may no longer trust, and everything else needs no ``stat``.

:class:`TreeWatch` keeps the watches, by the key of the directory (``()`` is
the data directory, ``(R,)`` a realm's, and so on) and turns the queued
events into :class:`Changes`. A directory is watched before it is read, and
with all its ancestors, so that renaming or removing any of them shows. When
the queue overflowed, everything counts as changed.
"""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import fcntl
import os
import struct
import termios
from collections.abc import Iterator
from dataclasses import dataclass, field

Key = tuple[str, ...]

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

WATCHED = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT
_EVENT = struct.Struct("iIII")

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        if not name:
            return None
        libc = ctypes.CDLL(name, use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            return None
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        _libc = libc
    return _libc


@dataclass
class Changes:
    """What the events read say: ``everything``, or these keys and subtrees.

    ``documents``: directories whose ``metadata.json`` may have changed.
    ``listings``: directories whose subdirectories may have changed.
    ``subtrees``: directories that may have moved or gone, with all below them.
    """

    everything: bool = False
    documents: set[Key] = field(default_factory=set)
    listings: set[Key] = field(default_factory=set)
    subtrees: set[Key] = field(default_factory=set)

    def __bool__(self) -> bool:
        return self.everything or bool(self.documents or self.listings or self.subtrees)


class TreeWatch:
    """inotify watches on the directories of one metadata tree (see the module docstring)."""

    def __init__(self, root: str, document: str = "metadata.json") -> None:
        """Watch nothing yet under ``root``; ``OSError`` when inotify cannot be had."""
        libc = _lib()
        if libc is None:
            raise OSError("inotify is not available")
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"inotify_init1: {os.strerror(errno)}")
        self.fd = fd
        self.root = root
        self._document = document.encode()
        self._libc = libc
        self._by_key: dict[Key, int] = {}
        self._by_wd: dict[int, Key] = {}
        self._queued = array.array("i", [0])

    def close(self) -> None:
        """Drop every watch."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._by_key.clear()
        self._by_wd.clear()

    def __len__(self) -> int:
        return len(self._by_key)

    def watch(self, key: Key) -> bool:
        """Watch the directory of ``key`` and each of its ancestors; whether all are watched.

        Call it before reading what is to be trusted later: a change made
        after this returns is reported by :meth:`changes`.
        """
        by_key = self._by_key
        if key in by_key:
            return True  # its ancestors were watched along with it
        for depth in range(len(key) + 1):
            prefix = key[:depth]
            if prefix in by_key:
                continue
            path = os.path.join(self.root, *prefix).encode()
            wd = self._libc.inotify_add_watch(self.fd, path, WATCHED | IN_ONLYDIR | IN_DONT_FOLLOW)
            if wd < 0:
                return False
            old = self._by_wd.get(wd)
            if old is not None and old != prefix:  # the same directory under another name
                self._by_key.pop(old, None)
            by_key[prefix] = wd
            self._by_wd[wd] = prefix
        return True

    def changes(self) -> Changes | None:
        """Read every queued event; what they say may have changed since the last call.

        ``None`` when no event is queued (one ``ioctl``, the common case).
        """
        if self.fd < 0:
            return None
        fcntl.ioctl(self.fd, termios.FIONREAD, self._queued, True)
        if not self._queued[0]:
            return None
        found = Changes()
        for wd, mask, name in self._events():
            if mask & IN_Q_OVERFLOW:
                found.everything = True
                continue
            key = self._by_wd.get(wd)
            if key is None:
                continue
            if mask & _GONE:
                found.subtrees.add(key)
                if mask & IN_MOVE_SELF:
                    # Moved with all below it: those watches no longer watch these keys.
                    self._unwatch_below(key)
                else:
                    self._forget(wd, key)
            elif name == self._document:
                found.documents.add(key)
            elif mask & IN_ISDIR:
                found.listings.add(key)
                found.subtrees.add((*key, name.decode("utf-8", "surrogateescape")))
        return found

    def _forget(self, wd: int, key: Key) -> None:
        """The kernel dropped ``wd`` (its directory is gone; those below it go too)."""
        self._by_wd.pop(wd, None)
        if self._by_key.get(key) == wd:
            del self._by_key[key]

    def _unwatch_below(self, top: Key) -> None:
        size = len(top)
        for key in [k for k in self._by_key if k[:size] == top]:
            wd = self._by_key.pop(key)
            self._by_wd.pop(wd, None)
            self._libc.inotify_rm_watch(self.fd, wd)

    def _events(self) -> Iterator[tuple[int, int, bytes]]:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size
                name = data[pos : pos + size].rstrip(b"\0")
                pos += size
                yield wd, mask, name
