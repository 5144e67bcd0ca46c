"""One large bytes object built from pieces, in memory or through a memory file."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from kukeond.base import bigbytes
from kukeond.base.bigbytes import BytesBuilder


class BytesBuilderTests(SynchronousTestCase):
    def check(self, pieces: list[bytes]) -> BytesBuilder:
        builder = BytesBuilder(sum(map(len, pieces)))
        for piece in pieces:
            builder.write(piece)
        got = builder.getvalue()
        self.assertIs(type(got), bytes)
        self.assertEqual(got, b"".join(pieces))
        return builder

    def test_small_in_memory(self) -> None:
        self.assertEqual(BytesBuilder(10)._fd, -1)
        self.check([b"ab", b"", b"cde"])
        self.check([])

    def test_large_through_a_memory_file(self) -> None:
        pieces = [os.urandom(1 << 20) for _ in range(5)] + [b"tail"]
        builder = BytesBuilder(sum(map(len, pieces)))
        self.assertGreaterEqual(builder._fd, 0)
        builder.close()
        self.check(pieces)

    def test_close_releases_the_file(self) -> None:
        builder = BytesBuilder(bigbytes.JOIN_MAX + 1)
        fd = builder._fd
        builder.write(b"x" * 100)
        builder.close()
        builder.close()
        self.assertRaises(OSError, os.fstat, fd)

    def test_without_memfd(self) -> None:
        self.patch(bigbytes.os, "memfd_create", _refuse)
        builder = self.check([b"y" * (bigbytes.JOIN_MAX + 1)])
        self.assertEqual(builder._fd, -1)


def _refuse(*args: object) -> int:
    raise OSError("not here")
