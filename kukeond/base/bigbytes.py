"""Build one large ``bytes`` object from pieces without holding the GIL for the whole copy.

``b"".join(pieces)`` is one C call: for hundreds of MB it holds the GIL for
the whole copy (mostly page faults on the new block, about 1.3 ms per MiB on
our machines), and every other thread of the process waits. A
:class:`BytesBuilder` writes large results to an anonymous memory file
(``memfd_create``) piece by piece and reads them back with one ``read``: the
kernel does both copies with the GIL released. Small results, or a system
without ``memfd_create``, are joined in memory as usual.
"""

from __future__ import annotations

import os

JOIN_MAX = 4 << 20
"""Results up to this size are joined in memory: at most a few ms of copying."""

_READ_MAX = 0x7FFFF000
"""Linux returns at most this much from one ``read``."""


class BytesBuilder:
    """Collects pieces of a result whose final size is known in advance.

    Call :meth:`close` when the result is abandoned; :meth:`getvalue` closes
    the builder itself.
    """

    def __init__(self, size: int) -> None:
        self._pieces: list[bytes] = []
        self._fd = -1
        if size > JOIN_MAX and size <= _READ_MAX and hasattr(os, "memfd_create"):
            try:
                self._fd = os.memfd_create("kukeond-bytes", os.MFD_CLOEXEC)
            except OSError:
                self._fd = -1

    def write(self, piece: bytes) -> None:
        """Append ``piece`` (a short GIL hold: ``os.write`` copies without it)."""
        if self._fd < 0:
            self._pieces.append(piece)
            return
        view = memoryview(piece)
        while view:
            view = view[os.write(self._fd, view) :]

    def getvalue(self) -> bytes:
        """Return everything written as one ``bytes`` object and release the file."""
        if self._fd < 0:
            pieces, self._pieces = self._pieces, []
            return b"".join(pieces)
        try:
            size = os.lseek(self._fd, 0, os.SEEK_CUR)
            parts = []
            done = 0
            while done < size:  # one read, unless the kernel returns less
                part = os.pread(self._fd, size - done, done)
                if not part:
                    raise OSError("memory file shorter than what was written to it")
                parts.append(part)
                done += len(part)
            return parts[0] if len(parts) == 1 else b"".join(parts)  # b"" for none
        finally:
            self.close()

    def close(self) -> None:
        """Drop what was written (idempotent)."""
        self._pieces = []
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
