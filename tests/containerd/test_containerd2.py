"""containerd 2.2 and the reference binaries: the locator, the private 2.2, the Go kukeond kit.

``make test`` runs the containerd-backed modules a second time on containerd
2.2 (``python -m tests.support.containerd on-2``); these tests check that
such a run really is on 2.2, that a private 2.2 is as private as the 1.6 one
(its own sockets only, nothing on TCP, no CRI or NRI), and that the kit in
``tests.support.reference`` works.
"""

from __future__ import annotations

import os
import re
import stat

from twisted.internet import reactor, threads
from twisted.trial import unittest

from kukeond.containerd.grpc import GrpcContainerd
from tests.support import containerd as support
from tests.support import reference
from tests.support.runtime import short_tmpdir
from tools.private_containerd import PrivateContainerd, containerd_version


def _set_env(test: unittest.TestCase, name: str, value: str | None) -> None:
    """Set (or with None unset) one environment variable for the test."""
    old = os.environ.get(name)

    def restore() -> None:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old

    test.addCleanup(restore)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _script(directory: str, name: str, body: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\n{body}\n")
    os.chmod(path, stat.S_IRWXU)
    return path


class ReferenceLocatorTests(unittest.TestCase):
    """``reference_bin``: a path, or one line saying what is missing; never a skip in CI."""

    def setUp(self) -> None:
        self.dir = short_tmpdir(self)
        _set_env(self, reference.ENV_BIN, self.dir)
        _set_env(self, "CI", None)

    def test_default_is_shared_bin_beside_the_checkout(self):
        _set_env(self, reference.ENV_BIN, None)
        self.assertEqual(
            reference.reference_dir(),
            os.path.abspath(os.path.join(reference.REPO_ROOT, "..", "shared", "bin")),
        )

    def test_found(self):
        path = _script(self.dir, "kuke", "exit 0")
        self.assertEqual(reference.reference_bin("kuke"), path)

    def test_missing_skips_with_one_line_naming_it_and_where(self):
        with self.assertRaises(unittest.SkipTest) as caught:
            reference.reference_bin("kuke")
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        for part in ("'kuke'", self.dir, reference.ENV_BIN):
            self.assertIn(part, message)

    def test_not_executable_is_missing(self):
        with open(os.path.join(self.dir, "kuke"), "w") as f:
            f.write("")
        self.assertIsNotNone(reference.missing_reason("kuke"))

    def test_missing_fails_in_ci(self):
        _set_env(self, "CI", "true")
        with self.assertRaises(unittest.FailTest) as caught:
            reference.reference_bin("kuke")
        self.assertIn(self.dir, str(caught.exception))

    def test_run_kuke_returns_code_and_both_streams(self):
        _script(self.dir, "kuke", 'echo "args: $*"; echo oops >&2; exit 3')
        result = reference.run_kuke("/x/kukeond.sock", "get", "realms")
        self.assertEqual(
            result,
            reference.KukeResult(3, "args: --host unix:///x/kukeond.sock get realms\n", "oops\n"),
        )

    def test_run_kuke_timeout_fails(self):
        _script(self.dir, "kuke", "exec sleep 30")
        with self.assertRaises(unittest.FailTest):
            reference.run_kuke("/x/kukeond.sock", "get", "realms", timeout=0.2)


class ModuleScanTests(unittest.TestCase):
    """The 2.2 run finds every module that drives a real containerd, however it gets one."""

    def test_modules_on_the_real_runtime_are_found(self):
        from tests.support.containerd import containerd_test_modules

        found = set(containerd_test_modules())
        for module in (
            "tests.controller.test_cells_real",
            "tests.controller.test_stop_real",
            "tests.controller.test_restart_policy_real",
            "tests.e2e.test_workflow",
        ):
            self.assertIn(module, found)
        self.assertNotIn("tests.controller.test_cells", found)


class VersionTests(unittest.TestCase):
    """Which config a private containerd gets depends on what ``--version`` says."""

    def test_versions_of_both_builds(self):
        d = short_tmpdir(self)
        debian = _script(
            d,
            "c16",
            "echo 'containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3'",
        )
        v2 = _script(
            d,
            "c22",
            "echo 'containerd github.com/containerd/containerd/v2 "
            "v2.2.0 1c4457e00facac03ce1d75f7b6777a7a851e5c41'",
        )
        self.assertEqual(containerd_version(debian), "1.6.20~ds1")
        self.assertEqual(containerd_version(v2), "2.2.0")


def _tcp_listening_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    return inodes


class PrivateContainerd2Tests(unittest.TestCase):
    """A private containerd 2.2 from the reference binaries."""

    timeout = 60

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise unittest.SkipTest("a private containerd needs root")
        self.binary = reference.reference_bin("containerd")

    async def test_private_2_2_has_no_cri_nri_or_tcp(self):
        daemon = PrivateContainerd(
            os.path.join(short_tmpdir(self, "kc2-"), "c"), binary=self.binary
        )
        self.addCleanup(daemon.stop, True)
        await threads.deferToThread(daemon.start)
        self.assertTrue(daemon.version.startswith("2."), daemon.version)
        with open(os.path.join(daemon.directory, "config.toml")) as f:
            self.assertTrue(f.read().startswith("version = 3\n"))
        self.assertFalse(_socket_inodes(daemon._proc.pid) & _tcp_listening_inodes())
        client = GrpcContainerd(daemon.socket, reactor=reactor)
        client.start()
        self.addCleanup(client.stop)
        self.assertEqual((await client.version()).version.lstrip("v"), daemon.version)
        with open(daemon.log_path) as f:
            log = f.read()
        self.assertNotIn("failed to load plugin", log)
        self.assertNotIn("nri.sock", log)

    async def test_shared_2_2_answers(self):
        client = GrpcContainerd(support.get_containerd2_socket(), reactor=reactor)
        client.start()
        self.addCleanup(client.stop)
        self.assertTrue((await client.version()).version.lstrip("v").startswith("2."))


class SuiteContainerdTests(unittest.TestCase):
    """The containerd the suite runs on is the one it was told to use (the 2.2 run sets both)."""

    async def test_suite_containerd_is_the_configured_build(self):
        binary = os.environ.get(support.ENV_BINARY)
        major = os.environ.get(support.ENV_MAJOR)
        if not (binary or major):
            raise unittest.SkipTest(
                f"neither {support.ENV_BINARY} nor {support.ENV_MAJOR} "
                "is set: nothing says which containerd this should be"
            )
        client = GrpcContainerd(support.get_containerd_socket(), reactor=reactor)
        client.start()
        self.addCleanup(client.stop)
        running = (await client.version()).version.lstrip("v")
        if major:
            self.assertEqual(running.split(".")[0], major, running)
        if binary:
            self.assertEqual(running, await threads.deferToThread(containerd_version, binary))


class GoKukeondKitTests(unittest.TestCase):
    """``start_go_kukeond`` and ``run_kuke`` against the real reference daemon."""

    timeout = 60

    async def test_realm_round_trip(self):
        daemon = reference.start_go_kukeond(self)
        listed = await reference.run_kuke_async(daemon.socket, "get", "realms")
        self.assertEqual((listed.code, listed.stdout), (0, "No realms found.\n"))
        created = daemon.kuke("create", "realm", "r1")
        self.assertEqual(created.code, 0, created.stderr)
        namespace = f"r1.{daemon.namespace_suffix}"
        self.assertIn(namespace, created.stdout)
        client = GrpcContainerd(daemon.containerd_socket, reactor=reactor)
        client.start()
        self.addCleanup(client.stop)
        self.assertIn(namespace, await client.list_namespaces())
