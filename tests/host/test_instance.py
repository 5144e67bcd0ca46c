"""The run path's instance file."""

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from kukeond.host import instance


class InstanceFileTests(SynchronousTestCase):
    def setUp(self):
        self.run = os.path.join(self.mktemp(), "run")
        self.path = os.path.join(self.run, ".kukeon-instance.json")

    def test_first_use_writes_reference_bytes(self):
        got = instance.verify_or_write(self.run, " kukeon.io ", "/kukeon/ ")
        self.assertEqual(got, instance.Instance("kukeon.io", "/kukeon"))
        with open(self.path, "rb") as fh:
            self.assertEqual(
                fh.read(),
                b'{\n  "containerdNamespaceSuffix": "kukeon.io",\n  "cgroupRoot": "/kukeon"\n}\n',
            )
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual(stat.S_IMODE(os.stat(self.run).st_mode) & 0o777, 0o750)
        self.assertEqual([n for n in os.listdir(self.run) if n.endswith(".tmp")], [])

    def test_matching_is_noop(self):
        instance.verify_or_write(self.run, "kukeon.io", "/kukeon")
        before = os.stat(self.path).st_ino
        instance.verify_or_write(self.run, "kukeon.io", "/kukeon/")
        self.assertEqual(os.stat(self.path).st_ino, before)

    def test_mismatch_names_both_values(self):
        instance.verify_or_write(self.run, "kukeon.io", "/kukeon")
        with self.assertRaises(instance.InstanceMismatch) as ctx:
            instance.verify_or_write(self.run, "example.org", "/kukeon")
        self.assertEqual(
            str(ctx.exception),
            f'runPath "{self.run}" was bootstrapped with containerdNamespaceSuffix="kukeon.io" '
            'cgroupRoot="/kukeon" but the running configuration requests '
            'containerdNamespaceSuffix="example.org" cgroupRoot="/kukeon": '
            "kukeon instance mismatch",
        )
        self.assertRaises(
            instance.InstanceMismatch, instance.verify_or_write, self.run, "kukeon.io", "/other"
        )

    def test_reads_reference_file_with_extra_keys(self):
        os.makedirs(self.run)
        with open(self.path, "w") as fh:
            fh.write('{"cgroupRoot":"/k","containerdNamespaceSuffix":"s.io","x":1}')
        self.assertEqual(instance.load(self.run), instance.Instance("s.io", "/k"))

    def test_corrupt_file(self):
        os.makedirs(self.run)
        for content in ("{", "[]", '{"cgroupRoot": 3}', "\xff"):
            with open(self.path, "w", encoding="latin-1") as fh:
                fh.write(content)
            with self.assertRaises(instance.InstanceFileInvalid) as ctx:
                instance.verify_or_write(self.run, "kukeon.io", "/kukeon")
            self.assertIn("server configuration is invalid", str(ctx.exception))
            self.assertIn(self.path, str(ctx.exception))

    def test_unreadable_file(self):
        os.makedirs(self.path)
        with self.assertRaises(instance.InstanceFileInvalid) as ctx:
            instance.load(self.run)
        self.assertIn("read instance metadata", str(ctx.exception))

    def test_absent(self):
        self.assertIsNone(instance.load(self.run))
