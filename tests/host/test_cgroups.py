"""Cgroups: one test factory for the real host, emulated v1/v2 trees and the fake."""

import os
import secrets
import shutil
import subprocess

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kukeond.host import cgroups
from kukeond.host.cgroups import CgroupError, CgroupV1, CgroupV2, ICgroups, Mount
from tests.support.fake_cgroups import FakeCgroups

INTERFACE_FILES = ("cgroup.controllers", "cgroup.procs", "cgroup.subtree_control")


class EmulatedHierarchy(cgroups._Hierarchy):
    """Stands in for the kernel on a plain directory: interface files appear with a group."""

    def make_dir(self, path, mode=cgroups.GROUP_DIR_MODE):
        os.mkdir(path, mode)
        for name in INTERFACE_FILES:
            open(os.path.join(path, name), "w").close()

    def remove_dir(self, path):
        for name in INTERFACE_FILES:
            try:
                os.unlink(os.path.join(path, name))
            except FileNotFoundError:
                pass
        os.rmdir(path)


class EmulatedV2(CgroupV2):
    def _hierarchy(self, mount):
        return EmulatedHierarchy(mount)


class EmulatedV1(CgroupV1):
    def _hierarchy(self, mount):
        return EmulatedHierarchy(mount.point)


class CgroupsFactoryMixin:
    """Behaviour every ICgroups must show. ``make`` returns (cgroups, unique root group)."""

    def test_interface(self):
        cg, _ = self.make()
        self.assertTrue(verifyObject(ICgroups, cg))
        self.assertIn(cg.version, (1, 2))

    def test_create_exists_children_delete(self):
        cg, root = self.make()
        cell = f"{root}/r/s/k/c"
        self.assertFalse(cg.exists(cell))
        controllers = cg.create(cell)
        self.assertIsInstance(controllers, list)
        self.assertEqual(controllers, sorted(controllers))
        for group in (root, f"{root}/r", f"{root}/r/s/k", cell):
            self.assertTrue(cg.exists(group), group)
        self.assertEqual(cg.create(cell), controllers)
        cg.create(f"{root}/r/s/k/b")
        self.assertEqual(cg.children(f"{root}/r/s/k"), ["b", "c"])
        self.assertEqual(cg.procs(cell), [])
        self.assertTrue(cg.delete(f"{root}/r/s"))
        self.assertFalse(cg.exists(cell))
        self.assertFalse(cg.exists(f"{root}/r/s"))
        self.assertTrue(cg.exists(f"{root}/r"))
        self.assertFalse(cg.delete(f"{root}/r/s"))

    def test_delete_removes_runtime_children_first(self):
        cg, root = self.make()
        cell = f"{root}/r/s/k/c"
        cg.create(cell)
        cg.create(f"{cell}/s_k_c_root/_payload")
        cg.create(f"{cell}/s_k_c_app")
        self.assertTrue(cg.delete(cell))
        self.assertEqual(cg.children(f"{root}/r/s/k"), [])

    def test_invalid_groups(self):
        cg, root = self.make()
        for bad in ("", "/", f"{root}/../x", f"{root}/./x"):
            self.assertRaises(CgroupError, cg.create, bad)


class FakeCgroupsTests(CgroupsFactoryMixin, SynchronousTestCase):
    def make(self):
        self.fake = FakeCgroups()
        return self.fake, "/kukeon-test"

    def test_controllers(self):
        cg, root = self.make()
        self.assertEqual(cg.create(f"{root}/r"), ["cpu", "io", "memory", "pids"])
        self.assertEqual(
            cg.create(f"{root}/n", all_controllers=True), ["cpu", "cpuset", "io", "memory", "pids"]
        )

    def test_payload_and_busy(self):
        cg, root = self.make()
        cg.create(f"{root}/c/x")
        self.fake.pids[f"{root}/c/x"] = [7, 8]
        self.assertRaises(CgroupError, cg.delete, f"{root}/c")
        self.assertEqual(cg.move_to_payload(f"{root}/c/x"), [7, 8])
        self.assertEqual(cg.procs(f"{root}/c/x/_payload"), [7, 8])
        self.assertEqual(cg.procs(f"{root}/c/x"), [])
        self.assertRaises(CgroupError, cg.move_to_payload, f"{root}/missing")


