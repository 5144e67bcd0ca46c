import json
import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from kukeond.host.subnets import (
    InvalidSubnetCIDR,
    SubnetAllocator,
    SubnetExhausted,
    SubnetStateCorrupt,
)


class SubnetAllocatorTests(SynchronousTestCase):
    def setUp(self):
        self.run = self.mktemp()
        self.root = os.path.join(self.run, "data")
        os.makedirs(self.root)
        self.alloc = SubnetAllocator(self.run)

    def test_first_space_gets_lowest_block_and_file_shape(self):
        self.assertEqual(self.alloc.allocate("default", "default"), "10.88.0.0/24")
        path = os.path.join(self.root, "default", "default", "network.json")
        with open(path, "rb") as handle:
            self.assertEqual(
                handle.read(), b'{\n  "version": "v1",\n  "subnetCIDR": "10.88.0.0/24"\n}'
            )
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) & 0o777, 0o750)

    def test_existing_allocation_is_reused(self):
        first = self.alloc.allocate("r", "a")
        self.assertEqual(self.alloc.allocate("r", "a"), first)
        self.assertEqual(self.alloc.load_assigned("r", "a"), first)

    def test_distinct_spaces_distinct_blocks_across_realms(self):
        got = [
            self.alloc.allocate("r1", "a"),
            self.alloc.allocate("r2", "a"),
            self.alloc.allocate("r1", "b"),
        ]
        self.assertEqual(got, ["10.88.0.0/24", "10.88.1.0/24", "10.88.2.0/24"])

    def test_release_frees_block_for_reuse(self):
        self.alloc.allocate("r", "a")
        self.alloc.allocate("r", "b")
        self.assertTrue(self.alloc.release("r", "a"))
        self.assertFalse(self.alloc.release("r", "a"))
        self.assertIsNone(self.alloc.load_assigned("r", "a"))
        self.assertEqual(self.alloc.allocate("r", "c"), "10.88.0.0/24")

    def test_corrupt_record_of_another_space_is_skipped(self):
        self.alloc.allocate("r", "a")
        bad = os.path.join(self.root, "r", "bad", "network.json")
        os.makedirs(os.path.dirname(bad))
        with open(bad, "w") as handle:
            handle.write("{not json")
        self.assertEqual(self.alloc.allocate("r", "b"), "10.88.1.0/24")

    def test_own_corrupt_record_raises(self):
        path = os.path.join(self.root, "r", "a", "network.json")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as handle:
            json.dump({"version": "v1", "subnetCIDR": ""}, handle)
        exc = self.assertRaises(SubnetStateCorrupt, self.alloc.allocate, "r", "a")
        self.assertIn("subnet allocator state is malformed", str(exc))

    def test_exhaustion(self):
        alloc = SubnetAllocator(self.run, "10.99.0.0/23")
        alloc.allocate("r", "a")
        alloc.allocate("r", "b")
        exc = self.assertRaises(SubnetExhausted, alloc.allocate, "r", "c")
        self.assertTrue(str(exc).startswith("no free subnet available in parent CIDR"))

    def test_preferred_subnet_used_only_when_free(self):
        self.assertEqual(self.alloc.allocate("r", "a", preferred="10.88.7.0/24"), "10.88.7.0/24")
        self.assertEqual(self.alloc.allocate("r", "b", preferred="10.88.7.0/24"), "10.88.0.0/24")

    def test_invalid_parent(self):
        self.assertRaises(InvalidSubnetCIDR, SubnetAllocator, self.root, "nonsense")
        self.assertRaises(InvalidSubnetCIDR, SubnetAllocator, self.root, "10.0.0.0/24", 24)

    def test_files_other_than_dirs_are_ignored(self):
        with open(os.path.join(self.root, "stray"), "w") as handle:
            handle.write("x")
        self.assertEqual(self.alloc.allocate("r", "a"), "10.88.0.0/24")
