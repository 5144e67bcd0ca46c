"""The daemon keeps freed memory for its next large reply (glibc)."""

from __future__ import annotations

import platform
import resource

from twisted.trial.unittest import TestCase

from kukeond.base import memory


class KeepFreedMemoryTests(TestCase):
    def setUp(self):
        if platform.libc_ver()[0] != "glibc":
            raise self.skipTest("mallopt is glibc's")

    def test_large_blocks_are_reused_without_page_faults(self):
        """Three blocks of 1.5 MB at a time, as a ListCells of 1000 cells makes.

        Without the thresholds raised, freeing them leaves more than glibc's
        dynamic trim threshold (twice the block) at the top of the heap, which
        goes back to the kernel: about 1500 page faults for these 20 rounds.
        """
        self.assertTrue(memory.keep_freed_memory())
        size = 3 << 19

        def churn():
            for _ in range(20):
                blocks = [bytearray(size) for _ in range(3)]
                for block in blocks:
                    block[::4096] = b"x" * (size // 4096)
                del blocks

        churn()  # the heap grows to hold the blocks once
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        churn()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        self.assertLess(faults, 200)