class EmulatedV2Tests(CgroupsFactoryMixin, SynchronousTestCase):
    def make(self, controllers="cpuset cpu io memory pids", self_cgroup="0::/kukeond\n"):
        self.mount = self.mktemp()
        os.makedirs(self.mount)
        with open(os.path.join(self.mount, "cgroup.controllers"), "w") as fh:
            fh.write(controllers + "\n")
        open(os.path.join(self.mount, "cgroup.subtree_control"), "w").close()
        self.self_cgroup = os.path.join(self.mount, "self-cgroup")
        with open(self.self_cgroup, "w") as fh:
            fh.write(self_cgroup)
        return EmulatedV2(self.mount, self_cgroup=self.self_cgroup), "/kukeon-test"

    def test_delegates_reference_set(self):
        cg, root = self.make()
        self.assertEqual(cg.create(f"{root}/r"), ["cpu", "io", "memory", "pids"])
        with open(os.path.join(self.mount, "kukeon-test", "r", "cgroup.subtree_control")) as fh:
            self.assertTrue(fh.read().startswith("+"))
        self.assertEqual(
            cg.create(f"{root}/n", all_controllers=True), ["cpu", "cpuset", "io", "memory", "pids"]
        )

    def test_only_offered_controllers(self):
        cg, root = self.make(controllers="memory pids")
        self.assertEqual(cg.available_controllers(), ["memory", "pids"])
        self.assertEqual(cg.create(f"{root}/r"), ["memory", "pids"])

    def test_refused_controllers_left_out(self):
        cg, root = self.make()
        os.unlink(os.path.join(self.mount, "cgroup.subtree_control"))
        os.mkdir(os.path.join(self.mount, "cgroup.subtree_control"))
        self.assertEqual(cg.create(f"{root}/r"), [])
        self.assertTrue(cg.exists(f"{root}/r"))

    def test_plain_directory_is_not_a_group(self):
        cg, root = self.make()
        os.makedirs(os.path.join(self.mount, "kukeon-test", "plain"))
        self.assertFalse(cg.exists(f"{root}/plain"))

    def test_drains_populated_namespace_root(self):
        cg, root = self.make(self_cgroup="0::/\n")
        with open(os.path.join(self.mount, "cgroup.events"), "w") as fh:
            fh.write("populated 1\nfrozen 0\n")
        with open(os.path.join(self.mount, "cgroup.procs"), "w") as fh:
            fh.write("41\n")
        cg.create(f"{root}/r")
        with open(os.path.join(self.mount, "__bootstrap", "cgroup.procs")) as fh:
            self.assertEqual(fh.read(), "41")

    def test_no_drain_elsewhere(self):
        cg, root = self.make()
        with open(os.path.join(self.mount, "cgroup.events"), "w") as fh:
            fh.write("populated 1\n")
        cg.create(f"{root}/r")
        self.assertFalse(os.path.exists(os.path.join(self.mount, "__bootstrap")))

    def test_payload_writes_each_pid(self):
        cg, root = self.make()
        group = f"{root}/c/s_k_c_root"
        cg.create(group)
        with open(os.path.join(self.mount, "kukeon-test/c/s_k_c_root/cgroup.procs"), "w") as fh:
            fh.write("5\n6\n")
        self.assertEqual(cg.move_to_payload(group), [5, 6])
        payload = os.path.join(self.mount, "kukeon-test/c/s_k_c_root/_payload")
        self.assertEqual(os.stat(payload).st_mode & 0o777, 0o750)


class EmulatedV1Tests(CgroupsFactoryMixin, SynchronousTestCase):
    def make(self):
        base = self.mktemp()
        self.points = {}
        mounts = []
        for name, fstype, opts in (
            ("memory", "cgroup", ("rw", "memory")),
            ("pids", "cgroup", ("rw", "pids")),
            ("unified", "cgroup2", ("rw",)),
        ):
            point = os.path.join(base, name)
            os.makedirs(point)
            self.points[name] = point
            mounts.append(Mount(point, fstype, opts))
        return EmulatedV1(mounts), "/kukeon-test"

    def test_group_in_every_hierarchy(self):
        cg, root = self.make()
        self.assertEqual(cg.create(f"{root}/r/s"), [])
        for point in self.points.values():
            self.assertTrue(os.path.isdir(os.path.join(point, "kukeon-test/r/s")))
        cg.delete(f"{root}/r/s")
        for point in self.points.values():
            self.assertFalse(os.path.exists(os.path.join(point, "kukeon-test/r/s")))

    def test_partial_group_does_not_exist_until_recreated(self):
        cg, root = self.make()
        cg.create(f"{root}/r")
        shutil.rmtree(os.path.join(self.points["pids"], "kukeon-test/r"))
        self.assertFalse(cg.exists(f"{root}/r"))
        cg.create(f"{root}/r")
        self.assertTrue(cg.exists(f"{root}/r"))


class DetectTests(SynchronousTestCase):
    def write_mountinfo(self, text):
        path = self.mktemp()
        with open(path, "w") as fh:
            fh.write(text)
        return path

    def test_hybrid(self):
        path = self.write_mountinfo(
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
            "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
            "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        )
        cg = cgroups.detect_cgroups(path)
        self.assertIsInstance(cg, CgroupV1)
        self.assertEqual(
            [m.point for m in cg.mounts],
            ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/unified"],
        )
        self.assertEqual([m.is_cpuset for m in cg.mounts], [False, True, False])

    def test_pure_v2(self):
        path = self.write_mountinfo(
            "26 23 0:23 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
        )
        cg = cgroups.detect_cgroups(path)
        self.assertIsInstance(cg, CgroupV2)
        self.assertEqual(cg.mount, "/sys/fs/cgroup")

    def test_nothing_mounted(self):
        cg = cgroups.detect_cgroups(self.write_mountinfo("1 0 8:1 / / rw - ext4 /dev/sda rw\n"))
        self.assertIsInstance(cg, CgroupV2)


def _real_cgroups():
    if os.geteuid() != 0:
        return None
    cg = cgroups.detect_cgroups()
    probe = f"/kukeon-probe-{secrets.token_hex(4)}"
    try:
        cg.create(probe)
    except CgroupError:
        return None
    cg.delete(probe)
    return cg


REAL = _real_cgroups()


class RealHostTests(CgroupsFactoryMixin, SynchronousTestCase):
    """The machine's own cgroupfs, under a unique root removed afterwards."""

    if REAL is None:
        skip = "needs root and a writable cgroup file system"

    def make(self):
        root = f"/kukeon-test-{secrets.token_hex(4)}"
        self.addCleanup(REAL.delete, root)
        return REAL, root

    def test_payload_move_and_busy_delete(self):
        cg, root = self.make()
        group = f"{root}/r/s/k/c/s_k_c_root"
        cg.create(group)
        proc = subprocess.Popen(["sleep", "60"])
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        for mount in getattr(cg, "mounts", []):
            procs = os.path.join(mount.point, group.lstrip("/"), "cgroup.procs")
            with open(procs, "w") as fh:
                fh.write(str(proc.pid))
        if cg.version == 2:
            with open(os.path.join(cg.mount, group.lstrip("/"), "cgroup.procs"), "w") as fh:
                fh.write(str(proc.pid))
        self.assertEqual(cg.procs(group), [proc.pid])
        self.assertEqual(cg.move_to_payload(group), [proc.pid])
        self.assertEqual(cg.procs(f"{group}/_payload"), [proc.pid])
        self.assertEqual(cg.procs(group), [])
        with self.assertRaises(CgroupError) as ctx:
            cg.delete(f"{root}/r")
        self.assertTrue(cgroups.is_busy(ctx.exception))
        proc.kill()
        proc.wait()
        self.assertTrue(cg.delete(f"{root}/r"))
        self.assertFalse(cg.exists(group))
